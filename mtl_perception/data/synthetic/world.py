"""The street: primitives (boxes, cylinders, ellipsoids) generated from a :class:`SceneConfig`, the
road centreline and the camera path.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import cv2
import numpy as np

from mtl_perception.data.synthetic.camera import camera_to_world
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
    _T_PLAIN,
    _T_SIGN,
    _T_TLIGHT,
    _T_TRUCKCAB,
    BICYCLE,
    BUILDING,
    BUS,
    CAR,
    CARRIAGEWAY_CLEARANCE,
    FENCE,
    PERSON,
    POLE,
    RIDER,
    TLIGHT,
    TRUCK,
    TSIGN,
    VEGETATION,
    WALL,
)
from mtl_perception.data.synthetic.scene import SceneConfig, _grey
from mtl_perception.data.synthetic.textures import _CAR_COLORS, _FACADE_COLORS, _fractal_noise

#: sign boards (2.4): direction green / blue, tourist brown, white, yellow
_BOARD_COLORS = np.array([(0.1, 0.4, 0.2), (0.1, 0.25, 0.6), (0.4, 0.22, 0.12), (0.85, 0.85, 0.82), (0.9, 0.7, 0.1)])


@dataclass
class _Prims:
    kind: list = field(default_factory=list)
    cls: list = field(default_factory=list)
    tex: list = field(default_factory=list)
    color: list = field(default_factory=list)
    center: list = field(default_factory=list)
    half: list = field(default_factory=list)
    yaw: list = field(default_factory=list)
    param: list = field(default_factory=list)

    def add(self, kind, cls, tex, color, center, half, yaw=0.0, param=(0.0, 0.0, 0.0, 0.0)):
        self.kind.append(kind)
        self.cls.append(cls)
        self.tex.append(tex)
        self.color.append(tuple(float(c) for c in color))
        self.center.append(tuple(float(c) for c in center))
        self.half.append(tuple(float(c) for c in half))
        self.yaw.append(float(yaw))
        self.param.append(tuple(float(p) for p in param) + (0.0,) * (8 - len(param)))


def _person_colours(r: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(legs, shirt, skin, hair) of a pedestrian or a rider, drawn from ``r`` in that order."""
    legs = np.array([0.15, 0.15, 0.2]) * r.uniform(0.6, 2.5)
    shirt = r.uniform(0.08, 0.85, 3) * r.uniform(0.5, 1.0)
    skin = np.array([0.85, 0.65, 0.5]) * r.uniform(0.45, 1.05)
    hair = np.array([0.15, 0.1, 0.06]) * r.uniform(0.5, 3.5)
    return legs, shirt, skin, hair


def _along(x: float, z: float, yaw: float, f: float) -> tuple[float, float]:
    """The ground point ``f`` metres ahead of (x, z) along the heading ``yaw`` (forward = (sin, cos))."""
    return x + f * math.sin(yaw), z + f * math.cos(yaw)


class World:
    """All static geometry of one procedural street, plus the road centreline and camera path.

    The world spans ``z`` in ``[-30, length]`` so a camera travelling ``length - MAX_DEPTH``
    metres always has scenery in front of it.
    """

    def __init__(self, config: SceneConfig, length: float = 300.0, travel: float = 0.0) -> None:
        """``travel``: how far (metres of path) the camera will drive; traffic ahead in the ego lane
        (``Look.lead_gap``) stands that far plus the gap from the start, so no frame drives into it."""
        self.config = config
        self.travel = float(travel)
        self.length = float(length)
        self.z_min = -40.0
        self.z_max = self.length
        c = config
        el, az = c.sun_elevation, c.sun_azimuth
        self.sun = np.array([math.cos(el) * math.sin(az), math.sin(el), math.cos(el) * math.cos(az)])
        self._prims = _Prims()
        # (z centre, width, side, building line, setback, has a front wall) of every building, for the
        # front-garden pass (2.6), which places its hedges and fences after every other object
        self._frontages: list[tuple[float, float, float, float, float, bool]] = []
        # (x, z, yaw, height, width, length) of every car's roof, for the roof-load pass (2.13)
        self._car_roofs: list[tuple[float, float, float, float, float, float]] = []
        self._rng = np.random.default_rng([c.seed, 0xB0B])
        # appearance draws of the full randomisation come from their own stream, so the layout
        # stream above (and with it every placement) is identical with and without it
        self.look = c.look
        self._rng_look = np.random.default_rng([c.seed, 0xFACADE])
        self._rng_cargo = np.random.default_rng([c.seed, 0xCA260])  # truck liveries (2.2), own stream
        self._rng_people = np.random.default_rng([c.seed, 0x9E0913])  # pedestrians' shapes (2.9), own stream
        self._rng_chassis = np.random.default_rng([c.seed, 0xC4A551])  # truck underbodies (2.10), own stream
        if self.look is not None:
            tr = np.random.default_rng([c.seed, 0x7E47])
            # coarse blotches, mid mottling/paint wear, crack contours, clouds/puddles
            self.noise_tex = [_fractal_noise(tr, beta) for beta in (3.0, 2.0, 3.5, 2.6)]
        self._generate()
        self._camera_path()
        self._add_traffic_ahead()
        self._add_sign_boards()
        self._add_front_gardens()
        self._add_shaped_signs()
        self._add_cyclists()
        self._add_frontage_clutter()
        self._add_roof_loads()
        self._add_near_foliage()
        self._finalize()

    # ---- road geometry ------------------------------------------------------------------------
    def centre_x(self, z):
        """Lateral position of the road centreline at ``z`` (sinusoid for curved roads)."""
        c = self.config
        if c.straight:
            return np.zeros_like(z) if isinstance(z, np.ndarray) else 0.0
        return c.curve_amplitude * np.sin(2 * np.pi * z / c.curve_period + c.curve_phase)

    def heading(self, z):
        """Road yaw at ``z`` (angle of the forward direction towards +x)."""
        c = self.config
        if c.straight:
            return np.zeros_like(z) if isinstance(z, np.ndarray) else 0.0
        k = 2 * np.pi / c.curve_period
        return np.arctan(c.curve_amplitude * k * np.cos(k * z + c.curve_phase))

    def road_point(self, z: float, q: float) -> tuple[float, float, float]:
        """World (x, z, yaw) of the point ``q`` metres left of the centreline at ``z``."""
        psi = float(self.heading(z))
        return float(self.centre_x(z)) + q * math.cos(psi), z - q * math.sin(psi), psi

    def nearest_intersection(self, z):
        """Signed distance to the nearest cross street centre (inf on curved roads)."""
        c = self.config
        if not c.straight:
            return np.full_like(z, np.inf) if isinstance(z, np.ndarray) else math.inf
        k = np.round((z - c.intersection_offset) / c.intersection_spacing)
        return z - (c.intersection_offset + k * c.intersection_spacing)

    # ---- generation ---------------------------------------------------------------------------
    def _free_of_intersection(self, z: float, margin: float) -> bool:
        c = self.config
        return abs(float(self.nearest_intersection(z))) > c.cross_width / 2 + c.sidewalk_width + margin

    def _generate(self) -> None:
        c, r, P = self.config, self._rng, self._prims
        R = c.road_half_width
        sw, tw = c.sidewalk_width, c.terrain_width
        front = R + sw + tw
        ego_q = -(c.parking * 0.0 + (min(c.ego_lane, c.lanes_per_side - 1) + 0.5) * c.lane_width)
        self.ego_q = ego_q
        span = self.z_max - self.z_min

        def place_box(z, q, half, y0, cls, tex, color, param=(), yaw_off=0.0):
            x, zz, psi = self.road_point(z, q)
            P.add(_BOX, cls, tex, color, (x, y0 + half[1], zz), half, psi + yaw_off, param)

        for side in (-1.0, 1.0):
            # ---- buildings, with walls / fences / hedges in the gaps --------------------------
            z = self.z_min + r.uniform(-8, 0)
            while z < self.z_max:
                w = r.uniform(8.0, 26.0)
                gap = r.uniform(0.0, 2.0) if r.random() < 0.7 else r.uniform(3.0, 12.0)
                zc = z + w / 2
                if self._free_of_intersection(zc, w / 2):
                    if r.random() < c.building_gap_prob:
                        kind = r.integers(0, 4)
                        qf = side * (front + 0.3)
                        if kind == 0:
                            h = r.uniform(0.6, 2.2)
                            col = np.array([0.62, 0.6, 0.56]) * r.uniform(0.6, 1.2)
                            place_box(zc, qf, (0.15, h / 2, w / 2), 0.0, WALL, _T_CONCRETE, col)
                        elif kind == 1:
                            h = r.uniform(1.0, 2.0)
                            col = [(0.35, 0.3, 0.25), (0.45, 0.47, 0.45), (0.5, 0.38, 0.25)][r.integers(0, 3)]
                            place_box(zc, qf, (0.05, h / 2, w / 2), 0.0, FENCE, _T_FENCE, col, (r.uniform(4, 9),))
                        elif kind == 2:
                            h = r.uniform(0.8, 1.8)
                            col = np.array([0.2, 0.32, 0.12]) * r.uniform(0.7, 1.2)
                            if self.look is not None:
                                col = self._leaf_color()
                            place_box(zc, qf, (0.5, h / 2, w / 2), 0.0, VEGETATION, _T_FOLIAGE, col)
                    else:
                        setback = r.uniform(0.0, 2.5)
                        depth = r.uniform(10.0, 22.0)
                        h = r.uniform(6.0, 28.0) if r.random() < 0.85 else r.uniform(28, 45)
                        col = _FACADE_COLORS[r.integers(0, len(_FACADE_COLORS))] * r.uniform(0.8, 1.12)
                        q = side * (front + setback + depth / 2)
                        floor_h = r.uniform(2.8, 3.6)
                        param = (floor_h, r.uniform(1.8, 3.2), r.uniform(0.35, 0.7), r.uniform(0, 1))
                        if self.look is not None:
                            col, param = self._facade_look(param)
                        place_box(zc, q, (depth / 2, h / 2, w / 2), 0.0, BUILDING, _T_FACADE, col, param)
                        walled = r.random() < c.front_wall_prob
                        if walled:
                            self._add_wall_or_fence(zc, side * (front + 0.15), w * r.uniform(0.6, 1.0))
                        self._frontages.append((zc, w, side, front, setback, walled))
                z += w + gap
            # ---- trees ------------------------------------------------------------------------
            if c.terrain_width > 0 and c.verge_first:
                tq = R + tw / 2
            elif c.terrain_width > 0:
                tq = R + sw + tw / 2
            else:
                tq = R + 0.8
            z = self.z_min + r.uniform(0, c.tree_spacing)
            while z < self.z_max:
                if self._free_of_intersection(z, 1.0) and r.random() < 0.85:
                    self._add_tree(z, side * (tq + r.uniform(-0.3, 0.3)))
                z += c.tree_spacing * r.uniform(0.7, 1.3)
            # ---- street lights and signs -----------------------------------------------------
            pq = R + 0.5
            z = self.z_min + r.uniform(0, 30)
            while z < self.z_max:
                if self._free_of_intersection(z, 0.5):
                    self._add_streetlight(z, side * pq, side)
                z += r.uniform(20, 40)
            z = self.z_min + r.uniform(0, 40)
            while z < self.z_max:
                if self._free_of_intersection(z, 0.5):
                    self._add_sign(z, side * (pq + 0.2))
                z += r.uniform(20, 60)
            # ---- parked cars ------------------------------------------------------------------
            if c.parking:
                z = self.z_min + r.uniform(0, 8)
                while z < self.z_max:
                    L = r.uniform(3.9, 4.9)
                    if self._free_of_intersection(z, L / 2 + 4) and r.random() < min(0.9, c.car_density / 14):
                        q = side * (R - 1.15 + r.uniform(-0.15, 0.1))
                        if r.random() < c.big_vehicle_prob * 0.3:
                            self._add_truck(z, q, flip=side > 0)
                            L = 8.0
                        else:
                            self._add_car(z, q, L, flip=False, yaw_jit=r.uniform(-0.04, 0.04))
                    z += L + r.uniform(0.8, 6.0)
            # ---- pedestrians -----------------------------------------------------------------
            n = r.poisson(c.person_density * span / 200.0)
            for _ in range(n):
                z = r.uniform(self.z_min, self.z_max)
                lo = R + (tw if c.verge_first else 0.0)
                q = side * (lo + r.uniform(0.4, max(0.5, sw - 0.4)))
                self._add_person(z, q, r.uniform(0, 2 * np.pi))
                if r.random() < 0.3:  # small groups
                    self._add_person(z + r.uniform(0.6, 1.2), q + r.uniform(-0.6, 0.6), r.uniform(0, 2 * np.pi))

        # ---- moving traffic in the non-ego lanes ------------------------------------------------
        lanes = [-(i + 0.5) * c.lane_width for i in range(c.lanes_per_side)]
        lanes += [(i + 0.5) * c.lane_width for i in range(c.lanes_per_side)]
        for q in lanes:
            if abs(q - ego_q) < 0.5:
                continue
            z = self.z_min + r.uniform(0, 20)
            while z < self.z_max:
                if r.random() < c.car_density / 16:
                    oncoming = q > 0
                    if r.random() < c.big_vehicle_prob:
                        if r.random() < 0.5:
                            self._add_bus(z, q, flip=oncoming)
                        else:
                            self._add_truck(z, q, flip=oncoming)
                        z += 12
                    else:
                        self._add_car(z, q + r.uniform(-0.3, 0.3), r.uniform(3.9, 4.9), flip=oncoming)
                z += r.uniform(8, 30)

        # ---- intersections: traffic lights, crossing pedestrians, waiting cars -----------------
        if c.straight:
            k0 = math.ceil((self.z_min - c.intersection_offset) / c.intersection_spacing)
            k1 = math.floor((self.z_max - c.intersection_offset) / c.intersection_spacing)
            for k in range(k0, k1 + 1):
                zi = c.intersection_offset + k * c.intersection_spacing
                zs = zi - c.cross_width / 2 - 0.8
                for side in (-1.0, 1.0):
                    self._add_traffic_light(zs, side * (R + 0.6), overhead=side < 0 and r.random() < 0.6)
                    self._add_traffic_light(zi + c.cross_width / 2 + 0.8, side * (R + 0.6), overhead=False)
                for _ in range(r.poisson(1.5)):
                    q = r.uniform(-R, R)
                    if abs(q - ego_q) > 1.6:
                        self._add_person(zs - r.uniform(1.0, 3.5), q, r.uniform(0, 2 * np.pi))
                for side in (-1.0, 1.0):
                    for j in range(r.integers(0, 3)):
                        x = side * (R + 3 + j * 6 + r.uniform(0, 2))
                        zz = zi + (-1 if side > 0 else 1) * c.cross_width / 4
                        self._add_car(0.0, 0.0, r.uniform(3.9, 4.8), flip=False, at=(x, zz, side * np.pi / 2))

    def _leaf_color(self) -> np.ndarray:
        """A foliage colour from the scene's palette (season), jittered per tree."""
        r, pal = self._rng_look, self.look.leaf_colors
        return np.asarray(pal[int(r.integers(0, len(pal)))]) * r.uniform(0.8, 1.2, 3)

    def _facade_look(self, param: tuple) -> tuple[np.ndarray, tuple]:
        """Randomised facade: material, colour, window band, frame and shop-sign colour.

        ``param`` = (floor height, window spacing, window width fraction, shop style, material,
        window bottom (fraction of the floor), frame brightness, sign hue).
        """
        r = self._rng_look
        u = r.uniform
        floor_h, spacing, frac, style = param
        mat = int(r.choice(7, p=[0.28, 0.18, 0.16, 0.1, 0.09, 0.09, 0.1]))
        if mat == 0:  # painted plaster, any hue, mostly pale
            hue = u(0, 1)
            sat, val = u(0.03, 0.35), u(0.45, 0.92)
            col = val * (1 - sat * (0.5 - 0.5 * np.cos(2 * np.pi * (hue + np.array([0, 1 / 3, 2 / 3])))))
        elif mat == 1:  # brick, red to yellow
            col = np.array([u(0.42, 0.62), u(0.2, 0.36), u(0.14, 0.24)]) * (u(1.2, 1.6) if r.random() < 0.2 else 1)
        elif mat == 2:  # concrete / stone panels
            col = np.array(_grey(r, u(0.35, 0.75))) * np.array([1.0, 0.98, 0.94])
        elif mat == 3:  # glass curtain wall: windows fill most of the facade
            col = np.array(_grey(r, u(0.15, 0.45)))
            spacing, frac = u(1.2, 1.8), u(0.8, 0.92)
        elif mat == 4:  # dark paint, slate, wood
            col = np.array([u(0.1, 0.22), u(0.09, 0.2), u(0.08, 0.18)])
        elif mat == 6:  # 2.3: balcony slabs / ribbon windows: bright parapet bands over dark recesses
            # (real white slab facades were called sky where they met a pale sky)
            col = np.array(_grey(r, u(0.68, 0.95), 0.02))
            spacing, frac = u(1.5, 4.0), u(0.9, 0.98)
        else:  # the classic palette
            col = _FACADE_COLORS[r.integers(0, len(_FACADE_COLORS))] * u(0.8, 1.12)
        win_lo = u(0.05, 0.12) if mat == 3 else u(0.2, 0.4)
        frame = u(0.05, 0.9)
        return np.clip(col, 0.0, 1.0), (floor_h, spacing, frac, style, float(mat), win_lo, frame, u(0, 1))

    def _add_wall_or_fence(self, z: float, q: float, length: float) -> None:
        """Low garden wall or fence along the street (these classes are rare without it)."""
        r, P = self._rng, self._prims
        x, zz, psi = self.road_point(z, q)
        if r.random() < 0.5:
            h = r.uniform(0.5, 1.6)
            col = np.array([0.62, 0.6, 0.56]) * r.uniform(0.55, 1.2)
            P.add(_BOX, WALL, _T_CONCRETE, col, (x, h / 2, zz), (0.12, h / 2, length / 2), psi)
        else:
            h = r.uniform(0.9, 1.8)
            col = [(0.35, 0.3, 0.25), (0.45, 0.47, 0.45), (0.5, 0.38, 0.25), (0.2, 0.22, 0.2)][r.integers(0, 4)]
            P.add(_BOX, FENCE, _T_FENCE, col, (x, h / 2, zz), (0.04, h / 2, length / 2), psi, (r.uniform(4, 9),))

    def _add_tree(self, z: float, q: float) -> None:
        r, P = self._rng, self._prims
        x, zz, psi = self.road_point(z, q)
        # every value drawn in the order of generator 2.13 (the stream of everything after stays the same)
        trunk_h = r.uniform(1.8, 3.5)
        tr = r.uniform(0.1, 0.22)
        bark = np.array([0.3, 0.24, 0.18]) * r.uniform(0.7, 1.2)
        leaf = np.array([r.uniform(0.12, 0.3), r.uniform(0.25, 0.42), r.uniform(0.06, 0.16)])
        crown = (0.0,)
        if self.look is not None:
            leaf = self._leaf_color()
            if self.look.bare_trees > 0 and self._rng_look.random() < self.look.bare_trees:
                # leafless (2.4): the crown's albedo is its branches' (Materials shows the sky between them)
                leaf, crown = np.array(_grey(self._rng_look, self._rng_look.uniform(0.12, 0.3), 0.1)), (1.0,)
        cr = r.uniform(1.4, 3.4)
        cy = trunk_h + cr * r.uniform(0.6, 0.9)
        ry = cr * r.uniform(0.9, 1.4)
        second = None
        if r.random() < 0.5:
            c2 = cr * r.uniform(0.6, 0.85)
            leaf2 = leaf * r.uniform(0.85, 1.15)
            dx, dz = r.uniform(-1, 1), r.uniform(-1, 1)
            second = (c2, leaf2, dx, dz)
        lift = 0.0
        if self.look is not None and self.look.crown_clearance:
            # 2.17: street trees are pruned to clear the carriageway (4.5 m, e.g. Germany's RASt 06 and
            # ZTV-Baumpflege; 14 ft in the US); 2.16 and earlier hung crowns into the lanes down to the
            # ground, and one SYN5000 frame in 200 put the camera inside a crown (AbsRel 4 there)
            crowns = [(q, cr, ry, cy)]
            if second is not None:
                c2, _, dx, dz = second
                crowns.append((q + dx * math.cos(psi) - dz * math.sin(psi), c2, c2, cy + cr * 0.7))
            lift = max(0.0, *(CARRIAGEWAY_CLEARANCE - h for h in map(self._lowest_over_road, crowns)))
        P.add(_CYL, VEGETATION, _T_PLAIN, bark, (x, (trunk_h + lift) / 2, zz), (tr, (trunk_h + lift) / 2, tr))
        P.add(_ELL, VEGETATION, _T_FOLIAGE, leaf, (x, cy + lift, zz), (cr, ry, cr), 0.0, crown)
        if second is not None:
            c2, leaf2, dx, dz = second
            centre = (x + dx, cy + cr * 0.7 + lift, zz + dz)
            P.add(_ELL, VEGETATION, _T_FOLIAGE, leaf2, centre, (c2, c2, c2), 0.0, crown)

    def _lowest_over_road(self, crown: tuple[float, float, float, float]) -> float:
        """Height of a crown's lowest point above the carriageway (``inf`` if it does not reach over it).
        ``crown``: (lateral offset of its centre from the centreline, horizontal and vertical semi-axes,
        centre height). The carriageway is ``|q| < road_half_width``; a crown centred beside it at
        distance ``d`` from its edge is lowest over it at that edge: ``cy - ry sqrt(1 - (d / rx)^2)``."""
        q, rx, ry, cy = crown
        d = abs(q) - self.config.road_half_width
        if d <= 0.0:
            return cy - ry
        if d >= rx:
            return math.inf
        return cy - ry * math.sqrt(1.0 - (d / rx) ** 2)

    def _add_streetlight(self, z: float, q: float, side: float) -> None:
        r, P = self._rng, self._prims
        x, zz, psi = self.road_point(z, q)
        h = r.uniform(6.0, 9.0)
        grey = np.array([0.45, 0.46, 0.47]) * r.uniform(0.7, 1.3)
        P.add(_CYL, POLE, _T_PLAIN, grey, (x, h / 2, zz), (0.08, h / 2, 0.08))
        arm = r.uniform(1.0, 2.5)
        xa, za, _ = self.road_point(z, q - side * arm / 2)
        P.add(_BOX, POLE, _T_PLAIN, grey, (xa, h - 0.05, za), (arm / 2, 0.05, 0.05), psi)
        xl, zl, _ = self.road_point(z, q - side * arm)
        P.add(_BOX, POLE, _T_PLAIN, grey * 0.7, (xl, h - 0.15, zl), (0.3, 0.08, 0.15), psi)

    def _add_sign(self, z: float, q: float) -> None:
        r, P = self._rng, self._prims
        x, zz, psi = self.road_point(z, q)
        h = r.uniform(2.0, 2.8)
        P.add(_CYL, POLE, _T_PLAIN, (0.5, 0.5, 0.52), (x, h / 2, zz), (0.035, h / 2, 0.035))
        s = r.uniform(0.28, 0.4)
        style = float(r.integers(0, 4))
        if style == 3:  # rectangular direction / info sign
            half = (s * 1.3, s * 0.8, 0.02)
        else:
            half = (s, s, 0.02)
        P.add(_BOX, TSIGN, _T_SIGN, (0.75, 0.75, 0.75), (x, h + half[1], zz - 0.06), half, psi, (style,))

    def _add_traffic_light(self, z: float, q: float, overhead: bool) -> None:
        r, P = self._rng, self._prims
        x, zz, psi = self.road_point(z, q)
        h = r.uniform(3.5, 4.5) if not overhead else 6.0
        dark = (0.12, 0.12, 0.13)
        P.add(_CYL, POLE, _T_PLAIN, (0.4, 0.42, 0.4), (x, h / 2, zz), (0.09, h / 2, 0.09))
        state = float(r.integers(0, 3))
        if overhead:
            arm = self.config.road_half_width * r.uniform(0.5, 0.8)
            sgn = -1.0 if q > 0 else 1.0
            xa, za, _ = self.road_point(z, q + sgn * arm / 2)
            P.add(_BOX, POLE, _T_PLAIN, (0.4, 0.42, 0.4), (xa, h - 0.1, za), (arm / 2, 0.07, 0.07), psi)
            xl, zl, _ = self.road_point(z, q + sgn * arm)
            P.add(_BOX, TLIGHT, _T_TLIGHT, dark, (xl, h - 0.7, zl), (0.17, 0.5, 0.12), psi, (state,))
        else:
            P.add(_BOX, TLIGHT, _T_TLIGHT, dark, (x, h - 0.5, zz - 0.2), (0.17, 0.5, 0.12), psi, (state,))

    def _add_person(self, z: float, q: float, facing: float) -> None:
        r, P = self._rng, self._prims
        x, zz, _ = self.road_point(z, q)
        s = r.uniform(0.85, 1.1)
        legs, shirt, skin, hair = _person_colours(r)
        if self.look is not None and self.look.articulated_people:
            self._add_walker(x, zz, facing, s, legs, shirt, skin, hair)
            return
        P.add(_CYL, PERSON, _T_PLAIN, legs, (x, 0.43 * s, zz), (0.15 * s, 0.43 * s, 0.15 * s))
        P.add(_CYL, PERSON, _T_PLAIN, shirt, (x, 1.15 * s, zz), (0.2 * s, 0.3 * s, 0.2 * s))
        P.add(_ELL, PERSON, _T_HEAD, skin, (x, 1.58 * s, zz), (0.1 * s, 0.13 * s, 0.1 * s), 0.0, tuple(hair))

    def _add_walker(self, x, z, facing, s, legs, shirt, skin, hair) -> None:
        """Generator 2.9's pedestrian at (x, z) heading ``facing``: two legs apart across the body and
        in a stride along it (0 = standing), shoes, a torso turned with the heading, two arms swinging
        against the legs, a head; a long coat over the thighs on some, a bag at the hip or on the back on
        others. Boxes turn only about the vertical, so a stride is feet apart, not tilted legs. Shapes
        from ``_rng_people``: the layout stream (and every other object) is 2.8's."""
        r, P = self._rng_people, self._prims
        fwd = np.array([math.sin(facing), math.cos(facing)])
        side = np.array([math.cos(facing), -math.sin(facing)])

        def at(f: float, lat: float) -> tuple[float, float]:
            p = np.array([x, z]) + f * fwd + lat * side
            return float(p[0]), float(p[1])

        stride = r.uniform(0.0, 0.38) * s if r.random() < 0.75 else 0.0
        hip = r.uniform(0.085, 0.11) * s  # half the distance between the legs' centres
        leg_w = r.uniform(0.055, 0.075) * s
        shoe = np.array([0.08, 0.07, 0.07]) * r.uniform(0.5, 3.0)
        for side_sign in (1.0, -1.0):  # the leg on this side steps forward, the other back
            lx, lz = at(side_sign * stride / 2, side_sign * hip)
            P.add(_BOX, PERSON, _T_PLAIN, legs, (lx, 0.46 * s, lz), (leg_w, 0.4 * s, leg_w * 1.15), facing)
            fx, fz = at(side_sign * stride / 2 + 0.04 * s, side_sign * hip)
            P.add(_BOX, PERSON, _T_PLAIN, shoe, (fx, 0.04 * s, fz), (leg_w * 1.05, 0.04 * s, 0.13 * s), facing)
        width = r.uniform(0.16, 0.22) * s
        P.add(_BOX, PERSON, _T_PLAIN, shirt, (x, 1.15 * s, z), (width, 0.3 * s, r.uniform(0.1, 0.13) * s), facing)
        if r.random() < 0.3:  # a coat or dress down over the thighs
            P.add(_BOX, PERSON, _T_PLAIN, shirt * 0.85, (x, 0.72 * s, z), (width * 1.05, 0.16 * s, 0.13 * s), facing)
        swing = stride * r.uniform(0.3, 0.6)
        for side_sign in (1.0, -1.0):  # each arm swings against the leg on its side
            ax, az = at(-side_sign * swing / 2, side_sign * (width + 0.045 * s))
            P.add(_BOX, PERSON, _T_PLAIN, shirt * 0.95, (ax, 1.1 * s, az), (0.045 * s, 0.29 * s, 0.05 * s), facing)
            P.add(_BOX, PERSON, _T_PLAIN, skin, (ax, 0.76 * s, az), (0.04 * s, 0.05 * s, 0.04 * s), facing)  # hand
        P.add(_ELL, PERSON, _T_HEAD, skin, (x, 1.58 * s, z), (0.1 * s, 0.13 * s, 0.1 * s), 0.0, tuple(hair))
        u, bag = r.random(), r.uniform(0.05, 0.6, 3)
        if u < 0.15:  # backpack
            bx, bz = at(-0.17 * s, 0.0)
            P.add(_BOX, PERSON, _T_PLAIN, bag, (bx, 1.2 * s, bz), (0.15 * s, 0.2 * s, 0.07 * s), facing)
        elif u < 0.3:  # a bag at the hip
            bx, bz = at(0.0, r.choice([-1.0, 1.0]) * (width + 0.11 * s))
            P.add(_BOX, PERSON, _T_PLAIN, bag, (bx, 0.85 * s, bz), (0.06 * s, 0.14 * s, 0.16 * s), facing)

    def _add_car(self, z, q, L, flip=False, yaw_jit=0.0, at=None) -> None:
        r, P = self._rng, self._prims
        if at is None:
            x, zz, psi = self.road_point(z, q)
        else:
            x, zz, psi = at
        psi = psi + yaw_jit + (np.pi if flip else 0.0)
        W = r.uniform(1.7, 1.95)
        Hb = r.uniform(0.75, 1.0)
        col = _CAR_COLORS[r.integers(0, len(_CAR_COLORS))] * r.uniform(0.85, 1.1)
        y0 = 0.18
        P.add(_BOX, CAR, _T_PLAIN, (0.04, 0.04, 0.045), (x, 0.2, zz), (W / 2 - 0.08, 0.2, L / 2 - 0.45), psi)
        P.add(_BOX, CAR, _T_CARBODY, col, (x, y0 + Hb / 2, zz), (W / 2, Hb / 2, L / 2), psi, (L,))
        cl = L * r.uniform(0.45, 0.6)
        ch = r.uniform(0.45, 0.6)
        off = r.uniform(-0.35, 0.0) * L / 4
        cx = x + off * math.sin(psi)
        cz = zz + off * math.cos(psi)
        P.add(_BOX, CAR, _T_GLASS, col, (cx, y0 + Hb + ch / 2, cz), (W / 2 - 0.1, ch / 2, cl / 2), psi)
        self._car_roofs.append((cx, cz, psi, y0 + Hb + ch, W - 0.2, cl))  # for the roof-load pass (2.13)

    def _add_traffic_ahead(self) -> None:
        """A vehicle (and maybe a queue) standing in the ego lane ``lead_gap`` m beyond the camera's last
        position: the ego car drives up to it, so frames see it from ``travel + gap`` down to ``gap``."""
        look = self.look
        if look is None or look.lead_gap <= 0:
            return
        saved, self._rng = self._rng, np.random.default_rng([self.config.seed, 0x1EAD])  # placements above unchanged
        q = self.ego_q + look.lead_offset
        s = self.travel + look.lead_gap
        lengths = {0: self._rng.uniform(3.9, 4.9), 1: 7.5, 2: 11.5}
        L = lengths[look.lead_kind]
        for k in range(1 + look.lead_queue):
            z = float(np.interp(self._s0 + s + L / 2, self._path_s, self._path_z))
            if z > self.z_max - 5:
                break
            if k == 0 and look.lead_kind == 1:
                self._add_truck(z, q)
            elif k == 0 and look.lead_kind == 2:
                self._add_bus(z, q)
            else:
                self._add_car(z, q + self._rng.uniform(-0.3, 0.3), L, yaw_jit=self._rng.uniform(-0.03, 0.03))
            s += L + self._rng.uniform(1.5, 5.0)
            L = self._rng.uniform(3.9, 4.9)
        self._rng = saved

    def _stations(self, r: np.random.Generator, spacing: float) -> Iterator[tuple[float, float]]:
        """(side, z) along both kerbs, the first within ``spacing`` of the world's start, then every
        0.5-1.5 ``spacing``. The step is drawn after the caller has used a station, so ``r``'s draws
        interleave with the caller's exactly as a loop written in place would."""
        for side in (-1.0, 1.0):
            z = self.z_min + r.uniform(0, spacing)
            while z < self.z_max:
                yield side, z
                z += spacing * r.uniform(0.5, 1.5)

    def _add_sign_boards(self) -> None:
        """Direction and information boards (generator 2.4): 0.8-2.4 m wide, on one or two posts at
        the kerb, some turned so the camera sees their back. Own random stream, placed after every
        other object, so the street's placements are those without them."""
        look = self.look
        if look is None or look.board_spacing <= 0:
            return
        r, P = np.random.default_rng([self.config.seed, 0xB0A2D]), self._prims
        R = self.config.road_half_width
        for side, z in self._stations(r, look.board_spacing):
            q = side * (R + r.uniform(0.4, 1.5))
            if self._free_of_intersection(z, 1.5):
                x, zz, psi = self.road_point(z, q)
                w, h = r.uniform(0.8, 2.4), r.uniform(0.5, 1.4)
                bottom = r.uniform(1.6, 2.8)
                yaw = psi + (np.pi if r.random() < 0.2 else 0.0) + r.uniform(-0.25, 0.25)
                col = _BOARD_COLORS[int(r.integers(0, len(_BOARD_COLORS)))] * r.uniform(0.75, 1.1)
                ct, st = math.cos(yaw), math.sin(yaw)
                posts = (-0.4 * w, 0.4 * w) if w > 1.2 else (0.0,)
                top = bottom + h
                for o in posts:
                    post = (x + o * ct, top / 2, zz - o * st)
                    P.add(_CYL, POLE, _T_PLAIN, (0.5, 0.5, 0.52), post, (0.04, top / 2, 0.04))
                centre = (x - 0.06 * st, bottom + h / 2, zz - 0.06 * ct)
                P.add(_BOX, TSIGN, _T_SIGN, col, centre, (w / 2, h / 2, 0.03), yaw, (4.0, r.uniform(0, 1)))

    def _add_front_gardens(self) -> None:
        """Hedges and garden fences along the building line (generator 2.6), in front of a share
        (``Look.garden_edge``) of the buildings that have no front wall. Real residential streets
        (KITTI) run hedges and fences right behind the parked cars; the network called them a distant
        building and put them 1.5-2x too far. Own random stream, placed after every other object, so the
        street's placements are those without them."""
        look = self.look
        if look is None or look.garden_edge <= 0:
            return
        r, P = np.random.default_rng([self.config.seed, 0x6A4DE]), self._prims
        pal = look.leaf_colors
        for zc, w, side, front, setback, walled in self._frontages:
            if walled or r.random() >= look.garden_edge:
                continue
            length = w * r.uniform(0.55, 1.0)
            z0 = zc - length / 2
            if r.random() < 0.65:  # hedge: a few segments of slightly different height and depth
                thick = r.uniform(0.4, min(1.2, 0.4 + setback))
                h = r.uniform(0.9, 2.4)
                col = np.asarray(pal[int(r.integers(0, len(pal)))]) * r.uniform(0.6, 1.0, 3)
                n = int(r.integers(1, 4))
                for k in range(n):
                    seg = length / n
                    hk = h * r.uniform(0.85, 1.1)
                    tk = thick * r.uniform(0.8, 1.1)
                    x, zz, psi = self.road_point(z0 + (k + 0.5) * seg, side * (front + 0.05 + tk / 2))
                    P.add(_BOX, VEGETATION, _T_FOLIAGE, col, (x, hk / 2, zz), (tk / 2, hk / 2, seg / 2), psi)
            else:  # garden fence (railings, pickets, panels) on a low kerb wall
                h = r.uniform(0.8, 1.8)
                col = [(0.18, 0.18, 0.17), (0.42, 0.43, 0.42), (0.5, 0.38, 0.25), (0.75, 0.74, 0.7)][r.integers(0, 4)]
                x, zz, psi = self.road_point(zc, side * (front + 0.08))
                P.add(_BOX, FENCE, _T_FENCE, col, (x, h / 2, zz), (0.04, h / 2, length / 2), psi, (r.uniform(3, 10),))
                if r.random() < 0.5:  # bushes behind it
                    col = np.asarray(pal[int(r.integers(0, len(pal)))]) * r.uniform(0.6, 1.0, 3)
                    hb = h * r.uniform(0.9, 1.5)
                    x, zz, psi = self.road_point(zc, side * (front + 0.1 + 0.3 + setback * 0.3))
                    P.add(_BOX, VEGETATION, _T_FOLIAGE, col, (x, hb / 2, zz), (0.3, hb / 2, length / 2 * 0.9), psi)

    def _add_shaped_signs(self) -> None:
        """Traffic signs with their real outlines (generator 2.6): warning and give-way triangles, round
        prohibition and mandatory discs, one or two to a post at the kerb, every ``Look.sign_spacing``
        metres per side. A triangle or disc is a stack of thin slabs whose widths follow the outline;
        ``param`` = (style, slab centre above the sign centre, sign half size, pictogram seed). Own
        random stream, placed after every other object."""
        look = self.look
        if look is None or look.sign_spacing <= 0:
            return
        r, P = np.random.default_rng([self.config.seed, 0x516A5]), self._prims
        R = self.config.road_half_width
        for side, z in self._stations(r, look.sign_spacing):
            if self._free_of_intersection(z, 0.5):
                q = side * (R + r.uniform(0.3, 1.0))
                x, zz, psi = self.road_point(z, q)
                yaw = psi + (np.pi if r.random() < 0.15 else 0.0) + r.uniform(-0.2, 0.2)
                ct, st = math.cos(yaw), math.sin(yaw)
                n_signs = 2 if r.random() < 0.3 else 1
                y = r.uniform(1.9, 2.5)  # bottom of the lowest sign
                tops = []
                for _ in range(n_signs):
                    style = int(r.choice([5, 5, 5, 6, 7, 7, 8]))
                    s = r.uniform(0.3, 0.5)  # half size, metres (real: 0.6-1.05 m signs)
                    cy = y + s
                    n = 6 if style in (5, 6) else 5
                    picto = r.uniform(0, 1)
                    for k in range(n):
                        v0, v1 = -1 + 2 * k / n, -1 + 2 * (k + 1) / n  # slab in sign units
                        vm = (v0 + v1) / 2
                        if style == 5:  # point up: width shrinks upwards
                            hw = 1.15 * (1 - (vm + 1) / 2)
                        elif style == 6:  # point down
                            hw = 1.15 * (vm + 1) / 2
                        else:
                            hw = math.sqrt(max(1 - vm * vm, 0.0))
                        hw = max(hw, 0.12)
                        off = vm * s
                        centre = (x - 0.05 * st, cy + off, zz - 0.05 * ct)
                        half = (hw * s, s / n, 0.02)
                        P.add(_BOX, TSIGN, _T_SIGN, (0.8,) * 3, centre, half, yaw, (float(style), off, s, picto))
                    y = cy + s + 0.05
                    tops.append(y)
                top = max(tops)
                P.add(_CYL, POLE, _T_PLAIN, (0.5, 0.5, 0.52), (x, top / 2, zz), (0.035, top / 2, 0.035))

    def _add_cyclists(self) -> None:
        """Cyclists and parked bicycles (generator 2.8): no earlier generator drew a rider or a
        bicycle, so the network had never seen either class. Riders on the road beside the parked
        cars or on the sidewalk band, every ``Look.cyclist_spacing`` metres per side, most riding with
        the traffic of their side; groups of 1-5 bicycles parked across the sidewalk at the kerb,
        every ``Look.bike_rack_spacing`` metres. Own random stream, placed after every other object."""
        look = self.look
        if look is None or (look.cyclist_spacing <= 0 and look.bike_rack_spacing <= 0):
            return
        c = self.config
        r = np.random.default_rng([c.seed, 0xB1C7])
        R, sw = c.road_half_width, c.sidewalk_width
        walk = R + (c.terrain_width if c.verge_first else 0.0)  # inner edge of the sidewalk band
        if look.cyclist_spacing > 0:
            for side, z in self._stations(r, look.cyclist_spacing):
                on_walk = r.random() < 0.35
                if on_walk:
                    q = side * (walk + r.uniform(0.6, max(0.7, sw - 0.6)))
                else:  # beside the parked cars (or the kerb), never in the camera's lane
                    q = side * ((R - 2.6 if c.parking else R - 0.8) - r.uniform(0.0, 0.5))
                    if abs(q - self.ego_q) < 1.8:
                        continue
                x, zz, psi = self.road_point(z, q)
                # right-hand traffic: the camera's side (q < 0) rides away from it
                along = (r.random() < 0.75) == (side < 0)
                yaw = psi + (0.0 if along else np.pi) + r.uniform(-0.15, 0.15)
                self._add_bicycle(r, x, zz, yaw)
                self._add_rider(r, x, zz, yaw)
        if look.bike_rack_spacing > 0:
            for side, z in self._stations(r, look.bike_rack_spacing):
                if not self._free_of_intersection(z, 1.0):
                    continue
                q = side * (walk + r.uniform(0.5, 1.0))
                across = np.pi / 2 + r.uniform(-0.25, 0.25)
                for k in range(int(r.integers(1, 6))):
                    x, zz, psi = self.road_point(z + 0.65 * k, q + side * r.uniform(-0.1, 0.1))
                    self._add_bicycle(r, x, zz, psi + across + (np.pi if r.random() < 0.5 else 0.0))

    def _add_frontage_clutter(self) -> None:
        """What stands at a real building's base (generator 2.11): wheelie bins, utility cabinets,
        planters, entrance pillars and bollards along the building line of the frontages without a front
        wall. Before 2.11 the only person-sized things standing there were people, and the network called
        real shop fronts, doorways and gate posts person (71 % of its CamVid person pixels lie on
        building). Bins, cabinets, planter boxes and pillars are labelled building (Cityscapes leaves bins
        and cabinets void, so the label costs nothing there; it only has to be "not person"), bollards
        pole, planted shrubs vegetation. Own random stream, placed after every other object, so every
        other primitive of the street is 2.10's."""
        look = self.look
        if look is None or not look.frontage_clutter:
            return
        r, P = np.random.default_rng([self.config.seed, 0xC1077E]), self._prims
        if r.random() >= 0.8:  # one street in five keeps a bare building line
            return
        spacing = r.uniform(3.0, 8.0)
        grey = lambda lo, hi: (r.uniform(lo, hi),) * 3  # noqa: E731
        bins = ((0.12, 0.3, 0.14), (0.32, 0.33, 0.34), (0.08, 0.08, 0.09), (0.12, 0.22, 0.45), (0.4, 0.26, 0.14))
        for zc, w, side, front, setback, walled in self._frontages:
            if walled:
                continue
            face = front + setback  # the facade's distance from the centreline
            z = zc - w / 2 + r.uniform(0.0, spacing)
            while z < zc + w / 2 - 0.5:
                kind = int(r.choice(5, p=[0.3, 0.15, 0.15, 0.2, 0.2]))
                if kind == 0:  # one to three wheelie bins side by side, against the wall
                    col = np.asarray(bins[int(r.integers(0, len(bins)))]) * r.uniform(0.8, 1.2)
                    h = r.uniform(0.95, 1.1)
                    for k in range(int(r.integers(1, 4))):
                        x, zz, psi = self.road_point(z + 0.65 * k, side * (face - 0.4))
                        P.add(_BOX, BUILDING, _T_PLAIN, col, (x, h / 2, zz), (0.35, h / 2, 0.29), psi)
                elif kind == 1:  # a utility cabinet
                    wc, dc, hc = r.uniform(0.6, 1.2), r.uniform(0.3, 0.5), r.uniform(1.0, 1.6)
                    col = [(0.55, 0.56, 0.54), (0.3, 0.38, 0.3), (0.7, 0.66, 0.58)][int(r.integers(0, 3))]
                    x, zz, psi = self.road_point(z, side * (face - dc / 2 - r.uniform(0.0, 0.2)))
                    P.add(_BOX, BUILDING, _T_CONCRETE, col, (x, hc / 2, zz), (dc / 2, hc / 2, wc / 2), psi)
                elif kind == 2:  # a planter: concrete or wooden box with a shrub
                    wp, hp = r.uniform(0.5, 1.2), r.uniform(0.4, 0.8)
                    x, zz, psi = self.road_point(z, side * (face - wp / 2 - r.uniform(0.0, 0.5)))
                    P.add(_BOX, BUILDING, _T_CONCRETE, grey(0.35, 0.7), (x, hp / 2, zz), (wp / 2, hp / 2, wp / 2), psi)
                    hs = r.uniform(0.3, 0.9)
                    pal = look.leaf_colors
                    leaf = np.asarray(pal[int(r.integers(0, len(pal)))]) * r.uniform(0.6, 1.0, 3)
                    P.add(_ELL, VEGETATION, _T_FOLIAGE, leaf, (x, hp + hs / 2, zz), (wp / 2, hs / 2, wp / 2))
                elif kind == 3:  # entrance pillars flanking a door, as tall as a person or taller
                    pw, pd, ph = r.uniform(0.3, 0.6), r.uniform(0.2, 0.45), r.uniform(1.2, 2.6)
                    col = grey(0.4, 0.9) if r.random() < 0.6 else np.asarray(bins[4]) * r.uniform(1.0, 1.6)
                    gap = r.uniform(1.0, 2.0)
                    for o in (-gap / 2, gap / 2):
                        x, zz, psi = self.road_point(z + o, side * (face - pd / 2))
                        P.add(_BOX, BUILDING, _T_CONCRETE, col, (x, ph / 2, zz), (pd / 2, ph / 2, pw / 2), psi)
                else:  # a row of bollards, at the building line or at the kerb
                    kerb = r.random() < 0.5
                    walk = self.config.road_half_width + (self.config.terrain_width if self.config.verge_first else 0.0)
                    q = side * (walk + 0.35 if kerb else face - 0.4)
                    hb, rb = r.uniform(0.75, 1.1), r.uniform(0.05, 0.12)
                    col = grey(0.08, 0.6)
                    step = r.uniform(1.2, 1.8)
                    for k in range(int(r.integers(3, 9))):
                        x, zz, _ = self.road_point(z + step * k, q)
                        P.add(_CYL, POLE, _T_PLAIN, col, (x, hb / 2, zz), (rb, hb / 2, rb))
                z += spacing * r.uniform(0.5, 1.5)

    def _add_roof_loads(self) -> None:
        """Loads on a share (``Look.roof_load``) of the car roofs (generator 2.13): roof boxes on
        crossbars, crossbars with luggage, AV sensor rigs (a plate on posts with a spinning-LiDAR can on a
        mast and camera pods, as on the DDAD and nuScenes survey cars) and taxi / driving-school signs.
        Before 2.13 every car ended at its glass, and the real lead car's roof rig (DDAD) read as the
        trees behind it, at 2-5x its distance. Everything is labelled car, as Cityscapes labels what is
        fixed to a car. Own random stream, placed after every other object, so every other primitive of
        the street is 2.11's."""
        look = self.look
        if look is None or look.roof_load <= 0:
            return
        r, P = np.random.default_rng([self.config.seed, 0x200F]), self._prims
        dark = ((0.05, 0.05, 0.055), (0.12, 0.12, 0.13), (0.3, 0.31, 0.32), (0.6, 0.6, 0.62), (0.85, 0.85, 0.83))
        for x, z, yaw, top, width, length in self._car_roofs:
            if r.random() >= look.roof_load:
                continue
            ct, st = math.cos(yaw), math.sin(yaw)

            def at(f: float, lat: float, x=x, z=z, ct=ct, st=st, yaw=yaw) -> tuple[float, float]:
                # f metres forward along the car and lat metres to its side
                fx, fz = _along(x, z, yaw, f)
                return fx + lat * ct, fz - lat * st

            kind = int(r.choice(4, p=[0.3, 0.2, 0.3, 0.2]))
            if kind in (0, 1):  # crossbars, then a roof box or luggage on them
                bar = (0.05, 0.05, 0.05) if r.random() < 0.7 else (0.6, 0.6, 0.62)
                span = length * r.uniform(0.25, 0.4)
                for f in (-span, span):
                    bx, bz = at(f, 0.0)
                    P.add(_BOX, CAR, _T_PLAIN, bar, (bx, top + 0.04, bz), (width / 2 + 0.03, 0.03, 0.03), yaw)
                if kind == 0:
                    bl, bw, bh = r.uniform(1.3, 2.1), r.uniform(0.6, min(0.95, width)), r.uniform(0.3, 0.45)
                    col = dark[int(r.integers(0, len(dark)))]
                    bx, bz = at(r.uniform(-0.2, 0.2), 0.0)
                    P.add(_BOX, CAR, _T_PLAIN, col, (bx, top + 0.07 + bh / 2, bz), (bw / 2, bh / 2, bl / 2), yaw)
                else:
                    for _ in range(int(r.integers(1, 4))):
                        lw, lh, ll = r.uniform(0.3, 0.7), r.uniform(0.15, 0.4), r.uniform(0.4, 0.9)
                        col = r.uniform(0.05, 0.7, 3) * r.uniform(0.5, 1.0)
                        bx, bz = at(r.uniform(-span, span), r.uniform(-0.3, 0.3) * width)
                        P.add(_BOX, CAR, _T_PLAIN, col, (bx, top + 0.07 + lh / 2, bz), (lw / 2, lh / 2, ll / 2), yaw)
            elif kind == 2:  # a sensor rig: plate on posts, camera pods, a LiDAR can on a mast
                col = dark[int(r.integers(0, len(dark)))]
                pl, lift = length * r.uniform(0.4, 0.8), r.uniform(0.05, 0.2)
                for f in (-pl / 3, pl / 3):
                    for lat in (-width / 3, width / 3):
                        px, pz = at(f, lat)
                        P.add(_CYL, CAR, _T_PLAIN, col, (px, top + lift / 2, pz), (0.025, lift / 2, 0.025))
                P.add(_BOX, CAR, _T_PLAIN, col, (x, top + lift + 0.03, z), (width / 2, 0.03, pl / 2), yaw)
                for _ in range(int(r.integers(2, 7))):  # camera pods around the plate's edge
                    pod = r.uniform(0.06, 0.14)
                    f = float(r.choice([-1.0, 1.0])) * pl / 2 * r.uniform(0.5, 1.0)
                    px, pz = at(f, r.uniform(-0.45, 0.45) * width)
                    pc = dark[int(r.integers(0, 3))]
                    P.add(_BOX, CAR, _T_PLAIN, pc, (px, top + lift + 0.06 + pod / 2, pz), (pod, pod / 2, pod), yaw)
                mast, rl, hl = r.uniform(0.0, 0.45), r.uniform(0.06, 0.13), r.uniform(0.08, 0.25)
                base = top + lift + 0.06  # the plate's centre is the roof's (x, z)
                if mast > 0.05:
                    P.add(_CYL, CAR, _T_PLAIN, col, (x, base + mast / 2, z), (0.04, mast / 2, 0.04))
                can = dark[int(r.integers(0, 3))]
                P.add(_CYL, CAR, _T_PLAIN, can, (x, base + mast + hl / 2, z), (rl, hl / 2, rl))
            else:  # a taxi or driving-school sign across the roof
                col = [(0.95, 0.8, 0.1), (0.92, 0.92, 0.9), (0.9, 0.5, 0.1), (0.15, 0.3, 0.7)][int(r.integers(0, 4))]
                sw, sh, sd = r.uniform(0.35, 0.75), r.uniform(0.12, 0.28), r.uniform(0.1, 0.22)
                bx, bz = at(r.uniform(-0.2, 0.2) * length, 0.0)
                P.add(_BOX, CAR, _T_PLAIN, col, (bx, top + sh / 2, bz), (sw / 2, sh / 2, sd / 2), yaw)

    def _add_near_foliage(self) -> None:
        """Foliage from the ground up near the camera (generator 2.16): on a share (``Look.near_foliage``)
        of the frontages, of the gaps between buildings and of stations every 4-12 m along each kerb,
        bushes and small trees whose crowns start at knee to head height. Real residential streets
        (KITTI) have them a few metres from the camera; the renderer's crowns sat on 1.8-3.5 m trunks at
        the verge, and the network put real near trees and hedges 1.4-1.7x too far. Own random stream,
        placed after every other object, so every other primitive of the street is 2.13's; none of it
        reaches into the road or a cross street."""
        look = self.look
        if look is None or look.near_foliage <= 0:
            return
        r, P = np.random.default_rng([self.config.seed, 0xB05C]), self._prims
        pal = look.leaf_colors

        def leaf() -> np.ndarray:
            return np.asarray(pal[int(r.integers(0, len(pal)))]) * r.uniform(0.6, 1.1, 3)

        def bush(z: float, q: float, rh: float, rv: float, col: np.ndarray) -> None:
            x, zz, _ = self.road_point(z, q)
            y, along = rv * r.uniform(0.6, 0.9), rh * r.uniform(0.8, 1.3)  # sunk a little into the ground
            P.add(_ELL, VEGETATION, _T_FOLIAGE, col, (x, y, zz), (rh, rv, along))

        def low_tree(z: float, q0: float, side: float, cr: float) -> None:
            # a crown that starts at knee to head height, its near edge 0-0.3 of its radius behind q0
            trunk = r.uniform(0.4, 1.5)
            ry = cr * r.uniform(0.8, 1.2)
            q = side * (q0 + cr * r.uniform(1.0, 1.3))
            x, zz, _ = self.road_point(z, q)
            bark = np.array([0.3, 0.24, 0.18]) * r.uniform(0.6, 1.2)
            tr = r.uniform(0.06, 0.15)
            P.add(_CYL, VEGETATION, _T_PLAIN, bark, (x, (trunk + ry) / 2, zz), (tr, (trunk + ry) / 2, tr))
            col = leaf()
            along = cr * r.uniform(0.8, 1.2)
            P.add(_ELL, VEGETATION, _T_FOLIAGE, col, (x, trunk + ry, zz), (cr, ry, along), 0.0, (0.0,))
            if r.random() < 0.6:  # a second lobe makes the outline less of an ellipse
                c2 = cr * r.uniform(0.5, 0.8)
                x2, z2, _ = self.road_point(z + r.uniform(-1, 1) * cr * 0.6, q + side * r.uniform(-0.2, 0.4) * cr)
                y2 = trunk + ry * r.uniform(0.8, 1.6)
                tone = col * r.uniform(0.85, 1.15)
                P.add(_ELL, VEGETATION, _T_FOLIAGE, tone, (x2, y2, z2), (c2, c2, c2), 0.0, (0.0,))

        by_side: dict[float, list[tuple[float, float, float, float]]] = {-1.0: [], 1.0: []}
        for zc, w, side, front, setback, walled in self._frontages:
            by_side[side].append((zc, w, front, setback))
            if r.random() >= look.near_foliage:
                continue
            # behind a front wall or fence the bushes stand clear of it
            q0 = front + (0.35 if walled else 0.1)
            for _ in range(int(r.integers(1, 6))):
                rh = r.uniform(0.6, 1.8)
                bush(zc + r.uniform(-0.45, 0.45) * w, side * (q0 + rh), rh, rh * r.uniform(0.7, 1.3), leaf())
            if r.random() < 0.6:  # a small tree in the front garden (its crown may touch the facade)
                low_tree(zc + r.uniform(-0.35, 0.35) * w, q0, side, r.uniform(1.2, 2.0 + setback / 2))
        # kerbside planting: bushes and small trees in the verge or the sidewalk's tree line, a few metres
        # from the camera (the building line lies 5-25 m to its side, so the bushes above are seldom near)
        c = self.config
        if c.terrain_width > 0 and c.verge_first:
            band = (c.road_half_width, c.road_half_width + c.terrain_width)
        else:
            band = (c.road_half_width, c.road_half_width + min(1.6, c.sidewalk_width * 0.6))
        for side, z in self._stations(r, 8.0):
            if r.random() >= look.near_foliage or not self._free_of_intersection(z, 2.0):
                continue
            if r.random() < 0.6:
                rh = r.uniform(0.5, 1.5)
                q = max(band[0] + 0.15 + rh, r.uniform(*band))
                bush(z, side * q, rh, rh * r.uniform(0.7, 1.4), leaf())
            else:
                low_tree(z, band[0] + 0.15, side, r.uniform(1.0, 2.4))
        for side, rows in by_side.items():
            rows.sort()
            for (z0, w0, front, _), (z1, w1, _, _) in zip(rows[:-1], rows[1:], strict=True):
                gap = (z1 - w1 / 2) - (z0 + w0 / 2)
                if gap < 2.0 or r.random() >= look.near_foliage:
                    continue
                cr, zm = r.uniform(1.2, min(3.5, 0.5 + gap / 2)), z0 + w0 / 2 + gap / 2
                if self._free_of_intersection(zm, 1.3 * cr):  # not in a cross street
                    low_tree(zm, front + 0.3, side, cr)

    def _add_bicycle(self, r: np.random.Generator, x: float, z: float, yaw: float) -> None:
        """A bicycle at (x, z) heading ``yaw``: see-through wheels (tyre rings of thin slabs), frame
        tubes, saddle and handlebar, all class bicycle."""
        P = self._prims

        def at(f: float) -> tuple[float, float]:
            return _along(x, z, yaw, f)

        frame = (
            np.array([0.05, 0.05, 0.06]) * r.uniform(0.8, 3.0)
            if r.random() < 0.4
            else r.uniform(0.1, 0.85, 3) * r.uniform(0.6, 1.0)
        )
        tyre = (0.04, 0.04, 0.045)
        R, t = r.uniform(0.31, 0.36), 0.045  # wheel radius, tyre depth
        base = r.uniform(0.98, 1.1)  # wheelbase
        for f in (-base / 2, base / 2):
            # six rows: the top and bottom of the ring across, its sides as two short slabs each
            for v0, v1 in ((-1.0, -0.8), (-0.8, -0.4), (-0.4, 0.0), (0.0, 0.4), (0.4, 0.8), (0.8, 1.0)):
                vm = (v0 + v1) / 2
                y = R + vm * R
                outer = R * math.sqrt(max(1 - vm * vm, 0.0))
                inner = (R - t) * math.sqrt(max(1 - (vm * R / (R - t)) ** 2, 0.0))
                hh = (v1 - v0) * R / 2
                if inner <= 0:
                    px, pz = at(f)
                    P.add(_BOX, BICYCLE, _T_PLAIN, tyre, (px, y, pz), (0.018, hh, outer), yaw)
                else:
                    for sgn in (-1.0, 1.0):
                        px, pz = at(f + sgn * (outer + inner) / 2)
                        P.add(
                            _BOX, BICYCLE, _T_PLAIN, tyre, (px, y, pz), (0.018, hh, max((outer - inner) / 2, 0.02)), yaw
                        )
        seat, head = -0.2 * base, 0.4 * base
        tubes = (  # (along, height, half along, half height)
            (0.0, R + 0.4, 0.3 * base, 0.018),  # top tube
            (seat, (R + 0.85) / 2, 0.02, (0.85 - R) / 2),  # seat tube
            (head, (R + 1.0) / 2, 0.02, (1.0 - R) / 2),  # fork and head tube
            (-0.25 * base, R, 0.25 * base, 0.015),  # chain stay
            (0.1 * base, R + 0.2, 0.3 * base, 0.02),  # down tube (level, a box cannot pitch)
        )
        for f, y, hf, hy in tubes:
            px, pz = at(f)
            P.add(_BOX, BICYCLE, _T_PLAIN, frame, (px, y, pz), (0.018, hy, hf), yaw)
        px, pz = at(seat)
        P.add(_BOX, BICYCLE, _T_PLAIN, (0.03, 0.03, 0.03), (px, 0.88, pz), (0.07, 0.025, 0.13), yaw)
        px, pz = at(head)
        P.add(_BOX, BICYCLE, _T_PLAIN, (0.05, 0.05, 0.05), (px, 1.0, pz), (0.3, 0.015, 0.02), yaw)
        if r.random() < 0.3:  # a basket or a child seat: the bulk real bicycles often carry
            px, pz = at(head + 0.15 if r.random() < 0.5 else seat - 0.2)
            P.add(_BOX, BICYCLE, _T_PLAIN, r.uniform(0.05, 0.6, 3), (px, 0.95, pz), (0.17, 0.12, 0.15), yaw)

    def _add_rider(self, r: np.random.Generator, x: float, z: float, yaw: float) -> None:
        """A rider on the bicycle at (x, z) heading ``yaw``: legs to the pedals, torso leaning to the
        handlebar (two boxes, a box cannot pitch), arms, head (a helmet on some), all class rider."""
        P = self._prims

        def at(f: float) -> tuple[float, float]:
            return _along(x, z, yaw, f)

        s = r.uniform(0.9, 1.08)
        legs, shirt, skin, hair = _person_colours(r)
        if r.random() < 0.4:  # helmet: the head's hair colour becomes the helmet's
            hair = r.uniform(0.1, 0.9, 3)
        px, pz = at(-0.12)
        P.add(_BOX, RIDER, _T_PLAIN, legs, (px, 0.6 * s, pz), (0.12, 0.28 * s, 0.14), yaw)
        px, pz = at(-0.1)
        P.add(_BOX, RIDER, _T_PLAIN, shirt, (px, 1.12 * s, pz), (0.19 * s, 0.26 * s, 0.12), yaw)
        px, pz = at(0.05)
        P.add(_BOX, RIDER, _T_PLAIN, shirt, (px, 1.33 * s, pz), (0.18 * s, 0.1 * s, 0.12), yaw)
        px, pz = at(0.22)
        P.add(_BOX, RIDER, _T_PLAIN, shirt * 0.9, (px, 1.1 * s, pz), (0.2 * s, 0.04, 0.2), yaw)
        px, pz = at(0.08)
        P.add(_ELL, RIDER, _T_HEAD, skin, (px, 1.55 * s, pz), (0.1 * s, 0.13 * s, 0.1 * s), 0.0, tuple(hair))

    def _add_truck(self, z, q, flip=False) -> None:
        r, P = self._rng, self._prims
        x, zz, psi = self.road_point(z, q)
        psi = psi + (np.pi if flip else 0.0)
        fwd = np.array([math.sin(psi), math.cos(psi)])
        W = 2.4
        cab_col = _CAR_COLORS[r.integers(0, len(_CAR_COLORS))]
        box_col = np.array([0.85, 0.85, 0.83]) * r.uniform(0.6, 1.1)
        L = r.uniform(6.0, 9.0)
        floor = 0.6  # cargo box bottom, metres above the road
        if self.look is not None and self.look.truck_underbody:
            floor, chassis = self._underbody_look()
            dark = (0.035, 0.035, 0.038)
            P.add(_BOX, TRUCK, _T_CHASSIS, dark, (x, floor / 2, zz), (W / 2 - 0.05, floor / 2, L / 2), psi, chassis)
        else:
            P.add(_BOX, TRUCK, _T_PLAIN, (0.05, 0.05, 0.05), (x, 0.3, zz), (W / 2 - 0.1, 0.3, L / 2), psi)
        cab = fwd * (L / 2 + 1.0)
        P.add(_BOX, TRUCK, _T_TRUCKCAB, cab_col, (x + cab[0], 1.55, zz + cab[1]), (W / 2, 1.25, 1.0), psi, (2.5,))
        hb = r.uniform(3.2, 3.9)
        tex, param = _T_PLAIN, (0.0,)
        if self.look is not None:
            box_col, param = self._cargo_look()
            tex = _T_CARGO
        box_half = (W / 2, (hb - floor) / 2, L / 2)
        P.add(_BOX, TRUCK, tex, box_col, (x, floor + (hb - floor) / 2, zz), box_half, psi, param)

    def _underbody_look(self) -> tuple[float, tuple]:
        """A truck's chassis as real ones look from behind and from the side (generator 2.10): the cargo
        box's floor height, and the texture parameters of the box under it (:meth:`Materials._chassis`).

        ``param`` = (floor height, rear axles (2 or 3), underride bar style (0 silver, 1 red and white
        stripes, 2 dark, 3 yellow), bar bottom height, mud flaps (0 / 1), side guard (0 / 1), plate style
        (0 white, 1 yellow), lamp position (1 on the bar's ends, 0 under the box floor))."""
        r = self._rng_chassis
        floor = float(r.uniform(1.0, 1.3))
        return floor, (
            floor,
            float(r.choice([2, 3], p=[0.6, 0.4])),
            float(r.choice(4, p=[0.4, 0.3, 0.2, 0.1])),
            float(r.uniform(0.38, 0.5)),
            float(r.random() < 0.6),
            float(r.random() < 0.7),
            float(r.random() < 0.4),
            float(r.random() < 0.5),
        )

    def _cargo_look(self) -> tuple[np.ndarray, tuple]:
        """A truck's cargo box as real ones look (generator 2.2): paint from white to near black, and a
        ribbed panel, printed lettering, a curtain side or a big graphic. The generator before drew every
        box light grey and plain, and the network called a dark lettered real trailer a building.

        ``param`` = (style, accent r, g, b, lettering band bottom, top (fraction of the box height),
        glyph seed, rib / strap period in metres)."""
        r = self._rng_cargo
        u = r.uniform
        paints = [
            (0.85, 0.85, 0.83),  # white
            (0.6, 0.61, 0.62),  # silver
            (0.07, 0.09, 0.2),  # navy
            (0.05, 0.05, 0.055),  # black
            (0.55, 0.07, 0.06),  # red
            (0.08, 0.25, 0.12),  # green
            (0.1, 0.22, 0.55),  # blue
            (0.85, 0.65, 0.08),  # yellow
            (0.8, 0.35, 0.05),  # orange
        ]
        col = np.array(paints[int(r.choice(len(paints), p=[0.3, 0.1, 0.1, 0.06, 0.1, 0.08, 0.1, 0.08, 0.08]))])
        col = np.clip(col * u(0.85, 1.15), 0.0, 1.0)
        light = float(col.mean()) > 0.4
        if r.random() < 0.5:  # lettering in white on dark paint, dark or a colour on light paint
            accent = (0.92, 0.92, 0.9) if not light else (0.06, 0.06, 0.08)
        else:
            accent = paints[int(r.integers(0, len(paints)))]
        style = int(r.choice(4, p=[0.3, 0.35, 0.15, 0.2]))
        lo = u(0.25, 0.6)
        hi = min(lo + u(0.12, 0.35), 0.92)
        return col, (float(style), *accent, lo, hi, float(r.integers(0, 1 << 20)), u(0.25, 0.7))

    def _add_bus(self, z, q, flip=False) -> None:
        r, P = self._rng, self._prims
        x, zz, psi = self.road_point(z, q)
        psi = psi + (np.pi if flip else 0.0)
        col = [(0.9, 0.75, 0.1), (0.85, 0.85, 0.85), (0.7, 0.1, 0.1), (0.15, 0.3, 0.6)][r.integers(0, 4)]
        L = r.uniform(10.0, 13.0)
        P.add(_BOX, BUS, _T_BUS, col, (x, 0.25 + 1.5, zz), (1.25, 1.5, L / 2), psi, (L,))

    def _finalize(self) -> None:
        P = self._prims
        self.kind = np.array(P.kind, np.int8)
        self.cls = np.array(P.cls, np.uint8)
        self.tex = np.array(P.tex, np.int8)
        self.color = np.array(P.color, np.float32).reshape(-1, 3)
        self.center = np.array(P.center, np.float64).reshape(-1, 3)
        self.half = np.array(P.half, np.float64).reshape(-1, 3)
        self.yaw = np.array(P.yaw, np.float64)
        self.param = np.array(P.param, np.float32).reshape(-1, 8)
        self.center_list = self.center.tolist()
        self.half_list = self.half.tolist()
        self.kind_list = self.kind.tolist()
        self.cossin_list = list(zip(np.cos(self.yaw).tolist(), np.sin(self.yaw).tolist()))
        self.sort_key = (self.kind.astype(np.int64) * 16 + self.tex).astype(np.uint8)
        self.center32 = self.center.astype(np.float32)
        self.half32 = self.half.astype(np.float32)
        self.cos_yaw = np.cos(self.yaw).astype(np.float32)
        self.sin_yaw = np.sin(self.yaw).astype(np.float32)
        n = len(self.kind)
        sgn = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], np.float64)
        loc = sgn[None] * self.half[:, None, :]  # (n,8,3)
        c, s = np.cos(self.yaw)[:, None], np.sin(self.yaw)[:, None]
        box = self.kind == _BOX
        wx = np.where(box[:, None], c * loc[..., 0] + s * loc[..., 2], loc[..., 0])
        wz = np.where(box[:, None], -s * loc[..., 0] + c * loc[..., 2], loc[..., 2])
        self.corners = np.stack([wx, loc[..., 1], wz], -1) + self.center[:, None, :]
        # ground-shadow polygons (world xz), projected along the sun direction, as convex hulls
        L = self.sun
        self.shadows: list[np.ndarray] = []
        ang = np.linspace(0, 2 * np.pi, 10, endpoint=False)
        for i in range(n):
            if self.kind[i] == _BOX:
                pts = self.corners[i]
            else:
                ce, h = self.center[i], self.half[i]
                ring = np.stack([np.cos(ang) * h[0], np.zeros_like(ang), np.sin(ang) * h[2]], -1)
                if self.kind[i] == _CYL:
                    pts = np.concatenate([ring + ce - [0, h[1], 0], ring + ce + [0, h[1], 0]])
                else:
                    el = np.array([1.0, 0.0, 1.0])
                    pts = np.concatenate(
                        [ring + ce]
                        + [ring * el * math.cos(a) + ce + [0, h[1] * math.sin(a), 0] for a in (-0.9, 0.9)]
                        + [ce + [[0, h[1], 0], [0, -h[1], 0]]]
                    )
            g = pts[:, [0, 2]] - (pts[:, 1:2] / L[1]) * L[[0, 2]]
            hull = cv2.convexHull(g.astype(np.float32)).reshape(-1, 2)
            self.shadows.append(hull.astype(np.float64))
        self.shadow_n = np.array([len(s) for s in self.shadows], np.int64)
        kmax = int(self.shadow_n.max()) if n else 1
        self.shadow_pts = np.zeros((n, kmax, 2))
        for i, sh in enumerate(self.shadows):
            self.shadow_pts[i, : len(sh)] = sh
            self.shadow_pts[i, len(sh) :] = sh[-1]
        self.shadow_center = np.array([s.mean(0) for s in self.shadows]).reshape(-1, 2)
        self.shadow_radius = np.array([np.abs(s - m).max() * 1.5 for s, m in zip(self.shadows, self.shadow_center)])

    def _camera_path(self) -> None:
        """Arc-length table of the camera's own (offset) path, so it moves exactly ``speed/fps``."""
        z = np.arange(self.z_min, self.z_max + 0.25, 0.25)
        psi = self.heading(z)
        x = self.centre_x(z) + self.ego_q * np.cos(psi)
        zz = z - self.ego_q * np.sin(psi)
        self._path_s = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(x), np.diff(zz)))])
        self._path_z = z
        self._s0 = float(np.interp(0.0, z, self._path_s))

    def camera_pose(self, s: float) -> np.ndarray:
        """Camera-to-world pose (float64 4x4) after driving ``s`` metres along the ego lane from z=0."""
        c = self.config
        z = float(np.interp(self._s0 + s, self._path_s, self._path_z))
        x, zz, psi = self.road_point(z, self.ego_q)
        return camera_to_world((x, c.camera_height, zz), psi, c.camera_pitch, c.camera_roll)
