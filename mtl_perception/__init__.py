"""mtl_perception: multi-task (semantic segmentation + metric depth) perception for ROS 2.

The core (``model``, ``data``, ``train``, ``evaluate``, ``deploy``) is ROS-free; only
``mtl_perception.ros`` imports rclpy. This file must never import rclpy or ``.msg``: in a
colcon build the generated ``msg/`` subpackage is merged into this package directory.
"""

__version__ = "0.1.0"
