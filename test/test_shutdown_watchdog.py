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


STUCK_MAIN = """
import ctypes, signal
from mtl_perception.ros.shutdown import ShutdownWatchdog
w = ShutdownWatchdog("test_node", deadline_s=1.0, exit_code=0)
signal.signal(signal.SIGINT, lambda *_: print("python handler ran", file=__import__("sys").stderr))
w.listen()
mutex = ctypes.create_string_buffer(64)  # zeroed = PTHREAD_MUTEX_INITIALIZER (a default, non-recursive mutex)
libc = ctypes.CDLL(None)
libc.pthread_mutex_lock(mutex)
print("stuck", flush=True)
# Locking it again deadlocks, and pthread_mutex_lock is not interrupted by signals: the main thread stays
# in native code (GIL released, ctypes), so the Python-level SIGINT handler never runs, as with a
# native call that never returns.
libc.pthread_mutex_lock(mutex)
print("main thread returned", flush=True)
"""


def test_a_signal_arms_it_while_the_main_thread_is_stuck_in_native_code():
    """SIGINT to a process whose main thread never returns to Python: the listener thread still arms
    the deadline from the signal's wakeup byte; the stacks are dumped and the process exits 0 in
    about the deadline instead of hanging until SIGKILL."""
    import signal as sig

    p = subprocess.Popen([sys.executable, "-c", STUCK_MAIN], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "stuck"
        time.sleep(0.3)  # into pthread_join
        t0 = time.monotonic()
        p.send_signal(sig.SIGINT)
        rc = p.wait(30)
        wall = time.monotonic() - t0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    err = p.stderr.read()
    assert rc == 0, err
    assert "shutdown did not finish within 1 s" in err and "main thread returned" not in p.stdout.read()
    assert "python handler ran" not in err  # it was the listener, not the Python-level handler
    assert "most recent call first" in err
    assert wall < 20


GIL_HELD = """
import ctypes, signal
from mtl_perception.ros.shutdown import ShutdownWatchdog
w = ShutdownWatchdog("test_node", deadline_s=0.5, exit_code=5)
w.arm()
mutex = ctypes.create_string_buffer(64)
libc = ctypes.PyDLL(None)  # PyDLL keeps the GIL during the call: no Python thread can run
libc.pthread_mutex_lock(mutex)
libc.pthread_mutex_lock(mutex)  # deadlocks holding the GIL, like a native destructor that never returns
"""


def test_a_hang_holding_the_gil_is_ended_by_the_c_backstop():
    """The Python watchdog thread cannot run while a native call holds the GIL forever; faulthandler's
    C thread still dumps the stacks at deadline + 4 s, and the native timer ends the process half a
    second later with the watchdog's own exit code (5 here), instead of leaving it to SIGKILL."""
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-c", GIL_HELD], capture_output=True, text=True, timeout=60)
    wall = time.monotonic() - t0
    assert p.returncode == 5, p.stderr
    assert "Timeout (0:00:04.500000)!" in p.stderr and "most recent call first" in p.stderr
    assert "did not finish" not in p.stderr  # the Python-level watchdog never got the GIL
    assert 4.5 < wall < 30


NATIVE_EXIT = """
import ctypes, sys, time
from mtl_perception.ros.shutdown import cancel_native_exit, native_exit_later
assert native_exit_later(0.3, 42)
cancel_native_exit()  # a cancelled timer does nothing
time.sleep(0.6)
print("cancelled ok", flush=True)
assert native_exit_later(0.3, int(sys.argv[1]))
mutex = ctypes.create_string_buffer(64)
libc = ctypes.PyDLL(None)
libc.pthread_mutex_lock(mutex)
libc.pthread_mutex_lock(mutex)
"""


def test_native_exit_timer_ends_a_process_holding_the_gil_with_the_given_code():
    """native_exit_later: libc's timer thread calls _exit(code) while the main thread deadlocks holding
    the GIL; a cancelled timer never fires."""
    for code in (0, 3):
        p = subprocess.run([sys.executable, "-c", NATIVE_EXIT, str(code)], capture_output=True, text=True, timeout=60)
        assert p.returncode == code, p.stderr
        assert p.stdout == "cancelled ok\n"


def test_bounded_teardown_leaves_a_hung_destroy_behind():
    """A node whose destroy never returns: bounded_teardown gives up after its deadline with a warning
    and returns False (the caller goes on to write its results and exit); a normal one returns True."""
    import threading

    from mtl_perception.ros.shutdown import bounded_teardown

    class Hung:
        def destroy_node(self):
            threading.Event().wait()

    class Fine:
        destroyed = False

        def destroy_node(self):
            Fine.destroyed = True

    t0 = time.monotonic()
    assert bounded_teardown(Hung(), deadline_s=0.5) is False
    assert time.monotonic() - t0 < 5
    assert bounded_teardown(Fine(), deadline_s=5.0) is True and Fine.destroyed


def test_exit_process_skips_the_interpreter_teardown_after_rclpy():
    """exit_process: with rclpy imported the process ends with the code, flushed, and without the
    interpreter's teardown (an atexit hook, like the final GC, does not run); without rclpy it is sys.exit."""
    script = (
        "import atexit, sys\n"
        "{imp}\n"
        "from mtl_perception.ros.shutdown import exit_process\n"
        "atexit.register(lambda: print('teardown ran', flush=True))\n"
        "print('done', end='')\n"
        "exit_process(3)\n"
    )
    with_rclpy = subprocess.run(
        [sys.executable, "-c", script.format(imp="import rclpy")], capture_output=True, text=True
    )
    assert with_rclpy.returncode == 3 and with_rclpy.stdout == "done", with_rclpy
    plain = subprocess.run([sys.executable, "-c", script.format(imp="")], capture_output=True, text=True)
    assert plain.returncode == 3 and plain.stdout == "doneteardown ran\n", plain


def test_teardown_on_error_tears_down_only_on_an_error():
    """A command's node: left alone on success (the process ends next with exit_process), destroyed
    (bounded) before an exception goes on, so an in-process caller can init rclpy again."""
    import pytest

    from mtl_perception.ros.shutdown import teardown_on_error

    class Node:
        def __init__(self):
            self.destroyed = False

        def destroy_node(self):
            self.destroyed = True

    ok = Node()
    with teardown_on_error(ok):
        pass
    assert not ok.destroyed
    failed = Node()
    with pytest.raises(ValueError, match="bad bag"), teardown_on_error(failed):
        raise ValueError("bad bag")
    assert failed.destroyed


def test_keep_until_exit_holds_the_node_past_the_end_of_main():
    """A node kept by keep_until_exit is not finalized when the function that made it returns (its
    destructor would delete the DDS participant, which can deadlock); exit_process ends the process
    with the code, the node still unfinalized."""
    script = (
        "import weakref\n"
        "import rclpy\n"
        "from mtl_perception.ros.shutdown import exit_process, keep_until_exit\n"
        "class Node:\n"
        "    def __del__(self):\n"
        "        print('finalized', flush=True)\n"
        "def main():\n"
        "    keep_until_exit(Node())\n"
        "    Node()\n"  # not kept: finalized at once
        "    return 4\n"
        "code = main()\n"
        "print('main returned', flush=True)\n"
        "exit_process(code)\n"
    )
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert p.returncode == 4, p.stderr
    assert p.stdout == "finalized\nmain returned\n", p.stdout
