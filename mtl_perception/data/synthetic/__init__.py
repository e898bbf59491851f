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

Modules (by concern; this package re-exports the public API, import from here)
---------------------------------------------------------------------------------
* :mod:`.scene`: :class:`SceneConfig` and the domain-randomised :class:`Look`, drawn from a seed.
* :mod:`.world`: :class:`World`, the street's primitives, road geometry and camera path.
* :mod:`.camera`: intrinsics, camera-to-world poses, the analytic ground-depth oracle.
* :mod:`.textures`: hashes, tileable noise and palettes; :mod:`.materials`: surface albedo.
* :mod:`.render`: :class:`Renderer` (visibility, shadows, lighting) and the entry points.
* :mod:`.constants`: versions, limits, class ids.
"""

from __future__ import annotations

from mtl_perception.data.cityscapes_classes import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE, IGNORE_INDEX
from mtl_perception.data.synthetic.camera import analytic_ground_depth, camera_to_world, pinhole_intrinsics
from mtl_perception.data.synthetic.constants import (
    BICYCLE,
    BUILDING,
    BUS,
    CAR,
    FENCE,
    GENERATOR_VERSION,
    MAX_DEPTH,
    PERSON,
    POLE,
    RANDOMIZATIONS,
    RIDER,
    ROAD,
    SIDEWALK,
    SKY,
    TERRAIN,
    TLIGHT,
    TRUCK,
    TSIGN,
    VEGETATION,
    WALL,
)
from mtl_perception.data.synthetic.render import Frame, Renderer, render_frame, render_sequence
from mtl_perception.data.synthetic.scene import Look, SceneConfig
from mtl_perception.data.synthetic.world import World

__all__ = [
    "BICYCLE",
    "BUILDING",
    "BUS",
    "CAR",
    "CITYSCAPES_CLASSES",
    "CITYSCAPES_PALETTE",
    "FENCE",
    "GENERATOR_VERSION",
    "IGNORE_INDEX",
    "MAX_DEPTH",
    "PERSON",
    "POLE",
    "RANDOMIZATIONS",
    "RIDER",
    "ROAD",
    "SIDEWALK",
    "SKY",
    "TERRAIN",
    "TLIGHT",
    "TRUCK",
    "TSIGN",
    "VEGETATION",
    "WALL",
    "Frame",
    "Look",
    "Renderer",
    "SceneConfig",
    "World",
    "analytic_ground_depth",
    "camera_to_world",
    "pinhole_intrinsics",
    "render_frame",
    "render_sequence",
]
