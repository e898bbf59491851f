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

import contextlib
import ctypes
import ctypes.util
import faulthandler
import io
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


class _SigevThread(ctypes.Structure):
    _fields_ = [("function", ctypes.c_void_p), ("attribute", ctypes.c_void_p)]


class _SigevUnion(ctypes.Union):
    _fields_ = [("pad", ctypes.c_int * 12), ("thread", _SigevThread)]


class _Sigevent(ctypes.Structure):  # struct sigevent of 64-bit Linux (glibc and musl): 64 bytes
    _fields_ = [("value", ctypes.c_void_p), ("signo", ctypes.c_int), ("notify", ctypes.c_int), ("un", _SigevUnion)]


_SIGEV_THREAD = 2
_CLOCK_MONOTONIC = 1
_native_timer: ctypes.c_void_p | None = None


def _libc_timers() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux") or ctypes.sizeof(ctypes.c_void_p) != 8 or sys.byteorder != "little":
        return None
    for name in (None, ctypes.util.find_library("rt")):  # timer_* moved from librt into libc in glibc 2.34
        try:
            lib = ctypes.CDLL(name)
            lib.timer_create, lib.timer_settime, lib.timer_delete, lib._exit  # noqa: B018 (probe)
            return lib
        except (OSError, AttributeError, TypeError):
            continue
    return None


def native_exit_later(seconds: float, code: int) -> bool:
    """End the process with ``_exit(code)`` after ``seconds``, from a thread the C library starts, so even
    while a native call holds the GIL forever (no Python thread can run then). One timer per process: a
    new call replaces the previous one. Returns False where it is not available (not 64-bit Linux); the
    caller then falls back to faulthandler's exit, which can only exit 1.

    POSIX ``timer_create`` with ``SIGEV_THREAD`` calls ``function(sigev_value)`` in a new thread;
    ``function`` is libc's ``_exit`` and the value the exit code (both ABIs pass the union in the first
    integer register, and ``_exit`` reads its low 32 bits)."""
    global _native_timer
    lib = _libc_timers()
    if lib is None:
        return False
    cancel_native_exit()
    sev = _Sigevent()
    sev.value = int(code) & 0xFF
    sev.notify = _SIGEV_THREAD
    sev.un.thread.function = ctypes.cast(lib._exit, ctypes.c_void_p).value
    timer = ctypes.c_void_p()
    if lib.timer_create(_CLOCK_MONOTONIC, ctypes.byref(sev), ctypes.byref(timer)) != 0:
        return False
    spec = _Itimerspec()
    spec.it_value.tv_sec = int(seconds)
    spec.it_value.tv_nsec = max(1, int((seconds - int(seconds)) * 1e9))
    if lib.timer_settime(timer, 0, ctypes.byref(spec), None) != 0:
        lib.timer_delete(timer)
        return False
    _native_timer = timer
    return True


def cancel_native_exit() -> None:
    global _native_timer
    if _native_timer is not None:
        lib = _libc_timers()
        if lib is not None:
            lib.timer_delete(_native_timer)
        _native_timer = None


def _backstop(timeout_s: float, exit_code: int) -> None:
    """For a hang that holds the GIL (a native destructor run by the garbage collector, a DDS call that
    never returns), where no Python thread runs: faulthandler's C thread writes the stacks at
    ``timeout_s``, then a native timer ends the process with ``exit_code`` half a second later (where
    that timer is unavailable faulthandler itself exits, with 1). faulthandler is skipped where the
    process has no real stderr (a test capturing it in-process: a StringIO has no fileno)."""
    native = native_exit_later(timeout_s + 0.5, exit_code)
    for stream in (sys.stderr, sys.__stderr__):
        try:
            faulthandler.dump_traceback_later(timeout_s, exit=not native, file=stream)
            return
        except (AttributeError, ValueError, OSError, io.UnsupportedOperation):
            continue


def _cancel_backstop() -> None:
    faulthandler.cancel_dump_traceback_later()
    cancel_native_exit()


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
        # The backstop for a hang that holds the GIL (see _backstop): stacks, then the same exit code.
        _backstop(self.deadline_s + 4.0, self.exit_code)
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
        _cancel_backstop()
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


def bounded_teardown(*nodes: object, deadline_s: float = 10.0, exit_code: int = 1) -> bool:
    """Destroy ``nodes`` and shut rclpy's default context down, giving it at most ``deadline_s``.

    The DDS teardown runs in a daemon thread: a destructor that never returns (seen in CI: a helper
    process stuck after its work was written, SIGKILLed by the test's timeout) is left behind with a
    warning instead of hanging the caller. For a hang that holds the GIL, where no Python thread can
    run, the C backstop writes the stacks and ends the process with ``exit_code``. Returns whether it
    finished.

    A command whose work is done does not call this: it ends with :func:`exit_process` and leaves its
    participant to the process end (see :func:`teardown_on_error`)."""
    import rclpy

    def work() -> None:
        for node in nodes:
            node.destroy_node()
        rclpy.try_shutdown()

    _backstop(deadline_s + 5.0, exit_code)
    try:
        t = threading.Thread(target=work, name="ros_teardown", daemon=True)
        t.start()
        t.join(deadline_s)
    finally:
        _cancel_backstop()
    if t.is_alive():
        print(
            f"[WARN] ROS 2 teardown did not finish within {deadline_s:.0f} s; leaving it", file=sys.stderr, flush=True
        )
        return False
    return True


_kept_until_exit: list[object] = []


def keep_until_exit(*objs: object) -> None:
    """Hold references to ``objs`` (nodes, publishers) until :func:`exit_process` ends the process.

    Skipping the participant's deletion takes more than not calling ``destroy_node``: a node whose last
    reference goes (a local at the end of ``main()``) is finalized by its destructor, which deletes the
    participant all the same, holding the GIL (seen here with gdb: ``subtype_dealloc`` ->
    ``rcl_node_fini`` -> ``TCPChannelResourceBasic::disconnect``, deadlocked)."""
    _kept_until_exit.extend(objs)


@contextlib.contextmanager
def teardown_on_error(*nodes: object) -> Iterator[None]:
    """The rule for command-line processes: on an error the nodes are torn down (bounded) before the
    exception goes on, so a caller in the same process (a test calling ``cli.main``) can init rclpy
    again; on success they are left as they are for :func:`exit_process`, which ends the process
    without deleting the DDS participant.

    Deleting a Fast DDS participant can block for minutes holding the GIL while the perception node is
    still up (LARGE_DATA; seen in ``live-eval``, then in ``play`` at the end of the demo in CI: exit 1
    from the backstop after its playback was complete). Nothing is lost by skipping it: every output
    is written and reliable writers have waited for their acknowledgements; peers drop the
    participant when its lease runs out, as after a crash. Only the perception node, a long-lived
    process with services and a lifecycle, deletes its participant on shutdown (with a watchdog)."""
    try:
        yield
    except BaseException:
        bounded_teardown(*nodes)
        raise
    keep_until_exit(*nodes)


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
