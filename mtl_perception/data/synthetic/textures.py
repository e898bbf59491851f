"""Procedural texture primitives and colour palettes: integer hashes, tileable fractal noise.

Why: every surface pattern (asphalt grain, pavers, facades, foliage, clouds) is a deterministic
function of world coordinates, evaluated per hit pixel with a handful of vectorised numpy ops, so
texture costs no storage and is identical however the camera moves.
"""

from __future__ import annotations

import cv2
import numpy as np

_TEX_N = 1024  # texel grid of the noise textures (a power of two: coordinates wrap with a mask)


def _fractal_noise(r: np.random.Generator, beta: float, n: int = 256) -> np.ndarray:
    """Tileable fractal noise, flat ``_TEX_N**2`` float32 with a near-uniform distribution in [0, 1).

    White noise shaped by ``1/f^beta`` in Fourier space is periodic, so world coordinates can wrap;
    rank-normalising makes thresholds equal area fractions (``> 1-p`` covers p). The ``n x n`` field
    is upsampled (cubic, wrapped) so nearest-texel lookups of it show no blocks: a per-frame
    bilinear lookup would cost ~2 ms per call. Built once per world; each frame only gathers.
    """
    f = np.fft.fftfreq(n)
    fr = np.hypot(f[:, None], f[None, :])
    fr[0, 0] = 1.0
    spec = (r.standard_normal((n, n)) + 1j * r.standard_normal((n, n))) * fr ** (-beta / 2)
    spec[0, 0] = 0.0
    img = np.fft.ifft2(spec).real.ravel()
    rank = np.empty(n * n, np.float32)
    rank[np.argsort(img, kind="stable")] = (np.arange(n * n, dtype=np.float32) + 0.5) / np.float32(n * n)
    k, p = _TEX_N // n, 4
    big = cv2.resize(np.pad(rank.reshape(n, n), p, mode="wrap"), None, fx=k, fy=k, interpolation=cv2.INTER_CUBIC)
    return np.clip(big[p * k : -p * k, p * k : -p * k], 0.0, 0.99999).ravel()


def _tex(tex: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Nearest-texel lookup of a flat tileable ``_TEX_N**2`` texture at texel coordinates (row a, col b)."""
    i = (_floor_i(a) & (_TEX_N - 1)) * _TEX_N
    i += _floor_i(b) & (_TEX_N - 1)
    return np.take(tex, i)


def _hash2(a: np.ndarray, b: np.ndarray, salt: int = 0) -> np.ndarray:
    """Cheap deterministic integer hash of two int arrays -> float32 in [0, 1) (procedural texture)."""
    h = a.astype(np.int32, copy=False).view(np.uint32) * np.uint32(0x27D4EB2D)
    h ^= b.astype(np.int32, copy=False).view(np.uint32) * np.uint32(0x165667B1) + np.uint32(
        salt * 0x9E3779B1 & 0xFFFFFFFF
    )
    h ^= h >> np.uint32(15)
    h *= np.uint32(0x2C1B3C6D)
    h ^= h >> np.uint32(12)
    return (h >> np.uint32(8)).astype(np.float32) * np.float32(1.0 / (1 << 24))


def _floor_i(x: np.ndarray) -> np.ndarray:
    return np.floor(x).astype(np.int32)


_FACADE_COLORS = np.array(
    [
        (0.78, 0.72, 0.62),
        (0.68, 0.66, 0.63),
        (0.58, 0.34, 0.27),
        (0.85, 0.83, 0.78),
        (0.72, 0.62, 0.48),
        (0.5, 0.5, 0.52),
        (0.82, 0.76, 0.6),
        (0.62, 0.68, 0.7),
        (0.74, 0.52, 0.4),
        (0.4, 0.38, 0.36),
    ]
)
_CAR_COLORS = np.array(
    [
        (0.08, 0.08, 0.09),
        (0.85, 0.85, 0.86),
        (0.55, 0.56, 0.58),
        (0.3, 0.31, 0.33),
        (0.6, 0.08, 0.08),
        (0.1, 0.18, 0.45),
        (0.75, 0.75, 0.72),
        (0.2, 0.3, 0.22),
        (0.45, 0.35, 0.25),
        (0.9, 0.9, 0.9),
    ]
)
