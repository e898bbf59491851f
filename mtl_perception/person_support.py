"""People need something to stand on: person regions with nothing below their feet are relabelled.

Why: on the real frames of ``../shared/realdata`` the network calls about nine times as many pixels
person as there are (Cityscapes 15,663 predicted for 1,682 labelled, CamVid 9,580 for 1,580), on
facade edges, poles, car bodies and foliage (docs/sim2real.md, sections 26 and 35). A person stands
on the ground, rides a two-wheeler, or is hidden below the waist by something nearer; a patch of
facade called person has facade below it at the facade's own depth. That is a test on the image's
geometry, not on its look, so it holds for rendered and real frames alike.

Rule, per connected region of person and rider pixels (8-connected, on the network grid): for each
column, the region's lowest pixel is *supported* when the ``below_rows`` pixels just below it are
mostly ground (road, sidewalk, terrain) or a two-wheeler (bicycle, motorcycle), or lie nearer than
``nearer_ratio`` x the region's median depth (an occluder: a parked car, a bush, a low wall in
front of the feet), or when there are fewer than ``below_rows`` rows left (the frame's bottom cut
the person). A region whose supported columns are fewer than ``min_supported`` of its columns is
relabelled to the most common other class around it (a 1-pixel ring): the facade, pole, car or tree
it lies on. Nothing is learned, and the thresholds are fixed from the geometry, not fitted to any
frame (docs/sim2real.md, section 69).

Runs on the network's grid (before the resize to the frame): 1.0-1.5 ms a frame at 224x448 on the real frames
(AMD EPYC VM, 2 cores, measured beside other work).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from mtl_perception.ground_contact import class_lookup, lowest_per_region_column

#: Cityscapes names of the classes tested (a rider is a person on a two-wheeler)
PEOPLE_CLASSES = ("person", "rider")
#: classes a person can stand on or ride
SUPPORT_CLASSES = ("road", "sidewalk", "terrain", "bicycle", "motorcycle")


@dataclass(frozen=True)
class SupportResult:
    """``labels``: the relabelled grid (a new array when anything changed, else the input);
    ``relabelled``: bool mask of the pixels that changed (None when none did); ``regions``: person
    regions tested; ``removed``: of them, relabelled."""

    labels: np.ndarray
    relabelled: np.ndarray | None
    regions: int
    removed: int


class PersonSupport:
    """The test for one label set: ``PersonSupport.for_classes(names)(labels, depth)``."""

    def __init__(
        self,
        people: np.ndarray,
        support: np.ndarray,
        sky_id: int | None = None,
        below_rows: int | None = None,
        nearer_ratio: float = 0.9,
        min_supported: float = 0.5,
    ) -> None:
        self.people = people
        self.support = support
        self.sky_id = sky_id
        self._people_u8 = people.astype(np.uint8)
        self._support_u8 = support.astype(np.uint8)
        self.below_rows = below_rows
        self.nearer_ratio = float(nearer_ratio)
        self.min_supported = float(min_supported)

    @classmethod
    def for_classes(cls, classes: Sequence[str], **kwargs) -> PersonSupport | None:
        """The test for a model's class names; None if they hold no person or no support class."""
        people, support = class_lookup(classes, PEOPLE_CLASSES), class_lookup(classes, SUPPORT_CLASSES)
        if people is None or support is None:
            return None
        names = [str(c).lower() for c in classes]
        sky_id = names.index("sky") if "sky" in names else None
        return cls(people, support, sky_id, **kwargs)

    def __call__(self, labels: np.ndarray, depth: np.ndarray) -> SupportResult:
        """(H, W) uint8 class ids and (H, W) depth (any unit, NaN = invalid) -> ``SupportResult``
        (``labels`` itself is never written)."""
        if labels.shape != depth.shape or labels.ndim != 2:
            raise ValueError(f"labels {labels.shape} and depth {depth.shape} must be the same (H, W)")
        h, w = labels.shape
        labels = np.ascontiguousarray(labels, np.uint8)
        people_u8 = cv2.LUT(labels, self._people_u8)
        if not people_u8.any():
            return SupportResult(labels, None, 0, 0)
        n, cc, stats, _ = cv2.connectedComponentsWithStats(people_u8, connectivity=8)
        k = self.below_rows or max(2, h // 100)
        people = people_u8.view(bool)
        # the lowest pixel of each (region, column): rows y with a person at y and none at y + 1
        below_free = np.ones_like(people)
        below_free[:-1] = ~people[1:]
        ys, xs = np.nonzero(people & below_free)
        comp = cc[ys, xs]
        keep = lowest_per_region_column(ys, xs, comp, w)
        ys, xs, comp = ys[keep], xs[keep], comp[keep]
        # each region's median depth (finite pixels), for the occluder test
        median = np.full(n, np.nan, np.float32)
        finite = np.isfinite(depth) & people
        fy, fx = np.nonzero(finite)
        if fy.size:
            fc, fd = cc[fy, fx], depth[fy, fx].astype(np.float32)
            o = np.lexsort((fd, fc))
            fc, fd = fc[o], fd[o]
            starts = np.searchsorted(fc, np.arange(n + 1))
            for c in range(1, n):
                a, b = starts[c], starts[c + 1]
                if b > a:
                    median[c] = fd[(a + b - 1) // 2]
        supported = ys + k >= h  # the frame's bottom cut the person there
        inside = ~supported
        yi, xi, ci = ys[inside], xs[inside], comp[inside]
        ground = np.zeros(yi.size, np.int32)
        near = np.zeros(yi.size, np.int32)
        limit = self.nearer_ratio * median[ci]
        support_u8 = cv2.LUT(labels, self._support_u8).view(bool)
        for j in range(1, k + 1):
            lab = labels[yi + j, xi]
            ground += support_u8[yi + j, xi]
            d = depth[yi + j, xi]
            not_sky = lab != self.sky_id if self.sky_id is not None else True
            near += (np.isfinite(d) & (d < limit) & not_sky).astype(np.int32)
        supported[inside] = (2 * ground > k) | (2 * near > k)
        columns = np.bincount(comp, minlength=n)
        held = np.bincount(comp, weights=supported, minlength=n)
        unsupported = np.flatnonzero((columns > 0) & (held < self.min_supported * columns))
        unsupported = unsupported[unsupported > 0]
        if unsupported.size == 0:
            return SupportResult(labels, None, n - 1, 0)
        out = labels.copy()
        changed = np.zeros((h, w), bool)
        ring_kernel = np.ones((3, 3), np.uint8)
        removed = 0
        for c in unsupported:
            x0, y0, cw, ch, _ = stats[c]
            xa, ya, xb, yb = max(0, x0 - 1), max(0, y0 - 1), min(w, x0 + cw + 1), min(h, y0 + ch + 1)
            mask = (cc[ya:yb, xa:xb] == c).astype(np.uint8)
            ring = cv2.dilate(mask, ring_kernel).view(bool) & ~people[ya:yb, xa:xb]
            if not ring.any():
                continue  # nothing around it to take (a frame of people only)
            new = int(np.argmax(np.bincount(labels[ya:yb, xa:xb][ring], minlength=256)))
            sel = mask.view(bool)
            out[ya:yb, xa:xb][sel] = new
            changed[ya:yb, xa:xb] |= sel
            removed += 1
        if removed == 0:
            return SupportResult(labels, None, n - 1, 0)
        return SupportResult(out, changed, n - 1, removed)
