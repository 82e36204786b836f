"""TLS listeners with real clients: confluent-kafka and kcat produce and consume over SSL and
over SSL with client certificates; a client without a certificate is refused when
ssl.client.auth=required. The test CA is made per run with openssl."""
import subprocess
import uuid

import pytest
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def certs(tmp_path):
    """ca.pem, broker.pem/.key (localhost, 127.0.0.1) and client.pem/.key, in tmp_path."""
    d = tmp_path / "certs"
    d.mkdir()
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=Test CA",
            "-keyout", "ca.key", "-out", "ca.pem", cwd=d)
    (d / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for name, subject in [("broker", "/CN=broker"), ("client", "/O=Acme/CN=client")]:
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", subject,
                "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", f"{name}.pem",
                cwd=d)
    return d


def tls_broker(make_broker, certs, *extra):
    return make_broker("--listeners", "PLAINTEXT://{addr},SSL://127.0.0.1:{port2}",
                       "--ssl-keystore-location", str(certs / "broker.pem"),
                       "--ssl-keystore-key-location", str(certs / "broker.key"),
                       "--ssl-truststore-location", str(certs / "ca.pem"), *extra)


def ssl_config(broker, certs, with_certificate):
    config = {"bootstrap.servers": f"127.0.0.1:{broker.port2}", "security.protocol": "SSL",
              "ssl.ca.location": str(certs / "ca.pem")}
    if with_certificate:
        config["ssl.certificate.location"] = str(certs / "client.pem")
        config["ssl.key.location"] = str(certs / "client.key")
    return config


def produce_and_consume(config, topic, n=20):
    producer = Producer({**config, "acks": "all"})
    for i in range(n):
        producer.produce(topic, key=b"k%d" % i, value=b"v%d" % i)
    assert producer.flush(30) == 0
    consumer = Consumer({**config, "group.id": "g-" + topic, "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    got = []
    deadline = 60
    import time
    end = time.monotonic() + deadline
    while len(got) < n and time.monotonic() < end:
        m = consumer.poll(1.0)
        if m is None:
            continue
        assert m.error() is None, m.error()
        got.append((m.key(), m.value(), m.offset()))
    consumer.close()
    assert got == [(b"k%d" % i, b"v%d" % i, i) for i in range(n)]


def test_confluent_kafka_over_ssl(make_broker, certs):
    broker = tls_broker(make_broker, certs)
    config = ssl_config(broker, certs, with_certificate=False)
    metadata = AdminClient(config).list_topics(timeout=30)
    assert [(b.host, b.port) for b in metadata.brokers.values()] == [("127.0.0.1", broker.port2)]
    produce_and_consume(config, "tls-" + uuid.uuid4().hex[:8])


def test_confluent_kafka_with_client_certificates_and_refused_without(make_broker, certs):
    broker = tls_broker(make_broker, certs, "--ssl-client-auth", "required")
    produce_and_consume(ssl_config(broker, certs, True), "mtls-" + uuid.uuid4().hex[:8])
    refused = AdminClient(ssl_config(broker, certs, False))
    with pytest.raises(KafkaException):
        refused.list_topics(timeout=5)


def kcat(broker, certs, *args, input=None):
    tls = ["-X", "security.protocol=SSL", "-X", f"ssl.ca.location={certs / 'ca.pem'}",
           "-X", f"ssl.certificate.location={certs / 'client.pem'}",
           "-X", f"ssl.key.location={certs / 'client.key'}"]
    return subprocess.run(["kcat", "-b", f"127.0.0.1:{broker.port2}", *tls, *args],
                          input=input, capture_output=True, timeout=60, check=True)


def test_kcat_over_ssl_with_a_client_certificate(make_broker, certs):
    broker = tls_broker(make_broker, certs, "--ssl-client-auth", "required")
    topic = "kcat-tls-" + uuid.uuid4().hex[:8]
    kcat(broker, certs, "-P", "-t", topic, input=b"one\ntwo\nthree\n")
    out = kcat(broker, certs, "-C", "-t", topic, "-o", "beginning", "-c", "3", "-e")
    assert out.stdout.split() == [b"one", b"two", b"three"]
