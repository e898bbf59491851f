"""Replay a bag to the perception node and evaluate it live:
``ros2 launch mtl_perception bag_replay.launch.py bag:=/path/to/bag rate:=0.5 rviz:=true``.

Starts the perception node (``use_sim_time``, reliable input for lossless replay), the evaluator
(``mtl-perception live-eval``: matches the node's outputs with the bag's ground truth by stamp and
writes the replay-eval report) and the player: ``ros2 bag play --clock`` where it exists, else
``mtl-perception play --clock`` (rclpy, for the PyPI wheels). Optional RViz. The node's arguments
are those of camera.launch.py (``mtl_perception.ros.launch_args``) with namespace empty by default,
so the outputs are /perception_node/*; the mapping to commands lives in
``mtl_perception.ros.player.replay_plan`` (unit tested without ``launch``).
"""

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, ExecuteProcess, OpaqueFunction, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription
from mtl_perception.ros.launch_args import ARGUMENTS, node_config
from mtl_perception.ros.player import REPLAY_ARGUMENTS, replay_plan

NODE_DEFAULTS = {"namespace": "", "use_sim_time": "true"}


def _setup(context, *args, **kwargs):
    node_values = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    replay_values = {name: LaunchConfiguration(name).perform(context) for name in REPLAY_ARGUMENTS}
    cfg = node_config(node_values, get_package_share_directory("mtl_perception"))
    plan = replay_plan({**replay_values, "namespace": cfg.namespace})
    actions = [SetEnvironmentVariable(k, v) for k, v in cfg.env.items()]
    actions.append(
        Node(
            package="mtl_perception",
            executable="perception_node",
            name="perception_node",
            namespace=cfg.namespace,
            parameters=[*cfg.parameters, plan["node_overrides"]],
            remappings=cfg.remappings,
            arguments=["--ros-args", "--log-level", cfg.log_level],
            output="screen",
        )
    )
    if plan["evaluator"]:
        actions.append(ExecuteProcess(cmd=plan["evaluator"], output="screen"))
    actions.append(ExecuteProcess(cmd=plan["player"], output="screen"))
    if cfg.rviz:
        actions.append(
            Node(
                package="rviz2",
                executable="rviz2",
                name="rviz2",
                arguments=["-d", cfg.rviz_config],
                parameters=[{"use_sim_time": True}],
                output="screen",
            )
        )
    return actions


def generate_launch_description():
    declared = []
    for name, a in ARGUMENTS.items():
        default = NODE_DEFAULTS.get(name, a.default)
        if a.choices:
            declared.append(
                DeclareLaunchArgument(name, default_value=default, description=a.description, choices=list(a.choices))
            )
        else:
            declared.append(DeclareLaunchArgument(name, default_value=default, description=a.description))
    for name, (default, description) in REPLAY_ARGUMENTS.items():
        declared.append(DeclareLaunchArgument(name, default_value=default, description=description))
    return LaunchDescription([*declared, OpaqueFunction(function=_setup)])
