"""ShutdownWatchdog: a cleanup that hangs is dumped (every thread's stack) and ended, not left to SIGKILL."""

from __future__ import annotations

import subprocess
import sys
import time

SCRIPT = """
import threading, time
from mtl_perception.ros.shutdown import ShutdownWatchdog
w = ShutdownWatchdog("test_node", deadline_s={deadline}, exit_code=0)
w.arm()
if {hang}:
    threading.Event().wait()  # a cleanup that never returns
took = w.disarm()
print(f"clean shutdown in {{took:.2f}} s", flush=True)
time.sleep({after})
print("still here", flush=True)
"""


def run(hang: bool, deadline: float = 1.0, after: float = 0.0) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.monotonic()
    p = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(deadline=deadline, hang=hang, after=after)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return p, time.monotonic() - t0


def test_a_hung_cleanup_is_dumped_and_ended():
    p, wall = run(hang=True, deadline=1.0)
    assert p.returncode == 0, p.stderr
    assert "shutdown did not finish within 1 s" in p.stderr
    assert "Thread 0x" in p.stderr and "most recent call first" in p.stderr  # faulthandler's stacks
    assert "clean shutdown" not in p.stdout
    assert wall < 30


def test_a_finished_cleanup_disarms_it():
    p, _ = run(hang=False, deadline=0.5, after=1.5)  # lives past the deadline after disarm
    assert p.returncode == 0, p.stderr
    assert "clean shutdown in" in p.stdout and "still here" in p.stdout
    assert "did not finish" not in p.stderr
