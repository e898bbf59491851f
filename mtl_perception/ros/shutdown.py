"""A bounded shutdown: after Ctrl-C the node's cleanup gets a deadline, then the process exits anyway.

``ros2 launch`` escalates SIGINT -> SIGTERM -> SIGKILL after a few seconds each, and a node that
hangs in its cleanup (a DDS entity that does not go away, a frame stuck in a backend) would be
killed without a word. The watchdog instead writes every thread's stack to stderr (so the hang is
diagnosable from the log) and ends the process with ``os._exit``: nothing is lost, the node keeps
no state that a clean exit would save (artifacts are written atomically when they are built).

``listen()`` arms it from the signal itself (``signal.set_wakeup_fd``: CPython's C-level handler writes
the signal number to a pipe that a watcher thread reads), not from the Python-level handler: that one
runs only when the main thread gets back to bytecode, and a main thread stuck in a native call (a DDS
call that does not return) would otherwise never arm the deadline: the process would hang silently
until SIGKILL (seen once in CI: a node of a 3-node benchmark, no output at all after SIGINT).
"""

from __future__ import annotations

import faulthandler
import io
import os
import signal
import sys
import threading
import time


def _backstop(timeout_s: float) -> None:
    """faulthandler's C watchdog: stacks, then exit 1, unless cancelled in time. Skipped where the
    process has no real stderr (a test capturing it in-process: a StringIO has no fileno)."""
    for stream in (sys.stderr, sys.__stderr__):
        try:
            faulthandler.dump_traceback_later(timeout_s, exit=True, file=stream)
            return
        except (AttributeError, ValueError, OSError, io.UnsupportedOperation):
            continue


class ShutdownWatchdog:
    """``arm()`` when shutdown starts, ``disarm()`` when it is done; past ``deadline_s`` the
    process dumps its threads' stacks and exits with ``exit_code``."""

    def __init__(self, name: str, deadline_s: float = 8.0, exit_code: int = 0) -> None:
        self.name = name
        self.deadline_s = float(deadline_s)
        self.exit_code = int(exit_code)
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._arm_lock = threading.RLock()  # re-entrant: a second Ctrl-C may land inside arm()
        self.started_at: float | None = None

    def arm(self) -> None:
        with self._arm_lock:  # the signal handler and the listener thread may both arm it
            if self._thread is not None:
                return
            self._arm()

    def _arm(self) -> None:
        self.started_at = time.monotonic()
        # The backstop for a hang that holds the GIL (a native destructor run by the garbage collector):
        # no Python thread runs then, but faulthandler's C thread does: stacks, then _exit(1).
        _backstop(self.deadline_s + 4.0)
        self._thread = threading.Thread(target=self._watch, name="shutdown_watchdog", daemon=True)
        self._thread.start()

    def listen(self, signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> None:
        """Arm on the arrival of any of ``signals``, whatever the main thread is doing. Call from the
        main thread after installing Python handlers for them (the wakeup fd is written only for
        signals with a Python-level handler; ``faulthandler.register``'s C handlers do not write it)."""
        r, w = os.pipe()
        os.set_blocking(w, False)
        signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        wanted = {int(s) for s in signals}

        def watch() -> None:
            while not self._done.is_set():
                try:
                    data = os.read(r, 64)
                except OSError:
                    return
                if not data:
                    return
                if wanted.intersection(data):
                    self.arm()
                    return

        threading.Thread(target=watch, name="shutdown_signal_listener", daemon=True).start()

    def disarm(self) -> float:
        """Shutdown finished: stop watching; returns the seconds it took (0 if never armed)."""
        self._done.set()
        faulthandler.cancel_dump_traceback_later()
        return 0.0 if self.started_at is None else time.monotonic() - self.started_at

    def _watch(self) -> None:
        if self._done.wait(self.deadline_s):
            return
        print(
            f"[ERROR] [{self.name}]: shutdown did not finish within {self.deadline_s:.0f} s; the threads' "
            "stacks follow, then the process exits (please report this log)",
            file=sys.stderr,
            flush=True,
        )
        try:
            faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        except Exception:  # a closed stderr must not keep the process alive
            pass
        os._exit(self.exit_code)


def bounded_teardown(*nodes: object, deadline_s: float = 10.0) -> bool:
    """Destroy ``nodes`` and shut rclpy's default context down, giving it at most ``deadline_s``.

    The DDS teardown runs in a daemon thread: a destructor that never returns (seen in CI: a helper
    process stuck after its work was written, SIGKILLed by the test's timeout) is left behind with a
    warning instead of hanging the caller. faulthandler's C watchdog backs it up (stacks, then exit 1)
    for a hang that holds the GIL, where no Python thread can run. Returns whether it finished."""
    import rclpy

    def work() -> None:
        for node in nodes:
            node.destroy_node()
        rclpy.try_shutdown()

    _backstop(deadline_s + 5.0)
    try:
        t = threading.Thread(target=work, name="ros_teardown", daemon=True)
        t.start()
        t.join(deadline_s)
    finally:
        faulthandler.cancel_dump_traceback_later()
    if t.is_alive():
        print(
            f"[WARN] ROS 2 teardown did not finish within {deadline_s:.0f} s; leaving it", file=sys.stderr, flush=True
        )
        return False
    return True


def exit_process(code: int) -> None:
    """End a process that used rclpy: flush, then ``os._exit(code)`` past the interpreter's teardown.

    Its final garbage collection runs rclpy / DDS destructors after the context is gone, and one of
    them can block forever holding the GIL (seen after SIGINT in CI: faulthandler showed only
    "Garbage-collecting", no Python frame). Call it last, from a process entry point only, after the
    explicit clean-up; a process that never imported rclpy exits normally."""
    if "rclpy" not in sys.modules:
        sys.exit(code)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # a closed pipe must not keep the process alive
            pass
    os._exit(code)
