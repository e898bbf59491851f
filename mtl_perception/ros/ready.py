"""Readiness gate: wait until given nodes have subscribed to given topics (ROS graph, rclpy).

``launch/bag_replay.launch.py`` starts the player only after ``mtl-perception wait-ready`` has
seen the perception node's image subscription (the node subscribes only once its engine is built)
instead of after a fixed delay. The graph is read with ``get_subscriptions_info_by_topic``; no
spinning is needed (the rmw keeps its graph cache up to date from discovery on its own thread).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any


def fqn(name: str) -> str:
    """``perception_node`` / ``/ns/perception_node/`` -> ``/perception_node`` / ``/ns/perception_node``."""
    name = name.strip()
    if not name.strip("/"):
        raise ValueError(f"empty node or topic name {name!r}")
    return "/" + name.strip("/")


def node_fqn(namespace: str, name: str) -> str:
    """Fully qualified node name from a ``TopicEndpointInfo``'s ``node_namespace`` and ``node_name``."""
    ns = namespace.rstrip("/")
    return f"{ns}/{name}" if ns.startswith("/") or not ns else f"/{ns}/{name}"


@dataclass(frozen=True)
class Requirement:
    """``node`` (fully qualified; None: any node) has a subscription on ``topic``."""

    topic: str
    node: str | None = None

    def describe(self) -> str:
        return f"{self.node} subscribed to {self.topic}" if self.node else f"a subscription on {self.topic}"


def pair_requirements(topics: list[str], nodes: list[str] | None) -> list[Requirement]:
    """CLI ``--topic``/``--node`` lists -> requirements: no node (any subscriber), one node for
    every topic, or one node per topic (paired in order)."""
    if not topics:
        raise ValueError("give at least one --topic")
    nodes = nodes or []
    if len(nodes) > 1 and len(nodes) != len(topics):
        raise ValueError(
            f"give one --node for all topics or one per --topic ({len(topics)} topics, {len(nodes)} nodes)"
        )
    if len(nodes) <= 1:
        node = fqn(nodes[0]) if nodes else None
        return [Requirement(fqn(t), node) for t in topics]
    return [Requirement(fqn(t), fqn(n)) for t, n in zip(topics, nodes, strict=True)]


def satisfied(req: Requirement, subscribers: list[str]) -> bool:
    return bool(subscribers) if req.node is None else req.node in subscribers


def wait_ready(
    requirements: list[Requirement],
    timeout: float,
    poll: float = 0.1,
    domain_id: int | None = None,
    destroy: bool = True,
) -> dict[str, Any]:
    """Poll the ROS graph until every requirement holds or ``timeout`` s pass.

    Returns ``{"ready", "waited_s", "requirements": [{"topic", "node", "ok", "subscribers"}]}``;
    ``ready`` is False after a timeout (the caller decides what that means). ``destroy=False``
    leaves the node for a caller that ends its process next (the CLI: a Fast DDS participant
    deletion can block, see ``mtl_perception.ros.evaluator.teardown``).
    """
    import rclpy
    from rclpy.context import Context

    ctx = Context()
    rclpy.init(context=ctx, domain_id=domain_id)
    node = rclpy.create_node(
        f"mtl_wait_ready_{os.getpid()}", context=ctx, start_parameter_services=False, enable_rosout=False
    )
    t0 = time.monotonic()
    try:
        while True:
            status = []
            for req in requirements:
                subs = sorted(
                    {node_fqn(i.node_namespace, i.node_name) for i in node.get_subscriptions_info_by_topic(req.topic)}
                )
                status.append({"topic": req.topic, "node": req.node, "ok": satisfied(req, subs), "subscribers": subs})
            waited = time.monotonic() - t0
            ready = all(s["ok"] for s in status)
            if ready or waited >= timeout:
                return {"ready": ready, "waited_s": round(waited, 2), "requirements": status}
            time.sleep(poll)
    finally:
        if destroy:
            node.destroy_node()
            rclpy.try_shutdown(context=ctx)
        else:
            from mtl_perception.ros.shutdown import keep_until_exit

            keep_until_exit(node, ctx)  # their destructors would delete the participant just the same


def not_ready_message(result: dict[str, Any], timeout: float) -> str:
    """One line: what was still missing after ``timeout`` s."""
    missing = []
    for s in result["requirements"]:
        if s["ok"]:
            continue
        who = s["node"] or "any node"
        seen = ", ".join(s["subscribers"]) or "none"
        missing.append(f"{who} has not subscribed to {s['topic']} (subscribers: {seen})")
    return f"not ready after {timeout:g} s: " + "; ".join(missing)
