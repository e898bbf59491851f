"""The pipeline's depth options as command-line flags, shared by ``eval`` and ``replay-eval``.

Each flag is one field of ``pipeline.PipelineOptions`` and one parameter of the node, with the node's
default, so a CLI run and the node agree unless a flag says otherwise. Building the parser imports
nothing heavy (``--help`` stays fast); ``pipeline_options`` imports the pipeline when it runs.
"""

from __future__ import annotations

import argparse
from typing import Any


def _fraction(text: str) -> float:
    """argparse type of --sky-min-confidence: a probability in [0, 1]."""
    value = float(text)
    if not 0.0 <= value <= 1.0:  # NaN fails too
        raise argparse.ArgumentTypeError(f"must be a probability in [0, 1], got {text!r}")
    return value


def _horizon_degrees(text: str) -> float:
    """argparse type of --sky-max-below-horizon-deg: a number of degrees in [0, 90]."""
    value = float(text)
    if not 0.0 <= value <= 90.0:  # NaN fails too
        raise argparse.ArgumentTypeError(f"must be in [0, 90] degrees, got {text!r}")
    return value


def add_pipeline_arguments(p: argparse.ArgumentParser) -> None:
    """--no-ground-contact, --network-sky-depth, --sky-min-confidence, --sky-max-below-horizon-deg,
    --sky-connected-to-top, --people-need-support (defaults: the node's)."""
    g = p.add_argument_group(
        "label and depth post-processing (the node's parameters of the same meaning; defaults: the node's)"
    )
    g.add_argument(
        "--no-ground-contact",
        dest="ground_contact",
        action="store_false",
        help="score the network's depth as it is: without the pipeline's ground-contact depth of standing "
        "objects (the node's ground_contact_depth, on by default)",
    )
    g.add_argument(
        "--network-sky-depth",
        dest="sky_beyond_range",
        action="store_false",
        help="score the network's depth on pixels it labels sky, instead of +inf there (beyond range, "
        "scored as --max-depth): the node's sky_beyond_range:=false",
    )
    g.add_argument(
        "--sky-min-confidence",
        type=_fraction,
        default=0.5,
        metavar="P",
        help="+inf only where the calibrated probability of sky is at least P (default 0.5): the node's "
        "sky_min_confidence",
    )
    g.add_argument(
        "--sky-max-below-horizon-deg",
        type=_horizon_degrees,
        default=5.0,
        metavar="DEG",
        help="sky pixels whose ray points more than DEG below the horizon of the road plane fitted to the "
        "network's road keep the network's depth instead of +inf (default 5; 90 = every confident sky "
        "pixel at +inf): the node's sky_max_below_horizon_deg",
    )
    g.add_argument(
        "--sky-connected-to-top",
        action="store_true",
        help="+inf only on sky whose region reaches the frame's top edge (sky that other classes wall in "
        "keeps the network's depth): the node's sky_connected_to_top:=true",
    )
    g.add_argument(
        "--people-need-support",
        action="store_true",
        help="relabel person regions with nothing below their feet (no ground, two-wheeler, nearer "
        "occluder or frame edge under most of their columns) to the class around them, before depth "
        "post-processing: the node's people_need_support:=true",
    )


def pipeline_options(args: argparse.Namespace) -> Any:
    """The ``PipelineOptions`` the flags of ``add_pipeline_arguments`` ask for (defaults where a
    namespace lacks one: callers that build their own namespace)."""
    from dataclasses import fields

    from mtl_perception.pipeline import PipelineOptions

    return PipelineOptions(**{f.name: getattr(args, f.name) for f in fields(PipelineOptions) if hasattr(args, f.name)})
