"""Procedural synthetic street scenes with exact labels: RGB, Cityscapes train ids and metric depth.

Why this exists: no dataset can be downloaded in our environment, so we render our own driving
sequences. A pure-numpy analytic ray caster is used (see
``shared/reference/synthetic-renderer-options.md``): it needs no system packages, its depth is exact
to float32 round-off (every pixel samples the ray through its centre ``(u+0.5, v+0.5)``) and its
class ids are exact integers, so it doubles as a test oracle for any faster renderer added later.

Conventions
-----------
* World frame: right-handed, metres, ``x`` to the LEFT of the road direction, ``y`` UP, ``z`` along
  the road (forward). The ground is the plane ``y = 0``. Traffic drives on the right (``x < 0``).
* Camera frame: the usual optical frame (``x`` right, ``y`` down, ``z`` forward). ``Frame.pose`` maps
  camera coordinates to world coordinates (camera-to-world, 4x4).
* ``depth`` is the camera ``z`` of the first surface hit (not the ray length), 0 where invalid: sky,
  or nothing hit within :data:`MAX_DEPTH` metres (those far-ground pixels get class 255, ignore).
* Geometry is boxes (yawed about the vertical), vertical cylinders and axis-aligned ellipsoids, so
  every intersection is closed form. Primitives are culled by projecting their bounding boxes
  (clipped at the near plane), processed front to back and skipped when already occluded; shading
  is deferred and vectorised per primitive kind.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from mtl_perception.data.cityscapes_classes import (
    CITYSCAPES_CLASSES,
    CITYSCAPES_PALETTE,
    IGNORE_INDEX,
)

__all__ = [
    "CITYSCAPES_CLASSES",
    "CITYSCAPES_PALETTE",
    "GENERATOR_VERSION",
    "IGNORE_INDEX",
    "MAX_DEPTH",
    "RANDOMIZATIONS",
    "Frame",
    "Look",
    "Renderer",
    "SceneConfig",
    "World",
    "analytic_ground_depth",
    "render_frame",
    "render_sequence",
]

#: Bump when the output for a given seed changes (stored in dataset.json). 2.0 added the "full"
#: domain randomisation; ``randomization="basic"`` still renders exactly what 1.0 rendered.
GENERATOR_VERSION = "2.0"
#: ``"full"``: domain-randomised appearance and camera (default, for sim-to-real transfer);
#: ``"basic"``: the generator-1.0 distribution (narrow asphalt/camera ranges), kept for ablations.
RANDOMIZATIONS = ("full", "basic")
#: Far limit of valid depth in metres (fits the uint16 KITTI encoding, max 255.99 m).
MAX_DEPTH = 200.0
_NEAR = 0.05

# Cityscapes train ids used here.
ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE, TLIGHT, TSIGN = 0, 1, 2, 3, 4, 5, 6, 7
VEGETATION, TERRAIN, SKY, PERSON, RIDER, CAR, TRUCK, BUS = 8, 9, 10, 11, 12, 13, 14, 15
BICYCLE = 18

# Primitive kinds.
_BOX, _CYL, _ELL = 0, 1, 2
# Texture ids (how the deferred shader decorates a primitive).
(
    _T_PLAIN,
    _T_FACADE,
    _T_CARBODY,
    _T_GLASS,
    _T_FOLIAGE,
    _T_TLIGHT,
    _T_SIGN,
    _T_FENCE,
    _T_BUS,
    _T_TRUCKCAB,
    _T_HEAD,
    _T_CONCRETE,
) = range(12)

_BOX_EDGES = np.array([(0, 1), (2, 3), (4, 5), (6, 7), (0, 2), (1, 3), (4, 6), (5, 7), (0, 4), (1, 5), (2, 6), (3, 7)])


# --------------------------------------------------------------------------------------------
# Public data types
# --------------------------------------------------------------------------------------------
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


@dataclass(frozen=True)
class Look:
    """Domain-randomised appearance of one scene (``SceneConfig.look``; only with ``randomization="full"``).

    Why: a network trained on one narrow look (mid-grey asphalt, light sidewalks) learns "brightness
    = class" and calls light real asphalt sidewalk. These ranges cover what real streets span, so
    the class has to be read from layout and context instead. Albedos are linear reflectances.
    """

    # road surface
    asphalt_albedo: float = 0.25  # ~0.08 fresh near-black asphalt .. ~0.55 bleached / concrete-like
    asphalt_tint: tuple[float, float, float] = (1.0, 1.0, 1.03)
    asphalt_coarse: float = 0.15  # metre-scale blotches (ageing, resurfacing), relative amplitude
    asphalt_mid: float = 0.1  # quarter-metre mottling
    asphalt_fine: float = 0.25  # aggregate speckle
    aggregate_scale: float = 35.0  # speckle cells per metre (aggregate grain, faded with distance)
    repair_prob: float = 0.1  # fraction of road cells carrying a rectangular repair patch
    repair_size: tuple[float, float] = (2.5, 4.0)  # repair cell across / along the road, metres
    repair_shade: float = 0.8  # patch brightness factor (fresh patches are darker, old ones lighter)
    crack_density: float = 0.2  # fraction of the road with (sealed) crack networks
    crack_shade: float = 0.5
    wetness: float = 0.0  # 0 dry .. 1 soaked: darkening and puddles
    track_shade: float = -0.06  # wheel tracks: polished (+) or darker (-)
    gutter_width: float = 0.0  # concrete gutter along the kerb, metres (0 = none)
    gutter_shade: float = 1.0
    # lane markings
    markings: bool = True
    centre_style: int = 0  # 0 dashed, 1 solid, 2 double solid
    centre_yellow: bool = False
    edge_lines: bool = True
    zebra: bool = True
    marking_albedo: float = 0.85
    marking_width: float = 0.13
    marking_wear: float = 0.2  # fraction of the paint worn off
    # kerb and sidewalk
    kerb_width: float = 0.2
    kerb_height: float = 0.12  # drawn as the lit/shaded face band next to the road
    kerb_color: tuple[float, float, float] = (0.6, 0.6, 0.6)
    kerb_painted: bool = False  # alternating red/white segments
    paving: int = 1  # 0 concrete slabs, 1 square pavers, 2 bricks (running bond), 3 asphalt
    tile_size: float = 0.4
    joint_shade: float = 0.75
    tile_var: float = 0.12
    # terrain and vegetation
    dirt_color: tuple[float, float, float] = (0.4, 0.34, 0.26)
    dirt_frac: float = 0.2
    leaf_colors: tuple[tuple[float, float, float], ...] = ((0.2, 0.33, 0.1),)
    leaf_gap: float = 0.2  # fraction of foliage that is dark gaps between leaf clumps
    # light and sky
    sun_color: tuple[float, float, float] = (1.0, 1.0, 1.0)
    ambient_color: tuple[float, float, float] = (1.0, 1.0, 1.0)
    cloud_cover: float = 0.0
    cloud_color: tuple[float, float, float] = (0.95, 0.95, 0.97)


@dataclass
class SceneConfig:
    """Every random choice of a scene that is not a per-object placement, drawn from one seed.

    Kept as a plain dataclass so a scene can be described (and tweaked in tests) without
    re-running the generator's random stream.
    """

    seed: int
    # road layout
    lane_width: float = 3.3
    lanes_per_side: int = 1
    parking: bool = True
    sidewalk_width: float = 3.0
    terrain_width: float = 0.0
    verge_first: bool = False  # grass verge between road and sidewalk (else behind the sidewalk)
    curve_amplitude: float = 0.0  # metres; 0 = straight road with intersections
    curve_period: float = 300.0
    curve_phase: float = 0.0
    intersection_spacing: float = 90.0
    intersection_offset: float = 40.0
    cross_width: float = 9.0
    dash_period: float = 12.0
    dash_length: float = 4.0
    # population (per 100 m of road, both sides together)
    building_gap_prob: float = 0.15
    tree_spacing: float = 12.0
    car_density: float = 10.0
    person_density: float = 8.0
    big_vehicle_prob: float = 0.3
    front_wall_prob: float = 0.25  # low wall / fence between sidewalk and a building's front yard
    # appearance
    sun_azimuth: float = 0.5
    sun_elevation: float = 0.7
    sun_intensity: float = 0.75
    ambient: float = 0.45
    sky_zenith: tuple[float, float, float] = (0.35, 0.55, 0.85)
    sky_horizon: tuple[float, float, float] = (0.75, 0.82, 0.9)
    fog_density: float = 0.004
    noise_sigma: float = 2.0
    exposure: float = 1.0
    asphalt: tuple[float, float, float] = (0.32, 0.32, 0.34)
    sidewalk_color: tuple[float, float, float] = (0.62, 0.6, 0.57)
    grass_color: tuple[float, float, float] = (0.28, 0.4, 0.16)
    # camera
    focal_ratio: float = 0.7  # fx / W
    principal_jitter: tuple[float, float] = (0.0, 0.0)  # fraction of W, H
    camera_height: float = 1.5
    camera_pitch: float = 0.02  # radians, positive looks down
    camera_roll: float = 0.0  # radians about the optical axis (real rigs are mounted within ~1-2 deg)
    ego_lane: int = 0  # 0 = lane next to the centre line
    # domain randomisation: None = the basic (generator 1.0) look
    look: Look | None = None

    @property
    def randomization(self) -> str:
        return "basic" if self.look is None else "full"

    @property
    def hfov_deg(self) -> float:
        """Horizontal field of view in degrees (``focal_ratio = 0.5 / tan(hfov / 2)``)."""
        return math.degrees(2.0 * math.atan(0.5 / self.focal_ratio))

    @property
    def road_half_width(self) -> float:
        return self.lanes_per_side * self.lane_width + (2.3 if self.parking else 0.0)

    @property
    def straight(self) -> bool:
        return self.curve_amplitude == 0.0

    @classmethod
    def from_seed(cls, seed: int, randomization: str = "full") -> SceneConfig:
        """Draw a scene description; every field varies so the network sees many looks.

        ``randomization="basic"`` is the generator-1.0 distribution, bit for bit. ``"full"`` draws the
        same layout (same random stream) and then, from a second stream of the same seed, a
        :class:`Look` plus a wider camera (hfov 40-100 deg, height 1.2-2.0 m, pitch -3..+6 deg,
        small roll) and sun, so an on/off ablation compares the same streets.
        """
        if randomization not in RANDOMIZATIONS:
            raise ValueError(f"randomization must be one of {RANDOMIZATIONS}, got {randomization!r}")
        cfg = cls._from_seed_basic(seed)
        return cfg if randomization == "basic" else _randomize(cfg)

    @classmethod
    def _from_seed_basic(cls, seed: int) -> SceneConfig:
        r = np.random.default_rng([int(seed), 0x5CE0E])
        u = r.uniform
        overcast = r.random() < 0.3
        if overcast:
            g = u(0.62, 0.8)
            zen = (g * 0.92, g * 0.95, g)
            hor = (min(1.0, g + 0.1),) * 3
        else:
            zen = (u(0.2, 0.42), u(0.42, 0.6), u(0.75, 0.95))
            hor = (u(0.7, 0.85), u(0.78, 0.88), u(0.86, 0.95))
        tint = u(0.85, 1.1)
        curved = r.random() < 0.35
        return cls(
            seed=int(seed),
            lane_width=u(3.0, 3.6),
            lanes_per_side=int(r.choice([1, 1, 2, 2, 3])),
            parking=bool(r.random() < 0.7),
            sidewalk_width=u(2.0, 4.5),
            terrain_width=float(r.choice([0.0, 0.0, u(1.0, 4.0)])),
            verge_first=bool(r.random() < 0.5),
            curve_amplitude=u(2.0, 6.0) if curved else 0.0,
            curve_period=u(220.0, 420.0),
            curve_phase=u(0, 2 * math.pi),
            intersection_spacing=u(60.0, 140.0),
            intersection_offset=u(25.0, 60.0),
            cross_width=u(7.0, 12.0),
            dash_period=u(9.0, 15.0),
            dash_length=u(2.5, 6.0),
            building_gap_prob=u(0.05, 0.35),
            tree_spacing=u(8.0, 25.0),
            car_density=u(4.0, 16.0),
            person_density=u(4.0, 18.0),
            big_vehicle_prob=u(0.04, 0.22),
            sun_azimuth=u(-math.pi, math.pi),
            sun_elevation=u(0.25, 1.1),
            sun_intensity=u(0.25, 0.45) if overcast else u(0.6, 0.9),
            ambient=u(0.5, 0.65) if overcast else u(0.35, 0.5),
            sky_zenith=zen,
            sky_horizon=hor,
            fog_density=u(0.0, 0.012) if r.random() < 0.7 else u(0.012, 0.025),
            noise_sigma=u(0.5, 4.0),
            exposure=u(0.85, 1.15),
            asphalt=tuple(float(c) for c in np.array([1.0, 1.0, 1.04]) * u(0.22, 0.4)),
            sidewalk_color=tuple(float(c) for c in np.array([1.0, 0.97, 0.92]) * u(0.5, 0.7) * tint),
            grass_color=(u(0.2, 0.35), u(0.32, 0.45), u(0.1, 0.2)),
            focal_ratio=u(0.5, 0.9),
            principal_jitter=(u(-0.02, 0.02), u(-0.04, 0.04)),
            camera_height=u(1.2, 1.8),
            camera_pitch=u(-0.02, 0.06),
            ego_lane=int(r.integers(0, 3)),
            front_wall_prob=u(0.0, 0.6),
        )

    def intrinsics(self, height: int, width: int) -> np.ndarray:
        """Pinhole K for an image of ``height x width`` (square pixels)."""
        f = self.focal_ratio * width
        cx = width * (0.5 + self.principal_jitter[0])
        cy = height * (0.5 + self.principal_jitter[1])
        return np.array([[f, 0, cx], [0, f, cy], [0, 0, 1]], np.float64)


def _grey(r: np.random.Generator, v: float, jitter: float = 0.03) -> tuple[float, float, float]:
    """Near-neutral colour of brightness ``v`` with a small random tint."""
    return tuple(float(np.clip(v * (1 + r.uniform(-jitter, jitter)), 0.0, 1.0)) for _ in range(3))


def _randomize(cfg: SceneConfig) -> SceneConfig:
    """Full domain randomisation on top of a basic config, from a second random stream of its seed.

    The basic stream is left untouched, so the street layout (and every object placement) is the
    same with and without randomisation; only appearance, sun and camera change.
    """
    r = np.random.default_rng([cfg.seed, 0xD0A11])
    u = r.uniform
    zen = cfg.sky_zenith
    overcast = zen[2] / max(zen[0], 1e-6) < 1.2  # the basic stream's grey sky
    # ---- road: uniform over the span of real asphalt, so brightness alone never tells the class
    alb = u(0.08, 0.55)
    tint = r.choice(3)  # neutral, warm/brown (aged, sandy), cool/blue (fresh, granite aggregate)
    t3 = [(1.0, 1.0, 1.0), (1.06, 1.0, 0.92), (0.96, 0.99, 1.06)][int(tint)]
    asphalt_tint = tuple(float(c * (1 + u(-0.02, 0.02))) for c in t3)
    wet = u(0.3, 1.0) if r.random() < 0.2 else 0.0
    centre_yellow = bool(r.random() < 0.25)
    markings = bool(r.random() < 0.88)
    # ---- sidewalk: close to the road (same asphalt, similar grey) or clearly different
    close = r.random() < 0.4
    if close:
        sw = tuple(float(np.clip(alb * c * u(0.75, 1.35), 0.05, 0.85)) for c in asphalt_tint)
        paving = 3 if r.random() < 0.45 else int(r.choice([0, 1, 2]))
    else:
        kind = int(r.choice(5))
        if kind == 0:  # concrete
            sw = _grey(r, u(0.35, 0.75))
        elif kind == 1:  # beige / sandstone
            sw = tuple(float(c) for c in np.array([1.0, 0.93, 0.8]) * u(0.45, 0.75))
        elif kind == 2:  # red brick pavers
            sw = tuple(float(c) for c in np.array([0.62, 0.36, 0.3]) * u(0.6, 1.1))
        elif kind == 3:  # dark pavers (darker than a light road)
            sw = _grey(r, u(0.14, 0.3))
        else:  # warm grey
            sw = tuple(float(c) for c in np.array([1.0, 0.97, 0.92]) * u(0.4, 0.7))
        paving = int(r.choice([0, 1, 1, 2]))
    tile = {0: u(0.9, 2.0), 1: u(0.2, 0.5), 2: 0.2, 3: 1.0}[paving]
    kerb_kind = int(r.choice(4))
    kerb = [_grey(r, u(0.55, 0.8)), _grey(r, u(0.3, 0.5)), sw, _grey(r, u(0.45, 0.7))][kerb_kind]
    # ---- terrain and vegetation (green, olive, dry, autumn)
    season = r.random()
    if season < 0.6:
        grass = (u(0.16, 0.32), u(0.3, 0.45), u(0.08, 0.18))
        leaves = [(u(0.08, 0.25), u(0.2, 0.4), u(0.04, 0.14)) for _ in range(3)]
    elif season < 0.75:  # dry summer
        grass = (u(0.4, 0.55), u(0.38, 0.5), u(0.2, 0.3))
        leaves = [(u(0.18, 0.3), u(0.25, 0.38), u(0.1, 0.18)) for _ in range(3)]
    elif season < 0.9:  # autumn: greens mixed with yellow, orange and red trees
        grass = (u(0.22, 0.38), u(0.3, 0.42), u(0.12, 0.2))
        leaves = [
            (u(0.12, 0.25), u(0.22, 0.36), u(0.06, 0.14)),
            (u(0.42, 0.55), u(0.36, 0.46), u(0.08, 0.16)),  # muted: real autumn crowns are mostly shade
            (u(0.42, 0.52), u(0.24, 0.32), u(0.06, 0.12)),
            (u(0.34, 0.44), u(0.14, 0.2), u(0.06, 0.1)),
        ]
    else:  # olive / mediterranean
        grass = (u(0.3, 0.42), u(0.32, 0.42), u(0.16, 0.24))
        leaves = [(u(0.16, 0.26), u(0.24, 0.34), u(0.12, 0.2)) for _ in range(3)]
    # ---- light: warm low sun, blue skylight on clear days, clouds
    el = u(0.12, 1.25)
    warm = (1.0 - math.sin(el)) ** 2
    sun_color = (1.0, 1.0 - 0.15 * warm, 1.0 - 0.4 * warm)
    if overcast:
        amb_color = (1.0, 1.0, 1.0)
        cover, cloud = u(0.55, 1.0), _grey(r, u(0.6, 0.85), 0.01)
    else:
        b = u(0.0, 0.12)
        amb_color = (1.0 - b, 1.0, 1.0 + b)
        cover = 0.0 if r.random() < 0.3 else u(0.1, 0.7)
        cloud = _grey(r, u(0.85, 1.0), 0.01)
    look = Look(
        asphalt_albedo=alb,
        asphalt_tint=asphalt_tint,
        asphalt_coarse=u(0.03, 0.25),
        asphalt_mid=u(0.0, 0.15),
        asphalt_fine=u(0.05, 0.3),
        aggregate_scale=u(25.0, 50.0),
        repair_prob=u(0.0, 0.25) if r.random() < 0.6 else 0.0,
        repair_size=(u(1.5, 4.0), u(2.0, 8.0)),
        repair_shade=u(0.55, 0.9) if r.random() < 0.6 else u(1.1, 1.5),
        crack_density=u(0.0, 0.5) if r.random() < 0.5 else 0.0,
        crack_shade=u(0.25, 0.7),
        wetness=wet,
        track_shade=u(-0.07, 0.07),
        gutter_width=u(0.25, 0.5) if r.random() < 0.35 else 0.0,
        gutter_shade=u(0.7, 1.6),
        markings=markings,
        centre_style=int(r.choice([0, 0, 1, 2])),
        centre_yellow=centre_yellow,
        edge_lines=bool(r.random() < 0.6),
        zebra=bool(r.random() < 0.7),
        marking_albedo=u(0.6, 0.92),
        marking_width=u(0.1, 0.2),
        marking_wear=u(0.0, 0.7),
        kerb_width=u(0.12, 0.35),
        kerb_height=u(0.08, 0.2),
        kerb_color=tuple(float(c) for c in kerb),
        kerb_painted=bool(r.random() < 0.08),
        paving=paving,
        tile_size=tile,
        joint_shade=u(0.55, 0.95),
        tile_var=u(0.03, 0.2),
        dirt_color=(u(0.3, 0.5), u(0.26, 0.4), u(0.18, 0.28)),
        dirt_frac=u(0.0, 0.4),
        leaf_colors=tuple(tuple(float(c) for c in lc) for lc in leaves),
        leaf_gap=u(0.05, 0.3),
        sun_color=sun_color,
        ambient_color=amb_color,
        cloud_cover=cover,
        cloud_color=tuple(float(c) for c in cloud),
    )
    hfov = math.radians(u(40.0, 100.0))
    return replace(
        cfg,
        look=look,
        asphalt=tuple(float(alb * c) for c in asphalt_tint),
        sidewalk_color=tuple(float(c) for c in sw),
        grass_color=tuple(float(c) for c in grass),
        sun_elevation=el,
        focal_ratio=0.5 / math.tan(hfov / 2),
        camera_height=u(1.2, 2.0),
        camera_pitch=math.radians(u(-3.0, 6.0)),
        camera_roll=math.radians(float(np.clip(r.normal(0.0, 0.7), -2.0, 2.0))),
    )


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------
# World: primitives generated from a seed
# --------------------------------------------------------------------------------------------
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


class World:
    """All static geometry of one procedural street, plus the road centreline and camera path.

    The world spans ``z`` in ``[-30, length]`` so a camera travelling ``length - MAX_DEPTH``
    metres always has scenery in front of it.
    """

    def __init__(self, config: SceneConfig, length: float = 300.0) -> None:
        self.config = config
        self.length = float(length)
        self.z_min = -40.0
        self.z_max = self.length
        c = config
        el, az = c.sun_elevation, c.sun_azimuth
        self.sun = np.array([math.cos(el) * math.sin(az), math.sin(el), math.cos(el) * math.cos(az)])
        self._prims = _Prims()
        self._rng = np.random.default_rng([c.seed, 0xB0B])
        # appearance draws of the full randomisation come from their own stream, so the layout
        # stream above (and with it every placement) is identical with and without it
        self.look = c.look
        self._rng_look = np.random.default_rng([c.seed, 0xFACADE])
        if self.look is not None:
            tr = np.random.default_rng([c.seed, 0x7E47])
            # coarse blotches, mid mottling/paint wear, crack contours, clouds/puddles
            self.noise_tex = [_fractal_noise(tr, beta) for beta in (3.0, 2.0, 3.5, 2.6)]
        self._generate()
        self._finalize()
        self._camera_path()

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
                        if r.random() < c.front_wall_prob:
                            self._add_wall_or_fence(zc, side * (front + 0.15), w * r.uniform(0.6, 1.0))
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
        mat = int(r.choice(6, p=[0.32, 0.2, 0.18, 0.1, 0.1, 0.1]))
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
        x, zz, _ = self.road_point(z, q)
        trunk_h = r.uniform(1.8, 3.5)
        tr = r.uniform(0.1, 0.22)
        bark = np.array([0.3, 0.24, 0.18]) * r.uniform(0.7, 1.2)
        P.add(_CYL, VEGETATION, _T_PLAIN, bark, (x, trunk_h / 2, zz), (tr, trunk_h / 2, tr))
        leaf = np.array([r.uniform(0.12, 0.3), r.uniform(0.25, 0.42), r.uniform(0.06, 0.16)])
        if self.look is not None:
            leaf = self._leaf_color()
        cr = r.uniform(1.4, 3.4)
        cy = trunk_h + cr * r.uniform(0.6, 0.9)
        P.add(_ELL, VEGETATION, _T_FOLIAGE, leaf, (x, cy, zz), (cr, cr * r.uniform(0.9, 1.4), cr))
        if r.random() < 0.5:
            c2 = cr * r.uniform(0.6, 0.85)
            P.add(
                _ELL,
                VEGETATION,
                _T_FOLIAGE,
                leaf * r.uniform(0.85, 1.15),
                (x + r.uniform(-1, 1), cy + cr * 0.7, zz + r.uniform(-1, 1)),
                (c2, c2, c2),
            )

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
        legs = np.array([0.15, 0.15, 0.2]) * r.uniform(0.6, 2.5)
        shirt = r.uniform(0.08, 0.85, 3) * r.uniform(0.5, 1.0)
        skin = np.array([0.85, 0.65, 0.5]) * r.uniform(0.45, 1.05)
        hair = np.array([0.15, 0.1, 0.06]) * r.uniform(0.5, 3.5)
        P.add(_CYL, PERSON, _T_PLAIN, legs, (x, 0.43 * s, zz), (0.15 * s, 0.43 * s, 0.15 * s))
        P.add(_CYL, PERSON, _T_PLAIN, shirt, (x, 1.15 * s, zz), (0.2 * s, 0.3 * s, 0.2 * s))
        P.add(_ELL, PERSON, _T_HEAD, skin, (x, 1.58 * s, zz), (0.1 * s, 0.13 * s, 0.1 * s), 0.0, tuple(hair))

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

    def _add_truck(self, z, q, flip=False) -> None:
        r, P = self._rng, self._prims
        x, zz, psi = self.road_point(z, q)
        psi = psi + (np.pi if flip else 0.0)
        fwd = np.array([math.sin(psi), math.cos(psi)])
        W = 2.4
        cab_col = _CAR_COLORS[r.integers(0, len(_CAR_COLORS))]
        box_col = np.array([0.85, 0.85, 0.83]) * r.uniform(0.6, 1.1)
        L = r.uniform(6.0, 9.0)
        P.add(_BOX, TRUCK, _T_PLAIN, (0.05, 0.05, 0.05), (x, 0.3, zz), (W / 2 - 0.1, 0.3, L / 2), psi)
        cab = fwd * (L / 2 + 1.0)
        P.add(_BOX, TRUCK, _T_TRUCKCAB, cab_col, (x + cab[0], 1.55, zz + cab[1]), (W / 2, 1.25, 1.0), psi, (2.5,))
        hb = r.uniform(3.2, 3.9)
        P.add(_BOX, TRUCK, _T_PLAIN, box_col, (x, 0.6 + (hb - 0.6) / 2, zz), (W / 2, (hb - 0.6) / 2, L / 2), psi)

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
        th = c.camera_pitch
        f = np.array([math.sin(psi) * math.cos(th), -math.sin(th), math.cos(psi) * math.cos(th)])
        right = np.cross(f, [0.0, 1.0, 0.0])
        right /= np.linalg.norm(right)
        down = np.cross(f, right)
        if c.camera_roll:
            cr, sr = math.cos(c.camera_roll), math.sin(c.camera_roll)
            right, down = cr * right + sr * down, -sr * right + cr * down
        T = np.eye(4)
        T[:3, 0], T[:3, 1], T[:3, 2] = right, down, f
        T[:3, 3] = (x, c.camera_height, zz)
        return T


# --------------------------------------------------------------------------------------------
# Renderer
# --------------------------------------------------------------------------------------------
class Renderer:
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
        alb, nrm = self._objects(p, Pw, key)
        ndl = np.maximum(nrm @ L, 0)
        if look is None:
            light = amb * (0.8 + 0.2 * nrm[:, 1]) + sun_i * ndl
            rgb[oi] = alb * light[:, None]
        else:
            light3 = (0.8 + 0.2 * nrm[:, 1])[:, None] * ambc + ndl[:, None] * sunc
            rgb[oi] = alb * light3

        # sky
        si = np.flatnonzero((pidf < 0) & (DY.ravel() >= 0))
        sem[si] = SKY
        rgb[si] = self._sky(DX.ravel()[si], DY.ravel()[si], DZ.ravel()[si])
        # far ground (ignore): haze
        fi = np.flatnonzero((pidf < 0) & ~ground.ravel() & (DY.ravel() < 0))
        rgb[fi] = np.asarray(cfg.sky_horizon, np.float32)

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
                    centre = np.abs(aqr - 0.12) < lw
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
            dirt = _tex(tx[0], z * 4 + 101, x * 4) < L.dirt_frac
            dcol = np.asarray(L.dirt_color, np.float32) * (0.8 + 0.3 * n1)[:, None]
            alb[ti] = np.where(dirt[:, None], dcol, g)

    def _objects(self, p: np.ndarray, Pw: np.ndarray, key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Deferred shading of primitive hits: albedo (M,3) and world normal (M,3).

        ``p`` is sorted by ``key = kind * 16 + texture``, so each group is a slice (views, no
        gathers), which is what keeps this pass cheap in numpy.
        """
        w = self.world
        M = len(p)
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
                ls = np.float32(9.0 if w.look is None else 16.0)  # finer leaf clumps: no blocky spots
                n1 = _hash2(_floor_i(q[:, 0] * ls) * 7919 + _floor_i(q[:, 1] * ls), _floor_i(q[:, 2] * ls), 7)
                n2 = _hash2(_floor_i(q[:, 0] * 2.5) * 7919 + _floor_i(q[:, 1] * 2.5), _floor_i(q[:, 2] * 2.5), 12)
                ao = 0.6 + 0.4 * np.clip(gf[:, 1] * 0.5 + 0.5, 0, 1)
                if w.look is not None:  # dark gaps between leaf clumps
                    ao = ao * np.where(n1 < w.look.leaf_gap, np.float32(0.7), np.float32(1.0))
                alb[fol] *= ((0.7 + 0.3 * n1 + 0.25 * n2) * ao)[:, None]
                # leaf normals are noisy: perturb for a clumpy look
                nb = gf * 0.6 + np.stack([n1 - 0.5, n1 * 0.5, 0.5 - n1], 1) * 0.8
                nrm[fol] = nb / np.maximum(np.linalg.norm(nb, axis=1, keepdims=True), 1e-6)
            hd = groups.get(_ELL * 16 + _T_HEAD)
            if hd is not None:
                gh = nrm[hd]
                hair = (gh[:, 1] > 0.25) | ((gh[:, 2] > 0.3) & (gh[:, 1] > -0.3))
                alb[hd] = np.where(hair[:, None], np.take(w.param, p[hd], axis=0)[:, :3], alb[hd])
        return alb, nrm

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
        # car cabin: glass on the sides with a body-coloured roof and pillars
        m = groups.get(_T_GLASS)
        if m is not None:
            rel_y = yb[m] / (hb[m, 1] * 2)
            pillar = (fx_[m] & (np.abs(np.abs(lz[m]) - hb[m, 2]) < 0.12)) | (
                fz_[m] & (np.abs(np.abs(lx[m]) - hb[m, 0]) < 0.1)
            )
            gi = np.flatnonzero(side[m] & (rel_y > 0.08) & (rel_y < 0.88) & ~pillar)
            g = 0.08 + 0.14 * rel_y[gi]
            ab[m][gi] = np.stack([g, g * 1.1, g * 1.25], 1)
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


# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------
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
) -> Iterator[Frame]:
    """Yield ``n_frames`` of a camera driving at ``speed`` m/s through the street of ``seed``.

    Frame ``i`` is stamped ``round(i * 1e9 / fps)`` ns and its camera has travelled
    ``i * speed / fps`` metres along the ego lane. Output is a pure function of the arguments.
    ``randomization`` is ``"full"`` (domain randomised) or ``"basic"`` (generator 1.0 look).
    """
    if n_frames < 0 or height < 1 or width < 1 or fps <= 0 or speed < 0:
        raise ValueError("render_sequence: need n_frames >= 0, height/width >= 1, fps > 0, speed >= 0")
    travel = speed * max(n_frames - 1, 0) / fps
    world = World(SceneConfig.from_seed(seed, randomization), length=travel + MAX_DEPTH + 20.0)
    renderer = Renderer(world, height, width)
    for i in range(n_frames):
        pose = world.camera_pose(i * speed / fps)
        yield _frame(renderer, pose, round(i * 1e9 / fps), i)


def render_frame(seed: int, height: int = 256, width: int = 512, randomization: str = "full") -> Frame:
    """One independent frame: a fresh street from ``seed`` seen from a random point along it."""
    world = World(SceneConfig.from_seed(seed, randomization), length=MAX_DEPTH + 80.0)
    s = float(np.random.default_rng([int(seed), 0xF4]).uniform(0.0, 60.0))
    return _frame(Renderer(world, height, width), world.camera_pose(s), 0, 0)
