"""Metric scale from the camera's mounting height: fit the road plane in the network's depth.

Why: on the real frames of ``../shared/realdata`` the network's depth has roughly the right shape
but the wrong scale. Fitting a plane to its road pixels puts the camera 1.23-1.45x higher above
the road than it is mounted (KITTI 2.0-2.3 m for 1.65 m, Cityscapes 1.58 m for 1.18 m), i.e. every
distance is that much too far (docs/sim2real.md, section 8). A vehicle knows how high its camera is
mounted (its URDF / TF tree, the rig calibration), and the road it drives on is, near the vehicle,
a plane that far below the camera. This is the classic scale recovery of monocular visual
odometry from a known camera height (e.g. Song & Chandraker, "Robust Scale Estimation in Real-Time
Monocular SFM for Autonomous Driving", CVPR 2014), applied to one frame's predicted depth.

Geometry: a point of the plane ``n . X = h`` (camera frame, ``|n| = 1``, ``h`` the camera's height
above it) seen at pixel (u, v) has ``1/Z = n . (x, y, 1) / h`` with ``x = (u - cx)/fx``,
``y = (v - cy)/fy``: inverse depth is linear in (x, y). A least-squares fit ``1/Z = p . (x, y, 1)``
gives ``p = n / h``, so ``h_fit = 1/|p|`` whatever the camera's pitch and roll. If the network's
depth is ``k`` times the true depth, the fit says ``h_fit = k h``: the correction divides the
depth by ``k = h_fit / h_mounted``.

Robustness: road pixels only (sidewalks are raised, terrain is not flat), a RANSAC on a seeded
subsample with a relative-depth inlier test, then least squares on the inliers. The fit is refused
(no correction, ``GroundScale.reason`` says why) when the road is too small, too few pixels agree
on one plane, the plane is tilted more than ``max_tilt_deg`` from the camera's vertical (not a
road under an upright camera), or ``k`` leaves ``[1/max_correction, max_correction]``.
Nothing here is tuned on the real frames. ~1 ms on a 256x512 grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

#: classes fitted as the ground plane (Cityscapes names): the carriageway only
PLANE_CLASSES = ("road",)


@dataclass(frozen=True)
class GroundScale:
    """One frame's fit. ``factor``: multiply the depth by it (1.0 when refused). ``fitted_height``:
    the camera's height above the fitted plane in the depth's units before the correction (NaN when
    there was no fit); ``normal``: the plane's unit normal in the camera's optical frame (x right,
    y down, z forward), pointing from the camera towards the ground; ``inliers``: the fraction of
    road points on the plane; ``reason``: empty when applied, else why not. ``found``: a road plane was
    found (enough inliers, upright), so ``normal`` is usable (for the horizon) even where the scale was
    not applied (no camera height, or a correction beyond ``max_correction``)."""

    factor: float
    fitted_height: float
    normal: tuple[float, float, float]
    inliers: float
    points: int
    reason: str = ""
    found: bool = False

    @property
    def applied(self) -> bool:
        return not self.reason


def below_horizon(mask: np.ndarray, K: np.ndarray, normal: Sequence[float], max_deg: float) -> np.ndarray:
    """Of the pixels set in ``mask`` (H, W), those whose viewing ray points more than ``max_deg``
    below the horizon of the plane with unit ``normal`` (camera optical frame, towards the ground, as
    ``GroundScale.normal``); ``K`` is the 3x3 of this grid. A ray ``r`` meets the plane ``max_deg``
    below its horizon where ``n . r / |r| = sin(max_deg)``: at ``h / tan(max_deg)`` ahead for a camera
    ``h`` above it. Only the masked pixels are computed (a few percent of a frame)."""
    out = np.zeros(mask.shape, bool)
    if max_deg >= 90.0:
        return out
    K = np.asarray(K, np.float64).reshape(3, 3)
    n = np.asarray(normal, np.float64)
    limit = np.sin(np.radians(max_deg))
    # rows that cannot reach the limit are skipped (most sky lies far above the horizon): along a row
    # sin = (n0 x + n1 y + n2) / sqrt(x^2 + y^2 + 1) <= (|n0| max|x| + n1 y + n2) / sqrt(y^2 + 1)
    y_rows = (np.arange(mask.shape[0]) - K[1, 2]) / K[1, 1]
    x_max = max(abs(K[0, 2]), abs(mask.shape[1] - 1 - K[0, 2])) / K[0, 0]
    bound = (abs(n[0]) * x_max + n[1] * y_rows + n[2]) / np.sqrt(y_rows * y_rows + 1.0)
    rows = np.flatnonzero(bound > limit)
    if rows.size == 0:
        return out
    ys, xs = np.nonzero(mask[rows])
    if ys.size == 0:
        return out
    ys = rows[ys]
    x = (xs - K[0, 2]) / K[0, 0]
    y = y_rows[ys]
    sin_below = (n[0] * x + n[1] * y + n[2]) / np.sqrt(x * x + y * y + 1.0)
    out[ys, xs] = sin_below > limit
    return out


def _refused(reason: str, points: int = 0, fitted_height: float = float("nan"), **kw) -> GroundScale:
    return GroundScale(
        1.0,
        fitted_height,
        kw.get("normal", (np.nan,) * 3),
        kw.get("inliers", 0.0),
        points,
        reason,
        kw.get("found", False),
    )


class GroundPlaneScale:
    """``GroundPlaneScale.for_classes(names)(labels, depth, K, camera_height) -> GroundScale``."""

    def __init__(
        self,
        plane: np.ndarray,
        min_points: int = 300,
        min_inliers: float = 0.5,
        inlier_tolerance: float = 0.08,
        max_tilt_deg: float = 25.0,
        max_correction: float = 2.5,
        sample_points: int = 2000,
        hypotheses: int = 48,
    ) -> None:
        self.plane = plane
        self._plane_u8 = plane.astype(np.uint8)
        self.min_points = int(min_points)
        self.min_inliers = float(min_inliers)
        self.inlier_tolerance = float(inlier_tolerance)
        self.max_tilt_deg = float(max_tilt_deg)
        self.max_correction = float(max_correction)
        self.sample_points = int(sample_points)
        self.hypotheses = int(hypotheses)

    @classmethod
    def for_classes(cls, classes: Sequence[str], **kwargs) -> GroundPlaneScale | None:
        """The fit for a model's class names; None if they have no road class."""
        from mtl_perception.ground_contact import class_lookup

        plane = class_lookup(classes, PLANE_CLASSES)
        return None if plane is None else cls(plane, **kwargs)

    def __call__(
        self, labels: np.ndarray, depth: np.ndarray, K: np.ndarray, camera_height: float | None
    ) -> GroundScale:
        """(H, W) class ids, (H, W) depth (NaN = invalid), the 3x3 K of THIS grid (pixels) and the
        camera's mounting height above the road (same unit the depth should have, metres). None: the
        plane only (its normal, for the horizon), never a scale."""
        if labels.shape != depth.shape or labels.ndim != 2:
            raise ValueError(f"labels {labels.shape} and depth {depth.shape} must be the same (H, W)")
        if camera_height is not None and not (np.isfinite(camera_height) and camera_height > 0):
            raise ValueError(f"camera_height must be a positive number of metres, got {camera_height!r}")
        K = np.asarray(K, np.float64).reshape(3, 3)
        # every step-th row and column: a plane needs thousands of pixels, not 100k (and ~4x less time)
        step = max(1, int(np.ceil(np.sqrt(labels.size / 20000.0))))
        road = cv2.LUT(np.ascontiguousarray(labels[::step, ::step], np.uint8), self._plane_u8)
        ys, xs = np.nonzero(road)
        z = depth[::step, ::step][ys, xs].astype(np.float64)
        ok = np.isfinite(z) & (z > 0)
        ys, xs, z = ys[ok] * step, xs[ok] * step, z[ok]
        n_road = int(z.size) * step * step  # in grid pixels, as min_points counts them
        if n_road < self.min_points:
            return _refused(f"{n_road} road pixels with depth (< {self.min_points})", n_road)
        # a fixed, spread subsample (every k-th pixel in raster order): the same answer every run
        if z.size > self.sample_points:
            idx = np.linspace(0, z.size - 1, self.sample_points).astype(np.int64)
            ys, xs, z = ys[idx], xs[idx], z[idx]
        A = np.stack([(xs - K[0, 2]) / K[0, 0], (ys - K[1, 2]) / K[1, 1], np.ones(z.size)], 1)
        b = 1.0 / z
        # RANSAC: minimal 3-point hypotheses (seeded), scored by relative depth error |Z p.(x,y,1) - 1|
        tri = np.random.default_rng(0).integers(0, z.size, (self.hypotheses, 3))
        M = A[tri]  # (n, 3, 3); a repeated or collinear triple is singular and skipped
        good = np.abs(np.linalg.det(M)) > 1e-12
        if not good.any():
            return _refused("road pixels are degenerate (collinear)", n_road)
        P = np.linalg.solve(M[good], b[tri[good]][..., None])[..., 0]  # (n, 3)
        A32, z32 = A.astype(np.float32), z.astype(np.float32)
        inl = np.abs(z32[None, :] * (P.astype(np.float32) @ A32.T) - 1.0) < self.inlier_tolerance
        best = inl[int(np.argmax(inl.sum(1)))]
        for _ in range(2):  # least squares on the inliers, then re-select once with the refined plane
            p, *_ = np.linalg.lstsq(A[best], b[best], rcond=None)
            best = np.abs(z * (A @ p) - 1.0) < self.inlier_tolerance
            if best.sum() < 3:
                return _refused("no plane agrees with the road pixels", n_road)
        frac = float(best.mean())
        norm = float(np.linalg.norm(p))
        n = p / norm
        fitted = 1.0 / norm
        kw = {"normal": tuple(float(v) for v in n), "inliers": frac}
        if frac < self.min_inliers:
            return _refused(f"only {frac:.0%} of road pixels on one plane", n_road, fitted, **kw)
        tilt = float(np.degrees(np.arccos(np.clip(n[1], -1.0, 1.0))))  # 0 deg: the road straight below
        if tilt > self.max_tilt_deg:
            return _refused(f"road plane tilted {tilt:.0f} deg from the camera's vertical", n_road, fitted, **kw)
        kw["found"] = True
        if camera_height is None:
            return _refused("no camera height: the plane's normal only", n_road, fitted, **kw)
        k = fitted / float(camera_height)
        if not 1.0 / self.max_correction <= k <= self.max_correction:
            return _refused(
                f"fitted height {fitted:.2f} is {k:.2f}x the mounting height (limit {self.max_correction}x)",
                n_road,
                fitted,
                **kw,
            )
        return GroundScale(1.0 / k, fitted, kw["normal"], frac, n_road, found=True)
