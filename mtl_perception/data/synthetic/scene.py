"""Scene description drawn from a seed: :class:`SceneConfig` (layout, light, camera) and the domain
randomised :class:`Look` (``randomization="full"``).

Everything random about a scene that is not a per-object placement lives here, so a scene can be
described, compared and tweaked (tests) without running the generator.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from mtl_perception.data.synthetic.camera import pinhole_intrinsics
from mtl_perception.data.synthetic.constants import RANDOMIZATIONS


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
    # traffic ahead in the ego lane (generator 2.1): the commonest real view, a vehicle straight ahead,
    # which the moving traffic (other lanes only) never shows. It stands ``lead_gap`` metres beyond the
    # camera's last position (a queue the ego car drives up to); 0 = none.
    lead_gap: float = 0.0
    lead_kind: int = 0  # 0 car, 1 truck, 2 bus
    lead_offset: float = 0.0  # lateral offset from the ego lane centre, metres
    lead_queue: int = 0  # further cars queued ahead of it
    # grass (generator 2.2): real verges read as grass by their blade texture, mowing stripes and dry
    # patches, not by a flat green; without them real grass looked like road to the network
    grass_blades: float = 0.0  # relative amplitude of the blade-scale speckle (faded with distance)
    mow_stripes: float = 0.0  # brightness amplitude of mowing stripes along the road (0 = unmown)
    mow_width: float = 1.0  # stripe width, metres
    dry_color: tuple[float, float, float] = (0.45, 0.42, 0.28)
    dry_frac: float = 0.0  # fraction of the verge in dry / worn patches
    # grass verges (generator 2.3): real streets lay a strip of the pavement as grass (12 % of the
    # labelled Cityscapes pixels are terrain, 1.5 % of generator 2.2's), and the network called real
    # verges road. The strip is carved out of the sidewalk band, so no object moves.
    verge_width: float = 0.0  # metres of the sidewalk band laid as grass (0 = none)
    verge_at_kerb: bool = True  # grass right behind the kerb stones (else along the building line)
    # winter trees and sign boards (generator 2.4): the shipped model called 63 % of the real leafless
    # trees (CamVid) building and 75 % of the real sign boards (Cityscapes) building
    bare_trees: float = 0.0  # fraction of leafless trees: branches over the sky behind (labelled vegetation)
    board_spacing: float = 0.0  # mean metres between sign boards on each side (0 = none)
    # front gardens and shaped signs (generator 2.6): the network put real hedges and garden fences
    # behind parked cars 1.5-2x too far (as a distant building), and labelled no real sign a sign
    garden_edge: float = 0.0  # share of the buildings without a front wall given a hedge or garden fence
    sign_spacing: float = 0.0  # mean metres between posts of triangle / disc signs on each side (0 = none)
    # car glass (generator 2.7): real rear windows and windscreens mirror the sky and the trees; 2.6's
    # were plain dark, and real ones read as vegetation or building at 2-3x their distance
    glass_reflect: float = 0.0  # share of the mirrored sky in car glass (0 = plain dark glass)
    # cyclists (generator 2.8): no earlier generator drew a rider or a bicycle (2 of the 16 classes of
    # the labelled Cityscapes frames, and the road users a vehicle must not miss)
    cyclist_spacing: float = 0.0  # mean metres between cyclists on each side (0 = none)
    bike_rack_spacing: float = 0.0  # mean metres between groups of parked bicycles on each side (0 = none)
    # pedestrians: one 0.3 m cylinder for both legs, one for the torso and a head (a pole with a head);
    # True draws two legs in a stride, arms, coats and bags instead (own random stream, every other
    # object unchanged). Off in every generator so far: section 26 of docs/sim2real.md measured it
    articulated_people: bool = False
    # truck underbodies (generator 2.10): tyres, rims, an underride bar, rear lamps and a number plate
    # under a cargo box 1.0-1.3 m up; 2.8's plain black slab taught "wheels and lamps = car", and the
    # network called the lower half of a real truck's rear car
    truck_underbody: bool = False
    # building-base clutter (generator 2.11): bins, cabinets, planters, entrance pillars and bollards at
    # the building line; before it only people stood there, and real shop fronts read as person
    frontage_clutter: bool = False
    # cloth on people: True draws creases, hems, stripes, checks, prints and open jackets on pedestrians'
    # and riders' clothes from each primitive's own hash (no random draw: streets and labels unchanged).
    # Tried as 2.12 and off: it called more real pixels person, not fewer (docs/sim2real.md, section 37)
    cloth_texture: bool = False
    # loads on car roofs (generator 2.13): roof boxes, crossbars with luggage, AV sensor rigs, taxi and
    # driving-school signs, on this share of the cars (0 = none). Cars before 2.13 ended at the glass, and
    # the real lead car's roof rig (DDAD) read as the trees behind it, at 2-5x its distance
    roof_load: float = 0.0
    # leafy crowns: foliage as clumps of leaves (cells of 3-D Worley noise, each lit from its own side,
    # dark crevices between them, leaf-scale grain, sky through gaps at a crown's rim) instead of a smooth
    # ellipsoid under one hashed 6 cm grain. Colour only, from each hit's own hash (no random draw:
    # streets, labels and depth unchanged). Tried as 2.14 and off: near real foliage came closer, but so
    # did every farther real tree (docs/sim2real.md, section 45)
    leafy_crowns: bool = False
    # branch masses (with leafy_crowns): a second, coarser level of Worley cells 0.9 m apart (0.6 m on
    # hedges) that shade the clumps on them as one ball, with deep shade and ragged notches between them,
    # so that a far crown keeps structure. Tried as 2.15 and off: the farther real trees came closer
    # still (docs/sim2real.md, section 46)
    crown_masses: bool = False
    # near foliage: bushes and small trees with crowns from knee to head height at the kerb, along the
    # building line and between the buildings, on this share of the places (0 = none). Rendered crowns sat
    # on 1.8-3.5 m trunks at the verge, and real near trees and hedges (KITTI) read 1.4-1.7x too far.
    # Tried as 2.16 and off: KITTI's near foliage came closer, Cityscapes lost 0.56 points
    # (docs/sim2real.md, section 48)
    near_foliage: float = 0.0
    # crown clearance: street-tree trunks and crowns raised where a crown reaches over the carriageway, so it
    # clears the road by CARRIAGEWAY_CLEARANCE as pruned real street trees do. No value drawn changes.
    # Without it crowns hang into the lanes down to the ground, and a camera in the kerb lane can sit inside
    # one (one SYN5000 frame in 200: 63 % of the view nearer than 1 m). Tried as 2.17 and off for training
    # (docs/sim2real.md, section 71); on in the rendered test set SYN8000 (section 70)
    crown_clearance: bool = False


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
        small roll) and sun, so an on/off ablation compares the same streets (all but the 3 in 10 that
        2.3 gives a wide grass verge without parked cars).
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
        return pinhole_intrinsics(self.focal_ratio, self.principal_jitter, height, width)


def _grey(r: np.random.Generator, v: float, jitter: float = 0.03) -> tuple[float, float, float]:
    """Near-neutral colour of brightness ``v`` with a small random tint."""
    return tuple(float(np.clip(v * (1 + r.uniform(-jitter, jitter)), 0.0, 1.0)) for _ in range(3))


def _randomize(cfg: SceneConfig) -> SceneConfig:
    """Full domain randomisation on top of a basic config, from a second random stream of its seed.

    The basic stream is left untouched, so the street layout (and every object placement) is the
    same with and without randomisation; only appearance, sun and camera change. The exception
    (2.3): 3 streets in 10 get a wide verge (2.5: at the road or behind the sidewalk) and no parked cars.
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
    cfg = replace(
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
    # drawn last so every draw above (and the 2.0 look of a seed) stays as it was
    lead = r.random() < 0.6
    lead_look = replace(
        look,
        lead_gap=u(3.5, 22.0) if lead else 0.0,
        lead_kind=int(r.choice([0, 0, 0, 0, 0, 0, 1, 2])),
        lead_offset=u(-0.5, 0.5),
        lead_queue=int(r.choice([0, 0, 1, 2])),
    )
    # generator 2.2, drawn after everything of 2.1
    grass_look = replace(
        lead_look,
        grass_blades=u(0.15, 0.6),
        mow_stripes=u(0.04, 0.14) if r.random() < 0.35 else 0.0,
        mow_width=u(0.7, 1.6),
        dry_color=(u(0.38, 0.55), u(0.34, 0.48), u(0.2, 0.3)),
        dry_frac=u(0.05, 0.45) if r.random() < 0.6 else 0.0,
    )
    # generator 2.3, drawn after everything of 2.2. A strip of the sidewalk band laid as grass moves
    # nothing. A wide verge (3 in 10 streets) is the one layout change "full" makes: no parked cars
    # (they hid the verge) and every building moved back by its width, so those streets' placements
    # differ from "basic". Real suburban verges are metres wide. 2.5: strips in 25 % of streets (2.3:
    # 55 %), 30-60 % of the band (2.3: 35-100 %).
    verge = r.random() < 0.25
    verge_look = replace(
        grass_look,
        verge_width=cfg.sidewalk_width * u(0.3, 0.6) if verge else 0.0,
        verge_at_kerb=bool(r.random() < 0.65),
    )
    wide = r.random() < 0.3
    wide_verge = u(2.5, 8.0)
    if wide:
        cfg = replace(cfg, terrain_width=wide_verge, verge_first=True, parking=False)
    # generator 2.4, drawn after everything of 2.3
    winter = r.random() < 0.18
    winter_look = replace(
        verge_look,
        bare_trees=u(0.5, 1.0) if winter else (u(0.0, 0.3) if r.random() < 0.15 else 0.0),
        board_spacing=u(25.0, 80.0) if r.random() < 0.7 else 0.0,
    )
    # generator 2.5, drawn after everything of 2.4: 2.3's verges took a third of the rendered sidewalk
    # (3.8 % -> 2.3 % of the pixels) and real sidewalks went to road; narrower strips, and half the wide
    # verges lie behind the sidewalk instead of at the road
    if wide and r.random() < 0.5:
        cfg = replace(cfg, verge_first=False)
    # generator 2.6, drawn after everything of 2.5: hedges / garden fences at the building line and
    # triangle / disc traffic signs, both placed after every other object from their own streams
    garden_look = replace(
        winter_look,
        garden_edge=u(0.4, 0.95) if r.random() < 0.55 else 0.0,
        sign_spacing=u(12.0, 35.0) if r.random() < 0.75 else 0.0,
    )
    # generator 2.7, drawn after everything of 2.6: reflecting car glass
    glass_look = replace(garden_look, glass_reflect=u(0.4, 0.9))
    # generator 2.8, drawn after everything of 2.7: cyclists and parked bicycles, own stream
    cyclist_look = replace(
        glass_look,
        cyclist_spacing=u(15.0, 60.0) if r.random() < 0.6 else 0.0,
        bike_rack_spacing=u(25.0, 80.0) if r.random() < 0.45 else 0.0,
    )
    # articulated pedestrians (Look.articulated_people) stay off: trained on them, the network called
    # more real facade edges, poles and cars person, not fewer (docs/sim2real.md, section 26)
    # generator 2.10: truck underbodies, no draw here (their shapes come from World's own stream);
    # generator 2.11: building-base clutter, likewise. Cloth on people (Look.cloth_texture) stays off:
    # trained on it, the network called more real pixels person (docs/sim2real.md, section 37)
    # generator 2.13, drawn after everything of 2.11: the share of cars with a load on the roof (the
    # loads' shapes come from World's own stream)
    roof = u(0.15, 0.5) if r.random() < 0.75 else 0.0
    # leafy crowns (Look.leafy_crowns, tried as 2.14, and with Look.crown_masses as 2.15) stay off: both
    # brought near real foliage closer and every farther real tree too (docs/sim2real.md, sections 45-46)
    # near foliage (Look.near_foliage, tried as 2.16) stays off: it brought KITTI's near trees closer and
    # cost Cityscapes more than the half point its rule allowed (docs/sim2real.md, section 48)
    # crown clearance (Look.crown_clearance, tried as 2.17) stays off: trained on it, the depth round put near
    # real foliage farther still (pooled real depth +0.013-0.016 in both runs; docs/sim2real.md, section 71).
    # The rendered test set SYN8000 uses it (`synth --look crown_clearance=true`): no camera inside a crown
    return replace(cfg, look=replace(cyclist_look, truck_underbody=True, frontage_clutter=True, roof_load=roof))


def parse_look_overrides(items: Sequence[str]) -> dict[str, bool | int | float]:
    """``["crown_clearance=true", "near_foliage=0.7"]`` -> ``{"crown_clearance": True, "near_foliage": 0.7}``:
    fields of :class:`Look` set for every street (``synth --look``), to render a look option that is off by
    default without editing code. Only bool, int and float fields; ``ValueError`` names the problem."""
    types = {f.name: f.type for f in fields(Look)}
    out: dict[str, bool | int | float] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name, text = name.strip(), text.strip()
        if not sep or not name or not text:
            raise ValueError(f"look override {item!r} is not FIELD=VALUE (e.g. crown_clearance=true)")
        kind = types.get(name)
        if kind is None:
            raise ValueError(f"look override {item!r}: Look has no field {name!r} (see data/synthetic/scene.py)")
        if kind in ("bool", bool):
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError(f"look override {item!r}: {name} takes true or false")
            out[name] = text.lower() in ("true", "1")
        elif kind in ("int", "float", int, float):
            try:
                value = (int if kind in ("int", int) else float)(text)
            except ValueError:
                raise ValueError(f"look override {item!r}: {name} takes a number") from None
            if not math.isfinite(value):
                raise ValueError(f"look override {item!r}: {name} takes a finite number")
            out[name] = value
        else:
            raise ValueError(f"look override {item!r}: {name} ({kind}) cannot be set from the command line")
    return out


def with_look(cfg: SceneConfig, overrides: Mapping[str, Any] | None) -> SceneConfig:
    """``cfg`` with the fields of its look replaced by ``overrides`` (none: ``cfg`` itself). A 'basic' scene
    has no look to override: ``ValueError``."""
    if not overrides:
        return cfg
    if cfg.look is None:
        raise ValueError("look overrides need randomization 'full' ('basic' draws no look)")
    return replace(cfg, look=replace(cfg.look, **overrides))
