"""Materials: procedural albedo of the ground (road, markings, kerbs, sidewalks, terrain), of every
primitive kind and texture (facades, vehicles, foliage, signs, ...) and the sky.

:class:`Materials` is a mixin of :class:`~mtl_perception.data.synthetic.render.Renderer`: it reads
``self.world`` and ``self._fh`` (``fx * camera height``, for distance fading of fine texture) and
returns albedo; lighting is composed by the renderer.
"""

from __future__ import annotations

import math

import numpy as np

from mtl_perception.data.synthetic.constants import (
    _BOX,
    _CYL,
    _ELL,
    _T_BUS,
    _T_CARBODY,
    _T_CARGO,
    _T_CHASSIS,
    _T_CONCRETE,
    _T_FACADE,
    _T_FENCE,
    _T_FOLIAGE,
    _T_GLASS,
    _T_HEAD,
    _T_SIGN,
    _T_TLIGHT,
    _T_TRUCKCAB,
    PERSON,
    RIDER,
    ROAD,
    SIDEWALK,
    TERRAIN,
    VEGETATION,
)
from mtl_perception.data.synthetic.textures import _floor_i, _hash2, _tex


class Materials:
    """Deferred shading of hit points into albedo (and normals for primitives)."""

    def _ground(self, gx: np.ndarray, gz: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Procedural ground classes and albedo from world (x, z) and depth ``t``: road, markings, sidewalk,
        terrain."""
        w, c = self.world, self.world.config
        psi = w.heading(gz)
        q = (gx - w.centre_x(gz)) * np.cos(psi)
        aq = np.abs(q)
        R, sw, tw = c.road_half_width, c.sidewalk_width, c.terrain_width
        di = w.nearest_intersection(gz)
        adi = np.abs(di)
        in_cross = adi < c.cross_width / 2
        cross_sw = (adi >= c.cross_width / 2) & (adi < c.cross_width / 2 + sw)
        # sidewalk band [sw_lo, sw_hi); everything else off the road is terrain (verge, yards, gaps)
        sw_lo = R + tw if c.verge_first else R
        sw_hi = sw_lo + sw
        road = (aq < R) | in_cross
        side = ~road & (((aq >= sw_lo) & (aq < sw_hi)) | cross_sw)
        L = c.look
        if L is not None and L.verge_width > 0:
            # 2.3: part of the band is a grass verge; the kerb stones (class sidewalk) stay at the road
            ac = aq - sw_lo
            lo, hi = (L.kerb_width, L.kerb_width + L.verge_width) if L.verge_at_kerb else (sw - L.verge_width, sw)
            side &= ~(~cross_sw & (ac >= lo) & (ac < hi))
        terr = ~road & ~side
        cls = np.where(road, ROAD, np.where(side, SIDEWALK, TERRAIN)).astype(np.uint8)

        alb = np.empty((len(gx), 3), np.float32)
        if c.look is not None:
            self._ground_full(alb, gx, gz, t, q, road, side, terr, in_cross, cross_sw, di, sw_lo)
            return cls, alb
        # road: asphalt with fine speckle and large patches; markings are still class road
        ri = np.flatnonzero(road)
        if len(ri):
            x, z, qq = gx[ri], gz[ri], q[ri]
            sp = _hash2(_floor_i(x * 9), _floor_i(z * 9), 1)
            patch = _hash2(_floor_i(x * 0.4), _floor_i(z * 0.25), 2)
            base = np.asarray(c.asphalt, np.float32)
            shade = 0.82 + 0.25 * sp * sp + 0.12 * patch
            # tyre tracks: slightly darker bands in each lane
            lanepos = np.mod(np.abs(qq) - (2.3 if c.parking else 0), c.lane_width) / c.lane_width
            shade *= 1 - 0.06 * ((np.abs(lanepos - 0.25) < 0.07) | (np.abs(lanepos - 0.75) < 0.07))
            a = base * shade[:, None]
            mark = np.zeros(len(ri), bool)
            main = ~in_cross[ri]
            di_r = di[ri]
            near_cross = np.abs(di_r) < c.cross_width / 2 + 5.0
            aqr = np.abs(qq)
            lw = 0.13
            dash = np.mod(z, c.dash_period) < c.dash_length
            lane0 = 2.3 if c.parking else 0.0
            for k in range(1, c.lanes_per_side):
                mark |= main & (np.abs(aqr - lane0 - k * c.lane_width) < lw / 2) & dash
            mark |= main & (np.abs(qq) < lw / 2) & (dash | (c.lanes_per_side > 1) | near_cross)
            edge = c.lanes_per_side * c.lane_width + lane0 - (0.0 if c.parking else 0.25)
            if c.parking:
                mark |= main & (np.abs(aqr - (R - 2.3)) < 0.06)
            else:
                mark |= main & (np.abs(aqr - edge) < lw / 2)
            if c.straight:
                # zebra crossing and stop line before each intersection
                zeb = main & (np.abs(np.abs(di_r) - c.cross_width / 2 - 2.5) < 1.5) & (aqr < R - 0.3)
                mark |= zeb & (np.mod(qq, 1.0) < 0.5)
                stop = main & (np.abs(-di_r - c.cross_width / 2 - 4.6) < 0.2) & (qq < 0) & (qq > -R + 0.3)
                mark |= stop
            wear = 0.8 + 0.2 * sp[mark]
            a[mark] = np.float32(0.86) * wear[:, None]
            alb[ri] = a
        si = np.flatnonzero(side)
        if len(si):
            x, z = gx[si], gz[si]
            base = np.asarray(c.sidewalk_color, np.float32)
            qq = q[si]
            tile = (np.mod(qq * 2.0, 1.0) < 0.06) | (np.mod(z * 2.0, 1.0) < 0.06)
            v = 0.9 + 0.12 * _hash2(_floor_i(qq * 2), _floor_i(z * 2), 3)
            v = np.where(tile, 0.72, v)
            curb = (np.abs(np.abs(qq) - sw_lo) < 0.18) & ~cross_sw[si]
            v = np.where(curb, 1.08, v)
            alb[si] = base * v[:, None].astype(np.float32)
        ti = np.flatnonzero(terr)
        if len(ti):
            x, z = gx[ti], gz[ti]
            base = np.asarray(c.grass_color, np.float32)
            n1 = _hash2(_floor_i(x * 6), _floor_i(z * 6), 4)
            n2 = _hash2(_floor_i(x * 0.7), _floor_i(z * 0.7), 5)
            dirt = (n2 > 0.8)[:, None]
            a = base * (0.75 + 0.4 * n1)[:, None]
            alb[ti] = np.where(dirt, np.array([0.4, 0.34, 0.26], np.float32) * (0.8 + 0.3 * n1)[:, None], a)
        return cls, alb

    def _fade(self, t: np.ndarray, size: float) -> np.ndarray:
        """1 where a ground feature of ``size`` metres spans >= 2 pixels, falling to 0 as it aliases."""
        return np.minimum(self._fh * np.float32(size * 0.5) / (t * t), np.float32(1.0))

    def _ground_full(self, alb, gx, gz, t, q, road, side, terr, in_cross, cross_sw, di, sw_lo) -> None:
        """Domain-randomised ground albedo (``config.look``), written into ``alb``."""
        w, c = self.world, self.world.config
        L = c.look
        tx = w.noise_tex
        f32 = np.float32
        R = c.road_half_width
        lane0 = 2.3 if c.parking else 0.0
        ri = np.flatnonzero(road)
        if len(ri):
            x, z, qq, tt = gx[ri], gz[ri], q[ri], t[ri]
            aqr = np.abs(qq)
            co = _tex(tx[0], z * 2, x * 2)  # blotches of ~10 m
            mi = _tex(tx[1], z * 8, x * 8)  # mottling of ~1 m
            sp = _hash2(_floor_i(x * L.aggregate_scale), _floor_i(z * L.aggregate_scale), 1)
            shade = 1 + f32(2 * L.asphalt_coarse) * (co - 0.5)
            shade += f32(2 * L.asphalt_mid) * (mi - 0.5)
            shade += f32(2 * L.asphalt_fine) * (sp - 0.5) * self._fade(tt, 1.0 / L.aggregate_scale)
            # wheel tracks in each lane
            lanepos = np.mod(aqr - lane0, c.lane_width) / c.lane_width
            trk = (np.abs(lanepos - 0.25) < 0.07) | (np.abs(lanepos - 0.75) < 0.07)
            shade *= 1 + f32(L.track_shade) * trk
            # rectangular repair patches on a road-aligned grid
            if L.repair_prob > 0:
                a, b = qq / f32(L.repair_size[0]) + f32(0.37), z / f32(L.repair_size[1])
                fa, fb = _floor_i(a), _floor_i(b)
                hr = _hash2(fa, fb, 21)
                ua, ub = a - fa, b - fb
                rep = (hr < L.repair_prob) & (ua > 0.1) & (ua < 0.85) & (ub > 0.15) & (ub < 0.9)
                shade = np.where(rep, shade * f32(L.repair_shade) * (0.9 + 0.2 * hr / f32(L.repair_prob)), shade)
            # crack networks: level-set contours of smooth noise, only where a coarse mask allows
            if L.crack_density > 0:
                cr = _tex(tx[2], z * 80, x * 80)  # contours wander over ~0.5 m
                crack = (np.abs(cr - 0.5) < 0.01) & (_tex(tx[0], z * 5 + 71, x * 5) < L.crack_density)
                shade = np.where(crack, shade * (1 - f32(1 - L.crack_shade) * self._fade(tt, 0.1)), shade)
            if L.gutter_width > 0:
                shade = np.where(aqr > R - L.gutter_width, shade * f32(L.gutter_shade), shade)
            if L.wetness > 0:
                shade *= f32(1 - 0.45 * L.wetness)
            a = np.asarray(c.asphalt, np.float32) * shade[:, None]
            if L.markings:
                main = ~in_cross[ri]
                di_r = di[ri]
                lw = f32(L.marking_width / 2)
                dash = np.mod(z, c.dash_period) < c.dash_length
                mark = np.zeros(len(ri), bool)
                for k in range(1, c.lanes_per_side):
                    mark |= np.abs(aqr - lane0 - k * c.lane_width) < lw
                mark &= dash
                if L.centre_style == 2:
                    centre = np.abs(aqr - (lw + f32(0.06))) < lw  # two lines, a 12 cm gap between
                else:
                    centre = aqr < lw
                    if L.centre_style == 0 and c.lanes_per_side == 1:
                        centre &= dash | (np.abs(di_r) < c.cross_width / 2 + 5.0)
                mark |= centre
                if L.edge_lines:
                    if c.parking:
                        mark |= np.abs(aqr - (R - 2.3)) < 0.06
                    else:
                        mark |= np.abs(aqr - (R - 0.25)) < lw
                if c.straight and L.zebra:
                    zeb = (np.abs(np.abs(di_r) - c.cross_width / 2 - 2.5) < 1.5) & (aqr < R - 0.3)
                    mark |= zeb & (np.mod(qq, 1.0) < 0.5)
                    mark |= (np.abs(-di_r - c.cross_width / 2 - 4.6) < 0.2) & (qq < 0) & (qq > -R + 0.3)
                mark &= main
                # worn paint: patchy, the asphalt shows through
                mark &= _tex(tx[1], z * 40 + 37, x * 40 + 11) >= L.marking_wear * 0.8
                mi_ = np.flatnonzero(mark)
                paint = np.full((len(mi_), 3), L.marking_albedo, np.float32)
                if L.centre_yellow:
                    paint[centre[mi_]] *= np.array([1.0, 0.78, 0.2], np.float32)
                dirt = (0.85 + 0.15 * sp[mi_]) * f32(1 - 0.3 * L.wetness)
                a[mi_] = paint * dirt[:, None]
            if L.wetness > 0:
                # puddles mirror the bright horizon sky
                pud = np.flatnonzero(_tex(tx[3], z * 14, x * 14) > 1 - 0.12 * L.wetness)
                a[pud] = a[pud] * 0.5 + np.asarray(c.sky_horizon, np.float32) * 0.22
            alb[ri] = a
        si = np.flatnonzero(side)
        if len(si):
            x, z, qq, tt = gx[si], gz[si], q[si], t[si]
            ac = np.abs(qq) - sw_lo  # distance from the kerb line
            ts = L.tile_size
            if L.paving == 2:  # bricks in running bond, 10 x 20 cm
                row = _floor_i(z * 10)
                col = _floor_i(ac * 5 + 0.5 * (row & 1))
                ua, ub = np.mod(ac * 5 + 0.5 * (row & 1), 1.0), np.mod(z * 10, 1.0)
                joint = (ua < 0.08) | (ub < 0.12)
                size = 0.1
            else:
                row, col = _floor_i(z / f32(ts)), _floor_i(ac / f32(ts))
                jw = 0.02 / ts
                joint = (np.mod(z / f32(ts), 1.0) < jw) | (np.mod(ac / f32(ts), 1.0) < jw)
                size = ts
            fade = self._fade(tt, size)
            v = 1 + f32(2 * L.tile_var) * (_hash2(row, col, 3) - 0.5) * fade
            if L.paving == 3:  # asphalt footpath: speckle, no joints
                sp = _hash2(_floor_i(x * 9), _floor_i(z * 9), 13)
                v = 1 + f32(0.3) * (sp - 0.5) * self._fade(tt, 0.11)
            else:
                v = np.where(joint, v * (1 - f32(1 - L.joint_shade) * self._fade(tt, 0.08)), v)
            v *= 1 + f32(0.3) * (_tex(tx[0], z * 3 + 13, x * 3) - 0.5)  # stains, weathering
            a = np.asarray(c.sidewalk_color, np.float32) * v[:, None]
            kerb = (ac < L.kerb_width) & (ac >= 0) & ~cross_sw[si]
            ki = np.flatnonzero(kerb)
            kc = np.asarray(L.kerb_color, np.float32)
            kv = np.where(ac[ki] < L.kerb_height * 0.6, f32(0.75), f32(1.0))  # the face, seen obliquely
            kcol = np.broadcast_to(kc, (len(ki), 3)) * kv[:, None]
            if L.kerb_painted:
                red = (_floor_i(z[ki]) & 1).astype(bool)
                kcol = np.where(red[:, None], np.array([0.7, 0.1, 0.08], np.float32), np.float32(0.85))
            a[ki] = kcol
            if L.wetness > 0:
                a *= f32(1 - 0.35 * L.wetness)
            alb[si] = a
        ti = np.flatnonzero(terr)
        if len(ti):
            x, z, tt = gx[ti], gz[ti], t[ti]
            n1 = _hash2(_floor_i(x * 6), _floor_i(z * 6), 4)
            g = np.asarray(c.grass_color, np.float32) * (1 + f32(0.5) * (n1 - 0.5) * self._fade(tt, 0.17))[:, None]
            g *= (0.85 + 0.3 * _tex(tx[1], z * 8 + 5, x * 8))[:, None]
            # 2.2: dry / worn patches, mowing stripes along the road, blade-scale speckle
            if L.dry_frac > 0:
                dry = (_tex(tx[2], z * 0.9 + 37, x * 0.9) < L.dry_frac)[:, None]
                g = np.where(dry, np.asarray(L.dry_color, np.float32) * (0.85 + 0.3 * n1)[:, None], g)
            if L.mow_stripes > 0:
                stripe = np.where(np.mod(q[ti] / np.float32(L.mow_width), 2.0) < 1.0, f32(1.0), f32(-1.0))
                g *= (1 + f32(L.mow_stripes) * stripe * self._fade(tt, L.mow_width))[:, None]
            if L.grass_blades > 0:  # blades (finer across than along) and tufts, each faded as it aliases
                blade = (_hash2(_floor_i(x * 40), _floor_i(z * 25), 23) - 0.5) * self._fade(tt, 0.03)
                tuft = (_hash2(_floor_i(x * 10), _floor_i(z * 7), 24) - 0.5) * self._fade(tt, 0.12)
                clump = (_hash2(_floor_i(x * 3), _floor_i(z * 2.5), 25) - 0.5) * self._fade(tt, 0.35)
                g *= (1 + f32(L.grass_blades) * (blade + tuft + 0.6 * clump))[:, None]
            dirt = _tex(tx[0], z * 4 + 101, x * 4) < L.dirt_frac
            dcol = np.asarray(L.dirt_color, np.float32) * (0.8 + 0.3 * n1)[:, None]
            alb[ti] = np.where(dirt[:, None], dcol, g)

    def _objects(
        self, p: np.ndarray, Pw: np.ndarray, key: np.ndarray, cam: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Deferred shading of primitive hits: albedo (M,3), world normal (M,3), the indices of the hits
        that show the sky behind them (between a bare crown's branches) and those of the gaps in a leafy
        crown (the renderer fills both).

        ``p`` is sorted by ``key = kind * 16 + texture``, so each group is a slice (views, no
        gathers), which is what keeps this pass cheap in numpy. ``cam`` (world position of the camera) lets
        leafy crowns (2.14) open gaps where the view grazes their rim.
        """
        w = self.world
        leafy = w.look is not None and w.look.leafy_crowns
        M = len(p)
        see_through = np.zeros(0, np.int64)
        leaf_gaps = np.zeros(0, np.int64)
        bounds = np.searchsorted(key, np.arange(49))
        groups = {k: slice(bounds[k], bounds[k + 1]) for k in range(48) if bounds[k + 1] > bounds[k]}

        def kind_slice(kind: int) -> slice:
            return slice(bounds[kind * 16], bounds[kind * 16 + 16])

        alb = np.take(w.color, p, axis=0)
        nrm = np.zeros((M, 3), np.float32)
        # boxes
        b = kind_slice(_BOX)
        if b.stop > b.start:
            pb = p[b]
            c, s = np.take(w.cos_yaw, pb), np.take(w.sin_yaw, pb)
            r = Pw[b] - np.take(w.center32, pb, axis=0)
            hb = np.take(w.half32, pb, axis=0)
            lx = c * r[:, 0] - s * r[:, 2]
            ly = r[:, 1]
            lz = s * r[:, 0] + c * r[:, 2]
            ax, ay, az = np.abs(lx) / hb[:, 0], np.abs(ly) / hb[:, 1], np.abs(lz) / hb[:, 2]
            fx_ = (ax >= ay) & (ax >= az)
            fy_ = ~fx_ & (ay >= az)
            fz_ = ~fx_ & ~fy_
            nlx = np.sign(lx) * fx_
            nlz = np.sign(lz) * fz_
            nb = nrm[b]
            nb[:, 0] = c * nlx + s * nlz
            nb[:, 1] = np.sign(ly) * fy_
            nb[:, 2] = -s * nlx + c * nlz
            fu = np.where(fx_, lz + hb[:, 2], lx + hb[:, 0])  # horizontal facade coordinate
            fv = Pw[b, 1]  # height above ground
            yb = ly + hb[:, 1]  # height above box bottom
            tex_sl = {k - _BOX * 16: slice(g.start - b.start, g.stop - b.start) for k, g in groups.items() if k < 16}
            self._box_textures(pb, tex_sl, alb[b], lx, ly, lz, hb, fx_, fy_, fz_, fu, fv, yb)
            hg = groups.get(_BOX * 16 + _T_FOLIAGE)
            if leafy and hg is not None:  # hedges: smaller clumps, no gaps (a hedge is dense)
                f, nl, _ = self._leaf_clumps(Pw[hg], nrm[hg], 0.15, None, 0.6 if w.look.crown_masses else None)
                alb[hg] = np.take(w.color, p[hg], axis=0) * f[:, None]
                nrm[hg] = nl
        # cylinders
        cy = kind_slice(_CYL)
        if cy.stop > cy.start:
            pc = p[cy]
            r = Pw[cy] - np.take(w.center32, pc, axis=0)
            hc = np.take(w.half32, pc, axis=0)
            top = r[:, 1] >= hc[:, 1] * 0.9999
            rr = np.maximum(hc[:, 0], 1e-6)
            nc = nrm[cy]
            nc[:, 0] = np.where(top, 0, r[:, 0] / rr)
            nc[:, 1] = top
            nc[:, 2] = np.where(top, 0, r[:, 2] / rr)
            bark = np.take(w.cls, pc) == VEGETATION
            n = _hash2(_floor_i(Pw[cy, 1] * 8), _floor_i(np.arctan2(r[:, 0], r[:, 2]) * 4), 6)
            alb[cy] *= np.where(bark, 0.75 + 0.4 * n, np.float32(1.0))[:, None]
        # ellipsoids
        e = kind_slice(_ELL)
        if e.stop > e.start:
            pe = p[e]
            he = np.take(w.half32, pe, axis=0)
            g = (Pw[e] - np.take(w.center32, pe, axis=0)) / (he * he)
            g /= np.linalg.norm(g, axis=1, keepdims=True)
            nrm[e] = g
            fol = groups.get(_ELL * 16 + _T_FOLIAGE)
            if fol is not None:
                q = Pw[fol]
                gf = nrm[fol]
                smooth = gf.copy() if leafy else gf  # gf is a view: the grain below perturbs it in place
                ls = np.float32(9.0 if w.look is None else 16.0)  # finer leaf clumps: no blocky spots
                n1 = _hash2(_floor_i(q[:, 0] * ls) * 7919 + _floor_i(q[:, 1] * ls), _floor_i(q[:, 2] * ls), 7)
                n2 = _hash2(_floor_i(q[:, 0] * 2.5) * 7919 + _floor_i(q[:, 1] * 2.5), _floor_i(q[:, 2] * 2.5), 12)
                ao = 0.6 + 0.4 * np.clip(gf[:, 1] * 0.5 + 0.5, 0, 1)
                if w.look is not None:  # dark gaps between leaf clumps
                    ao = ao * np.where(n1 < w.look.leaf_gap, np.float32(0.7), np.float32(1.0))
                alb[fol] *= ((0.7 + 0.3 * n1 + 0.25 * n2) * ao)[:, None]
                if w.look is not None and w.look.bare_trees > 0:
                    # leafless crowns (2.4): branches and twigs as contour lines of smooth noise, denser
                    # towards the crown's core; between them the renderer shows the sky (see-through)
                    bare = np.take(w.param, p[fol], axis=0)[:, 0] > 0.5
                    if bare.any():
                        tx = w.noise_tex
                        hz = q[:, 0] + q[:, 2]
                        core = np.abs(gf[:, 1]) < 0.6  # flanks of the crown: branches seen edge-on
                        b1 = np.abs(_tex(tx[2], q[:, 1] * 10, hz * 10) - 0.5) < np.where(core, 0.12, 0.07)
                        b2 = np.abs(_tex(tx[1], q[:, 1] * 30 + 17, hz * 30) - 0.5) < 0.08
                        b3 = np.abs(_tex(tx[3], hz * 25 + 5, q[:, 1] * 25) - 0.5) < 0.07
                        gap = bare & ~(b1 | b2 | b3)
                        see_through = np.flatnonzero(gap) + fol.start
                # leaf normals are noisy: perturb for a clumpy look
                nb = gf * 0.6 + np.stack([n1 - 0.5, n1 * 0.5, 0.5 - n1], 1) * 0.8
                nrm[fol] = nb / np.maximum(np.linalg.norm(nb, axis=1, keepdims=True), 1e-6)
                if leafy:  # clumps of leaves (2.14; with branch masses 2.15) on the crowns that are not bare
                    lf = np.flatnonzero(np.take(w.param, p[fol], axis=0)[:, 0] <= 0.5)
                    if len(lf):
                        view = q[lf] - np.asarray(cam, np.float32)
                        mass = 0.9 if w.look.crown_masses else None
                        f, nl, gap = self._leaf_clumps(q[lf], smooth[lf], 0.22, view, mass)
                        ix = lf + fol.start
                        alb[ix] = np.take(w.color, p[ix], axis=0) * f[:, None]
                        nrm[ix] = nl
                        leaf_gaps = ix[gap]
            hd = groups.get(_ELL * 16 + _T_HEAD)
            if hd is not None:
                gh = nrm[hd]
                hair = (gh[:, 1] > 0.25) | ((gh[:, 2] > 0.3) & (gh[:, 1] > -0.3))
                alb[hd] = np.where(hair[:, None], np.take(w.param, p[hd], axis=0)[:, :3], alb[hd])
        if w.look is not None and w.look.cloth_texture:
            body = slice(bounds[_BOX * 16], bounds[_CYL * 16 + 16])  # boxes and cylinders: not the heads
            self._cloth(p[body], Pw[body], alb[body])
        return alb, nrm, see_through, leaf_gaps

    @staticmethod
    def _worley(P: np.ndarray, salt: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """3-D Worley (cellular) noise at points ``P`` (M,3) in cell units, one jittered feature point per
        unit cell: (distance to the second nearest feature point minus distance to the nearest, >= 0 and
        0 on the border between two cells (M,); offset from the nearest feature point (M,3); that cell's
        own hash in [0, 1) (M,))."""
        M = len(P)
        ci = _floor_i(P)
        f1 = np.full(M, 9.0, np.float32)
        f2 = np.full(M, 9.0, np.float32)
        best = np.zeros((M, 3), np.float32)
        tone = np.zeros(M, np.float32)
        for ox in (-1, 0, 1):
            for oy in (-1, 0, 1):
                for oz in (-1, 0, 1):
                    cx, cy, cz = ci[:, 0] + ox, ci[:, 1] + oy, ci[:, 2] + oz
                    k = cx * 7919 + cy * 104729
                    fp = np.stack([c + 0.1 + 0.8 * _hash2(k, cz, salt + s) for c, s in ((cx, 0), (cy, 1), (cz, 2))], 1)
                    d = ((P - fp) ** 2).sum(1)
                    near = d < f1
                    f2 = np.where(near, f1, np.minimum(f2, d))
                    f1 = np.where(near, d, f1)
                    best[near] = fp[near]
                    tone[near] = _hash2(k[near], cz[near], salt + 3)
        return np.sqrt(f2) - np.sqrt(f1), (P - best).astype(np.float32), tone

    @staticmethod
    def _leaf_clumps(
        q: np.ndarray, n0: np.ndarray, size: float, view: np.ndarray | None = None, mass: float | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Leafy foliage (``Look.leafy_crowns``) at world points ``q`` (M,3) of a surface with normals
        ``n0``: (albedo factor (M,), shading normal (M,3), gap mask (M,)).

        Clumps are the cells of 3-D Worley noise with ``size`` metres between feature points. Each clump
        is shaded as a ball around its feature point (lit on its sunward side), with its own tone, dark
        crevices where two cells meet, and a 3.5 cm leaf grain on top. A few clumps are missing and show
        the crown's dark inside. Given the ``view`` rays (M,3), clumps where the view grazes the surface
        (the crown's rim) become gaps, which the renderer fills with what lies beside the crown: the
        silhouette is ragged, as real crowns are, instead of an ellipse. ``mass`` (``Look.crown_masses``):
        a second, coarser level of cells ``mass`` metres apart, a real crown's branch masses, which shade
        the clumps on them as one ball, with deep shade and notches between them; they keep a far crown
        structured where clumps alone are below a pixel.
        Why: 2.13's crowns were smooth ellipsoids under one hashed 6 cm grain (large flat squares at 3 m),
        and real near foliage read 1.3-1.7x too far; clumps alone (2.14) brought near foliage closer and
        every farther real tree too (docs/sim2real.md, section 45).
        """
        f32 = np.float32
        M = len(q)
        crevice, nc, tone = Materials._worley(q * f32(1.0 / size), 31)
        nc /= np.maximum(np.linalg.norm(nc, axis=1, keepdims=True), f32(1e-6))
        nl = nc + f32(0.7) * n0
        if mass is not None:
            crev_m, nm, tone_m = Materials._worley(q * f32(1.0 / mass), 41)
            nm /= np.maximum(np.linalg.norm(nm, axis=1, keepdims=True), f32(1e-6))
            nl = f32(0.5) * nc + nm + f32(0.6) * n0
        nl /= np.maximum(np.linalg.norm(nl, axis=1, keepdims=True), f32(1e-6))
        # leaf grain on a rotated lattice (no axis-aligned block edges), with dark gaps between leaves
        a = _floor_i((q[:, 0] * 0.8 + q[:, 2] * 0.6) * 28)
        b = _floor_i(q[:, 1] * 28)
        c = _floor_i((q[:, 2] * 0.8 - q[:, 0] * 0.6) * 28)
        grain = _hash2(a * 7919 + b, c, 35)
        leaf = np.where(grain < 0.15, f32(0.45), f32(0.65) + f32(0.6) * grain)
        shade = f32(0.25) + f32(0.75) * np.clip(crevice / f32(0.2), 0, 1) ** f32(0.7)
        f = (f32(0.7) + f32(0.6) * tone) * shade * leaf
        if mass is not None:  # deep shade between branch masses, each mass its own tone
            f *= (f32(0.15) + f32(0.85) * np.clip(crev_m / f32(0.15), 0, 1) ** f32(0.6)) * (
                f32(0.75) + f32(0.5) * tone_m
            )
        f = np.where(tone < 0.04, f * f32(0.15), f)  # a few clumps missing: the crown's dark inside shows
        gap = np.zeros(M, bool)
        if view is not None:
            # whole clumps missing where the view grazes the rim: what lies behind shows through a ragged edge
            v = view / np.maximum(np.linalg.norm(view, axis=1, keepdims=True), f32(1e-6))
            graze = np.abs((v * n0).sum(1))
            gap = tone < f32(0.7) * (f32(1.0) - graze / f32(0.5))
            if mass is not None:  # and whole masses: notches a metre deep in the outline
                gap |= (tone_m < f32(0.5) * (f32(1.0) - graze / f32(0.6))) & (crev_m < f32(0.35))
        return f, nl, gap

    def _cloth(self, pid: np.ndarray, Pw: np.ndarray, a: np.ndarray) -> None:
        """``Look.cloth_texture`` (tried as 2.12, off): clothes of pedestrians and riders (in place on
        albedo ``a``). Each garment primitive gets one pattern from a hash of its index (no random stream):
        plain, horizontal stripes, checks, a blotchy print or an open jacket over a lighter shirt; all
        get vertical creases and a darker hem. Coordinates are the hit's height and its horizontal offset
        from the primitive's axis, so a pattern wraps the body and stays put as the camera moves."""
        w = self.world
        cls = np.take(w.cls, pid)
        m = np.flatnonzero((cls == PERSON) | (cls == RIDER))
        if not len(m):
            return
        f32 = np.float32
        g = pid[m]
        r = Pw[m] - np.take(w.center32, g, axis=0)
        half = np.take(w.half32, g, axis=0)
        y = r[:, 1]  # height from the garment's centre
        h = r[:, 0] * f32(0.7071) + r[:, 2] * f32(0.7071)  # across the body
        gi = g.astype(np.int32)
        kind, k1, k2 = _hash2(gi, gi * 0 + 1, 31), _hash2(gi, gi * 0 + 2, 32), _hash2(gi, gi * 0 + 3, 33)
        tx = w.noise_tex
        crease = 1 + f32(0.35) * (_tex(tx[1], y * 6 + gi * 37, h * 40) - 0.5)  # folds run down the cloth
        hem = np.where(y < -half[:, 1] * f32(0.85), f32(0.75), f32(1.0))
        v = crease * hem
        other = np.where(k2[:, None] < 0.5, f32(0.12), f32(0.85)) + f32(0.1) * k1[:, None]  # dark or light
        mix = np.zeros(len(m), np.float32)
        period = f32(0.05) + f32(0.12) * k1  # metres
        stripes = (kind >= 0.35) & (kind < 0.55)
        mix[stripes] = (np.mod(y[stripes], period[stripes]) < period[stripes] * 0.45) * f32(0.8)
        checks = (kind >= 0.55) & (kind < 0.68)
        if checks.any():
            c_y = np.mod(y[checks], period[checks] * 2) < period[checks]
            c_h = np.mod(h[checks], period[checks] * 2) < period[checks]
            mix[checks] = (c_y ^ c_h) * f32(0.6)
        prints = (kind >= 0.68) & (kind < 0.82)
        mix[prints] = (_tex(tx[2], y[prints] * 25 + gi[prints] * 11, h[prints] * 25) > 0.55) * f32(0.9)
        jacket = kind >= 0.82  # an open front: a lighter shirt between the lapels on one side
        mix[jacket] = np.abs(h[jacket] - 0.04 * (k1[jacket] - 0.5)) < 0.045
        a[m] = (a[m] * (1 - mix[:, None]) + other * mix[:, None]) * v[:, None]

    def _box_textures(self, pb, groups, ab, lx, ly, lz, hb, fx_, fy_, fz_, fu, fv, yb) -> None:
        """Procedural decoration of box faces; ``groups`` maps texture id -> slice, ``ab`` is written."""
        w = self.world
        side = ~fy_
        # building facades
        m = groups.get(_T_FACADE)
        if m is not None and w.look is not None:
            self._facade_full(pb[m], fu[m], fv[m], side[m], fy_[m], ab[m])
        elif m is not None:
            pr = np.take(w.param, pb[m], axis=0)
            u, v = fu[m], fv[m]
            floor_h, spacing, frac, style = pr[:, 0], pr[:, 1], pr[:, 2], pr[:, 3]
            col_i, row_i = _floor_i(u / spacing), _floor_i(v / floor_h)
            cu, cv = np.mod(u, spacing) / spacing, np.mod(v, floor_h) / floor_h
            gf = v < floor_h * 1.2
            win = (np.abs(cu - 0.5) < frac / 2) & (cv > 0.3) & (cv < 0.85) & ~gf
            win |= gf & (cu > 0.08) & (cu < 0.92) & (v > 0.4) & (v < floor_h * 1.05) & (style > 0.4)  # shops
            win |= gf & (np.abs(cu - 0.5) < 0.2) & (v < 2.2) & (style <= 0.4)  # doors
            win &= side[m]
            wv = _hash2(col_i + pb[m] * 131, row_i, 8)
            grime = 0.88 + 0.12 * _hash2(_floor_i(u * 2), _floor_i(v * 2), 9)
            grime *= np.where((cv < 0.05) & ~gf, np.float32(0.8), np.float32(1.0))  # ledges
            a = ab[m]
            a *= grime[:, None]
            wi = np.flatnonzero(win)
            wvi = wv[wi]
            glass = np.stack([0.12 + 0.25 * wvi, 0.15 + 0.25 * wvi, 0.2 + 0.28 * wvi], 1)
            glass[wvi > 0.93] = (0.9, 0.8, 0.55)  # a few lit windows
            a[wi] = glass
            a[fy_[m]] = (0.3, 0.29, 0.28)  # roofs
        # car bodies, buses, truck cabs: wheels, lights, bumpers, windows
        for tid in (_T_CARBODY, _T_BUS, _T_TRUCKCAB):
            m = groups.get(tid)
            if m is None:
                continue
            a = ab[m]
            zz, y = lz[m], fv[m]
            hz = hb[m, 2]
            is_car = tid == _T_CARBODY
            if tid == _T_TRUCKCAB:
                wheel_c = np.zeros_like(hz)
            else:
                wheel_c = hz - np.minimum(0.85, np.take(w.param, pb[m], axis=0)[:, 0] * 0.18)
            dw = np.minimum(np.abs(zz - wheel_c), np.abs(zz + wheel_c))
            rw = np.float32(0.33 if is_car else 0.5)
            rad = np.hypot(dw, y - rw)
            tyre = fx_[m] & (rad < rw)
            shade = np.where((yb[m] < 0.18) & ~tyre, np.float32(0.35), np.float32(1.0))
            if is_car:
                shade *= np.where(fz_[m] & (yb[m] < 0.35) & (np.abs(lx[m]) < hb[m, 0] * 0.5), np.float32(0.3), 1)
            a *= shade[:, None]
            a[tyre] = 0.04
            a[tyre & (rad < rw * 0.5)] = 0.45
            if is_car:
                lamp = (yb[m] > hb[m, 1] * 2 - 0.45) & (yb[m] < hb[m, 1] * 2 - 0.2)
                lamp &= fz_[m] & (np.abs(np.abs(lx[m]) - hb[m, 0] * 0.75) < hb[m, 0] * 0.18)
                a[lamp & (zz > 0)] = 0.95
                a[lamp & (zz < 0)] = (0.7, 0.05, 0.05)
            else:
                band = fz_[m] & (zz > 0) & (y > 1.3) & (y < 2.9)
                if tid == _T_BUS:
                    band |= side[m] & (y > 1.25) & (y < 2.6) & (np.mod(zz, 1.4) > 0.12)
                else:
                    band |= fx_[m] & (y > 1.6) & (y < 2.6) & (zz > 0)
                bi = np.flatnonzero(band)
                g = 0.12 + 0.1 * np.clip((y[bi] - 1.2) / 1.6, 0, 1)
                a[bi] = np.stack([g, g * 1.1, g * 1.3], 1)
        m = groups.get(_T_CARGO)
        if m is not None:
            self._cargo(pb[m], ab[m], lx[m], hb[m], fx_[m], fz_[m], fu[m], yb[m])
        m = groups.get(_T_CHASSIS)
        if m is not None:
            self._chassis(pb[m], ab[m], lx[m], lz[m], hb[m], fx_[m], fz_[m] & (lz[m] < 0), yb[m])
        # car cabin: glass on the sides with a body-coloured roof and pillars
        m = groups.get(_T_GLASS)
        if m is not None:
            rel_y = yb[m] / (hb[m, 1] * 2)
            pillar = (fx_[m] & (np.abs(np.abs(lz[m]) - hb[m, 2]) < 0.12)) | (
                fz_[m] & (np.abs(np.abs(lx[m]) - hb[m, 0]) < 0.1)
            )
            gi = np.flatnonzero(side[m] & (rel_y > 0.08) & (rel_y < 0.88) & ~pillar)
            g = 0.08 + 0.14 * rel_y[gi]
            glass = np.stack([g, g * 1.1, g * 1.25], 1)
            if w.look is not None and w.look.glass_reflect > 0:
                # 2.7: real windscreens and rear windows mirror the sky, with the dark shapes of the trees
                # and facades around cut into it (the network called a real lead car's rear window
                # vegetation or building and put it 3x too far); more sky towards the top
                ry = rel_y[gi]
                pid = pb[m][gi].astype(np.float32)
                shapes = _tex(w.noise_tex[2], fu[m][gi] * 30 + pid * 7.3, yb[m][gi] * 15 + pid * 3.1)
                sky = np.asarray(w.config.sky_horizon, np.float32)
                refl = np.float32(w.look.glass_reflect) * (0.3 + 0.7 * ry)
                dark = shapes > 0.45 + 0.25 * ry  # silhouettes rise from the bottom of the reflection
                mirror = sky * np.where(dark, np.float32(0.22), np.float32(1.05))[:, None]
                glass = glass * (1 - refl)[:, None] + mirror * refl[:, None]
            ab[m][gi] = glass
        # traffic lights: three lamps on the faces along z, one lit
        m = groups.get(_T_TLIGHT)
        if m is not None:
            state = np.take(w.param, pb[m], axis=0)[:, 0].astype(np.int64)
            a = ab[m]
            lit_cols = np.array([(1.0, 0.1, 0.05), (1.0, 0.65, 0.05), (0.1, 1.0, 0.45)], np.float32)
            for k, yc in enumerate((0.3, 0.0, -0.3)):
                on = fz_[m] & (np.hypot(lx[m], ly[m] - yc) < 0.1)
                a[on & (state == k)] = np.minimum(lit_cols[k] * 1.3, 1.0)
                a[on & (state != k)] = lit_cols[k] * 0.15
        # traffic signs: front face (local -z, towards the approaching camera) painted
        m = groups.get(_T_SIGN)
        if m is not None:
            style = np.take(w.param, pb[m], axis=0)[:, 0].astype(np.int64)
            x_, y_ = lx[m] / hb[m, 0], ly[m] / hb[m, 1]
            rr = np.hypot(x_, y_)
            front = fz_[m] & (lz[m] < 0)
            white = np.array([0.92, 0.92, 0.92], np.float32)
            red = np.array([0.8, 0.08, 0.08], np.float32)
            blue = np.array([0.1, 0.25, 0.7], np.float32)
            yellow = np.array([0.95, 0.75, 0.1], np.float32)
            circ = np.where(
                (style == 0)[:, None],
                np.where((rr > 0.7)[:, None], red, white),
                np.where((rr > 0.8)[:, None], white, blue),
            )
            diamond = np.where((np.abs(x_) + np.abs(y_) < 0.8)[:, None], yellow, white)
            rect = np.where(((np.abs(x_) > 0.9) | (np.abs(y_) > 0.85))[:, None], white, blue * 0.8)
            face = np.where((style <= 1)[:, None], circ, np.where((style == 2)[:, None], diamond, rect))
            face = np.where(((style <= 1) & (rr > 1.0))[:, None], np.float32(0.5), face)
            if (style == 4).any():  # boards (2.4): white border, lines of lettering, in the board's colour
                hx, hy = hb[m, 0], hb[m, 1]
                xm, ym = (x_ + 1) * hx, (1 - y_) * hy  # metres from the left / top edge
                border = (xm < 0.05) | (xm > 2 * hx - 0.05) | (ym < 0.05) | (ym > 2 * hy - 0.05)
                line = np.mod(ym - 0.1, np.float32(0.22)) < 0.1
                seed = _floor_i(np.take(w.param, pb[m], axis=0)[:, 1] * 1000)
                glyph = _hash2(_floor_i(xm / 0.07) + seed, _floor_i((ym - 0.1) / 0.22), 26) < 0.6
                text = line & glyph & (xm > 0.15) & (xm < 2 * hx - 0.15) & (ym > 0.1) & (ym < 2 * hy - 0.12)
                base = ab[m]
                light = base.mean(axis=1, keepdims=True) > 0.6
                ink = np.where(light, np.float32(0.08), np.float32(0.92))
                board = np.where(border[:, None], white, np.where(text[:, None], ink, base))
                face = np.where((style == 4)[:, None], board, face)
            shaped = style >= 5
            if shaped.any():  # 2.6: triangles (5 point up, 6 point down) and discs (7, 8) built of slabs
                pr = np.take(w.param, pb[m], axis=0)
                s_ = np.maximum(pr[:, 2], np.float32(1e-3))
                X, Y = lx[m] / s_, (ly[m] + pr[:, 1]) / s_  # sign units: the whole sign spans [-1, 1]
                Yt = np.where(style == 6, -Y, Y)
                # inward distance to the triangle's nearest edge (base at -1, apex at +1, half base 1.15)
                d_side = (1.15 * (1 - Yt) / 2 - np.abs(X)) * np.float32(2 / math.hypot(2.0, 1.15))
                d_tri = np.minimum(Yt + 1, d_side)
                tri = np.where((d_tri < 0.26)[:, None], red, white)
                picto = (style == 5) & (d_tri > 0.42) & (np.abs(X) < 0.22) & (Yt > -0.5) & (Yt < 0.3)
                tri = np.where(picto[:, None], np.float32(0.08), tri)
                rr2 = np.hypot(X, Y)
                digits = (pr[:, 3] < 0.6) & (np.abs(X) < 0.42) & (np.abs(Y) < 0.32)
                digits &= np.mod(np.floor((X + 1) * 6), 2) == 0  # two dark numerals of a speed limit
                ring = np.where((rr2 > 0.72)[:, None], red, np.where(digits[:, None], np.float32(0.08), white))
                arrow = ((np.abs(X) < 0.13) & (Y > -0.6) & (Y < 0.2)) | ((Y >= 0.2) & (np.abs(X) < 0.9 * (0.65 - Y)))
                blue_disc = np.where((arrow & (rr2 < 0.9))[:, None], white, blue)
                disc = np.where((style == 7)[:, None], ring, blue_disc)
                face = np.where(shaped[:, None], np.where((style <= 6)[:, None], tri, disc), face)
            ab[m] = np.where(front[:, None], face, np.float32(0.55))
        # fences: vertical slats and rails
        m = groups.get(_T_FENCE)
        if m is not None:
            f = np.take(w.param, pb[m], axis=0)[:, 0]
            slat = np.mod(fu[m] * f, 1.0) < 0.45
            rail = np.abs(np.mod(yb[m], 0.9) - 0.45) < 0.05
            ab[m] *= np.where(slat | rail, np.float32(1.0), np.float32(0.45))[:, None]
        for tid, sc, amp in ((_T_CONCRETE, 2.0, 0.2), (_T_FOLIAGE, 5.0, 0.6)):
            m = groups.get(tid)
            if m is not None:
                n = _hash2(_floor_i(fu[m] * sc), _floor_i(fv[m] * sc), 10)
                ab[m] *= (1 - amp / 2 + amp * n)[:, None]

    def _cargo(self, pid, a, lx, hb, side, rear, u, yb) -> None:
        """Truck cargo box (generator 2.2, :meth:`World._cargo_look`): ribs or curtain folds and straps,
        a band of printed lettering (glyphs of a 3x5 grid) or a large graphic on the long sides, rear
        doors. ``u`` runs along the side (metres), ``yb`` is the height above the box bottom; ``a``
        (albedo view) is written."""
        f32 = np.float32
        pr = np.take(self.world.param, pid, axis=0)
        style, accent, lo, hi, seed, period = pr[:, 0], pr[:, 1:4], pr[:, 4], pr[:, 5], pr[:, 6], pr[:, 7]
        height, length = hb[:, 1] * 2, hb[:, 2] * 2
        rel = yb / height
        shade = np.ones(len(pid), f32)
        shade *= np.where((rel < 0.03) | (rel > 0.97), f32(0.75), f32(1.0))  # top and bottom rails
        ribs = (style == 0) | (style == 3)
        shade *= np.where(ribs & side & (np.mod(u, period) < 0.05), f32(0.72), f32(1.0))
        curtain = style == 2
        fold = 0.88 + 0.12 * np.sin(u * f32(2 * np.pi) / np.maximum(period * 0.6, 0.1))
        shade *= np.where(curtain & side, fold.astype(f32), f32(1.0))
        shade *= np.where(curtain & side & (np.mod(u, period * 2.5) < 0.06), f32(0.35), f32(1.0))  # straps
        # rear doors: centre seam, lock bars
        seam = rear & ((np.abs(lx) < 0.03) | (np.abs(np.abs(lx) - hb[:, 0] * 0.5) < 0.025))
        shade *= np.where(seam, f32(0.4), f32(1.0))
        a *= shade[:, None]
        # printed lettering (styles 1 and 2): glyph cells along the band, words separated by spaces
        band_h = (hi - lo) * height
        text = ((style == 1) | (style == 2)) & side & (rel > lo) & (rel < hi) & (u > 0.4) & (u < length - 0.4)
        ti = np.flatnonzero(text)
        if len(ti):
            cw = band_h[ti] * 0.62
            gu = (u[ti] - 0.4) / cw
            gi = _floor_i(gu)
            sd = seed[ti].astype(np.int32)
            space = _hash2(gi, sd, 21) < 0.15
            cu, cv = np.mod(gu, 1.0), (rel[ti] - lo[ti]) / (hi[ti] - lo[ti])
            inner = (cu > 0.12) & (cu < 0.88)
            sub = _floor_i((cu - 0.12) / 0.76 * 3) * 5 + _floor_i(cv * 5)
            on = inner & ~space & (_hash2(gi * 16 + sub, sd, 22) < 0.55)
            a[ti[on]] = accent[ti[on]]
        # a large graphic (style 3): a diagonal field of the accent colour over part of the side
        gr = (style == 3) & side
        edge = 0.15 + 0.7 * np.abs(np.mod(u / np.maximum(length, 1.0) + seed * 1e-6, 1.0) - 0.5)
        gi2 = np.flatnonzero(gr & (rel > edge))
        a[gi2] = accent[gi2] * f32(0.9)

    def _chassis(self, pid, a, lx, lz, hb, side, rear, y) -> None:
        """Truck underbody (generator 2.10, :meth:`World._underbody_look`), in the shadow of the cargo box:
        tyres with rims on the sides (rear axles near the back, one near the front), side guard rails,
        and from behind dual tyres at both sides, mud flaps, an underride bar, a number plate and red /
        amber lamp clusters. ``y`` is the height above the road (the box stands on it); ``a`` is written."""
        f32 = np.float32
        pr = np.take(self.world.param, pid, axis=0)
        floor, axles, bar_style, bar_lo = pr[:, 0], pr[:, 1], pr[:, 2], pr[:, 3]
        flaps, guard, plate_yellow, lamps_on_bar = pr[:, 4] > 0.5, pr[:, 5] > 0.5, pr[:, 6] > 0.5, pr[:, 7] > 0.5
        hw, hl = hb[:, 0], hb[:, 2]
        # frame rail under the box floor, a little lighter than the shadow below it
        a[y > floor - 0.14] *= f32(2.6)
        # side view: wheels of radius 0.5 on the rear axles (1.3 m apart from 0.9 m off the back) and one front axle
        rw = f32(0.5)
        d = np.abs(lz + hl - 0.9)
        for k in (1, 2):
            d = np.where(axles > k, np.minimum(d, np.abs(lz + hl - 0.9 - 1.3 * k)), d)
        d = np.minimum(d, np.abs(lz - hl + 0.7))
        rad = np.hypot(d, y - rw)
        tyre = side & (rad < rw)
        rails = side & guard & ~(rad < rw + 0.08) & (y > 0.25) & (y < 0.75)
        rails &= np.abs(np.mod(y, f32(0.3)) - 0.15) < 0.035
        a[tyre] = f32(0.045)
        a[tyre & (rad < 0.3)] = f32(0.42)  # rim
        a[tyre & (rad < 0.09)] = f32(0.22)  # hub
        a[rails] = f32(0.4)
        # rear view: dual tyres at both sides, mud flaps over their lower part
        ax = np.abs(lx)
        outer = rear & (ax > hw - 0.62) & (ax < hw - 0.02)
        a[outer & (y < 1.0)] = f32(0.05)
        a[outer & (y < 1.0) & (np.mod(y, f32(0.09)) < 0.03)] = f32(0.075)  # tread
        a[outer & flaps & (y > 0.12) & (y < 0.75)] = f32(0.025)
        # underride bar
        bar = rear & (y > bar_lo) & (y < bar_lo + 0.12) & (ax < hw - 0.08)
        stripe = np.mod((lx + y) / f32(0.25), 2.0) < 1.0
        colours = np.array([(0.5, 0.5, 0.52), (0.75, 0.06, 0.05), (0.1, 0.1, 0.1), (0.85, 0.65, 0.05)], f32)
        bar_col = colours[bar_style.astype(np.int64)]
        bar_col = np.where(((bar_style == 1) & stripe)[:, None], f32(0.85), bar_col)
        a[bar] = bar_col[bar]
        # lamp clusters (red, amber inside) at both ends, on the bar or under the box floor
        lamp_lo = np.where(lamps_on_bar, bar_lo + 0.12, floor - 0.3)
        lamp = rear & (y > lamp_lo) & (y < lamp_lo + 0.14) & (ax > hw - 0.5) & (ax < hw - 0.08)
        amber = lamp & (ax < hw - 0.38)
        a[lamp] = (0.8, 0.07, 0.05)
        a[amber] = (0.95, 0.55, 0.08)
        # number plate in the middle, above the bar, with dark glyphs
        plate_lo = bar_lo + 0.16
        plate = rear & (ax < 0.26) & (y > plate_lo) & (y < plate_lo + 0.11)
        glyph = plate & (ax < 0.22) & (_hash2(_floor_i((lx + 0.26) / 0.05), pid.astype(np.int32), 23) < 0.6)
        glyph &= np.abs(y - plate_lo - 0.055) < 0.035
        plate_col = np.where(plate_yellow[:, None], f32((0.9, 0.75, 0.1)), f32((0.88, 0.88, 0.86)))
        a[plate] = plate_col[plate]
        a[glyph] = f32(0.06)

    def _facade_full(self, pid, u, v, side, top, a) -> None:
        """Randomised facade (see :meth:`World._facade_look`): material texture, window band with
        frames, sky-reflecting glass, shop fronts with sign bands. ``a`` (albedo view) is written."""
        w = self.world
        f32 = np.float32
        pr = np.take(w.param, pid, axis=0)
        floor_h, spacing, frac, style = pr[:, 0], pr[:, 1], pr[:, 2], pr[:, 3]
        mat, win_lo, frame = pr[:, 4], pr[:, 5], pr[:, 6]
        col_i, row_i = _floor_i(u / spacing), _floor_i(v / floor_h)
        cu, cv = np.mod(u, spacing) / spacing, np.mod(v, floor_h) / floor_h
        gf = v < floor_h * 1.2
        shop = gf & (style > 0.4)
        dx = np.abs(cu - 0.5)
        win_hi = np.minimum(win_lo + 0.5, 0.93) + (mat == 3) * f32(0.05)
        inband = (cv > win_lo) & (cv < win_hi)
        win = (dx < frac / 2) & inband & ~gf
        frm = ~win & ~gf & (dx < frac / 2 + 0.04) & (cv > win_lo - 0.03) & (cv < win_hi + 0.03)
        shopwin = shop & (cu > 0.06) & (cu < 0.94) & (v > 0.4) & (v < floor_h * 0.85)
        sign = shop & (v >= floor_h * 0.9) & (v < floor_h * 1.15)
        door = gf & ~shop & (dx < 0.2) & (v < 2.2)
        # material texture: brick courses, panel joints, plaster grime
        brick = mat == 1
        row_b = _floor_i(v * 13.3)
        tex = np.where(brick, 0.85 + 0.3 * _hash2(_floor_i(u * 4.5 + 0.5 * (row_b & 1)), row_b, 14), f32(1.0))
        tex *= 0.9 + 0.2 * _hash2(_floor_i(u * 2), _floor_i(v * 2), 9)
        tex *= np.where((mat == 2) & ((cv < 0.03) | (np.mod(u, 3.0) < 0.05)), f32(0.8), f32(1.0))
        tex *= np.where((cv < 0.04) & ~gf, f32(0.85), f32(1.0))  # ledges
        a *= tex[:, None]
        fi = np.flatnonzero(frm & side)
        a[fi] = frame[fi, None] * np.array([1.0, 0.98, 0.95], np.float32)
        # glass reflects the sky, darker inside; some blinds, a few lit windows
        gi = np.flatnonzero((win | shopwin | door) & side)
        wv = _hash2(col_i[gi] + pid[gi] * 131, row_i[gi], 8)
        refl = (0.15 + 0.45 * wv)[:, None] * np.where(door[gi], f32(0.3), f32(1.0))[:, None]
        refl *= np.where(mat[gi] == 6, f32(0.35), f32(1.0))[:, None]  # balcony recesses lie in shade
        tint = 0.75 + 0.5 * _hash2(pid[gi], pid[gi] * 3 + 1, 15)[:, None] * np.array([[0.2, 0.5, 1.0]], np.float32)
        sky = np.asarray(w.config.sky_horizon, np.float32) * 0.8
        glass = np.float32(0.08) * tint * (1 - refl) + sky * refl
        glass[wv > 0.85] = np.array([0.78, 0.74, 0.66], np.float32) * (wv[wv > 0.85, None] - 0.1)  # blinds
        glass[wv > 0.97] = (0.9, 0.8, 0.55)  # lit
        a[gi] = glass
        si_ = np.flatnonzero(sign & side & ~shopwin)
        hue = pr[si_, 7:8] + np.array([[0.0, 1 / 3, 2 / 3]], np.float32)
        a[si_] = 0.5 + 0.4 * np.cos(2 * np.pi * hue)
        a[top] = (0.3, 0.29, 0.28)  # roofs

    def _sky(self, dx, dy, dz) -> np.ndarray:
        c, L = self.world.config, self.world.sun
        n = np.sqrt(dx * dx + dy * dy + dz * dz)
        e = np.clip(dy / n, 0, 1)
        zen, hor = np.asarray(c.sky_zenith, np.float32), np.asarray(c.sky_horizon, np.float32)
        k = (np.clip(e * 2.2, 0, 1) ** 0.7)[:, None]
        col = hor * (1 - k) + zen * k
        cosg = np.clip((dx * L[0] + dy * L[1] + dz * L[2]) / n, 0, 1)
        glow = (cosg**32 * 0.35 + (cosg > 0.9995) * 0.6)[:, None].astype(np.float32)
        look = c.look
        if look is not None and look.cloud_cover > 0:
            # a cloud layer: noise on the plane the ray meets, so clouds shrink towards the horizon
            k = np.float32(160.0) / (dy + np.float32(0.08) * n)
            cn = _tex(self.world.noise_tex[3], dz * k, dx * k)
            cov = np.clip((cn - np.float32(1 - look.cloud_cover)) * np.float32(5.0), 0, 1)[:, None]
            cloud = np.asarray(look.cloud_color, np.float32) * (0.85 + 0.15 * cn)[:, None]
            return (col + glow) * (1 - cov) + cloud * cov
        return col + glow
