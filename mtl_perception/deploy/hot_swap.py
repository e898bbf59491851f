"""Swap the serving engine without stopping the stream (no rclpy).

``EngineSwapper`` holds the engine a serving loop uses. ``request(settings)`` builds a new engine
in a background thread while the old one keeps serving; the loop calls ``take_ready()`` between
two frames and continues with the new engine from the next frame on. A failed build leaves the
old engine serving and reports the error through ``on_failure``. Requests made while a build
runs are coalesced: only the latest settings are built next (a user who flips a parameter three
times wants the last value, not three engines).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class EngineSettings:
    """Everything that selects an engine (the node's read-at-build parameters)."""

    model_path: str = ""
    decoder: str = ""
    backend: str = "auto"
    precision: str = "fp32"
    device: str = ""
    threads: int = 0
    cache_dir: str = ""
    max_batch: int = 1

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def changes(self, other: EngineSettings) -> dict[str, tuple[Any, Any]]:
        """{field: (self's value, other's value)} for the fields that differ."""
        a, b = self.as_dict(), other.as_dict()
        return {k: (a[k], b[k]) for k in a if a[k] != b[k]}


@dataclass
class SwapReport:
    """One completed switch: what changed and how long it took."""

    old: EngineSettings
    new: EngineSettings
    requested_at: float  # time.monotonic() of the request
    built_s: float  # request -> new engine built and warmed up
    swapped_at: float = 0.0  # time.monotonic() when the serving loop took it

    @property
    def switch_s(self) -> float:
        """Request -> the serving loop uses the new engine (the old one served until then)."""
        return self.swapped_at - self.requested_at


class EngineSwapper:
    """See the module docstring. ``build(settings)`` returns a ready (warmed-up) engine or raises."""

    def __init__(
        self,
        build: Callable[[EngineSettings], Any],
        on_failure: Callable[[EngineSettings, Exception], None] | None = None,
        on_built: Callable[[SwapReport], None] | None = None,
    ) -> None:
        self._build = build
        self._on_failure = on_failure
        self._on_built = on_built
        self._lock = threading.Lock()
        self.engine: Any = None
        self.settings: EngineSettings | None = None
        self._pending: tuple[EngineSettings, float] | None = None  # requested, not yet being built
        self._ready: tuple[Any, SwapReport] | None = None  # built, not yet taken by the serving loop
        self._building: EngineSettings | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self.last_error: str = ""
        self.switches = 0
        self.failures = 0

    # ------------------------------------------------------------------ construction (blocking)
    def build_now(self, settings: EngineSettings) -> Any:
        """Build and install an engine synchronously (start-up, lifecycle configure)."""
        engine = self._build(settings)
        with self._lock:
            self.engine, self.settings = engine, settings
            self._ready = None
        return engine

    # ------------------------------------------------------------------ background switch
    @property
    def building(self) -> bool:
        with self._lock:
            return self._thread is not None and self._thread.is_alive()

    @property
    def target(self) -> EngineSettings | None:
        """The settings that will serve once pending work is done."""
        with self._lock:
            return self._target_locked()

    def _target_locked(self) -> EngineSettings | None:
        if self._pending is not None:
            return self._pending[0]
        if self._building is not None:
            return self._building
        if self._ready is not None:
            return self._ready[1].new
        return self.settings

    def request(self, settings: EngineSettings) -> bool:
        """Build ``settings`` in the background; False if that is already what serves / is coming."""
        with self._lock:
            if self._closed or settings == self._target_locked():
                return False
            self._pending = (settings, time.monotonic())
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="engine_builder", daemon=True)
                self._thread.start()
            return True

    def _run(self) -> None:
        while True:
            with self._lock:
                if self._pending is None or self._closed:
                    self._building = None
                    return
                settings, requested_at = self._pending
                self._pending = None
                self._building = settings
                old = self._ready[1].new if self._ready is not None else self.settings
            try:
                engine = self._build(settings)
            except Exception as exc:  # keep serving with the old engine; report why
                with self._lock:
                    self.failures += 1
                    self.last_error = f"{exc.__class__.__name__}: {exc}"
                    self._building = None  # before on_failure: setting the old values back is a no-op
                    superseded = self._pending is not None
                if self._on_failure is not None and not superseded:
                    self._on_failure(settings, exc)
                continue
            report = SwapReport(
                old=old or settings, new=settings, requested_at=requested_at, built_s=time.monotonic() - requested_at
            )
            with self._lock:
                if self._closed:
                    self._building = None
                    return
                if self._pending is not None:
                    continue  # superseded while building: build the newer settings instead
                self._ready = (engine, report)
                self._building = None
            if self._on_built is not None:
                self._on_built(report)

    def take_ready(self) -> tuple[Any, SwapReport] | None:
        """Called by the serving loop between frames: the new engine once built, else None."""
        with self._lock:
            if self._ready is None:
                return None
            engine, report = self._ready
            self._ready = None
            report.swapped_at = time.monotonic()
            self.engine, self.settings = engine, report.new
            self.switches += 1
            return engine, report

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait for the background build (tests, shutdown); True if no build is running."""
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def close(self) -> None:
        """Drop pending work (a build in flight finishes in its daemon thread and is discarded)."""
        with self._lock:
            self._closed = True
            self._pending = None
            self._ready = None
