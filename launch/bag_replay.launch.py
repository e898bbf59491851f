"""Replay a bag to the perception node and evaluate it live:
``ros2 launch mtl_perception bag_replay.launch.py bag:=/path/to/bag rate:=0.5 rviz:=true``.

Order of events (no fixed delay):

1. the perception node (``use_sim_time``, reliable input for lossless replay) and a readiness gate,
   ``mtl-perception wait-ready``, which exits 0 once the node has subscribed to its image topic
   (the node subscribes only after its engine is built; ``ready_timeout`` seconds at most);
2. the evaluator (``mtl-perception live-eval``: matches the node's outputs with the bag's ground
   truth by stamp and writes the replay-eval report) and a second gate for its subscriptions;
3. the player: ``ros2 bag play --clock`` where it exists, else ``mtl-perception play --clock``
   (rclpy, for the PyPI wheels), after the optional extra ``start_delay``.

The launch shuts down when the evaluator exits (or the player, with ``evaluate:=false``), when the
perception node exits, when a gate fails (exit code 1 with the reason) or when RViz is closed.
``rviz:=true`` without an installed ``rviz2`` logs a warning and runs without it. Every command
is started by absolute path (``<package prefix>/lib/mtl_perception/mtl-perception``; ``ros2``
resolved at launch time), never through the PATH of the launched processes. The node's arguments
are those of camera.launch.py (``mtl_perception.ros.launch_args``) with namespace empty by
default, so the outputs are /perception_node/*; the mapping to commands lives in
``mtl_perception.ros.player.replay_plan`` (unit tested without ``launch``).
"""

from ament_index_python.packages import get_package_share_directory
from launch.actions import (
    DeclareLaunchArgument,
    ExecuteProcess,
    LogInfo,
    OpaqueFunction,
    RegisterEventHandler,
    SetEnvironmentVariable,
    Shutdown,
)
from launch.event_handlers import OnProcessExit
from launch.logging import get_logger
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription
from mtl_perception.ros.launch_args import ARGUMENTS, NODE_NAME, node_config, rviz_missing_message
from mtl_perception.ros.player import REPLAY_ARGUMENTS, replay_plan

NODE_DEFAULTS = {"namespace": "", "use_sim_time": "true"}


def _on_exit(on_success, failure: str):
    """OnProcessExit callback: ``on_success()`` actions after exit 0, else fail the launch (exit 1)
    with ``failure``; nothing while the launch is already shutting down (Ctrl-C, another exit)."""

    def handler(event, context):
        if getattr(context, "is_shutdown", False):
            return None
        if event.returncode != 0:
            # an exception from a handler makes `ros2 launch` log it, shut down and exit 1
            raise RuntimeError(f"{failure} ({event.process_name} exited {event.returncode})")
        return on_success()

    return handler


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
    node_values = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    replay_values = {name: LaunchConfiguration(name).perform(context) for name in REPLAY_ARGUMENTS}
    cfg = node_config(node_values, get_package_share_directory("mtl_perception"))
    plan = replay_plan({**replay_values, "namespace": cfg.namespace, "image_topic": cfg.input_topic})
    actions = [SetEnvironmentVariable(k, v) for k, v in cfg.env.items()]
    actions.append(
        Node(
            package="mtl_perception",
            executable="perception_node",
            name=NODE_NAME,
            namespace=cfg.namespace,
            parameters=[*cfg.parameters, plan["node_overrides"]],
            remappings=cfg.remappings,
            arguments=["--ros-args", "--log-level", cfg.log_level],
            output="screen",
            on_exit=_end_launch_on_exit("the perception node"),
        )
    )
    evaluate = plan["evaluator"] is not None
    player = ExecuteProcess(
        cmd=plan["player"],
        name="player",
        output="screen",
        # with the evaluator, its exit ends the launch (it counts the last frames after the player is done)
        on_exit=None if evaluate else _end_launch_on_exit("the player (replay finished)"),
    )
    gate = ExecuteProcess(cmd=plan["gate"], name="wait_ready", output="screen")
    actions.append(gate)
    not_ready = f"the perception node did not subscribe to {cfg.input_topic} within ready_timeout"
    if evaluate:
        evaluator = ExecuteProcess(cmd=plan["evaluator"], name="evaluator", output="screen")
        evaluator_gate = ExecuteProcess(cmd=plan["evaluator_gate"], name="wait_evaluator", output="screen")

        def start_evaluator():
            return [
                LogInfo(msg="mtl_perception: perception node ready; starting the evaluator"),
                evaluator,
                evaluator_gate,
            ]

        def start_player():
            return [LogInfo(msg=f"mtl_perception: evaluator ready; playing {plan['player'][3]}"), player]

        def evaluation_done():
            return [
                LogInfo(msg=f"mtl_perception: evaluation finished, report {plan['report']}"),
                Shutdown(reason="evaluation finished"),
            ]

        actions.append(
            RegisterEventHandler(OnProcessExit(target_action=gate, on_exit=_on_exit(start_evaluator, not_ready)))
        )
        actions.append(
            RegisterEventHandler(
                OnProcessExit(
                    target_action=evaluator_gate,
                    on_exit=_on_exit(start_player, "the evaluator did not subscribe to the ground truth"),
                )
            )
        )
        actions.append(
            RegisterEventHandler(
                OnProcessExit(target_action=evaluator, on_exit=_on_exit(evaluation_done, "the evaluation failed"))
            )
        )
    else:

        def start_player_now():
            return [LogInfo(msg="mtl_perception: perception node ready; starting the player"), player]

        actions.append(
            RegisterEventHandler(OnProcessExit(target_action=gate, on_exit=_on_exit(start_player_now, not_ready)))
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
                    parameters=[{"use_sim_time": True}],
                    output="screen",
                    on_exit=_end_launch_on_exit("RViz"),
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
