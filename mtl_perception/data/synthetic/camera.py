"""Pinhole camera: intrinsics, camera-to-world pose from heading/pitch/roll, ground-depth oracle.

Why a module of its own: K and the pose are what make depth metric and exact, and what the tests
check independently (:func:`analytic_ground_depth`), so their maths is kept apart from the scene
and the shading.
"""

from __future__ import annotations

import math

import numpy as np


def pinhole_intrinsics(
    focal_ratio: float, principal_jitter: tuple[float, float], height: int, width: int
) -> np.ndarray:
    """K (float64 3x3) with ``fx = fy = focal_ratio * width`` (square pixels) and a jittered centre."""
    f = focal_ratio * width
    cx = width * (0.5 + principal_jitter[0])
    cy = height * (0.5 + principal_jitter[1])
    return np.array([[f, 0, cx], [0, f, cy], [0, 0, 1]], np.float64)


def camera_to_world(
    position: tuple[float, float, float], heading: float, pitch: float, roll: float = 0.0
) -> np.ndarray:
    """Camera-to-world pose (float64 4x4) of an optical frame at ``position`` (world x, y, z).

    ``heading`` is the yaw of the forward axis towards world +x, ``pitch`` > 0 looks down, ``roll``
    rotates about the optical axis. Columns are the camera's right, down and forward axes.
    """
    psi, th = heading, pitch
    f = np.array([math.sin(psi) * math.cos(th), -math.sin(th), math.cos(psi) * math.cos(th)])
    right = np.cross(f, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    down = np.cross(f, right)
    if roll:
        cr, sr = math.cos(roll), math.sin(roll)
        right, down = cr * right + sr * down, -sr * right + cr * down
    T = np.eye(4)
    T[:3, 0], T[:3, 1], T[:3, 2] = right, down, f
    T[:3, 3] = position
    return T


def analytic_ground_depth(K: np.ndarray, pose: np.ndarray, height: int, width: int) -> np.ndarray:
    """Reference depth of the ground plane y=0 for every pixel, in float64 (NaN where the ray misses).

    Used by tests as an independent oracle: ``z = -h / (R K^-1 [u+.5, v+.5, 1]).y`` with ``R`` the
    camera-to-world rotation and ``h`` the camera height.
    """
    K = np.asarray(K, np.float64)
    pose = np.asarray(pose, np.float64)
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    pix = np.stack([u + 0.5, v + 0.5, np.ones_like(u)], 0).reshape(3, -1)
    d = pose[:3, :3] @ np.linalg.inv(K) @ pix
    with np.errstate(divide="ignore", invalid="ignore"):
        z = -pose[1, 3] / d[1]
    z[~(d[1] < 0)] = np.nan
    return z.reshape(height, width)


def _clip_near(pc: np.ndarray, near: float) -> np.ndarray:
    """Sutherland-Hodgman clip of a camera-space polygon against the plane z = near."""
    out = []
    n = len(pc)
    for k in range(n):
        a, b = pc[k], pc[(k + 1) % n]
        ina, inb = a[2] >= near, b[2] >= near
        if ina:
            out.append(a)
        if ina != inb:
            t = (near - a[2]) / (b[2] - a[2])
            out.append(a + t * (b - a))
    return np.array(out).reshape(-1, 3)
