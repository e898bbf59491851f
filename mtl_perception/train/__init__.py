"""Training (ROS-free): config, data plumbing, the loop, DDP helpers."""

from mtl_perception.train.config import load_train_config
from mtl_perception.train.trainer import Trainer, lr_multiplier

__all__ = ["Trainer", "load_train_config", "lr_multiplier"]
