"""Our stand-in for kafka-python's `test/service.py`, which its sdist does not ship.

`test/integration/fixtures.py` imports two names from it. `ExternalService` represents a broker
someone else runs (here `strata serve`, started by tests/suites/kafka-python.sh): there is
nothing to open, close or wait for. `SpawnedService` would launch Kafka or ZooKeeper from a
local Kafka install; this run has none, so it refuses loudly instead of hanging a fixture.
"""


class ExternalService:
    """A broker already running at host:port, owned by whoever started it."""

    def __init__(self, host, port):
        self.host = host
        self.port = port

    def open(self):
        pass

    def close(self):
        pass

    def start(self):
        pass

    def stop(self):
        pass

    def wait_for(self, pattern, timeout=30):
        # Started and waited for before the suite ran: ready by construction.
        return True

    def dump_logs(self):
        # The broker's log is the script's: target/suites/kafka-python-broker.log.
        pass


class SpawnedService:
    """Would launch a Kafka or ZooKeeper process; not available against an external broker."""

    def __init__(self, args=None, env=None):
        raise RuntimeError(
            "this run tests an external broker (KAFKA_URI); a fixture tried to spawn a "
            "Kafka/ZooKeeper process instead: %r" % (args,))
