"""Latest-frame hand-off between the executor thread and the inference worker (no rclpy).

A slot of size one: ``put`` replaces a frame the worker has not taken yet (that frame is stale
and counted as dropped), so the worker never processes a backlog and latency stays bounded by
one inference, whatever the camera rate.
"""

from __future__ import annotations

import threading
from typing import Any


class LatestSlot:
    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._item: Any = None
        self._closed = False
        self.replaced = 0

    def put(self, item: Any) -> bool:
        """Store ``item``; True if it replaced one that was still waiting (a stale drop)."""
        with self._cv:
            replaced = self._item is not None
            if replaced:
                self.replaced += 1
            self._item = item
            self._cv.notify()
            return replaced

    def take(self, timeout: float | None = None) -> Any:
        """The waiting item (removing it), or None after ``timeout`` s or once closed."""
        with self._cv:
            if self._item is None and not self._closed:
                self._cv.wait(timeout)
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed
