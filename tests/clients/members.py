"""Group members run as separate processes, for tests that kill them with -9: a script of this
directory that prints one JSON object per line (its events), read by a thread as they arrive;
and `wait_for`, polling a condition with a deadline (the pause between polls is not a sleep as
synchronisation)."""
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEADLINE_S = 90


def wait_for(predicate, what, timeout=DEADLINE_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class MemberProcess:
    """`python3 <script> *args` in its own process; `events` are its JSON lines so far."""

    def __init__(self, script, *args):
        self.proc = subprocess.Popen([sys.executable, str(HERE / script), *args],
                                     stdout=subprocess.PIPE, text=True)
        self.events = []
        self.lock = threading.Lock()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.proc.stdout:
            with self.lock:
                self.events.append(json.loads(line))

    def messages(self):
        """The (partition, value, ...) tuples of its `msg` events, in order."""
        with self.lock:
            return [tuple(e["msg"]) for e in self.events if "msg" in e]

    def kill9(self):
        self.proc.kill()
        self.proc.wait()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
