#!/usr/bin/env python3
"""Independent produce-throughput cross-check with confluent-kafka (librdkafka).

Produces fixed-size records to an existing topic as fast as librdkafka accepts them for
--seconds, waits for every delivery report, and prints one JSON line with the delivered
rate. The Python produce() call costs about a microsecond, so this client tops out well below
a native one: it checks that `strata bench` is in the right ballpark, not a ceiling.
"""
import base64
import argparse
import json
import os
import resource
import sys
import time

import confluent_kafka
from confluent_kafka import Producer


def _version(v) -> str:
    """confluent_kafka.version()/libversion() return (str, int) tuples."""
    return v[0] if isinstance(v, tuple) else str(v)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--brokers", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--record-size", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--acks", default="1")
    ap.add_argument("--compression", default="none")
    args = ap.parse_args()

    producer = Producer({
        "bootstrap.servers": args.brokers,
        "acks": args.acks,
        "linger.ms": 1,
        "batch.size": 131072,
        "enable.idempotence": False,
        "compression.type": args.compression,
        "queue.buffering.max.messages": 2_000_000,
        "queue.buffering.max.kbytes": 1_048_576,
    })
    # Random text of 6 bits per byte, like strata bench's values, so codecs have some work.
    payload = base64.b64encode(os.urandom(args.record_size))[: args.record_size]
    stats = {"delivered": 0, "errors": 0}

    def on_delivery(err, _msg):
        if err is None:
            stats["delivered"] += 1
        else:
            stats["errors"] += 1

    produced = 0
    start = time.perf_counter()
    deadline = start + args.seconds
    while time.perf_counter() < deadline:
        for _ in range(1000):
            try:
                producer.produce(args.topic, payload, on_delivery=on_delivery)
                produced += 1
            except BufferError:
                producer.poll(0.001)
        producer.poll(0)
    remaining = producer.flush(60)
    elapsed = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result = {
        "client": "confluent-kafka " + _version(confluent_kafka.version()),
        "librdkafka": _version(confluent_kafka.libversion()),
        "record_size": args.record_size,
        "produced": produced,
        "delivered": stats["delivered"],
        "errors": stats["errors"],
        "undelivered": remaining,
        "seconds": round(elapsed, 3),
        "msgs_per_s": round(stats["delivered"] / elapsed, 1),
        "mb_per_s": round(stats["delivered"] * args.record_size / 1e6 / elapsed, 2),
        # CPU of this process (Python + librdkafka threads) in % of one core: near 100 with
        # taskset to one CPU means the client, not the broker, limited the rate.
        "client_cpu_percent": round((usage.ru_utime + usage.ru_stime) / elapsed * 100, 1),
    }
    print(json.dumps(result))
    return 0 if stats["errors"] == 0 and remaining == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
