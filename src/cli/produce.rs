//! `strata produce`: records from stdin, one per line, like `rpk topic produce` and
//! `kafka-console-producer.sh`.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::sync::mpsc;

use anyhow::Context;
use bytes::Bytes;
use clap::{Args, ValueEnum};
use kafka_protocol::records::Compression;
use strata::client::records::{
    choose_partition, describe, OutRecord, ProduceOptions, Producer, Router,
};

/// Records per partition per Produce request, at most.
const BATCH_RECORDS: usize = 10_000;
/// Bytes per partition per Produce request, about (below the default message.max.bytes).
const BATCH_BYTES: usize = 512 << 10;
/// Bytes after which records without a key move on to the next partition (Java's batch.size).
const STICKY_BYTES: usize = 16 << 10;

/// Flags of `strata produce`.
#[derive(Args, Debug)]
#[command(after_help = "Each line of stdin is one record; its value is the line without the \
line ending. With --key-separator, a line `KEY<SEP>VALUE` has a key (a line without the \
separator has none). Records go to --partition, else to murmur2(key) % partitions like the \
Java client, else (no key) to one partition until 16 KiB were sent there, then the next. \
Lines are sent in batches as they arrive; the last ones at end of input.\n\n\
Example: printf 'user1:hello\\nuser2:world\\n' | strata produce events --key-separator :")]
pub struct ProduceArgs {
    /// Topic to produce to.
    topic: String,
    /// Broker to bootstrap from (leaders are found with Metadata).
    #[arg(long, env = "STRATA_BOOTSTRAP", default_value = "127.0.0.1:9092")]
    bootstrap_server: String,
    #[command(flatten)]
    security: super::SecurityArgs,
    /// Send every record to this partition.
    #[arg(long, short = 'p')]
    partition: Option<i32>,
    /// Split each line at the first SEP into key and value.
    #[arg(long, short = 'k', value_name = "SEP")]
    key_separator: Option<String>,
    /// Acknowledgements: 0 (none, no offsets reported), 1 (leader) or all (in-sync replicas).
    #[arg(long, default_value = "all", value_parser = parse_acks)]
    acks: i16,
    /// Batch compression.
    #[arg(long, value_enum, default_value_t = Codec::None)]
    compression: Codec,
    /// How long a leader may wait for its replicas (ms).
    #[arg(long, default_value_t = 30_000)]
    timeout_ms: i32,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Codec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

fn parse_acks(s: &str) -> Result<i16, String> {
    match s {
        "0" => Ok(0),
        "1" => Ok(1),
        "all" | "-1" => Ok(-1),
        _ => Err("expected 0, 1 or all".into()),
    }
}

/// Per partition: records sent and the offset of the last one (-1 if unknown).
type Summary = BTreeMap<i32, (u64, i64)>;

/// Runs `strata produce`.
pub fn run(args: ProduceArgs) -> anyhow::Result<()> {
    let router = Router::connect_secure(
        &args.bootstrap_server,
        "strata-produce",
        &args.topic,
        &args.security.connector()?,
    )
    .map_err(|e| anyhow::anyhow!(describe(&e)))?;
    let partitions = router.partitions();
    if let Some(p) = args.partition.filter(|p| !partitions.contains(p)) {
        anyhow::bail!(
            "topic {} has no partition {p} (UNKNOWN_TOPIC_OR_PARTITION): it has {}",
            args.topic,
            partitions.len()
        );
    }
    let compression = match args.compression {
        Codec::None => Compression::None,
        Codec::Gzip => Compression::Gzip,
        Codec::Snappy => Compression::Snappy,
        Codec::Lz4 => Compression::Lz4,
        Codec::Zstd => Compression::Zstd,
    };
    let options = ProduceOptions { acks: args.acks, compression, timeout_ms: args.timeout_ms };
    let mut producer = Producer::new(router, options);
    let count = partitions.len() as i32;
    let separator = args.key_separator.map(String::into_bytes).filter(|s| !s.is_empty());

    // Lines are read on a thread so that a batch is sent as soon as stdin has nothing more
    // ready: piped input goes in large batches, typed lines one at a time.
    let (tx, rx) = mpsc::sync_channel::<std::io::Result<Vec<u8>>>(BATCH_RECORDS);
    std::thread::spawn(move || read_lines(tx));

    let mut summary = Summary::new();
    let mut pending: BTreeMap<i32, Vec<OutRecord>> = BTreeMap::new();
    let mut pending_bytes: BTreeMap<i32, usize> = BTreeMap::new();
    let mut sticky = 0i32;
    let mut sticky_bytes = 0usize;
    let mut eof = false;
    while !eof {
        // Wait for one line, then take what is ready without waiting.
        let mut next = rx.recv().ok();
        loop {
            let Some(line) = next else {
                eof = true;
                break;
            };
            let record = split(line.context("reading stdin")?, separator.as_deref());
            let size = record.size();
            let p = choose_partition(args.partition, record.key.as_deref(), count, sticky);
            if args.partition.is_none() && record.key.is_none() {
                sticky_bytes += size;
                if sticky_bytes >= STICKY_BYTES {
                    sticky = (sticky + 1) % count;
                    sticky_bytes = 0;
                }
            }
            let batch = pending.entry(p).or_default();
            batch.push(record);
            let bytes = pending_bytes.entry(p).or_default();
            *bytes += size;
            if batch.len() >= BATCH_RECORDS || *bytes >= BATCH_BYTES {
                break;
            }
            next = match rx.try_recv() {
                Ok(line) => Some(line),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => None,
            };
        }
        flush(&mut producer, &mut pending, &mut summary)?;
        pending_bytes.clear();
    }
    report(&args.topic, &summary);
    Ok(())
}

fn read_lines(tx: mpsc::SyncSender<std::io::Result<Vec<u8>>>) {
    let mut stdin = std::io::stdin().lock();
    loop {
        let mut line = Vec::new();
        match stdin.read_until(b'\n', &mut line) {
            Ok(0) => return,
            Ok(_) => {
                if line.last() == Some(&b'\n') {
                    line.pop();
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                }
                if tx.send(Ok(line)).is_err() {
                    return;
                }
            }
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        }
    }
}

/// A record from a line: `KEY<SEP>VALUE` with a separator (no key if it is absent).
fn split(line: Vec<u8>, separator: Option<&[u8]>) -> OutRecord {
    let at = separator.and_then(|sep| line.windows(sep.len()).position(|w| w == sep));
    match (at, separator) {
        (Some(at), Some(sep)) => OutRecord {
            key: Some(Bytes::copy_from_slice(&line[..at])),
            value: Some(Bytes::copy_from_slice(&line[at + sep.len()..])),
        },
        _ => OutRecord { key: None, value: Some(Bytes::from(line)) },
    }
}

fn flush(
    producer: &mut Producer,
    pending: &mut BTreeMap<i32, Vec<OutRecord>>,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    if pending.is_empty() {
        return Ok(());
    }
    let offsets = producer.send(pending).map_err(|e| anyhow::anyhow!(describe(&e)))?;
    for (p, records) in pending.iter() {
        let n = records.len() as u64;
        let entry = summary.entry(*p).or_insert((0, -1));
        entry.0 += n;
        if let Some(base) = offsets.get(p).filter(|o| **o >= 0) {
            entry.1 = base + n as i64 - 1;
        }
    }
    pending.clear();
    Ok(())
}

fn report(topic: &str, summary: &Summary) {
    let total: u64 = summary.values().map(|(n, _)| n).sum();
    eprintln!("produced {total} records to {topic}");
    for (p, (n, last)) in summary {
        if *last >= 0 {
            eprintln!("  partition {p}: {n} records, last offset {last}");
        } else {
            eprintln!("  partition {p}: {n} records");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_at_the_first_separator() {
        let r = split(b"k1::v::x".to_vec(), Some(b"::"));
        assert_eq!(r.key.as_deref(), Some(&b"k1"[..]));
        assert_eq!(r.value.as_deref(), Some(&b"v::x"[..]));
        let r = split(b"no key".to_vec(), Some(b"::"));
        assert_eq!((r.key, r.value.as_deref()), (None, Some(&b"no key"[..])));
        let r = split(b"a:b".to_vec(), None);
        assert_eq!((r.key, r.value.as_deref()), (None, Some(&b"a:b"[..])));
    }
}
