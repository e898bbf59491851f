"""Ray casting a :class:`World` into RGB, train ids and metric depth; the public entry points.

Visibility and lighting live here; surface albedo comes from :class:`Materials`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from mtl_perception.data.cityscapes_classes import IGNORE_INDEX
from mtl_perception.data.synthetic.camera import _clip_near
from mtl_perception.data.synthetic.constants import _BOX, _CYL, _NEAR, MAX_DEPTH, SKY
from mtl_perception.data.synthetic.materials import Materials
from mtl_perception.data.synthetic.scene import SceneConfig, with_look
from mtl_perception.data.synthetic.world import World

_BOX_EDGES = np.array([(0, 1), (2, 3), (4, 5), (6, 7), (0, 2), (1, 3), (4, 6), (5, 7), (0, 4), (1, 5), (2, 6), (3, 7)])


@dataclass
class Frame:
    """One rendered frame with its exact labels and camera."""

    image: np.ndarray  # uint8 (H,W,3) RGB
    semantic: np.ndarray  # uint8 (H,W) train ids, 255 ignore
    depth: np.ndarray  # float32 (H,W) metres, 0 = invalid (sky)
    K: np.ndarray  # float32 (3,3) intrinsics
    pose: np.ndarray  # float32 (4,4) camera-to-world
    stamp_ns: int  # timestamp of the frame in the sequence
    index: int


class Renderer(Materials):
    """Ray-casts a :class:`World` at a fixed image size; keeps per-size buffers between frames."""

    def __init__(self, world: World, height: int, width: int) -> None:
        self.world, self.H, self.W = world, int(height), int(width)
        self.K = world.config.intrinsics(self.H, self.W)
        # ground pixels per metre along the view direction ~ fx * h / t^2: fine texture is faded out
        # where it would alias into per-pixel noise (a real lens averages it to its mean)
        self._fh = np.float32(self.K[0, 0] * world.config.camera_height)
        Ki = np.linalg.inv(self.K)
        v, u = np.mgrid[0 : self.H, 0 : self.W].astype(np.float64)
        self.xn = (Ki[0, 0] * (u + 0.5) + Ki[0, 2]).astype(np.float32)
        self.yn = (Ki[1, 1] * (v + 0.5) + Ki[1, 2]).astype(np.float32)
        nr = np.random.default_rng([world.config.seed, self.H, self.W, 7])
        # one bank of unit Gaussian noise; each frame reads it at a random offset (cheap, deterministic)
        self.noise = nr.standard_normal(self.H * self.W * 3 * 2, dtype=np.float32)

    # ---- ray/primitive intersection ------------------------------------------------------------
    def _cull(self, pose: np.ndarray):
        w = self.world
        R, cam = pose[:3, :3], pose[:3, 3]
        pc = (w.corners - cam) @ R  # (n,8,3) camera coords
        z = pc[..., 2]
        ok = z >= _NEAR
        za, zb = z[:, _BOX_EDGES[:, 0]], z[:, _BOX_EDGES[:, 1]]
        cross = (za - _NEAR) * (zb - _NEAR) < 0
        with np.errstate(divide="ignore", invalid="ignore"):
            a = np.where(cross, (_NEAR - za) / np.where(cross, zb - za, 1.0), 0.0)
        pa, pb = pc[:, _BOX_EDGES[:, 0]], pc[:, _BOX_EDGES[:, 1]]
        ep = pa + a[..., None] * (pb - pa)
        pts = np.concatenate([pc, ep], 1)
        valid = np.concatenate([ok, cross], 1)
        pz = np.where(valid, pts[..., 2], 1.0)
        fx, fy, cx, cy = self.K[0, 0], self.K[1, 1], self.K[0, 2], self.K[1, 2]
        u = fx * pts[..., 0] / pz + cx
        v = fy * pts[..., 1] / pz + cy
        big = 1e9
        umin = np.where(valid, u, big).min(1)
        umax = np.where(valid, u, -big).max(1)
        vmin = np.where(valid, v, big).min(1)
        vmax = np.where(valid, v, -big).max(1)
        zmin = np.where(valid, pts[..., 2], big).min(1)
        u0 = np.clip(np.ceil(umin - 0.5), 0, self.W).astype(np.int64)
        u1 = np.clip(np.floor(umax - 0.5) + 1, 0, self.W).astype(np.int64)
        v0 = np.clip(np.ceil(vmin - 0.5), 0, self.H).astype(np.int64)
        v1 = np.clip(np.floor(vmax - 0.5) + 1, 0, self.H).astype(np.int64)
        keep = valid.any(1) & (zmin < MAX_DEPTH) & (u1 > u0) & (v1 > v0)
        idx = np.flatnonzero(keep)
        idx = idx[np.argsort(zmin[idx], kind="stable")]
        return idx, u0, u1, v0, v1, zmin

    def _trace(self, pose: np.ndarray, D, zb, pid) -> int:
        w = self.world
        cam = pose[:3, 3]
        DX, DY, DZ = D
        idx, U0, U1, V0, V1, ZMIN = self._cull(pose)
        tested = 0
        err = np.errstate(divide="ignore", invalid="ignore", over="ignore")
        err.__enter__()
        try:
            # reciprocal ray directions, shared by all slab tests of this frame
            IX, IY, IZ = np.float32(1.0) / DX, np.float32(1.0) / DY, np.float32(1.0) / DZ
            # plain python scalars: numpy scalar indexing costs ~0.1 us per access in this hot loop
            U0, U1, V0, V1, ZMIN = U0.tolist(), U1.tolist(), V0.tolist(), V1.tolist(), ZMIN.tolist()
            cx, cy, cz = cam.tolist()
            for i in idx.tolist():
                sl = (slice(V0[i], V1[i]), slice(U0[i], U1[i]))
                zs = zb[sl]
                if ZMIN[i] >= zs.max():
                    continue
                tested += 1
                dxs, dys, dzs = DX[sl], DY[sl], DZ[sl]
                # python floats keep the float32 ray arrays in float32 (np.float64 scalars would upcast)
                ce = w.center_list[i]
                o = [cx - ce[0], cy - ce[1], cz - ce[2]]
                h = w.half_list[i]
                k = w.kind_list[i]
                if k == _BOX:
                    c, s = w.cossin_list[i]
                    if abs(s) < 1e-9:
                        # yaw 0 or pi: a box is symmetric, so the world-axis slabs give the same t
                        olx, olz, ivx, ivz = o[0], o[2], IX[sl], IZ[sl]
                    else:
                        olx, olz = c * o[0] - s * o[2], s * o[0] + c * o[2]
                        ivx = np.float32(1.0) / (c * dxs - s * dzs)
                        ivz = np.float32(1.0) / (s * dxs + c * dzs)
                    tmin = None
                    tmax = None
                    for ol, inv, hh in ((olx, ivx, h[0]), (o[1], IY[sl], h[1]), (olz, ivz, h[2])):
                        t1 = (-hh - ol) * inv
                        t2 = (hh - ol) * inv
                        lo = np.minimum(t1, t2)
                        hi = np.maximum(t1, t2, out=t1)
                        if tmin is None:
                            tmin, tmax = lo, hi
                        else:
                            np.maximum(tmin, lo, out=tmin)
                            np.minimum(tmax, hi, out=tmax)
                    hit = (tmin <= tmax) & (tmin > 0) & (tmin < zs)
                    t = tmin
                elif k == _CYL:
                    r = h[0]
                    a = dxs * dxs + dzs * dzs
                    b = o[0] * dxs + o[2] * dzs
                    cc = o[0] * o[0] + o[2] * o[2] - r * r
                    if cc <= 0:
                        continue
                    disc = b * b - a * cc
                    t = (-b - np.sqrt(np.maximum(disc, 0))) / a
                    y = o[1] + t * dys
                    hit = (disc >= 0) & (t > 0) & (np.abs(y) <= h[1]) & (t < zs)
                    if o[1] > h[1]:  # top cap visible from above
                        tc = (h[1] - o[1]) / dys
                        px, pz = o[0] + tc * dxs, o[2] + tc * dzs
                        hc = (tc > 0) & (px * px + pz * pz <= r * r) & (tc < zs) & ~hit
                        t = np.where(hc, tc, t)
                        hit |= hc
                else:
                    ox, oy, oz = o[0] / h[0], o[1] / h[1], o[2] / h[2]
                    ex, ey, ez = dxs * (1 / h[0]), dys * (1 / h[1]), dzs * (1 / h[2])
                    a = ex * ex + ey * ey + ez * ez
                    b = ox * ex + oy * ey + oz * ez
                    cc = ox * ox + oy * oy + oz * oz - 1.0
                    if cc <= 0:
                        continue
                    disc = b * b - a * cc
                    t = (-b - np.sqrt(np.maximum(disc, 0))) / a
                    hit = (disc >= 0) & (t > 0) & (t < zs)
                np.copyto(zs, t, where=hit, casting="unsafe")
                np.copyto(pid[sl], i, where=hit, casting="unsafe")
        finally:
            err.__exit__(None, None, None)
        return tested

    # ---- shading -------------------------------------------------------------------------------
    def _shadow_mask(self, pose: np.ndarray) -> np.ndarray:
        """Sun shadows of all primitives on the ground, rasterised as exact ground-plane polygons.

        The polygons (convex hulls of each primitive's shadow on y=0) are precomputed per world;
        here they are transformed and projected in one batch, and only the few that cross the
        near plane are clipped in Python.
        """
        w = self.world
        R, cam = pose[:3, :3], pose[:3, 3]
        mask = np.zeros((self.H, self.W), np.uint8)
        rel = w.shadow_center - cam[[0, 2]]
        fwd = R[[0, 2], 2] / max(np.linalg.norm(R[[0, 2], 2]), 1e-9)
        along = rel @ fwd
        cand = np.flatnonzero((along > -w.shadow_radius) & (along < 70.0 + w.shadow_radius))
        if not len(cand):
            return mask
        near = 0.5
        K = self.K
        poly = w.shadow_pts[cand]  # (m,k,2)
        pw = np.stack([poly[..., 0] - cam[0], np.full(poly.shape[:2], -cam[1]), poly[..., 1] - cam[2]], -1)
        pc = pw @ R
        z = pc[..., 2]
        behind = z < near
        zz = np.where(behind, 1.0, z)
        u = K[0, 0] * pc[..., 0] / zz + K[0, 2] - 0.5
        v = K[1, 1] * pc[..., 1] / zz + K[1, 2] - 0.5
        allb = behind.all(1)
        anyb = behind.any(1)
        vis = ~anyb & (u.max(1) >= -1) & (u.min(1) <= self.W) & (v.max(1) >= -1) & (v.min(1) <= self.H)
        pts = np.round(np.stack([u, v], -1).clip(-20000, 20000) * 16).astype(np.int32)
        for j in np.flatnonzero(vis):
            cv2.fillConvexPoly(mask, pts[j, : w.shadow_n[cand[j]]], 1, lineType=cv2.LINE_8, shift=4)
        for j in np.flatnonzero(anyb & ~allb):
            q = _clip_near(pc[j, : w.shadow_n[cand[j]]], near)
            if len(q) < 3:
                continue
            uu = K[0, 0] * q[:, 0] / q[:, 2] + K[0, 2] - 0.5
            vv = K[1, 1] * q[:, 1] / q[:, 2] + K[1, 2] - 0.5
            pp = np.round(np.stack([uu, vv], 1).clip(-20000, 20000) * 16).astype(np.int32)
            cv2.fillConvexPoly(mask, pp, 1, lineType=cv2.LINE_8, shift=4)
        return mask

    def render(self, pose: np.ndarray, index: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Render (rgb uint8, semantic uint8, depth float32) for a camera-to-world ``pose``."""
        w, cfg = self.world, self.world.config
        H, W = self.H, self.W
        R = pose[:3, :3].astype(np.float32)
        cam = pose[:3, 3].astype(np.float64)
        DX = R[0, 0] * self.xn + R[0, 1] * self.yn + R[0, 2]
        DY = R[1, 0] * self.xn + R[1, 1] * self.yn + R[1, 2]
        DZ = R[2, 0] * self.xn + R[2, 1] * self.yn + R[2, 2]
        zb = np.full((H, W), MAX_DEPTH, np.float32)
        with np.errstate(divide="ignore"):
            tg = np.float32(-cam[1]) / DY
        ground = (DY < 0) & (tg < MAX_DEPTH)
        np.copyto(zb, tg, where=ground)
        pid = np.full((H, W), -1, np.int32)
        self._trace(pose, (DX, DY, DZ), zb, pid)

        pidf = pid.ravel()
        zf = zb.ravel()
        sem = np.full(H * W, IGNORE_INDEX, np.uint8)
        rgb = np.empty((H * W, 3), np.float32)
        L = w.sun.astype(np.float32)
        amb, sun_i = np.float32(cfg.ambient), np.float32(cfg.sun_intensity)

        # ground
        gi = np.flatnonzero((pidf < 0) & ground.ravel())
        t = zf[gi]
        gx = np.float32(cam[0]) + t * DX.ravel()[gi]
        gz = np.float32(cam[2]) + t * DZ.ravel()[gi]
        gcls, galb = self._ground(gx, gz, t)
        sem[gi] = gcls
        shadow = self._shadow_mask(pose).ravel()[gi]
        look = cfg.look
        if look is None:
            light = amb + sun_i * L[1] * (1 - shadow.astype(np.float32))
            rgb[gi] = galb * light[:, None]
        else:
            # coloured light: warm direct sun, bluish skylight fills the shadows
            ambc = amb * np.asarray(look.ambient_color, np.float32)
            sunc = sun_i * np.asarray(look.sun_color, np.float32)
            lit = (L[1] * (1 - shadow.astype(np.float32)))[:, None]
            rgb[gi] = galb * (ambc + lit * sunc)

        # objects
        oi = np.flatnonzero(pidf >= 0)
        p = pidf[oi]
        # group hit pixels by (kind, texture) so every shading subset below is a contiguous slice
        key = np.take(w.sort_key, p)
        order = np.argsort(key, kind="stable")
        oi, p, key = oi[order], p[order], key[order]
        t = zf[oi]
        Pw = np.stack(
            [
                np.float32(cam[0]) + t * DX.ravel()[oi],
                np.float32(cam[1]) + t * DY.ravel()[oi],
                np.float32(cam[2]) + t * DZ.ravel()[oi],
            ],
            1,
        )
        sem[oi] = np.take(w.cls, p)
        alb, nrm, see_through, leaf_gaps = self._objects(p, Pw, key, cam)
        ndl = np.maximum(nrm @ L, 0)
        if look is None:
            light = amb * (0.8 + 0.2 * nrm[:, 1]) + sun_i * ndl
            rgb[oi] = alb * light[:, None]
        else:
            light3 = (0.8 + 0.2 * nrm[:, 1])[:, None] * ambc + ndl[:, None] * sunc
            rgb[oi] = alb * light3
            st = oi[see_through]
            if len(st):  # between a bare crown's branches: the sky above the horizon, haze below
                dy = DY.ravel()[st]
                up = dy >= 0
                # twigs finer than a pixel dim what shows through
                rgb[st[up]] = self._sky(DX.ravel()[st[up]], dy[up], DZ.ravel()[st[up]]) * np.float32(0.8)
                rgb[st[~up]] = np.asarray(cfg.sky_horizon, np.float32) * np.float32(0.6)

        # sky
        si = np.flatnonzero((pidf < 0) & (DY.ravel() >= 0))
        sem[si] = SKY
        rgb[si] = self._sky(DX.ravel()[si], DY.ravel()[si], DZ.ravel()[si])
        # far ground (ignore): haze
        fi = np.flatnonzero((pidf < 0) & ~ground.ravel() & (DY.ravel() < 0))
        rgb[fi] = np.asarray(cfg.sky_horizon, np.float32)
        if len(leaf_gaps):
            # gaps in a leafy crown's rim show what lies beside the crown (sky, a facade, another crown),
            # which is what lies behind its rim: the nearest pixel within 8 along a row or column that is
            # neither this crown nor a gap (label and depth stay the crown's)
            gi_ = oi[leaf_gaps]
            own = pidf[gi_]
            is_gap = np.zeros(H * W, bool)
            is_gap[gi_] = True
            gy, gx = np.divmod(gi_, W)
            done = np.zeros(len(gi_), bool)
            fill = rgb[gi_]
            for d in range(1, 9):
                for dy, dx in ((0, d), (0, -d), (d, 0), (-d, 0)):
                    j = np.clip(gy + dy, 0, H - 1) * W + np.clip(gx + dx, 0, W - 1)
                    ok = ~done & (pidf[j] != own) & ~is_gap[j]
                    fill[ok] = rgb[j[ok]]
                    done |= ok
            rgb[gi_] = fill

        # fog (exponential in depth) over the whole image; sky/ignore have depth 0, so no fog
        depth = np.where((pidf >= 0) | ground.ravel(), zf, np.float32(0))
        tr = np.exp(-np.float32(cfg.fog_density) * depth)[:, None]
        fog = np.asarray(cfg.sky_horizon, np.float32)
        rgb -= fog  # (rgb - fog) * tr + fog == rgb * tr + fog * (1 - tr), without (N,3) temporaries
        rgb *= tr
        rgb += fog

        # sensor: exposure, noise, quantise
        fr = np.random.default_rng([cfg.seed, index, 11])
        off = int(fr.integers(0, H * W * 3))
        img = rgb * np.float32(cfg.exposure * 255.0)
        img += np.float32(cfg.noise_sigma) * self.noise[off : off + H * W * 3].reshape(-1, 3)
        img = np.clip(img, 0, 255, out=img).astype(np.uint8).reshape(H, W, 3)
        return img, sem.reshape(H, W), depth.reshape(H, W)


def _frame(renderer: Renderer, pose: np.ndarray, stamp_ns: int, index: int) -> Frame:
    img, sem, depth = renderer.render(pose, index)
    return Frame(
        image=img,
        semantic=sem,
        depth=depth,
        K=renderer.K.astype(np.float32),
        pose=pose.astype(np.float32),
        stamp_ns=int(stamp_ns),
        index=int(index),
    )


def render_sequence(
    seed: int,
    n_frames: int,
    height: int = 256,
    width: int = 512,
    fps: float = 10.0,
    speed: float = 8.0,
    randomization: str = "full",
    look: Mapping[str, Any] | None = None,
) -> Iterator[Frame]:
    """Yield ``n_frames`` of a camera driving at ``speed`` m/s through the street of ``seed``.

    Frame ``i`` is stamped ``round(i * 1e9 / fps)`` ns and its camera has travelled
    ``i * speed / fps`` metres along the ego lane. Output is a pure function of the arguments.
    ``randomization`` is ``"full"`` (domain randomised) or ``"basic"`` (generator 1.0 look). ``look``:
    fields of the drawn :class:`Look` to set (``scene.parse_look_overrides``; "full" only).
    """
    if n_frames < 0 or height < 1 or width < 1 or fps <= 0 or speed < 0:
        raise ValueError("render_sequence: need n_frames >= 0, height/width >= 1, fps > 0, speed >= 0")
    travel = speed * max(n_frames - 1, 0) / fps
    cfg = with_look(SceneConfig.from_seed(seed, randomization), look)
    world = World(cfg, length=travel + MAX_DEPTH + 20.0, travel=travel)
    renderer = Renderer(world, height, width)
    for i in range(n_frames):
        pose = world.camera_pose(i * speed / fps)
        yield _frame(renderer, pose, round(i * 1e9 / fps), i)


def render_frame(seed: int, height: int = 256, width: int = 512, randomization: str = "full") -> Frame:
    """One independent frame: a fresh street from ``seed`` seen from a random point along it."""
    s = float(np.random.default_rng([int(seed), 0xF4]).uniform(0.0, 60.0))
    world = World(SceneConfig.from_seed(seed, randomization), length=MAX_DEPTH + 80.0, travel=s)
    return _frame(Renderer(world, height, width), world.camera_pose(s), 0, 0)
