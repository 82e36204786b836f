"""SASL with real clients: confluent-kafka and kcat produce and consume over SASL_PLAINTEXT and
SASL_SSL with PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512, kafka-python over SASL_SSL with SCRAM;
OAUTHBEARER with signed JWTs (confluent-kafka's oauth_cb, RS256 and ES256 keys from a JWKS
file) and in the unsecured development mode; a wrong password gets SASL_AUTHENTICATION_FAILED
and no data; confluent-kafka re-authenticates (KIP-368) and keeps producing; a user created
with AdminClient.alter_user_scram_credentials on one broker logs in on every broker of a
3-broker cluster, and once deleted logs in nowhere; `strata user` manages users through a SASL
listener; with the standard authorizer, ACLs apply to the logged-in user's principal."""
import base64
import json
import re
import subprocess
import time
import urllib.request
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import (AdminClient, NewTopic, ScramCredentialInfo, ScramMechanism,
                                   UserScramCredentialDeletion, UserScramCredentialUpsertion)

from conftest import strata_bin
from test_tls import certs  # noqa: F401  (the per-run test CA fixture)

ADMIN, ADMIN_PASSWORD = "admin", "admin-secret"
MECHANISMS = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
DEADLINE_S = 60


def sasl_args(*extra, mechanisms=",".join(MECHANISMS)):
    return ["--sasl-bootstrap-user", f"{ADMIN}:{ADMIN_PASSWORD}",
            "--sasl-enabled-mechanisms", mechanisms,
            "--connection-failed-authentication-delay-ms", "10", *extra]


def sasl_broker(make_broker, *extra, **kw):
    return make_broker("--listeners", "SASL_PLAINTEXT://{addr}", *sasl_args(*extra, **kw))


def client_config(bootstrap, mechanism, user=ADMIN, password=ADMIN_PASSWORD,
                  protocol="SASL_PLAINTEXT"):
    return {"bootstrap.servers": bootstrap, "security.protocol": protocol,
            "sasl.mechanism": mechanism, "sasl.username": user, "sasl.password": password}


def create_topic(config, name, partitions=1):
    # Keep the client referenced until the result is in: a collected AdminClient cancels it.
    admin = AdminClient(config)
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(timeout=30)


def produce(config, topic, n):
    producer = Producer({**config, "acks": "all"})
    for i in range(n):
        producer.produce(topic, key=b"k%d" % i, value=b"v%d" % i)
    assert producer.flush(30) == 0


def consume(config, topic, n):
    consumer = Consumer({**config, "group.id": "g-" + uuid.uuid4().hex[:8],
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    got = []
    end = time.monotonic() + DEADLINE_S
    while len(got) < n and time.monotonic() < end:
        msg = consumer.poll(1.0)
        if msg is None:
            continue
        assert msg.error() is None, msg.error()
        got.append(msg.value())
    consumer.close()
    return got


def produce_and_consume(config, n=20):
    topic = "sasl-" + uuid.uuid4().hex[:8]
    create_topic(config, topic)
    produce(config, topic, n)
    assert consume(config, topic, n) == [b"v%d" % i for i in range(n)]


def metric(broker, name):
    text = urllib.request.urlopen(f"http://{broker.admin}/metrics", timeout=10).read().decode()
    found = re.search(r"^" + re.escape(name) + r" (\d+)", text, re.M)
    return int(found.group(1)) if found else 0


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_confluent_kafka_produces_and_consumes_over_sasl_plaintext(make_broker, mechanism):
    broker = sasl_broker(make_broker)
    produce_and_consume(client_config(broker.bootstrap, mechanism))


def kcat_args(bootstrap, mechanism, protocol="SASL_PLAINTEXT", ca=None):
    args = ["kcat", "-b", bootstrap, "-X", f"security.protocol={protocol}",
            "-X", f"sasl.mechanisms={mechanism}", "-X", f"sasl.username={ADMIN}",
            "-X", f"sasl.password={ADMIN_PASSWORD}"]
    return args + (["-X", f"ssl.ca.location={ca}"] if ca else [])


def kcat_round_trip(args, config):
    topic = "kcat-" + uuid.uuid4().hex[:8]
    create_topic(config, topic)
    lines = [f"line-{i}" for i in range(10)]
    subprocess.run(args + ["-P", "-t", topic], input="\n".join(lines) + "\n", text=True,
                   check=True, timeout=60)
    out = subprocess.run(args + ["-C", "-t", topic, "-o", "beginning", "-e", "-c", "10"],
                         capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.split() == lines


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_kcat_produces_and_consumes_over_sasl_plaintext(make_broker, mechanism):
    broker = sasl_broker(make_broker)
    kcat_round_trip(kcat_args(broker.bootstrap, mechanism),
                    client_config(broker.bootstrap, mechanism))


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-512"])
def test_a_wrong_password_is_refused_and_writes_nothing(make_broker, mechanism):
    broker = sasl_broker(make_broker)
    good = client_config(broker.bootstrap, mechanism)
    topic = "guarded-" + uuid.uuid4().hex[:8]
    create_topic(good, topic)
    errors = []
    bad = {**client_config(broker.bootstrap, mechanism, password="wrong"),
           "error_cb": errors.append, "message.timeout.ms": 5000}
    producer = Producer(bad)
    producer.produce(topic, value=b"must not land")
    producer.flush(10)
    auth = [e for e in errors if e.code() == KafkaError._AUTHENTICATION]
    assert auth, errors
    assert "invalid credentials" in auth[0].str(), auth[0].str()
    assert metric(broker, 'strata_refusals_total{reason="sasl_authentication_failed"}') >= 1
    # Nothing was written: the topic's end offset is still 0.
    consumer = Consumer({**good, "group.id": "check"})
    low, high = consumer.get_watermark_offsets(
        __import__("confluent_kafka").TopicPartition(topic, 0), timeout=30)
    consumer.close()
    assert (low, high) == (0, 0)


# ---- OAUTHBEARER ---------------------------------------------------------------------------

def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture
def jwks(tmp_path):
    """An RSA and an EC signing key, and jwks.json with their public halves."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    keys = {"rsa1": rsa.generate_private_key(public_exponent=65537, key_size=2048),
            "ec1": ec.generate_private_key(ec.SECP256R1())}
    rn = keys["rsa1"].public_key().public_numbers()
    en = keys["ec1"].public_key().public_numbers()
    doc = {"keys": [
        {"kty": "RSA", "kid": "rsa1", "alg": "RS256", "use": "sig",
         "n": b64url(rn.n.to_bytes((rn.n.bit_length() + 7) // 8, "big")),
         "e": b64url(rn.e.to_bytes(3, "big"))},
        {"kty": "EC", "kid": "ec1", "alg": "ES256", "use": "sig", "crv": "P-256",
         "x": b64url(en.x.to_bytes(32, "big")), "y": b64url(en.y.to_bytes(32, "big"))},
    ]}
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(doc))
    return path, keys


def signed_jwt(key, kid, subject, lifetime_s=3600, issuer="https://idp.test", audience="kafka"):
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, utils
    alg = "RS256" if kid.startswith("rsa") else "ES256"
    now = int(time.time())
    header = b64url(json.dumps({"alg": alg, "kid": kid, "typ": "JWT"}).encode())
    claims = b64url(json.dumps({"sub": subject, "iss": issuer, "aud": audience, "iat": now,
                                "exp": now + lifetime_s}).encode())
    signing_input = f"{header}.{claims}".encode()
    if alg == "RS256":
        signature = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    else:
        r, s = utils.decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return f"{header}.{claims}.{b64url(signature)}", now + lifetime_s


def oauth_config(broker, token_source, **extra):
    def oauth_cb(_config):
        return token_source()
    return {"bootstrap.servers": broker.bootstrap, "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "OAUTHBEARER", "oauth_cb": oauth_cb, **extra}


def test_oauthbearer_with_signed_jwts_from_oauth_cb(make_broker, jwks):
    path, keys = jwks
    broker = make_broker("--listeners", "SASL_PLAINTEXT://{addr}",
                         "--sasl-enabled-mechanisms", "OAUTHBEARER",
                         "--sasl-oauthbearer-jwks-endpoint-url", f"file://{path}",
                         "--sasl-oauthbearer-expected-issuer", "https://idp.test",
                         "--sasl-oauthbearer-expected-audience", "kafka",
                         "--connection-failed-authentication-delay-ms", "10")
    rsa_config = oauth_config(broker, lambda: signed_jwt(keys["rsa1"], "rsa1", "svc-a"))
    ec_config = oauth_config(broker, lambda: signed_jwt(keys["ec1"], "ec1", "svc-b"))
    topic = "oauth-" + uuid.uuid4().hex[:8]
    create_topic(rsa_config, topic)
    produce(rsa_config, topic, 10)
    assert consume(ec_config, topic, 10) == [b"v%d" % i for i in range(10)]

    # A token for another audience, or signed by a key the broker does not know: refused.
    from cryptography.hazmat.primitives.asymmetric import rsa
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for source in (lambda: signed_jwt(keys["rsa1"], "rsa1", "svc-a", audience="other"),
                   lambda: signed_jwt(stranger, "rsa1", "svc-a")):
        errors = []
        producer = Producer({**oauth_config(broker, source), "error_cb": errors.append,
                             "message.timeout.ms": 5000})
        producer.produce(topic, value=b"no")
        producer.flush(10)
        assert any(e.code() == KafkaError._AUTHENTICATION for e in errors), errors


def test_oauthbearer_unsecured_development_mode(make_broker):
    broker = make_broker("--listeners", "SASL_PLAINTEXT://{addr}",
                         "--sasl-enabled-mechanisms", "OAUTHBEARER",
                         "--sasl-oauthbearer-unsecured", "true")
    config = {"bootstrap.servers": broker.bootstrap, "security.protocol": "SASL_PLAINTEXT",
              "sasl.mechanism": "OAUTHBEARER", "enable.sasl.oauthbearer.unsecure.jwt": True,
              "sasl.oauthbearer.config": "principal=alice"}
    produce_and_consume(config)


# ---- re-authentication ---------------------------------------------------------------------

def test_confluent_kafka_reauthenticates_and_keeps_producing(make_broker):
    broker = sasl_broker(make_broker, "--connections-max-reauth-ms", "1500")
    config = client_config(broker.bootstrap, "SCRAM-SHA-256")
    topic = "reauth-" + uuid.uuid4().hex[:8]
    create_topic(config, topic)
    errors = []
    producer = Producer({**config, "acks": "all", "error_cb": errors.append})
    delivered = []
    reauth = 'strata_sasl_authentications_total{kind="reauthentication"}'
    sent = 0
    end = time.monotonic() + DEADLINE_S
    # Produce one record at a time until the broker has seen three re-authentications.
    while metric(broker, reauth) < 3:
        assert time.monotonic() < end, "no re-authentication seen"
        producer.produce(topic, value=b"%d" % sent, on_delivery=lambda e, m: delivered.append(e))
        sent += 1
        producer.flush(30)
    assert producer.flush(30) == 0
    assert delivered == [None] * sent, delivered
    assert metric(broker, 'strata_refusals_total{reason="sasl_session_expired"}') == 0
    assert not [e for e in errors if e.code() == KafkaError._AUTHENTICATION], errors
    assert len(consume(config, topic, sent)) == sent


# ---- users in a cluster --------------------------------------------------------------------

def can_log_in(bootstrap, user, password):
    """Whether a SCRAM-SHA-256 login of `user` on the broker at `bootstrap` succeeds."""
    errors = []
    admin = AdminClient({**client_config(bootstrap, "SCRAM-SHA-256", user, password),
                         "error_cb": errors.append})
    try:
        admin.list_topics(timeout=5)
        return True
    except KafkaException:
        # The refusal reaches error_cb through poll(), possibly after list_topics gave up.
        end = time.monotonic() + DEADLINE_S
        while not any(e.code() == KafkaError._AUTHENTICATION for e in errors):
            assert time.monotonic() < end, errors
            admin.poll(0.1)
        return False


def test_a_user_created_on_one_broker_logs_in_on_every_broker(make_cluster):
    # Clients use the SASL listener; the PLAINTEXT one carries replication (inter-broker).
    nodes = make_cluster(3, "--shards", "2",
                         "--listeners", "PLAINTEXT://{addr},SASL_PLAINTEXT://127.0.0.1:{port2}",
                         *sasl_args(mechanisms="SCRAM-SHA-256,SCRAM-SHA-512"))
    sasl = [f"127.0.0.1:{n.port2}" for n in nodes]
    admin = AdminClient(client_config(sasl[0], "SCRAM-SHA-512"))
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096)
    futures = admin.alter_user_scram_credentials(
        [UserScramCredentialUpsertion("bob", info, b"bob-secret")])
    futures["bob"].result(timeout=30)
    described = admin.describe_user_scram_credentials(["bob"])
    assert described["bob"].result(timeout=30).scram_credential_infos[0].iterations == 4096
    for bootstrap in sasl:
        end = time.monotonic() + DEADLINE_S
        while not can_log_in(bootstrap, "bob", "bob-secret"):
            assert time.monotonic() < end, f"bob cannot log in on {bootstrap}"
    assert not can_log_in(sasl[1], "bob", "wrong")

    deletion = UserScramCredentialDeletion("bob", ScramMechanism.SCRAM_SHA_256)
    admin.alter_user_scram_credentials([deletion])["bob"].result(timeout=30)
    for bootstrap in sasl:
        end = time.monotonic() + DEADLINE_S
        while can_log_in(bootstrap, "bob", "bob-secret"):
            assert time.monotonic() < end, f"bob still logs in on {bootstrap}"


# ---- SASL_SSL ------------------------------------------------------------------------------

def sasl_ssl_broker(make_broker, certs):
    return make_broker("--listeners", "SASL_SSL://127.0.0.1:{port2},PLAINTEXT://{addr}",
                       "--ssl-keystore-location", str(certs / "broker.pem"),
                       "--ssl-keystore-key-location", str(certs / "broker.key"),
                       *sasl_args())


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_confluent_kafka_and_kcat_over_sasl_ssl(make_broker, certs, mechanism):  # noqa: F811
    broker = sasl_ssl_broker(make_broker, certs)
    bootstrap = f"127.0.0.1:{broker.port2}"
    config = {**client_config(bootstrap, mechanism, protocol="SASL_SSL"),
              "ssl.ca.location": str(certs / "ca.pem")}
    produce_and_consume(config)
    kcat_round_trip(kcat_args(bootstrap, mechanism, "SASL_SSL", certs / "ca.pem"), config)


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_kafka_python_over_sasl_ssl_with_scram(make_broker, certs, mechanism):  # noqa: F811
    import ssl
    from kafka import KafkaConsumer, KafkaProducer
    broker = sasl_ssl_broker(make_broker, certs)
    bootstrap = f"127.0.0.1:{broker.port2}"
    context = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    common = dict(bootstrap_servers=bootstrap, security_protocol="SASL_SSL",
                  ssl_context=context, sasl_mechanism=mechanism,
                  sasl_plain_username=ADMIN, sasl_plain_password=ADMIN_PASSWORD)
    topic = "kp-" + uuid.uuid4().hex[:8]
    create_topic({**client_config(bootstrap, mechanism, protocol="SASL_SSL"),
                  "ssl.ca.location": str(certs / "ca.pem")}, topic)
    producer = KafkaProducer(acks="all", **common)
    for i in range(10):
        producer.send(topic, value=b"kp%d" % i).get(timeout=30)
    producer.close()
    consumer = KafkaConsumer(topic, auto_offset_reset="earliest", consumer_timeout_ms=10000,
                             group_id="kp-" + topic, **common)
    got = [m.value for m in consumer]
    consumer.close()
    assert got == [b"kp%d" % i for i in range(10)]


# ---- strata user ---------------------------------------------------------------------------

def strata_user(broker, *args, stdin=None):
    sasl = ["-X", "security.protocol=SASL_PLAINTEXT", "-X", "sasl.mechanism=SCRAM-SHA-256",
            "-X", f"sasl.username={ADMIN}", "-X", f"sasl.password={ADMIN_PASSWORD}"]
    return subprocess.run([strata_bin(), "user", *args, "--bootstrap-server", broker.bootstrap,
                           *sasl], input=stdin, capture_output=True, text=True, timeout=60)


def test_strata_user_creates_lists_and_deletes_users(make_broker):
    broker = sasl_broker(make_broker)
    made = strata_user(broker, "create", "carol", "--mechanism", "SCRAM-SHA-512",
                       stdin="carol-pw\n")
    assert made.returncode == 0, made.stderr
    again = strata_user(broker, "create", "carol", "--mechanism", "SCRAM-SHA-512",
                        "--password", "x")
    assert again.returncode != 0 and "already" in again.stderr
    listed = strata_user(broker, "list", "--output", "json")
    users = {u["name"]: u for u in json.loads(listed.stdout)}
    assert users["carol"]["credentials"] == [{"mechanism": "SCRAM-SHA-512", "iterations": 4096}]
    produce_and_consume(client_config(broker.bootstrap, "SCRAM-SHA-512", "carol", "carol-pw"))
    gone = strata_user(broker, "delete", "carol")
    assert gone.returncode == 0, gone.stderr
    assert "carol" not in strata_user(broker, "list").stdout
    errors = []
    producer = Producer({**client_config(broker.bootstrap, "SCRAM-SHA-512", "carol", "carol-pw"),
                         "error_cb": errors.append, "message.timeout.ms": 5000})
    producer.produce("anything", value=b"no")
    producer.flush(10)
    assert any(e.code() == KafkaError._AUTHENTICATION for e in errors), errors


def test_acls_apply_to_the_sasl_principal(make_broker):
    """With the standard authorizer, what a SCRAM user may do is what the ACLs on its
    principal (User:<name>) say: alice is refused a topic until an ACL names her, and the
    admin (a super user) is not; another user gets nothing from alice's ACL."""
    from confluent_kafka.admin import (AclBinding, AclOperation, AclPermissionType,
                                       ResourcePatternType, ResourceType)
    broker = sasl_broker(make_broker, "--authorizer", "standard", "--super-users",
                         f"User:{ADMIN}")
    admin_config = client_config(broker.bootstrap, "SCRAM-SHA-512")
    admin = AdminClient(admin_config)
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096)
    upserts = [UserScramCredentialUpsertion(u, info, f"{u}-secret".encode())
               for u in ("alice", "mallory")]
    for future in admin.alter_user_scram_credentials(upserts).values():
        future.result(timeout=30)
    topic = "acl-" + uuid.uuid4().hex[:8]
    create_topic(admin_config, topic)

    def write(user):
        config = client_config(broker.bootstrap, "SCRAM-SHA-512", user, f"{user}-secret")
        producer = Producer({**config, "acks": "all", "message.timeout.ms": 10000})
        delivered = []
        producer.produce(topic, value=b"from " + user.encode(),
                         on_delivery=lambda err, msg: delivered.append(err))
        producer.flush(30)
        assert len(delivered) == 1
        return delivered[0]

    denied = write("alice")
    assert denied is not None and denied.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, denied
    acl = AclBinding(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, "User:alice", "*",
                     AclOperation.WRITE, AclPermissionType.ALLOW)
    for future in admin.create_acls([acl]).values():
        future.result(timeout=30)
    assert write("alice") is None
    denied = write("mallory")
    assert denied is not None and denied.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, denied
    # The admin (super user) reads what alice wrote.
    assert consume(admin_config, topic, 1) == [b"from alice"]
