"""Parameters of the perception node: one table, declared with descriptors, validated.

Engine parameters (``ENGINE_PARAMS``: decoder, model_path, backend, precision, device, threads)
are dynamic: setting one while the node serves builds the new engine in the background and swaps
it in between two frames (``mtl_perception.deploy.hot_swap``). Parameters that need new
subscriptions are read-only (``ros2 param set`` fails with rclpy's "Trying to set a read-only
parameter"; the description says what to do instead). Values are validated in ``validate`` (pure
Python, unit-tested without rclpy) and rejected with a reason that names the allowed values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

# a relative ROS name: tokens of [A-Za-z0-9_] not starting with a digit, joined by '/'
CAMERA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*")

DECODERS = ("baseline", "moe", "mlore", "taskexpert", "meco")
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
BACKENDS = ("auto", "tensorrt", "onnxruntime", "torch")
DEVICES = ("", "cpu", "cuda")
OUTPUT_RESOLUTIONS = ("input", "network")
TRANSPORTS = ("raw", "compressed")
RELIABILITIES = ("best_effort", "reliable")

RESTART = "read-only: needs a restart (new subscriptions); relaunch with {name}:=VALUE"
SWAP = "dynamic: setting it while serving builds the new engine in the background, then swaps between frames"
# parameters that select the engine (hot-swapped at runtime, see mtl_perception.deploy.hot_swap)
ENGINE_PARAMS = ("decoder", "model_path", "backend", "precision", "device", "threads")


@dataclass(frozen=True)
class Spec:
    name: str
    default: Any
    description: str
    read_only: bool = False
    choices: tuple[str, ...] | None = None
    int_range: tuple[int, int] | None = None
    float_range: tuple[float, float] | None = None


SPECS: tuple[Spec, ...] = (
    Spec(
        "decoder",
        "",
        "decoder variant: with model_path empty selects the shipped <decoder> model (empty: mlore); "
        "with model_path set, the model must be this variant (empty: any)",
        False,
        ("", *DECODERS),
    ),
    Spec("model_path", "", "model .safetensors; empty = the shipped model of `decoder`"),
    Spec(
        "backend",
        "auto",
        "inference backend (auto: TensorRT > ONNX Runtime CUDA > torch CUDA > ONNX Runtime CPU)",
        False,
        BACKENDS,
    ),
    Spec("precision", "fp32", "inference precision", False, PRECISIONS),
    Spec("device", "", "cpu | cuda; empty = automatic", False, DEVICES),
    Spec("threads", 0, "CPU threads for torch / ONNX Runtime (0 = library default)", False, int_range=(0, 256)),
    Spec(
        "engine_cache_dir",
        "",
        "ONNX / TensorRT artifact cache; empty = $MTL_PERCEPTION_CACHE or ~/.cache/mtl_perception",
        True,
    ),
    Spec(
        "input_size",
        [0, 0],
        "expected network input [H, W]; [0, 0] = the model's (fixed at export, checked at start)",
        True,
    ),
    Spec(
        "class_names_file",
        "",
        "YAML/JSON with `classes: [...]` and optional `palette: [[r,g,b], ...]`; empty = the model's",
        True,
    ),
    Spec(
        "cameras",
        [],
        "camera names served by this one node, batched into one inference per round, e.g. "
        "[front, front_left, ...]: camera c reads c/image (or c/image/compressed) and c/camera_info and "
        "publishes ~/c/semantic, ~/c/depth, ... with its own header and intrinsics; empty = one camera "
        "on image / camera_info with outputs ~/semantic, ...",
        True,
    ),
    Spec(
        "autostart",
        True,
        "lifecycle: configure (build the engine) and activate on start; false = wait for a lifecycle "
        "manager (ros2 lifecycle set <node> configure / activate)",
        True,
    ),
    Spec("input_transport", "raw", "subscribe `image` (raw) or `image/compressed` (CompressedImage)", True, TRANSPORTS),
    Spec(
        "input_reliability",
        "best_effort",
        "image subscription reliability (best_effort per REP 2003; reliable for lossless bag replay)",
        True,
        RELIABILITIES,
    ),
    Spec("input_depth", 1, "image subscription queue depth (1 = latest frame only)", True, int_range=(1, 100)),
    Spec("output_depth", 2, "publisher queue depth (reliable)", True, int_range=(1, 100)),
    Spec(
        "output_resolution",
        "input",
        "products at the input image's resolution or the network's (with a scaled camera_info)",
        False,
        OUTPUT_RESOLUTIONS,
    ),
    Spec(
        "ground_contact_depth",
        True,
        "standing objects (cars, people, poles, signs, ...) take, column by column, the depth of the ground "
        "just below them (Stixel assumption; mtl_perception.ground_contact): the network places real cars "
        "1.4-2x too far while it gets the road right; false = the network's depth as it is",
    ),
    Spec(
        "sky_beyond_range",
        True,
        "pixels labelled sky get depth +inf (REP 117: no return within range) and no point in ~/points; "
        "the network's depth there was never trained (rendered sky has none) and on real frames is often "
        "a few metres, phantom obstacles; false = the network's value",
    ),
    Spec(
        "sky_min_confidence",
        0.5,
        "sky_beyond_range applies where the calibrated probability of sky is at least this (0.5: likelier "
        "than every other class together); below it the network's depth stays",
        float_range=(0.0, 1.0),
    ),
    Spec(
        "sky_max_below_horizon_deg",
        5.0,
        "sky_beyond_range applies only where the pixel's ray points at most this many degrees below the "
        "horizon of the road plane fitted to the network's road; steeper rays meet the road (5 deg: 19 m "
        "ahead of a camera 1.65 m up), so pixels there called sky (a rear window mirroring the sky, sunlit "
        "leaves) keep the network's depth and their points; no road plane found: no test; 90 = off",
        float_range=(0.0, 90.0),
    ),
    Spec(
        "sky_connected_to_top",
        False,
        "true: sky_beyond_range applies only to sky whose region (8-connected pixels labelled sky) reaches "
        "the frame's top edge, so sky that other classes wall in keeps the network's depth (catches a "
        "shaded wall the network calls sky; costs true sky a tree crown walls in at the frame's side, "
        "which then gets the network's untrained depth); false = sky anywhere",
    ),
    Spec(
        "people_need_support",
        False,
        "true: a region labelled person or rider with nothing below its feet (no road, sidewalk, terrain or "
        "two-wheeler, nothing nearer in front of them, not cut by the frame's bottom) under most of its columns "
        "takes the class around it (mtl_perception.person_support: phantom people on facades, poles and "
        "car bodies); their confidence becomes 0; false = the network's labels",
    ),
    Spec(
        "camera_height",
        0.0,
        "height of the camera above the road in metres (from the rig's URDF / calibration); > 0: each frame's "
        "road is fitted as a plane and depth rescaled so that plane lies this far below the camera "
        "(mtl_perception.ground_plane; on real frames the network alone is 1.2-1.45x too far); frames whose "
        "road is too small or not flat keep the network's scale (/diagnostics: ground_plane); 0 = off",
        float_range=(0.0, 10.0),
    ),
    Spec("publish_semantic", True, "publish ~/semantic (mono8 class ids)"),
    Spec("publish_semantic_color", True, "publish ~/semantic_color (rgb8)"),
    Spec("publish_depth", True, "publish ~/depth (32FC1 metres) and ~/depth/camera_info"),
    Spec("publish_points", True, "publish ~/points (PointCloud2; needs camera_info)"),
    Spec(
        "publish_confidence",
        True,
        "publish ~/semantic/confidence (32FC1 in [0, 1]: softmax probability of each pixel's class at the "
        "model's calibrated temperature) and fill PerceptionResult.confidence; built only when subscribed",
    ),
    Spec(
        "publish_depth_uncertainty",
        True,
        "publish ~/depth/uncertainty (32FC1 metres, NaN where depth is NaN: half the width of the depth's "
        "1-sigma interval [d e^-s, d e^s] of the model's Gaussian on log depth, d sinh(s)) and fill "
        "PerceptionResult.depth_uncertainty; needs a model with the uncertainty head; built only when subscribed",
    ),
    Spec(
        "max_point_uncertainty",
        0.0,
        "~/points: leave out points whose depth uncertainty (metres, as ~/depth/uncertainty) exceeds this; "
        "0 = keep every point (also with a model without the uncertainty head)",
        float_range=(0.0, 1e6),
    ),
    Spec("publish_result", True, "publish ~/result (mtl_perception/PerceptionResult)"),
    Spec("point_stride", 4, "use every n-th pixel (rows and columns) for ~/points", int_range=(1, 64)),
    Spec("color_blend", 0.0, "~/semantic_color: 0 = class colours only, 1 = input image only", float_range=(0.0, 1.0)),
    Spec(
        "max_stamp_regression",
        5.0,
        "a stamp older than the last frame's by more than this (s) is a clock reset "
        "(bag loop), accepted; a smaller regression is an out-of-order frame, dropped",
        float_range=(0.0, 1e6),
    ),
    Spec(
        "camera_info_timeout",
        5.0,
        "camera_info older than this (s, by receipt) while images flow: the node keeps using the last one, "
        "warns (throttled), counts frames_stale_camera_info and /diagnostics says WARN; 0 = never",
        float_range=(0.0, 1e6),
    ),
)
BY_NAME = {s.name: s for s in SPECS}


def validate(name: str, value: Any) -> str | None:
    """None if ``value`` is acceptable for ``name``, else the reason (names the allowed values)."""
    spec = BY_NAME.get(name)
    if spec is None:
        return None  # not ours (e.g. use_sim_time, qos_overrides.*)
    if spec.choices is not None and value not in spec.choices:
        shown = ", ".join(repr(c) if c == "" else c for c in spec.choices)
        return f"{name}={value!r} is not one of: {shown}"
    if spec.int_range is not None:
        lo, hi = spec.int_range
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            return f"{name}={value!r} must be an integer in [{lo}, {hi}]"
    if spec.float_range is not None:
        lo, hi = spec.float_range
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= float(value) <= hi:
            return f"{name}={value!r} must be a number in [{lo}, {hi}]"
    if name in ("cameras", "input_size") and not isinstance(value, (list, tuple)):
        return f"{name}={value!r} must be a list"
    if name == "cameras":
        names = list(value or [])
        bad = [c for c in names if not isinstance(c, str) or not CAMERA_NAME.fullmatch(c)]
        if bad:
            return (
                f"cameras={names!r}: {bad[0]!r} is not a valid camera name (letters, digits, _ and /, "
                "not starting with a digit or /)"
            )
        if len(set(names)) != len(names):
            return f"cameras={names!r} lists a camera twice"
    if name == "input_size":
        v = list(value)
        if len(v) != 2 or any(not isinstance(x, int) or x < 0 for x in v) or (0 in v and v != [0, 0]):
            return f"input_size={v!r} must be [H, W] with H, W > 0, or [0, 0] for the model's"
    return None


def descriptor(spec: Spec) -> Any:
    """rcl_interfaces ParameterDescriptor for ``spec`` (ranges, read-only, choices in the text)."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

    text = spec.description
    if spec.choices:
        text += f" [{' | '.join(c or '(empty)' for c in spec.choices)}]"
    if spec.read_only:
        text += ". " + RESTART.format(name=spec.name)
    elif spec.name in ENGINE_PARAMS:
        text += ". " + SWAP
    d = ParameterDescriptor(description=text, read_only=spec.read_only)
    if spec.choices:
        d.additional_constraints = "one of: " + ", ".join(c or "''" for c in spec.choices)
    if spec.int_range:
        d.integer_range = [IntegerRange(from_value=spec.int_range[0], to_value=spec.int_range[1], step=1)]
    if spec.float_range:
        d.floating_point_range = [
            FloatingPointRange(from_value=float(spec.float_range[0]), to_value=float(spec.float_range[1]), step=0.0)
        ]
    return d


def declare(node: Any) -> dict[str, Any]:
    """Declare every parameter on ``node``; returns {name: value}. Raises ValueError if invalid."""
    from rcl_interfaces.msg import ParameterType
    from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
    from rclpy.parameter import Parameter

    values = {}
    for spec in SPECS:
        try:
            if spec.name == "cameras":  # an empty list has no type to infer: declare it typed
                d = descriptor(spec)
                d.type = ParameterType.PARAMETER_STRING_ARRAY
                values[spec.name] = list(node.declare_parameter(spec.name, Parameter.Type.STRING_ARRAY, d).value or [])
                continue
            values[spec.name] = node.declare_parameter(spec.name, spec.default, descriptor(spec)).value
        except (InvalidParameterValueException, InvalidParameterTypeException) as exc:
            raise ValueError(f"invalid parameter {spec.name}: {exc}") from exc
    errors = [r for n, v in values.items() if (r := validate(n, v))]
    if errors:
        raise ValueError("invalid parameters: " + "; ".join(errors))
    values["input_size"] = list(values["input_size"])
    return values


def on_set_parameters(params: list[Any]) -> Any:
    """rclpy on-set callback: rejects invalid values of dynamic parameters with the reason."""
    from rcl_interfaces.msg import SetParametersResult

    for p in params:
        reason = validate(p.name, p.value)
        if reason:
            return SetParametersResult(successful=False, reason=reason)
    return SetParametersResult(successful=True)
