"""Frames through the network: RGB in, labels + metric depth out, with stage timings.

The ROS node, ``replay-eval`` and the demo all call ``FramePipeline.process`` so that every
figure (latency, accuracy) is measured on exactly what the node publishes; a multi-camera node
calls ``process_batch`` (one inference call for the latest frame of every camera), which is the
same code path. No rclpy here.
"""

from __future__ import annotations

import array
import time
from dataclasses import asdict, dataclass, field, fields
from types import MappingProxyType
from typing import Any

import numpy as np

from mtl_perception.deploy import uncertainty as depth_unc
from mtl_perception.deploy.engine import InferenceEngine
from mtl_perception.deploy.postprocess import (
    GRAPH_CONFIDENCE,
    GRAPH_LABELS,
    labels_and_confidence,
    labels_from_logits,
    resize_confidence,
    resize_depth,
    resize_labels,
)
from mtl_perception.geometry import (
    Letterbox,
    canonical_depth_scale,
    check_intrinsics,
    default_intrinsics,
    scale_intrinsics,
)
from mtl_perception.ground_contact import GroundContact
from mtl_perception.ground_plane import GroundPlaneScale, GroundScale, below_horizon
from mtl_perception.person_support import PersonSupport

OUTPUT_RESOLUTIONS = ("input", "network")


@dataclass(frozen=True)
class PipelineOptions:
    """What ``FramePipeline`` does to the network's depth after inference, in one value: the node's
    parameters of the same meaning (``NODE_PARAMETER`` names them), ``eval``'s and ``replay-eval``'s
    flags (``cli.pipeline_args``) and the evaluation runners all build the pipeline from it, so a figure
    a CLI measures is the node's figure under the same settings. Defaults are the node's. The camera
    height is not here: it belongs to a rig (the node's parameter) or to a frame (datasets know theirs).

    ``ground_contact``: standing objects take the depth of the ground below them. ``sky_beyond_range``:
    sky at +inf, gated by ``sky_min_confidence``, ``sky_max_below_horizon_deg`` and
    ``sky_connected_to_top`` (``FramePipeline`` says what each does). ``people_need_support``: person
    regions with nothing below their feet are relabelled (``mtl_perception.person_support``)."""

    ground_contact: bool = True
    sky_beyond_range: bool = True
    sky_min_confidence: float = 0.5
    sky_max_below_horizon_deg: float = 5.0
    sky_connected_to_top: bool = False
    people_need_support: bool = False

    # the ROS node's parameter for each option (its names predate this class)
    NODE_PARAMETER = MappingProxyType(
        {
            "ground_contact": "ground_contact_depth",
            "sky_beyond_range": "sky_beyond_range",
            "sky_min_confidence": "sky_min_confidence",
            "sky_max_below_horizon_deg": "sky_max_below_horizon_deg",
            "sky_connected_to_top": "sky_connected_to_top",
            "people_need_support": "people_need_support",
        }
    )

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type in ("bool", bool):
                if not isinstance(value, (bool, np.bool_)):
                    raise ValueError(f"{f.name} must be true or false, got {value!r}")
                object.__setattr__(self, f.name, bool(value))
            else:
                if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
                    raise ValueError(f"{f.name} must be a number, got {value!r}")
                object.__setattr__(self, f.name, float(value))
        if not 0.0 <= self.sky_min_confidence <= 1.0:
            raise ValueError(f"sky_min_confidence must be in [0, 1], got {self.sky_min_confidence}")
        if not 0.0 <= self.sky_max_below_horizon_deg <= 90.0:
            raise ValueError(f"sky_max_below_horizon_deg must be in [0, 90], got {self.sky_max_below_horizon_deg}")

    def as_dict(self) -> dict[str, Any]:
        """The options by field name (JSON-ready: reports' meta, resume fingerprints)."""
        return asdict(self)

    @classmethod
    def from_node_parameters(cls, params: dict[str, Any]) -> PipelineOptions:
        """From the node's parameter values (by the node's names); missing ones take the defaults."""
        return cls(**{opt: params[name] for opt, name in cls.NODE_PARAMETER.items() if name in params})


def sky_reaching_top(sky: np.ndarray, connectivity: int = 8) -> np.ndarray:
    """The pixels of ``sky`` (H, W bool) whose connected region reaches the top row (the frame's top edge).

    The open sky mostly reaches the top of the frame; a region the network calls sky that other classes
    wall in (real frames: the shaded brick wall of a building whose top is in view) is often something in
    front of the camera, and +inf there would report an obstacle as free space. True sky that a tree
    crown walls in at the frame's side, or that shows only through a canopy, fails the test too and then
    carries the network's untrained depth (why ``FramePipeline`` keeps the test off by default). One pass
    of OpenCV's connected components; 8-connected, so a thin diagonal branch does not cut the sky, while a
    line of another class from one edge of the frame to the other does."""
    import cv2

    if not sky[0].any():
        return np.zeros_like(sky)
    n, regions = cv2.connectedComponents(np.ascontiguousarray(sky, np.uint8), connectivity=connectivity)
    reaches = np.zeros(n, bool)
    reaches[regions[0][sky[0]]] = True
    return reaches[regions]


def sky_filled_for_resize(grid_depth: np.ndarray, grid_sky: np.ndarray) -> np.ndarray:
    """The grid depth with the sky's (untrained) values replaced before the bilinear resize to the frame.

    A frame pixel that is not sky has its nearest grid pixel not sky, and its four bilinear
    neighbours lie in that grid pixel's 3x3 neighbourhood. So each sky grid pixel next to non-sky takes
    the farthest of its non-sky neighbours (a 3x3 dilation), and the sky's own values never reach a
    non-sky frame pixel; deeper sky only feeds frame pixels that become +inf anyway, and takes 1 m
    so every value stays valid and the resize stays on its fast path (a NaN mask would force the
    normalised-convolution path: about 5x the postprocess time of a 1600x900 frame)."""
    import cv2

    keep = ~grid_sky & np.isfinite(grid_depth)
    near = cv2.dilate(np.where(keep, grid_depth, np.float32(0.0)), np.ones((3, 3), np.uint8))
    return np.where(grid_sky, np.where(near > 0, near, np.float32(1.0)), grid_depth).astype(np.float32, copy=False)


@dataclass
class FrameResult:
    """Products of one frame. ``labels`` uint8 HxW (255 = unknown), ``depth`` float32 HxW metres
    (NaN = invalid, REP 118; +inf = sky, beyond range, REP 117), ``timings_ms`` per stage:
    preprocess, inference, postprocess (preprocess and postprocess are this frame's; inference is
    the whole batch call, shared by the ``batch_size`` frames that went through it)."""

    labels: np.ndarray
    depth: np.ndarray
    # labels on the network grid (before the nearest resize): colourise these, then resize, for
    # the same pixels at a fraction of the cost (see visualize.colorize_labels_resized)
    grid_labels: np.ndarray
    timings_ms: dict[str, float] = field(default_factory=dict)
    # "frame": the K given with the frame; "default": the model's default field of view (no or an
    # unusable K). ``depth_scale``: metres per unit of the network's canonical depth (1 if none).
    intrinsics_source: str = "frame"
    depth_scale: float = 1.0
    # frames in the inference call that produced this result (1 for ``process``)
    batch_size: int = 1
    # float32 HxW in [0, 1] (same size as ``labels``): softmax probability of the predicted class at
    # the model's calibrated temperature, on the network grid then resized nearest like the labels.
    # None unless asked for (``confidence=True``): it costs ~1.5 ms per frame on the grid.
    confidence: np.ndarray | None = None
    # float32 HxW metres (same size and NaN pixels as ``depth``, REP 118; NaN on sky too): half the width of the depth's
    # 1-sigma interval [d e^-s, d e^s] of a Gaussian on log depth (s = the head's sigma), d sinh(s),
    # first-order the standard deviation in metres; see deploy/uncertainty.py. None unless asked for
    # (``depth_uncertainty=True``) and the model has the uncertainty head.
    depth_uncertainty: np.ndarray | None = None
    # the road-plane fit that rescaled ``depth`` to the camera's mounting height (``camera_height``
    # given); ``ground_scale.factor`` is already in ``depth`` and ``depth_scale``. None: not asked.
    ground_scale: GroundScale | None = None


def message_array(shape: tuple[int, ...], dtype: type) -> np.ndarray:
    """A zeroed numpy array whose memory is an ``array.array("B")``: what rclpy stores behind a uint8[]
    message field. A message builder that finds this owner (``array_owner``) hands it to the
    message as is, so a product resized into it is published without another 3.7 MB copy at 720p."""
    n = int(np.prod(shape)) * np.dtype(dtype).itemsize
    return np.frombuffer(array.array("B", bytes(n)), np.dtype(dtype)).reshape(shape)


def array_owner(a: np.ndarray) -> array.array | None:
    """The ``array.array("B")`` that holds exactly ``a``'s bytes (C order), or None."""
    if not isinstance(a, np.ndarray) or not a.flags.c_contiguous:
        return None
    base = a.base
    while isinstance(base, np.ndarray):
        base = base.base
    if isinstance(base, memoryview):  # np.frombuffer keeps the exporter behind a memoryview
        base = base.obj
    if isinstance(base, array.array) and base.typecode == "B" and len(base) == a.nbytes:
        if a.__array_interface__["data"][0] == base.buffer_info()[0]:
            return base
    return None


class FramePipeline:
    """engine.preprocess -> engine.infer -> argmax + resize (labels nearest, depth bilinear NaN-aware).

    ``output_resolution="input"`` returns products at the frame's size (what a consumer
    overlays on the camera image); ``"network"`` at the network's grid (cheaper to publish;
    pair it with a scaled camera_info, see ``imaging.scale_camera_info``).
    """

    def __init__(
        self,
        engine: InferenceEngine,
        output_resolution: str = "input",
        reuse_buffers: bool = False,
        confidence: bool = False,
        depth_uncertainty: bool = False,
        ground_contact: bool = True,
        camera_height: float | None = None,
        sky_beyond_range: bool = True,
        sky_min_confidence: float = 0.5,
        sky_max_below_horizon_deg: float = 5.0,
        sky_connected_to_top: bool = False,
        people_need_support: bool = False,
    ) -> None:
        """(``FramePipeline.from_options`` takes the depth options as one ``PipelineOptions``.)
        ``ground_contact``: give standing objects (cars, people, poles, ...) the depth of the ground
        they stand on, column by column (``mtl_perception.ground_contact``; models whose classes have
        no road or no standing class are left as they are). ``confidence``: build
        ``FrameResult.confidence`` by default (``process(..., confidence=)`` overrides it per call; the
        node asks only when someone subscribes). ``reuse_buffers``: resize into the same arrays every
        frame (no page faults on fresh 720p arrays; ~2 ms per frame in the node). Only for callers that
        are done with a result before the next ``process`` call (the node publishes and drops it);
        others keep the default. With ``process_batch`` each batch index has its own arrays (the
        cameras of one batch never share an array); index i's arrays are overwritten by the next
        call's frame i. ``camera_height``: the camera's height above the road in metres (None or 0:
        unknown); given, the network's road is fitted as a plane and the depth rescaled so the plane lies
        that far below the camera (``mtl_perception.ground_plane``; ``process(..., camera_height=)``
        overrides it per frame). ``sky_beyond_range``: pixels labelled sky get depth +inf (REP 117: no
        return within range) instead of the network's value there, which no training frame ever
        supervised (rendered sky has no depth) and which on real frames is often a few metres: phantom
        points in the cloud. Their depth uncertainty is NaN. ``sky_min_confidence``: only where the
        calibrated probability of sky is at least this (0.5: sky is likelier than every other class
        together); below it the network's depth stays (tree tops the network half calls sky).
        ``sky_max_below_horizon_deg``: and only where the pixel's ray points at most this far below the
        horizon of the road plane fitted to the network's road (with a camera height the same fit as
        the scale's; without one, for its normal alone): a ray that meets the road more steeply cannot
        see the sky unless the road falls away that steeply in front of the camera (5 deg: 19 m ahead
        for a camera 1.65 m up), so pixels there that the network calls sky (a rear window mirroring
        the sky, sunlit leaves) keep its depth instead of vanishing from the cloud. No road plane found:
        no test. 90 turns it off. ``sky_connected_to_top`` (off by default): and only on sky whose region
        (of the pixels labelled sky, 8-connected) reaches the frame's top edge (``sky_reaching_top``): sky
        walled in by other classes keeps the network's depth. It catches a shaded brick wall the network
        calls sky under its building's top, and costs true sky that a tree crown walls in at the frame's
        side, which then gets the network's untrained depth (docs/sim2real.md, section 59).
        ``people_need_support`` (off by default): a region labelled person or rider with neither ground, a
        two-wheeler, something nearer nor the frame's bottom below most of its columns takes the class
        around it (``mtl_perception.person_support``; docs/sim2real.md, section 69); the confidence of
        those pixels becomes 0 (the network never chose their new class)."""
        if output_resolution not in OUTPUT_RESOLUTIONS:
            raise ValueError(f"output_resolution must be one of {OUTPUT_RESOLUTIONS}, got {output_resolution!r}")
        self.engine = engine
        self.output_resolution = output_resolution
        self.reuse_buffers = reuse_buffers
        self.confidence = confidence
        self.depth_uncertainty = depth_uncertainty
        self.camera_height = camera_height
        # validated by PipelineOptions; kept as plain attributes, which the node sets at run time
        options = PipelineOptions(
            ground_contact=ground_contact,
            sky_beyond_range=sky_beyond_range,
            sky_min_confidence=sky_min_confidence,
            sky_max_below_horizon_deg=sky_max_below_horizon_deg,
            sky_connected_to_top=sky_connected_to_top,
            people_need_support=people_need_support,
        )
        self.ground_contact = options.ground_contact
        self.sky_beyond_range = options.sky_beyond_range
        self.sky_min_confidence = options.sky_min_confidence
        self.sky_max_below_horizon_deg = options.sky_max_below_horizon_deg
        self.sky_connected_to_top = options.sky_connected_to_top
        self.people_need_support = options.people_need_support
        # the per-class helpers of the current engine's classes, rebuilt when the node swaps engines
        self._geometry_for: (
            tuple[tuple[str, ...], GroundContact | None, GroundPlaneScale | None, int | None, PersonSupport | None]
            | None
        ) = None
        self._buffers: dict[str, np.ndarray] = {}

    @classmethod
    def from_options(
        cls, engine: InferenceEngine, options: PipelineOptions | None = None, **kwargs: Any
    ) -> FramePipeline:
        """A pipeline with the depth options of ``options`` (default: the node's defaults); ``kwargs``
        are the other constructor arguments (``output_resolution``, ``camera_height``, ...)."""
        return cls(engine, **kwargs, **(options or PipelineOptions()).as_dict())

    @property
    def options(self) -> PipelineOptions:
        """The depth options in force now (the node changes them at run time)."""
        return PipelineOptions(**{f.name: getattr(self, f.name) for f in fields(PipelineOptions)})

    def _geometry(self) -> tuple[GroundContact | None, GroundPlaneScale | None, int | None, PersonSupport | None]:
        """(ground-contact prior, road-plane fit, index of the class named sky, person-support test) for
        the current engine's classes (the node may swap engines while serving); None where the classes
        have no road, no standing class, no sky or no person."""
        classes = tuple(self.engine.info.classes)
        if self._geometry_for is None or self._geometry_for[0] != classes:
            names = [str(c).lower() for c in classes]
            sky_id = names.index("sky") if "sky" in names else None
            self._geometry_for = (
                classes,
                GroundContact.for_classes(classes),
                GroundPlaneScale.for_classes(classes),
                sky_id,
                PersonSupport.for_classes(classes),
            )
        return self._geometry_for[1:]

    @property
    def network_size(self) -> tuple[int, int]:
        """(H, W) of the network input (and of the products with output_resolution='network')."""
        return tuple(self.engine.input_size)

    def output_size(self, frame_hw: tuple[int, int]) -> tuple[int, int]:
        """(H, W) of the products for a frame of ``frame_hw``: the frame's size, or for
        ``output_resolution="network"`` the frame's window inside the network input (aspect kept)."""
        return self._output_size(self.engine.letterbox(tuple(frame_hw[:2])))

    def _output_size(self, box: Letterbox) -> tuple[int, int]:
        return box.frame_hw if self.output_resolution == "input" else box.content_hw

    def depth_scale(self, frame_hw: tuple[int, int], K: np.ndarray | None) -> tuple[float, str]:
        """(metres per canonical depth unit, intrinsics source) for a frame of ``frame_hw``."""
        return self._depth_scale(self.engine.letterbox(tuple(frame_hw[:2])), K)

    def _depth_scale(self, box: Letterbox, K: np.ndarray | None) -> tuple[float, str]:
        scale, source, _ = self._depth_scale_and_K(box, K)
        return scale, source

    def _depth_scale_and_K(self, box: Letterbox, K: np.ndarray | None) -> tuple[float, str, np.ndarray]:
        """(metres per canonical unit, intrinsics source, the K used: the frame's or the default)."""
        info = self.engine.info
        K_ok = check_intrinsics(K)
        source = "frame" if K_ok is not None else "default"
        if K_ok is None:
            K_ok = default_intrinsics(box.frame_hw[0], box.frame_hw[1], info.default_hfov_deg)
        if not info.canonical_focal:
            return 1.0, source, K_ok
        return canonical_depth_scale(box.network_focal(K_ok), info.canonical_focal), source, K_ok

    def _buffer(self, name: str, index: int, size: tuple[int, ...], dtype: type) -> np.ndarray | None:
        if not self.reuse_buffers:
            return None
        key = (name, index)  # per batch index: two cameras of one batch never share an array
        buf = self._buffers.get(key)
        if buf is None or buf.shape != tuple(size):
            buf = self._buffers[key] = message_array(size, dtype)
        return buf

    @property
    def temperature(self) -> float:
        """Softmax temperature of ``confidence`` (the checkpoint's ``semseg_temperature``, 1.0 if none)."""
        return float(getattr(self.engine.info, "semseg_temperature", 1.0))

    @property
    def has_depth_uncertainty(self) -> bool:
        """Does the model have the depth uncertainty head (``FrameResult.depth_uncertainty`` possible)?"""
        return depth_unc.has_depth_uncertainty(self.engine.info)

    def process(
        self,
        rgb: np.ndarray,
        K: np.ndarray | None = None,
        confidence: bool | None = None,
        depth_uncertainty: bool | None = None,
        camera_height: float | None = None,
    ) -> FrameResult:
        """(H, W, 3) uint8 RGB -> FrameResult at ``output_size((H, W))``.

        ``K``: the frame's 3x3 camera matrix in pixels (of this frame's size). It turns a model's
        canonical depth into metres; without it (or with an unusable one) the model's default field
        of view is assumed and ``intrinsics_source`` says ``"default"``. ``confidence``: build
        ``FrameResult.confidence`` (None: the pipeline's default); ``depth_uncertainty`` likewise
        (ignored for a model without the head). ``camera_height``: metres above the road for this
        frame (None: the pipeline's ``camera_height``)."""
        # a batch of one: the same work as before (one preprocess into a 1xCxHxW array, one call)
        heights = None if camera_height is None else [camera_height]
        return self.process_batch([rgb], [K], confidence, depth_uncertainty, heights)[0]

    def process_batch(
        self,
        frames: list[np.ndarray],
        Ks: list[np.ndarray | None] | None = None,
        confidence: bool | list[bool] | None = None,
        depth_uncertainty: bool | list[bool] | None = None,
        camera_heights: list[float | None] | None = None,
    ) -> list[FrameResult]:
        """Frames of any sizes (e.g. one per camera) -> one FrameResult per frame, in order, with
        ONE ``engine.infer`` call for all of them.

        Result i equals ``process(frames[i], Ks[i])``: each frame is letterboxed/stretched on its
        own, and its products are cropped, scaled to metres with its own K and resized to its own
        output size. ``Ks``: None (no intrinsics for any frame) or one K (or None) per frame.
        ``timings_ms["inference"]`` is the whole call; ``batch_size`` says how many frames shared it.
        ``confidence``: one flag for all frames or one per frame (None: the pipeline's default).
        ``camera_heights``: None (the pipeline's ``camera_height`` for all) or one height (or None) per frame.
        """
        frames = list(frames)
        if not frames:
            raise ValueError("process_batch needs at least one frame, got an empty list")
        Ks = [None] * len(frames) if Ks is None else list(Ks)
        if len(Ks) != len(frames):
            raise ValueError(f"Ks must hold one K (or None) per frame: {len(frames)} frames, {len(Ks)} Ks")
        n = len(frames)
        if confidence is None:
            confidence = self.confidence
        wants = [bool(confidence)] * n if isinstance(confidence, bool) else [bool(c) for c in confidence]
        if len(wants) != n:
            raise ValueError(f"confidence must be a bool or one per frame: {n} frames, {len(wants)} flags")
        if depth_uncertainty is None:
            depth_uncertainty = self.depth_uncertainty
        wants_u = (
            [bool(depth_uncertainty)] * n
            if isinstance(depth_uncertainty, bool)
            else [bool(u) for u in depth_uncertainty]
        )
        if len(wants_u) != n:
            raise ValueError(f"depth_uncertainty must be a bool or one per frame: {n} frames, {len(wants_u)} flags")
        heights = [self.camera_height] * n if camera_heights is None else list(camera_heights)
        if len(heights) != n:
            raise ValueError(f"camera_heights must hold one height (or None) per frame: {n} frames, {len(heights)}")
        h, w = self.network_size
        # each frame preprocessed straight into its slot of the batch (no stacking copy)
        batch = self._buffer("input", 0, (n, 3, h, w), np.float32)
        if batch is None:
            batch = np.empty((n, 3, h, w), np.float32)
        pre_ms = []
        for i, rgb in enumerate(frames):
            t0 = time.perf_counter()
            self.engine.preprocess(rgb, out=batch[i : i + 1])
            pre_ms.append(1e3 * (time.perf_counter() - t0))
        t0 = time.perf_counter()
        out = self.engine.infer(batch)
        infer_ms = 1e3 * (time.perf_counter() - t0)
        results = []
        for i, (rgb, K) in enumerate(zip(frames, Ks)):
            t0 = time.perf_counter()
            res = self._products(out, i, rgb.shape[:2], K, wants[i], wants_u[i], heights[i])
            res.timings_ms = {
                "preprocess": pre_ms[i],
                "inference": infer_ms,
                "postprocess": 1e3 * (time.perf_counter() - t0),
            }
            res.batch_size = n
            results.append(res)
        return results

    def _products(
        self,
        out: dict[str, np.ndarray],
        i: int,
        frame_hw: tuple[int, int],
        K: np.ndarray | None,
        want_confidence: bool = False,
        want_uncertainty: bool = False,
        camera_height: float | None = None,
    ) -> FrameResult:
        """Image ``i`` of the network outputs -> the products of a frame of ``frame_hw`` with ``K``."""
        box = self.engine.letterbox(tuple(frame_hw))  # once per frame: products, crop and depth scale
        size = self._output_size(box)
        scale, source, K_used = self._depth_scale_and_K(box, K)
        confidence = grid_conf = None
        if GRAPH_LABELS in out:  # computed in the graph (an ONNX / TensorRT engine)
            grid_labels = box.content(out[GRAPH_LABELS][i, 0]).astype(np.uint8)
            if want_confidence:
                grid_conf = box.content(out[GRAPH_CONFIDENCE][i, 0])
        elif want_confidence:
            # one pass: the argmax's running max is the softmax's max-logit shift
            grid_labels, grid_conf = labels_and_confidence(box.content(out["semseg"][i]), self.temperature)
        else:
            grid_labels = labels_from_logits(box.content(out["semseg"][i]))
        grid_depth = box.content(out["depth"][i, 0])
        contact_prior, plane_fit, sky_class, person_support = self._geometry()
        support = person_support if self.people_need_support else None
        relabelled = None
        if support is not None:
            # before everything that reads the labels (confidence, road plane, contact prior, sky);
            # the test compares depths only with each other, so the scale does not matter yet
            tested = support(grid_labels, grid_depth)
            if tested.relabelled is not None:
                grid_labels, relabelled = tested.labels, tested.relabelled
                if grid_conf is not None:
                    grid_conf = np.where(tested.relabelled, np.float32(0.0), grid_conf)
        if grid_conf is not None:
            # nearest, like the labels: each pixel's confidence is that of its own label
            confidence = resize_confidence(grid_conf, size, self._buffer("confidence", i, size, np.float32))
        labels = resize_labels(grid_labels, size, self._buffer("labels", i, size, np.uint8))
        if scale != 1.0:
            grid_depth = grid_depth * np.float32(scale)
        ground_scale = None
        # K of the depth grid (the content window covers the whole frame)
        gh, gw = grid_depth.shape
        grid_K = scale_intrinsics(K_used, gw / frame_hw[1], gh / frame_hw[0])
        plane = plane_fit if camera_height else None
        if plane is not None:
            ground_scale = plane(grid_labels, grid_depth, grid_K, float(camera_height))
            if ground_scale.factor != 1.0:
                grid_depth = grid_depth * np.float32(ground_scale.factor)
                scale *= ground_scale.factor
        prior = contact_prior if self.ground_contact else None
        if prior is not None:
            grid_depth = prior(grid_labels, grid_depth)
        sky_id = sky_class if self.sky_beyond_range else None
        sky = None
        if sky_id is not None:
            grid_sky = grid_labels == sky_id
            if self.sky_connected_to_top and grid_sky.any():
                # on the labels, before the confidence gate: unsure tree tops must not cut the true sky
                grid_sky = sky_reaching_top(grid_sky)
            if grid_sky.any() and self.sky_min_confidence > 0:
                sky_conf = grid_conf
                if sky_conf is None:  # not asked for: the sky's own, on the grid (cheap next to the network)
                    if GRAPH_CONFIDENCE in out:
                        sky_conf = box.content(out[GRAPH_CONFIDENCE][i, 0])
                    else:
                        sky_conf = labels_and_confidence(box.content(out["semseg"][i]), self.temperature)[1]
                    if relabelled is not None:  # their confidence was the person's, not the sky's
                        sky_conf = np.where(relabelled, np.float32(0.0), sky_conf)
                grid_sky &= sky_conf >= np.float32(self.sky_min_confidence)
            if grid_sky.any() and self.sky_max_below_horizon_deg < 90.0 and plane_fit is not None:
                # sky only above (or just below) the road plane's horizon; without a camera height the
                # plane is fitted for its normal alone (scale-free), ~1 ms
                horizon = ground_scale if ground_scale is not None else plane_fit(grid_labels, grid_depth, grid_K, None)
                if horizon.found:
                    grid_sky &= ~below_horizon(grid_sky, grid_K, horizon.normal, self.sky_max_below_horizon_deg)
            if grid_sky.any():
                grid_depth = sky_filled_for_resize(grid_depth, grid_sky)
                # nearest, like the labels: exactly the output pixels whose grid pixel is masked
                sky = resize_labels(grid_sky.view(np.uint8), size).view(bool)
        depth = resize_depth(grid_depth, size, self._buffer("depth", i, size, np.float32))
        if sky is not None:
            np.copyto(depth, np.float32(np.inf), where=sky)
        uncertainty = None
        if want_uncertainty and depth_unc.OUTPUT in out:
            # metres on the grid (NaN exactly where the grid depth is), then the same NaN-aware
            # bilinear resize as depth: the same invalid pixels at the output size
            grid_u = depth_unc.uncertainty_from_log_sigma(grid_depth, box.content(out[depth_unc.OUTPUT][i, 0]))
            uncertainty = resize_depth(grid_u, size, self._buffer("depth_uncertainty", i, size, np.float32))
            if sky is not None:
                np.copyto(uncertainty, np.float32(np.nan), where=sky)
        return FrameResult(
            labels=np.ascontiguousarray(labels, np.uint8),
            depth=np.ascontiguousarray(depth, np.float32),
            grid_labels=grid_labels,
            intrinsics_source=source,
            depth_scale=scale,
            ground_scale=ground_scale,
            confidence=None if confidence is None else np.ascontiguousarray(confidence, np.float32),
            depth_uncertainty=None if uncertainty is None else np.ascontiguousarray(uncertainty, np.float32),
        )
