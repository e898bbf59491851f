"""mtl_perception: multi-task (semantic segmentation + metric depth) perception for ROS 2.

The core (``model``, ``data``, ``train``, ``evaluate``, ``deploy``) is ROS-free; only
``mtl_perception.ros`` imports rclpy. This file must never import rclpy or ``.msg``: in a
colcon build the generated ``msg/`` subpackage is merged into this package directory.
"""

__version__ = "0.1.0"

# Dev venv only (`make setup` -> tools/build_msgs.sh): the rosidl-generated `msg` subpackage and
# typesupport modules live in a side directory of the venv; extend this package's path to it.
# In a colcon/ament install they are merged into this directory and that path does not exist.
import os as _os  # noqa: E402
import sys as _sys  # noqa: E402

_GENERATED = _os.path.join(_sys.prefix, "opt", "mtl_perception_interfaces", "python", __name__)
if _os.path.isdir(_GENERATED):
    __path__.append(_GENERATED)
