"""kill -9 of a hub between acceptance and publish loses nothing: on restart every accepted
message reaches the exchange (at least once, each copy with the same message id)."""
import os
import signal
import subprocess
import sys

from bus.hub import Hub
from tests.conftest import ROOT
from tests.helpers.capture import Capture


def test_kill_minus_nine_mid_stream_loses_no_accepted_message(backend):
    capture = Capture(backend.broker_url)  # bound before the hub starts: sees everything published
    env = {**os.environ, **backend.env(), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "tests.helpers.sender", "5000"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, text=True)
    accepted = []
    try:
        for line in proc.stdout:
            status, message_id = line.split()
            assert status == "ACCEPTED"
            accepted.append(message_id)
            if len(accepted) == 300:
                proc.send_signal(signal.SIGKILL)
                break
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        # The restarted hub re-drives from the log: unpublished rows, and on the in-memory
        # broker also what the dead process had published into its own memory.
        with Hub(backend.settings()):
            seen = capture.collect(set(accepted), timeout=60)
        lost = set(accepted) - set(seen)
        assert not lost, f"{len(lost)} accepted messages never reached the exchange"
        assert all(seen[m] >= 1 for m in accepted)
    finally:
        if proc.poll() is None:
            proc.kill()
        capture.close()
