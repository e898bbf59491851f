"""QoS profiles of the node and readable warnings for QoS mismatches.

Input: best effort, KEEP_LAST depth 1 (REP 2003 sensor data: a best-effort subscriber matches
both reliable and best-effort cameras) or reliable for lossless bag replay. Outputs: reliable
KEEP_LAST (RViz, rqt, rosbag2 and launch_testing subscribers are reliable by default and would
not match a best-effort publisher), overridable with ``qos_overrides./topic.publisher.*``.
"""

from __future__ import annotations

from typing import Any

from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy


def input_qos(reliability: str = "best_effort", depth: int = 1) -> QoSProfile:
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.RELIABLE if reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.VOLATILE,
    )


def output_qos(depth: int = 2) -> QoSProfile:
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.VOLATILE,
    )


def _policy(event: Any) -> str:
    kind = getattr(event, "last_policy_kind", None)
    return getattr(kind, "name", str(kind))


def subscription_events(logger: Any, topic: str) -> SubscriptionEventCallbacks:
    def incompatible(event: Any) -> None:
        logger.warning(
            f"QoS mismatch on {topic}: a publisher's {_policy(event)} policy is incompatible with this subscription "
            f"({event.total_count} so far), no data flows; for a best-effort camera keep input_reliability:=best_effort"
        )

    return SubscriptionEventCallbacks(incompatible_qos=incompatible)


def publisher_events(logger: Any, topic: str) -> PublisherEventCallbacks:
    def incompatible(event: Any) -> None:
        logger.warning(
            f"QoS mismatch on {topic}: a subscriber requests an incompatible {_policy(event)} policy "
            f"({event.total_count} so far) and gets nothing; this publisher is reliable/volatile"
        )

    return PublisherEventCallbacks(incompatible_qos=incompatible)
