"""Perception on a live camera: ``ros2 launch mtl_perception camera.launch.py image:=/camera/image_raw``.

Arguments (``ros2 launch mtl_perception camera.launch.py --show-args``): decoder, precision, backend,
model_path, namespace, params_file, image, camera_info, input_transport, use_sim_time, dds_transport,
rviz, log_level. The mapping to node parameters lives in ``mtl_perception.ros.launch_args`` (unit
tested without ``launch``). The Fast DDS transport profile (LARGE_DATA by default) is applied to every
process this file starts; start the camera driver with the same ``FASTDDS_BUILTIN_TRANSPORTS``.
``rviz:=true`` without an installed ``rviz2`` logs a warning and runs without it; closing RViz, or the
perception node exiting, ends the launch.
"""

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction, SetEnvironmentVariable, Shutdown
from launch.logging import get_logger
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription
from mtl_perception.ros.launch_args import ARGUMENTS, NODE_NAME, node_config, rviz_missing_message


def _end_launch_on_exit(what: str):
    """``on_exit`` for a process whose exit ends the launch (says which process and its code;
    nothing when the launch is already shutting down and stopped it)."""

    def on_exit(event, context):
        if getattr(context, "is_shutdown", False):
            return None
        reason = f"{what} exited with code {event.returncode}"
        return [LogInfo(msg=f"mtl_perception: {reason}: shutting down"), Shutdown(reason=reason)]

    return on_exit


def _setup(context, *args, **kwargs):
    values = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    cfg = node_config(values, get_package_share_directory("mtl_perception"))
    actions = [SetEnvironmentVariable(k, v) for k, v in cfg.env.items()]
    actions.append(LogInfo(msg=f"mtl_perception: DDS transport env {cfg.env}; use the same in the camera driver"))
    actions.append(
        Node(
            package="mtl_perception",
            executable="perception_node",
            name=NODE_NAME,
            namespace=cfg.namespace,
            parameters=cfg.parameters,
            remappings=cfg.remappings,
            arguments=["--ros-args", "--log-level", cfg.log_level],
            output="screen",
            emulate_tty=True,
            on_exit=_end_launch_on_exit("the perception node"),
        )
    )
    if cfg.rviz:
        missing = rviz_missing_message()
        if missing:
            get_logger("mtl_perception").warning(missing)
        else:
            actions.append(
                Node(
                    package="rviz2",
                    executable="rviz2",
                    name="rviz2",
                    arguments=["-d", cfg.rviz_config],
                    parameters=[{"use_sim_time": cfg.parameters[1]["use_sim_time"]}],
                    output="screen",
                    on_exit=_end_launch_on_exit("RViz"),
                )
            )
    return actions


def generate_launch_description():
    declared = [
        DeclareLaunchArgument(name, default_value=a.default, description=a.description, choices=list(a.choices))
        if a.choices
        else DeclareLaunchArgument(name, default_value=a.default, description=a.description)
        for name, a in ARGUMENTS.items()
    ]
    return LaunchDescription([*declared, OpaqueFunction(function=_setup)])
