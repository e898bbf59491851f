"""``PipelineOptions``: the pipeline's depth options in one value, shared by the node, ``eval`` and
``replay-eval``. Their defaults must agree everywhere (else a CLI figure is not the node's figure),
the CLI flags must reach the pipeline, and bad values must be refused with the option's name."""

from __future__ import annotations

import inspect
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from mtl_perception.cli import build_parser
from mtl_perception.cli.pipeline_args import pipeline_options
from mtl_perception.pipeline import FramePipeline, PipelineOptions
from mtl_perception.ros import params as P

ROOT = Path(__file__).resolve().parents[1]
OPTIONS = [f.name for f in fields(PipelineOptions)]


def test_every_option_has_the_node_default_everywhere():
    defaults = PipelineOptions().as_dict()
    assert set(PipelineOptions.NODE_PARAMETER) == set(OPTIONS)
    init = inspect.signature(FramePipeline.__init__).parameters
    for option, param in PipelineOptions.NODE_PARAMETER.items():
        assert P.BY_NAME[param].default == defaults[option], (option, param)
        assert init[option].default == defaults[option], option
    for path in sorted((ROOT / "config" / "ros").glob("*.param.yaml")):
        values = yaml.safe_load(path.read_text())["/**"]["ros__parameters"]
        assert PipelineOptions.from_node_parameters(values) == PipelineOptions(), path.name
    parser = build_parser()
    for command in (["eval", "--data", "d"], ["replay-eval", "--bag", "b"], ["bench"], ["soak", "--frames", "1"]):
        assert pipeline_options(parser.parse_args(command)) == PipelineOptions(), command


def test_flags_reach_the_options_of_every_cli_that_runs_the_pipeline():
    flags = [
        "--no-ground-contact",
        "--network-sky-depth",
        "--sky-min-confidence",
        "0.7",
        "--sky-max-below-horizon-deg",
        "90",
        "--sky-connected-to-top",
        "--people-need-support",
    ]
    want = PipelineOptions(False, False, 0.7, 90.0, True, True)
    parser = build_parser()
    for command in (["eval", "--data", "d"], ["replay-eval", "--bag", "b"], ["bench"], ["soak", "--frames", "1"]):
        assert pipeline_options(parser.parse_args(command + flags)) == want, command


@pytest.mark.parametrize(
    "flag, value",
    [("--sky-min-confidence", "1.5"), ("--sky-min-confidence", "nan"), ("--sky-max-below-horizon-deg", "91")],
)
def test_out_of_range_flags_are_refused_by_the_parser(flag, value, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["replay-eval", "--bag", "b", flag, value])
    assert exc.value.code == 2 and flag in capsys.readouterr().err


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"sky_min_confidence": 1.2}, "sky_min_confidence must be in"),
        ({"sky_max_below_horizon_deg": -1}, "sky_max_below_horizon_deg must be in"),
        ({"ground_contact": "yes"}, "ground_contact must be true or false"),
        ({"sky_min_confidence": True}, "sky_min_confidence must be a number"),
    ],
)
def test_bad_values_name_the_option(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PipelineOptions(**kwargs)


def test_ints_are_numbers_and_the_options_are_frozen():
    opts = PipelineOptions(sky_max_below_horizon_deg=90)
    assert opts.sky_max_below_horizon_deg == 90.0 and isinstance(opts.sky_max_below_horizon_deg, float)
    with pytest.raises(AttributeError):
        opts.ground_contact = False  # type: ignore[misc]


def test_pipeline_built_from_options_reports_them_and_follows_run_time_changes():
    """No frame is processed here (the engine is never touched before ``process``), so a placeholder
    object stands in for it; the options' effect on frames is tested in test_sky_depth.py and
    test_ground_contact.py through real engines."""
    opts = PipelineOptions(sky_connected_to_top=True, sky_min_confidence=0.6)
    pipe = FramePipeline.from_options(object(), opts, output_resolution="network", camera_height=1.65)
    assert pipe.options == opts and pipe.output_resolution == "network" and pipe.camera_height == 1.65
    assert FramePipeline.from_options(object()).options == PipelineOptions()
    pipe.sky_connected_to_top = False  # what the node does when the parameter changes
    assert pipe.options == PipelineOptions(sky_min_confidence=0.6)


def test_node_maps_every_option_parameter_to_the_pipeline():
    pytest.importorskip("rclpy", reason="the node module imports rclpy (installed by `make setup`)")
    from mtl_perception.ros import node

    assert set(node._PIPELINE_OPTION.values()) == set(OPTIONS)
    assert all(param in P.BY_NAME and not P.BY_NAME[param].read_only for param in node._PIPELINE_OPTION), (
        "each depth option can be changed while the node serves"
    )
