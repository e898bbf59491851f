"""Launch arguments -> node parameters, remappings and environment (pure; no ``launch`` import).

``launch/camera.launch.py`` declares ``ARGUMENTS`` (with ``choices``) and passes the performed
values to ``node_config``; keeping the mapping here lets it be unit-tested on machines without
``launch`` / ``launch_ros`` (not on PyPI) and reused by tools.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtl_perception.ros.params import BACKENDS, DECODERS, TRANSPORTS

LAUNCH_PRECISIONS = ("fp32", "fp16", "int8")
DDS_TRANSPORTS = ("large_data", "default")
BOOLS = ("true", "false")


@dataclass(frozen=True)
class Argument:
    default: str
    description: str
    choices: tuple[str, ...] | None = None


ARGUMENTS: dict[str, Argument] = {
    "decoder": Argument(
        "mlore", "decoder variant (selects config/ros/<decoder>.param.yaml and the shipped model)", DECODERS
    ),
    "precision": Argument("fp32", "inference precision", LAUNCH_PRECISIONS),
    "backend": Argument("auto", "inference backend", BACKENDS),
    "model_path": Argument("", "model .safetensors (empty: the shipped model of `decoder`)"),
    "namespace": Argument("perception", "namespace of the node (topics: /<namespace>/perception_node/...)"),
    "params_file": Argument(
        "", "parameter YAML (empty: config/ros/<decoder>.param.yaml); launch arguments override it"
    ),
    "image": Argument(
        "/camera/image_raw",
        "input image topic (sensor_msgs/Image; <image>/compressed with input_transport:=compressed)",
    ),
    "camera_info": Argument("/camera/camera_info", "camera_info topic of the input image"),
    "input_transport": Argument("raw", "raw Image or CompressedImage input", TRANSPORTS),
    "use_sim_time": Argument("false", "follow /clock (bag replay: `ros2 bag play --clock`)", BOOLS),
    "dds_transport": Argument(
        "large_data", "Fast DDS transport for this launch (set the SAME in the camera driver)", DDS_TRANSPORTS
    ),
    "rviz": Argument("false", "also start RViz with rviz/mtl_perception.rviz", BOOLS),
    "log_level": Argument("info", "node log level", ("debug", "info", "warn", "error", "fatal")),
    "camera_height": Argument(
        "",
        "camera height above the road in metres, e.g. 1.65: depth is scaled so the fitted road plane lies "
        "this far below the camera (empty: the params file's camera_height, 0 = off)",
    ),
    "cameras": Argument(
        "",
        'cameras served by one node and one engine, e.g. "[front, rear]" or front,rear: camera c reads '
        "<namespace>/c/image + <namespace>/c/camera_info and publishes ~/c/... (image / camera_info then "
        "unused); empty: one camera on image / camera_info",
    ),
}


@dataclass
class NodeConfig:
    namespace: str
    parameters: list[Any]  # [params_file path, {overrides}] in launch_ros order (later wins)
    remappings: list[tuple[str, str]]
    env: dict[str, str] = field(default_factory=dict)
    rviz: bool = False
    rviz_config: str = ""
    log_level: str = "info"
    input_topic: str = ""  # the topic the node subscribes its frames on (image or image/compressed)

    @property
    def node_fqn(self) -> str:
        return f"/{self.namespace}/{NODE_NAME}" if self.namespace else f"/{NODE_NAME}"


PACKAGE = "mtl_perception"
NODE_NAME = "perception_node"


def package_prefix(package: str = PACKAGE) -> str | None:
    """``get_package_prefix(package)`` from the ament index, None where the package is not installed."""
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix

    try:
        return get_package_prefix(package)
    except PackageNotFoundError:
        return None


def package_executable(name: str, prefix: str | Path | None = None) -> str:
    """Absolute path of ``<prefix>/lib/mtl_perception/<name>`` (where launch_ros and ``ros2 run``
    look; colcon installs scripts/ there, ``make setup`` writes them into the venv). Launch files
    start ``mtl-perception`` through this, never through PATH."""
    if prefix is None:
        prefix = package_prefix()
        if prefix is None:
            raise FileNotFoundError(
                f"{PACKAGE} is not in the ament index (AMENT_PREFIX_PATH): run `make setup` or source "
                "your workspace's install/setup.bash"
            )
    return str(Path(prefix).absolute() / "lib" / PACKAGE / name)


def rviz_missing_message() -> str | None:
    """None when the ``rviz2`` package is installed, else the warning the launch files log."""
    if package_prefix("rviz2") is not None:
        return None
    return "rviz:=true but the rviz2 package is not installed (ament index): starting without RViz"


def _bool(name: str, value: str) -> bool:
    v = str(value).strip().lower()
    if v not in BOOLS:
        raise ValueError(f"launch argument {name}:={value!r} must be true or false")
    return v == "true"


def node_config(values: dict[str, str], share_dir: str | Path) -> NodeConfig:
    """Performed launch argument values (strings) -> what the launch file starts.

    Missing arguments take their defaults; a value outside ``choices`` raises ValueError (the
    launch file's DeclareLaunchArgument checks the same, this keeps direct callers honest).
    """
    unknown = set(values) - set(ARGUMENTS)
    if unknown:
        raise ValueError(f"unknown launch argument(s): {', '.join(sorted(unknown))}")
    v = {k: str(values.get(k, a.default)) for k, a in ARGUMENTS.items()}
    for k, a in ARGUMENTS.items():
        if a.choices and v[k] not in a.choices:
            raise ValueError(f"launch argument {k}:={v[k]!r} is not one of: {', '.join(a.choices)}")
    share = Path(share_dir)
    params_file = v["params_file"] or str(share / "config" / "ros" / f"{v['decoder']}.param.yaml")
    overrides: dict[str, Any] = {
        "decoder": v["decoder"],
        "precision": v["precision"],
        "backend": v["backend"],
        "input_transport": v["input_transport"],
        "use_sim_time": _bool("use_sim_time", v["use_sim_time"]),
    }
    if v["model_path"]:
        overrides["model_path"] = v["model_path"]
    if v["camera_height"].strip():
        overrides["camera_height"] = parse_camera_height(v["camera_height"])
    cameras = parse_cameras(v["cameras"])
    if cameras:
        overrides["cameras"] = cameras
    image = v["image"]
    remappings = [("image", image), ("image/compressed", f"{image}/compressed"), ("camera_info", v["camera_info"])]
    env = {}
    if v["dds_transport"] == "large_data":
        env["FASTDDS_BUILTIN_TRANSPORTS"] = "LARGE_DATA"
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(share / "config" / "ros" / "fastdds_large_data.xml")
    else:  # explicit, so an inherited LARGE_DATA setting cannot split the graph
        env["FASTDDS_BUILTIN_TRANSPORTS"] = "DEFAULT"
    return NodeConfig(
        namespace=v["namespace"].strip("/"),
        parameters=[params_file, overrides],
        remappings=remappings,
        env=env,
        rviz=_bool("rviz", v["rviz"]),
        rviz_config=str(share / "rviz" / "mtl_perception.rviz"),
        log_level=v["log_level"],
        input_topic=_resolve(
            (f"{cameras[0]}/image" if cameras else image)
            + ("/compressed" if v["input_transport"] == "compressed" else ""),
            v["namespace"],
        ),
    )


def parse_camera_height(text: str) -> float:
    """``"1.65"`` -> 1.65 (validated against the node's ``camera_height`` range)."""
    from mtl_perception.ros.params import validate

    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"launch argument camera_height:={text!r} must be metres, e.g. 1.65 (0 = off)") from None
    reason = validate("camera_height", value)
    if reason:
        raise ValueError(f"launch argument camera_height:={text!r}: {reason}")
    return value


def parse_cameras(text: str) -> list[str]:
    """``"[front, rear]"``, ``"front,rear"`` or ``"front rear"`` -> ["front", "rear"] (validated)."""
    from mtl_perception.ros.params import validate

    names = [c for c in text.strip().strip("[]").replace(",", " ").split() if c.strip("'\"")]
    names = [c.strip("'\"") for c in names]
    reason = validate("cameras", names)
    if reason:
        raise ValueError(f"launch argument cameras:={text!r}: {reason}")
    return names


def _resolve(topic: str, namespace: str) -> str:
    """A remapping target as the graph shows it: relative names live in the node's namespace."""
    if topic.startswith("/"):
        return topic
    ns = namespace.strip("/")
    return f"/{ns}/{topic}" if ns else f"/{topic}"
