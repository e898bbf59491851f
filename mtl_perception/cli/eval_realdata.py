"""``mtl-perception eval --realdata [DIR]``: the issue 11 table on the real frames, through the node's pipeline.

Not a subcommand of its own: ``cli.eval`` hands over here when ``--realdata`` is given. With
``--compare CKPT`` a second model runs on the same frames and gets its own column in the table and
its own columns in the picture grid (old shipped model vs a new one, for the README).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from mtl_perception.cli import CLIError
from mtl_perception.cli.pipeline_args import pipeline_options


def _labels(checkpoints: list[str | None]) -> list[str]:
    """Column names: the checkpoint's stem ('shipped' for the default), made unique with its folder."""
    stems = ["shipped" if c is None else Path(c).stem for c in checkpoints]
    if len(set(stems)) == len(stems):
        return stems
    named = ["shipped" if c is None else f"{Path(c).parent.name}/{Path(c).stem}" for c in checkpoints]
    if len(set(named)) == len(named):
        return named
    return [f"{chr(ord('A') + i)}: {n}" for i, n in enumerate(named)]


def _engine(checkpoint: str | None, args: argparse.Namespace) -> Any:
    from mtl_perception.deploy.engine import EngineError, InferenceEngine

    try:
        return InferenceEngine.create(
            checkpoint, backend=args.backend, precision=args.precision, cache_dir=args.cache_dir
        )
    except (EngineError, FileNotFoundError) as exc:
        which = "--compare" if checkpoint is not None and checkpoint == args.compare else "--checkpoint"
        raise CLIError(f"{which} {checkpoint}: {exc}") from exc


def _model_meta(engine: Any) -> dict[str, Any]:
    desc = engine.describe()
    info = engine.info
    return {
        "checkpoint": str(info.extra.get("checkpoint")),
        "decoder": info.decoder,
        "backend": desc.get("backend"),
        "precision": desc.get("precision"),
        "device": desc.get("device"),
        "input": "x".join(map(str, engine.input_size)),
        "resize": info.resize,
        "canonical_focal": info.canonical_focal,
    }


def _slim(results: dict[str, Any]) -> dict[str, Any]:
    """Results without the confusion matrices (for --json on stdout; metrics.json keeps them)."""
    from mtl_perception.evaluate.report import _json_default

    out = json.loads(json.dumps(results, default=_json_default))
    for r in out.get("models", {}).values():
        for key in ("cityscapes", "camvid"):
            r.get(key, {}).pop("confusion", None)
    return out


def run_realdata(args: argparse.Namespace) -> int:
    from mtl_perception.data.realdata import RealDataError, list_frames, load_frame
    from mtl_perception.evaluate.realdata import format_tables, run_realdata, write_realdata_report
    from mtl_perception.evaluate.realdata_grid import GridCollector

    if args.single_task:
        raise CLIError("--single-task applies to --data, not to --realdata; drop it")
    if args.max_depth <= 0:
        raise CLIError(f"--max-depth must be > 0 metres, got {args.max_depth}")
    if args.limit is not None and args.limit < 1:
        raise CLIError(f"--limit must be >= 1, got {args.limit}")
    if args.grid and Path(args.grid).suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise CLIError(f"--grid {args.grid}: give a .png or .jpg path")
    compare_defaults = bool(getattr(args, "compare_defaults", False))
    if compare_defaults and not args.compare:
        raise CLIError("--compare-defaults needs --compare CKPT (e.g. the same checkpoint as --checkpoint)")
    root = Path(args.realdata)
    sets = [s.strip() for s in args.sets.split(",") if s.strip()] if args.sets else None
    try:
        refs = list_frames(root, sets)
    except RealDataError as exc:
        raise CLIError(f"--realdata: {exc}") from exc
    refs = refs[: args.limit] if args.limit else refs
    checkpoints = [args.checkpoint] + ([args.compare] if args.compare else [])
    labels = _labels(checkpoints)
    if compare_defaults:  # one checkpoint twice is the usual case: its stem, and the stem under the defaults
        labels = [_labels([args.checkpoint])[0], f"{_labels([args.compare])[0]} (node defaults)"]
    engines = [_engine(c, args) for c in checkpoints]
    want_grid = bool(args.report or args.grid)
    grid = GridCollector(labels, max_depth=args.max_depth) if want_grid else None

    def samples():
        for ref in refs:
            try:
                yield load_frame(ref)
            except RealDataError as exc:
                raise CLIError(f"--realdata: {exc}") from exc

    from tqdm import tqdm

    options = pipeline_options(args)
    from mtl_perception.pipeline import PipelineOptions

    per_model = [options] + ([PipelineOptions() if compare_defaults else options] if args.compare else [])
    bar = tqdm(total=len(refs), desc="realdata", unit="frame", file=sys.stderr, disable=not sys.stderr.isatty())
    try:
        runs = run_realdata(
            list(zip(labels, engines, per_model)),
            samples(),
            args.max_depth,
            on_frame=grid,
            progress=bar.update,
            camera_height=args.camera_height,
            options=options,
        )
    finally:
        bar.close()
    results = {r.label: r.scorer.compute() for r in runs}
    paired = None
    if len(runs) == 2:  # --compare: how sure is each move, given so few frames
        from mtl_perception.evaluate.paired import paired_bootstrap

        paired = {"new": runs[0].label, "old": runs[1].label, **paired_bootstrap(runs[0].scorer, runs[1].scorer)}
    per_set: dict[str, int] = {}
    for ref in refs:
        per_set[ref.set] = per_set.get(ref.set, 0) + 1
    meta: dict[str, Any] = {
        "realdata": str(root),
        "frames": len(refs),
        "frames_per_set": ", ".join(f"{k} {v}" for k, v in per_set.items()),
        "max_depth_m": args.max_depth,
        "camera_height": args.camera_height,
        **options.as_dict(),
        **({"compare_options": PipelineOptions().as_dict()} if compare_defaults else {}),
        "models": {r.label: {**_model_meta(r.engine), "seconds": round(r.seconds, 2)} for r in runs},
    }
    paths: dict[str, str] = {}
    if args.report:
        out = Path(args.report)
        try:
            paths["report"] = str(write_realdata_report(out, results, meta, "grid.png", paired=paired))
        except OSError as exc:
            raise CLIError(f"cannot write --report {out}: {exc.strerror or exc}; pick a writable folder") from exc
        paths["grid"] = str(_write_grid(grid, out / "grid.png"))
    if args.grid:
        paths["grid"] = str(_write_grid(grid, Path(args.grid)))
    meta.update(paths)
    if args.json:
        payload = {"meta": meta, "models": results, **({"paired": paired} if paired else {})}
        print(json.dumps(_slim(payload), indent=2))
        return 0
    print(f"real frames: {root} ({len(refs)} frames: {meta['frames_per_set']})")
    for label, m in meta["models"].items():
        print(f"  {label}: {m['checkpoint']} ({m['decoder']}, {m['backend']} {m['precision']}, {m['resize']})")
    print()
    print(format_tables(results))
    if paired:
        from mtl_perception.evaluate.paired import format_paired

        print()
        print(format_paired(paired, paired["new"], paired["old"]))
    for key in ("report", "grid"):
        if key in paths:
            print(f"{key}: {paths[key]}")
    return 0


def _write_grid(grid: Any, path: Path) -> Path:
    try:
        return grid.write(path)
    except OSError as exc:
        raise CLIError(f"cannot write the picture grid {path}: {exc}; pick a writable .png path") from exc
