"""Latest-frame hand-off between the executor thread and the inference worker (no rclpy).

A slot of size one per camera: ``put`` replaces a frame the worker has not taken yet (that frame
is stale and counted as dropped), so the worker never processes a backlog and latency stays
bounded by one inference, whatever the camera rate.
"""

from __future__ import annotations

import threading
from typing import Any


class LatestSlots:
    """One latest-frame slot per key (camera) behind one wake-up, for a worker that batches cameras.

    ``put(key, item)`` replaces that key's waiting item (a stale drop);
    ``take_all`` returns every waiting item, at most one per key, so a batch holds the newest frame
    of each camera that has one and never two frames of the same camera.
    """

    def __init__(self, keys: list[Any] | tuple[Any, ...]) -> None:
        self._cv = threading.Condition()
        self._items: dict[Any, Any] = dict.fromkeys(keys)
        self._closed = False

    def put(self, key: Any, item: Any) -> bool:
        """Store ``item`` for ``key``; True if it replaced one that was still waiting."""
        with self._cv:
            replaced = self._items[key] is not None
            self._items[key] = item
            self._cv.notify()
            return replaced

    def take_all(self, timeout: float | None = None) -> dict[Any, Any]:
        """{key: item} of every waiting item (removed), in key order; {} after ``timeout`` or once closed."""
        with self._cv:
            if not self._closed and all(v is None for v in self._items.values()):
                self._cv.wait(timeout)
            out = {k: v for k, v in self._items.items() if v is not None}
            for k in out:
                self._items[k] = None
            return out

    def clear(self) -> int:
        """Drop every waiting item (deactivation); returns how many were dropped."""
        return len(self.clear_keys())

    def clear_keys(self) -> list[Any]:
        """Drop every waiting item; returns the keys that had one."""
        with self._cv:
            keys = [k for k, v in self._items.items() if v is not None]
            self._items = dict.fromkeys(self._items)
            return keys

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed
