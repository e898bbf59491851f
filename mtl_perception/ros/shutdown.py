"""A bounded shutdown: after Ctrl-C the node's cleanup gets a deadline, then the process exits anyway.

``ros2 launch`` escalates SIGINT -> SIGTERM -> SIGKILL after a few seconds each, and a node that
hangs in its cleanup (a DDS entity that does not go away, a frame stuck in a backend) would be
killed without a word. The watchdog instead writes every thread's stack to stderr (so the hang is
diagnosable from the log) and ends the process with ``os._exit``: nothing is lost, the node keeps
no state that a clean exit would save (artifacts are written atomically when they are built).
"""

from __future__ import annotations

import faulthandler
import os
import sys
import threading
import time


class ShutdownWatchdog:
    """``arm()`` when shutdown starts, ``disarm()`` when it is done; past ``deadline_s`` the
    process dumps its threads' stacks and exits with ``exit_code``."""

    def __init__(self, name: str, deadline_s: float = 8.0, exit_code: int = 0) -> None:
        self.name = name
        self.deadline_s = float(deadline_s)
        self.exit_code = int(exit_code)
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self.started_at: float | None = None

    def arm(self) -> None:
        if self._thread is not None:
            return
        self.started_at = time.monotonic()
        self._thread = threading.Thread(target=self._watch, name="shutdown_watchdog", daemon=True)
        self._thread.start()

    def disarm(self) -> float:
        """Shutdown finished: stop watching; returns the seconds it took (0 if never armed)."""
        self._done.set()
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
