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
    )
