"""Fault injection for every writer: SIGKILL the real CLI at random instants, then check what is left.

    .venv/bin/python tools/kill_points.py [--points 56] [--seed 14] [--out docs/kill_points.json] [--json]

For each writer (train checkpoints + resume, ONNX export, the engine artifact cache, synth datasets,
synth --bag, eval and replay-eval reports) the tool first runs the real command once uninterrupted
(tiny settings: a 4-block ViT at 64x128, a few steps, small images) to get the reference output and
its wall time T. Then, per kill point, it starts the same command (``python -m mtl_perception.cli``)
in a fresh output location (half of them already holding a valid previous output, where the writer
overwrites), SIGKILLs its process group at a time drawn uniformly from [0, T) (``--seed``), and
asserts:

(a) every file left at the output location is absent or loads through the project's own reader
    (``load_checkpoint``, ``torch.load(weights_only=True)``, ``SyntheticDataset``, ``open_bag``,
    ``export.read_metadata`` + the ONNX checker, JSON / PNG decoders) AND equals the reference
    (or the previous output): no corrupt file is ever read back as valid. Temporaries are hidden
    ``.*.tmp`` names; they are counted and must be invisible to the readers;
(b) ``train --resume`` continues from the newest complete checkpoint and the final weights and the
    logged losses equal the uninterrupted run's EXACTLY (bit for bit, every tensor);
(c) a rerun of the command completes, its output equals the reference, and no temporary is left.

Per writer it reports kill points, kills that landed while the process ran, partial temporaries
left, valid previous outputs kept, complete new outputs, what was recovered (e.g. resumed from step
k) and failures. Exit 0 when there are no failures.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: kill points per writer for ``--points 56`` (scaled proportionally for other totals)
WEIGHTS = {
    "train": 16,
    "export": 5,
    "engine_cache": 5,
    "synth_dataset": 10,
    "synth_bag": 10,
    "eval_report": 5,
    "replay_report": 5,
}
TRAIN_STEPS = 30


def _is_temp(name: str) -> bool:
    from mtl_perception.atomic_io import is_temp_name

    return is_temp_name(name)


def _temps(root: Path) -> list[Path]:
    """Temporaries of the atomic writers under ``root`` (and next to it)."""
    found: list[Path] = []
    if root.exists():
        for dirpath, dirnames, filenames in os.walk(root):
            found += [Path(dirpath) / n for n in [*dirnames, *filenames] if _is_temp(n)]
    if root.parent.is_dir():
        found += [p for p in root.parent.iterdir() if _is_temp(p.name) and p.name.startswith(f".{root.name}.")]
    return sorted(set(found))


def _files(root: Path) -> list[Path]:
    """Regular files under ``root`` that a reader could pick up (temporaries excluded)."""
    if root.is_file():
        return [root]
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not _is_temp(d)]
        out += [Path(dirpath) / n for n in filenames if not _is_temp(n)]
    return sorted(out)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tree_sha(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): _sha(p) for p in _files(root)}


def _env(work: Path) -> dict[str, str]:
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MTL_PERCEPTION_CACHE": str(work / "cache"),
        "PYTHONUNBUFFERED": "1",
    }


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "mtl_perception.cli", *args]


class Runner:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.logs = work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.n = 0

    def run(
        self,
        cmd: list[str],
        kill_after: float | None = None,
        timeout: float = 600,
        watch: Path | None = None,
        kill_when: Callable[[], bool] | None = None,
    ) -> dict[str, Any]:
        """Run ``cmd``; SIGKILL its process group at ``kill_after`` s or once ``kill_when()`` holds, if
        still running. ``watch``: record when something first appears at that output location."""
        self.n += 1
        log = self.logs / f"{self.n:04d}.log"
        t0 = time.perf_counter()
        with open(log, "w") as fh:
            fh.write(" ".join(cmd) + "\n")
            fh.flush()
            proc = subprocess.Popen(
                cmd, cwd=self.work, env=_env(self.work), stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
            )
            deadline = t0 + (kill_after if kill_after is not None else timeout)
            first_output = None
            while proc.poll() is None and time.perf_counter() < deadline:
                if watch is not None and first_output is None and (watch.exists() or _temps(watch)):
                    first_output = time.perf_counter() - t0
                if kill_when is not None and kill_when():
                    break
                time.sleep(0.01)
            killed = proc.poll() is None
            if killed:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
            rc = proc.wait()
        wall = time.perf_counter() - t0
        if killed and kill_after is None and kill_when is None:
            raise RuntimeError(f"{' '.join(cmd)} timed out after {timeout} s; see {log}")
        tail = log.read_text()[-800:]
        out = {"rc": rc, "killed": killed, "wall_s": wall, "first_output_s": first_output}
        return {**out, "log": str(log), "tail": tail}


def _window(res: dict[str, Any]) -> dict[str, Any]:
    """Kill times are drawn from [t_first / 2, T): T the reference run's wall time, t_first when its
    output location first showed anything (a temporary included). Kills during interpreter start-up
    and imports test nothing; half of the time before the first output is kept to test early kills."""
    first = res["first_output_s"]
    lo = 0.0 if first is None else first / 2
    return {"wall_s": res["wall_s"], "first_output_s": first, "window": (lo, res["wall_s"])}


# ----------------------------------------------------------------------------- validators
def check_json(path: Path) -> Any:
    return json.loads(path.read_bytes().decode("utf-8"))


def check_png(path: Path) -> None:
    from PIL import Image

    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        im.load()


def check_report_file(path: Path) -> None:
    suffix = path.suffix.lower()
    if suffix == ".json":
        check_json(path)
    elif suffix == ".png":
        check_png(path)
    elif suffix == ".md":
        text = path.read_bytes().decode("utf-8")
        if not text.startswith("#"):
            raise ValueError(f"{path}: report does not start with a heading")
    else:
        path.read_bytes()


def stable_metrics(metrics: dict[str, Any]) -> str:
    """The run-independent part of a report's metrics.json (timings and run metadata dropped), as
    canonical JSON so that NaN entries compare equal."""
    return json.dumps({k: v for k, v in metrics.items() if k not in ("latency_ms", "meta")}, sort_keys=True)


def check_onnx(path: Path) -> dict[str, str]:
    import onnx

    from mtl_perception.deploy.export import read_metadata

    meta = read_metadata(path)
    onnx.checker.check_model(str(path))
    return meta


def weights(path: Path) -> dict[str, Any]:
    from mtl_perception.model import load_checkpoint

    return load_checkpoint(path).state_dict()


def same_weights(a: dict[str, Any], b: dict[str, Any]) -> bool:
    import torch

    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def log_rows(path: Path) -> list[tuple[str, str, str]]:
    """(step, loss, lr) of complete rows of train_log.csv (timing column excluded)."""
    rows = []
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            if None in row.values() or row.get("parts_json") in (None, ""):
                break
            rows.append((row["step"], row["loss"], row["lr"]))
    return rows


# ----------------------------------------------------------------------------- writers
class Campaign:
    def __init__(self, work: Path, seed: int, quick: bool = False) -> None:
        self.work, self.rng, self.quick = work, random.Random(seed), quick
        self.r = Runner(work)
        self.ref: dict[str, Any] = {}
        self.steps = 6 if quick else TRAIN_STEPS
        self.frames = 12 if quick else 40

    # --------------------------------------------------------------- references
    def setup(self, writers: list[str]) -> None:
        import yaml

        w = self.work
        model = yaml.safe_load((ROOT / "config" / "models" / "mlore.yaml").read_text())
        model["input_size"] = [64, 128]
        model["backbone"] = {"name": "vit_small_patch16_224", "kwargs": {"depth": 4, "embed_dim": 64, "num_heads": 2}}
        model["decoder"].update({"channels": 32, "rank_range": [4, 16], "specific_rank": 8})
        (w / "tiny_model.yaml").write_text(yaml.safe_dump(model))
        res = self._ok(self.r.run(self._synth_cmd(w / "ref" / "dataset"), watch=w / "ref" / "dataset"))
        self.ref["synth_dataset"] = {**_window(res), "tree": _tree_sha(w / "ref" / "dataset")}
        train = {
            "model": str(w / "tiny_model.yaml"),
            "data": {"train": {"type": "synthetic", "root": str(w / "ref" / "dataset")}, "num_workers": 0},
            "steps": self.steps,
            "batch_size": 2,
            "optim": {"lr": 1e-3},
            "schedule": {"type": "cosine", "warmup_steps": 2},
            "checkpoint_every": 2 if self.quick else 3,
            "keep_checkpoints": 2,
            "log_every": 1,
            "seed": 0,
        }
        (w / "train.yaml").write_text(yaml.safe_dump(train))
        # the reference keeps every checkpoint (keep_checkpoints only prunes: same numbers)
        run = w / "ref" / "train"
        res = self._ok(self.r.run(self._train_cmd(run) + ["--set", "keep_checkpoints=0"], watch=run))
        ck = {int(p.stem.split("_")[1]): weights(p) for p in sorted((run / "checkpoints").glob("step_*.safetensors"))}
        self.ref["train"] = {
            **_window(res),
            "final": weights(run / "model.safetensors"),
            "steps": ck,
            "log": log_rows(run / "train_log.csv"),
        }
        self.ckpt_a = sorted((run / "checkpoints").glob("step_*.safetensors"))[0]  # the first checkpoint
        self.ckpt_b = run / "model.safetensors"
        if "export" in writers:
            ref = w / "ref" / "export" / "model.onnx"
            res = self._ok(self.r.run(self._export_cmd(self.ckpt_b, ref), watch=ref))
            prev = w / "ref" / "export_prev" / "model.onnx"
            self._ok(self.r.run(self._export_cmd(self.ckpt_a, prev)))
            self.ref["export"] = {**_window(res), "hash": check_onnx(ref)["model_hash"], "prev": _sha(prev)}
        if "engine_cache" in writers:
            cache = w / "ref" / "cache"
            res = self._ok(self.r.run(self._engine_cmd(self.ckpt_b, cache), watch=cache / "onnx"))
            prev = w / "ref" / "cache_prev"
            self._ok(self.r.run(self._engine_cmd(self.ckpt_a, prev)))
            self.ref["engine_cache"] = {**_window(res), "tree": _tree_sha(cache), "prev": _tree_sha(prev)}
        if "synth_bag" in writers or "replay_report" in writers:
            bag = w / "ref" / "bag"
            res = self._ok(self.r.run(self._bag_cmd(bag), watch=bag))
            self.ref["synth_bag"] = {**_window(res), "tree": _tree_sha(bag)}
        for kind, data_args in (
            ("eval_report", ["eval", "--data", str(w / "ref" / "dataset"), "--limit", "6"]),
            ("replay_report", ["replay-eval", "--bag", str(w / "ref" / "bag"), "--no-progress", "--force"]),
        ):
            if kind not in writers:
                continue
            out = w / "ref" / kind
            res = self._ok(self.r.run(self._report_cmd(data_args, self.ckpt_b, out), watch=out))
            prev = w / "ref" / f"{kind}_prev"
            self._ok(self.r.run(self._report_cmd(data_args, self.ckpt_a, prev)))
            self.ref[kind] = {
                **_window(res),
                "args": data_args,
                "metrics": stable_metrics(check_json(out / "metrics.json")),
                "prev_metrics": stable_metrics(check_json(prev / "metrics.json")),
                "prev": prev,
                "prev_tree": _tree_sha(prev),
            }

    @staticmethod
    def _ok(res: dict[str, Any]) -> dict[str, Any]:
        if res["rc"] != 0:
            raise RuntimeError(f"reference run failed (exit {res['rc']}), log {res['log']}:\n{res['tail']}")
        return res

    def _synth_cmd(self, out: Path) -> list[str]:
        return cli(
            "synth", "--out", str(out), "--frames", str(self.frames), "--height", "64", "--width", "128",
            "--seed", "7", "--sequence-length", "10", "--no-progress",
        )  # fmt: skip

    def _bag_cmd(self, out: Path) -> list[str]:
        return cli(
            "synth", "--bag", str(out), "--frames", str(self.frames // 2), "--height", "64", "--width", "128",
            "--seed", "8", "--no-progress",
        )  # fmt: skip

    def _train_cmd(self, out: Path, resume: bool = False) -> list[str]:
        cmd = cli("train", "--config", str(self.work / "train.yaml"), "--out", str(out), "--no-progress")
        return cmd + (["--resume"] if resume else [])

    @staticmethod
    def _export_cmd(ckpt: Path, out: Path) -> list[str]:
        return cli("export", "--checkpoint", str(ckpt), "--precision", "fp32", "--out", str(out))

    @staticmethod
    def _engine_cmd(ckpt: Path, cache: Path) -> list[str]:
        return cli(
            "build-engine", "--checkpoint", str(ckpt), "--backend", "onnxruntime", "--precision", "fp32",
            "--cache-dir", str(cache),
        )  # fmt: skip

    @staticmethod
    def _report_cmd(data_args: list[str], ckpt: Path, out: Path) -> list[str]:
        return cli(*data_args, "--checkpoint", str(ckpt), "--backend", "torch", "--report", str(out))

    def _kill_time(self, kind: str) -> float:
        lo, hi = self.ref[kind]["window"]
        return self.rng.uniform(lo, hi)

    # --------------------------------------------------------------- one kill point per writer
    def kill_train(self, i: int, rec: dict[str, Any], after_file: str | None = None) -> None:
        """``after_file``: kill as soon as this file exists under the run folder (deterministic), not at a
        random time."""
        from mtl_perception.train.trainer import latest_checkpoint, state_path_of

        ref = self.ref["train"]
        out = self.work / "kp" / f"train_{i:03d}"
        if after_file is None:
            t = self._kill_time("train")
            res = self.r.run(self._train_cmd(out), kill_after=t)
        else:
            res = self.r.run(self._train_cmd(out), kill_when=(out / after_file).exists)
            t = res["wall_s"]
        rec.update(kill_s=round(t, 3), killed=res["killed"])
        rec["temps_left"] = [str(p.relative_to(out)) for p in _temps(out)]
        problems = rec["problems"]
        for path in _files(out):
            name = path.name
            try:
                if name.startswith("step_") and name.endswith(".safetensors"):
                    step = int(path.stem.split("_")[1])
                    if not same_weights(weights(path), ref["steps"][step]):
                        problems.append(f"{name} loads but differs from the reference step {step}")
                    if not state_path_of(path).is_file():
                        problems.append(f"{name} has no training state next to it")
                elif name.endswith(".state.pt"):
                    import torch

                    state = torch.load(path, map_location="cpu", weights_only=True)
                    if f"step_{int(state['step']):07d}.state.pt" != name:
                        problems.append(f"{name} holds step {state['step']}")
                elif name == "model.safetensors":
                    if not same_weights(weights(path), ref["final"]):
                        problems.append("model.safetensors loads but differs from the uninterrupted run")
                elif name == "config.json":
                    check_json(path)
                elif name == "train_log.csv":
                    rows = log_rows(path)
                    if rows != ref["log"][: len(rows)]:
                        problems.append("train_log.csv rows differ from the uninterrupted run's")
            except Exception as exc:  # a reader raised: a corrupt file was left in place
                problems.append(f"{name}: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}")
        latest = latest_checkpoint(out) if out.exists() else None
        if latest is not None and _is_temp(latest.name):
            problems.append(f"latest_checkpoint returned a temporary {latest}")
        rec["previous_output"] = None
        rec["new_output_complete"] = (out / "model.safetensors").is_file()
        # recovery: what a user does after a crash
        if latest is not None:
            step = int(latest.stem.split("_")[1])
            rec["recovered"] = f"resumed from step {step}"
            rerun = self.r.run(self._train_cmd(out, resume=True))
        else:
            rec["recovered"] = "restarted (no checkpoint yet)"
            rerun = self.r.run(self._train_cmd(out))
        if rerun["rc"] != 0:
            problems.append(f"rerun failed (exit {rerun['rc']}): {rerun['tail'][-300:]}")
            return
        if not same_weights(weights(out / "model.safetensors"), ref["final"]):
            problems.append("final weights differ from the uninterrupted run")
        if log_rows(out / "train_log.csv") != ref["log"]:
            problems.append("train_log.csv (step, loss, lr) differs from the uninterrupted run")
        if _temps(out):
            problems.append(f"temporaries left after the rerun: {[p.name for p in _temps(out)]}")

    def _overwrite_point(
        self,
        kind: str,
        i: int,
        rec: dict[str, Any],
        target: Path,
        prepare_prev: Callable[[], None],
        cmd: list[str],
        classify: Callable[[], str],
    ) -> None:
        """Kill a writer that overwrites ``target``; half the points start with a previous output."""
        with_prev = i % 2 == 0
        if with_prev:
            prepare_prev()
        t = self._kill_time(kind)
        res = self.r.run(cmd, kill_after=t)
        rec.update(kill_s=round(t, 3), killed=res["killed"], had_previous=with_prev)
        rec["temps_left"] = [p.name for p in _temps(target)]
        state = "error"
        try:
            state = classify()
        except Exception as exc:
            rec["problems"].append(f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}")
        rec["state_after_kill"] = state
        rec["previous_output"] = state in ("previous", "mixed") if with_prev else None
        rec["new_output_complete"] = state == "new"
        if state == "previous" and not with_prev:
            rec["problems"].append("a previous output appeared from nowhere")
        rerun = self.r.run(cmd)
        rec["recovered"] = "rerun completed" if rerun["rc"] == 0 else f"rerun failed (exit {rerun['rc']})"
        if rerun["rc"] != 0:
            rec["problems"].append(f"rerun failed: {rerun['tail'][-300:]}")
            return
        try:
            if classify() != "new":
                rec["problems"].append("the rerun's output is not the reference output")
        except Exception as exc:
            rec["problems"].append(f"after rerun: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}")
        if _temps(target):
            rec["problems"].append(f"temporaries left after the rerun: {[p.name for p in _temps(target)]}")

    def kill_export(self, i: int, rec: dict[str, Any]) -> None:
        ref = self.ref["export"]
        target = self.work / "kp" / f"export_{i:03d}" / "model.onnx"

        def prev() -> None:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(self.work / "ref" / "export_prev" / "model.onnx", target)

        def classify() -> str:
            if not target.exists():
                return "absent"
            if _sha(target) == ref["prev"]:
                return "previous"
            if check_onnx(target)["model_hash"] != ref["hash"]:
                raise ValueError("model.onnx is valid ONNX of another model")
            return "new"

        self._overwrite_point("export", i, rec, target, prev, self._export_cmd(self.ckpt_b, target), classify)

    def kill_engine_cache(self, i: int, rec: dict[str, Any]) -> None:
        ref = self.ref["engine_cache"]
        cache = self.work / "kp" / f"cache_{i:03d}"

        def prev() -> None:
            shutil.copytree(self.work / "ref" / "cache_prev", cache)

        def classify() -> str:
            tree = _tree_sha(cache) if cache.exists() else {}
            for rel in tree:
                if rel.endswith(".onnx"):
                    check_onnx(cache / rel)  # every artifact a reader would find must be whole
            expected = {**ref["prev"], **ref["tree"]} if i % 2 == 0 else dict(ref["tree"])
            wrong = sorted(k for k in tree if expected.get(k) != tree[k])
            if wrong:
                raise ValueError(f"cache files that are not the reference build's: {wrong}")
            if i % 2 == 0 and any(tree.get(k) != v for k, v in ref["prev"].items()):
                raise ValueError("the other checkpoint's cache entry was lost")
            if all(tree.get(k) == v for k, v in ref["tree"].items()):
                return "new"
            if i % 2 == 0 and all(tree.get(k) == v for k, v in ref["prev"].items()):
                return "previous"
            return "absent" if not tree else "partial"

        self._overwrite_point("engine_cache", i, rec, cache, prev, self._engine_cmd(self.ckpt_b, cache), classify)

    def _report_point(self, kind: str, i: int, rec: dict[str, Any]) -> None:
        ref = self.ref[kind]
        out = self.work / "kp" / f"{kind}_{i:03d}"

        def prev() -> None:
            shutil.copytree(ref["prev"], out)

        def classify() -> str:
            if not out.exists() or not _files(out):
                return "absent"
            for path in _files(out):
                check_report_file(path)  # raises on a truncated PNG / JSON / markdown
            if not (out / "metrics.json").exists():
                return "partial"  # plots only: report.md and metrics.json are written last
            m = stable_metrics(check_json(out / "metrics.json"))
            if m == ref["prev_metrics"]:
                return "previous" if _tree_sha(out) == ref["prev_tree"] else "mixed"
            if m != ref["metrics"]:
                raise ValueError("metrics.json is valid JSON but neither the new nor the previous report's")
            return "new" if (out / "report.md").exists() else "partial"

        cmd = self._report_cmd(ref["args"], self.ckpt_b, out)
        self._overwrite_point(kind, i, rec, out, prev, cmd, classify)

    def kill_eval_report(self, i: int, rec: dict[str, Any]) -> None:
        self._report_point("eval_report", i, rec)

    def kill_replay_report(self, i: int, rec: dict[str, Any]) -> None:
        self._report_point("replay_report", i, rec)

    def _create_once_point(self, kind: str, i: int, rec: dict[str, Any], target: Path, cmd: list[str]) -> None:
        """Writers that refuse to overwrite (synth): the target is absent or complete, never partial."""
        ref = self.ref[kind]
        t = self._kill_time(kind)
        res = self.r.run(cmd, kill_after=t)
        rec.update(kill_s=round(t, 3), killed=res["killed"], previous_output=None)
        rec["temps_left"] = [p.name for p in _temps(target)]
        complete = False
        if target.exists():
            try:
                self._validate_created(kind, target)
                if _tree_sha(target) != ref["tree"]:
                    raise ValueError("loads, but its files differ from the reference")
                complete = True
            except Exception as exc:
                rec["problems"].append(f"{target.name} left after the kill: {type(exc).__name__}: {exc}"[:400])
        rec["new_output_complete"] = complete
        rerun = self.r.run(cmd)
        if complete:
            rec["recovered"] = "complete before the kill (rerun refuses to overwrite)"
            if rerun["rc"] != 2:
                rec["problems"].append(f"rerun over a complete output exited {rerun['rc']}, expected 2")
        elif rerun["rc"] != 0:
            rec["recovered"] = f"rerun failed (exit {rerun['rc']})"
            rec["problems"].append(f"rerun failed: {rerun['tail'][-300:]}")
            return
        else:
            rec["recovered"] = "rerun completed"
        try:
            self._validate_created(kind, target)
            if _tree_sha(target) != ref["tree"]:
                rec["problems"].append("the rerun's output differs from the reference")
        except Exception as exc:
            rec["problems"].append(f"after rerun: {type(exc).__name__}: {exc}"[:400])
        if _temps(target):
            rec["problems"].append(f"temporaries left after the rerun: {[p.name for p in _temps(target)]}")

    def _validate_created(self, kind: str, target: Path) -> None:
        if kind == "synth_dataset":
            from mtl_perception.data.synthetic_io import SyntheticDataset

            ds = SyntheticDataset(target)
            if len(ds) != self.frames:
                raise ValueError(f"{len(ds)} frames, expected {self.frames}")
            for k in range(len(ds)):
                ds[k]
        else:
            from mtl_perception.data.bags import open_bag

            with open_bag(target) as bag:
                n = sum(1 for _ in bag.messages())
                if bag.errors or bag.warnings or bag.message_errors:
                    raise ValueError(f"bag opened with recoveries: {bag.errors + bag.warnings + bag.message_errors}")
                if n != 4 * (self.frames // 2) or bag.expected_count != n:
                    raise ValueError(f"{n} messages, metadata says {bag.expected_count}")

    def kill_synth_dataset(self, i: int, rec: dict[str, Any]) -> None:
        target = self.work / "kp" / f"synth_{i:03d}" / "dataset"
        self._create_once_point("synth_dataset", i, rec, target, self._synth_cmd(target))

    def kill_synth_bag(self, i: int, rec: dict[str, Any]) -> None:
        target = self.work / "kp" / f"bag_{i:03d}" / "bag"
        self._create_once_point("synth_bag", i, rec, target, self._bag_cmd(target))


# ----------------------------------------------------------------------------- campaign
def allocate(points: int, writers: list[str]) -> dict[str, int]:
    """``points`` kill points over ``writers`` in proportion to WEIGHTS (at least one each)."""
    total = sum(WEIGHTS[w] for w in writers)
    alloc = {w: max(1, round(points * WEIGHTS[w] / total)) for w in writers}
    while sum(alloc.values()) > points and max(alloc.values()) > 1:
        alloc[max(alloc, key=alloc.get)] -= 1
    while sum(alloc.values()) < points:
        alloc[max(writers, key=lambda w: WEIGHTS[w] / alloc[w])] += 1
    return alloc


def summarize(kind: str, recs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "kill_points": len(recs),
        "killed_while_running": sum(r["killed"] for r in recs),
        "finished_before_kill": sum(not r["killed"] for r in recs),
        "left_partial_temp": sum(bool(r["temps_left"]) for r in recs),
        "with_previous_output": sum(bool(r.get("had_previous")) for r in recs),
        "left_valid_previous_output": sum(bool(r.get("previous_output")) for r in recs),
        "left_complete_new_output": sum(bool(r.get("new_output_complete")) for r in recs),
        "recovered": dict(sorted(Counter(r.get("recovered", "?") for r in recs).items())),
        "failures": sum(bool(r["problems"]) for r in recs),
        "failure_details": [f"point {r['point']}: {'; '.join(r['problems'])}" for r in recs if r["problems"]],
    }


def run_campaign(
    points: dict[str, int], seed: int, work: Path, quick: bool = False, progress: bool = True
) -> dict[str, Any]:
    from tqdm import tqdm

    camp = Campaign(work, seed, quick=quick)
    t0 = time.perf_counter()
    camp.setup(list(points))
    setup_s = time.perf_counter() - t0
    plan = [(w, i) for w in points for i in range(points[w])]
    camp.rng.shuffle(plan)  # interleave writers so machine load spreads evenly
    records: dict[str, list[dict[str, Any]]] = {w: [] for w in points}
    bar = tqdm(total=len(plan), desc="kill points", unit="kill", disable=not progress, file=sys.stderr)
    for w, i in plan:
        rec: dict[str, Any] = {"point": i, "problems": []}
        try:
            getattr(camp, f"kill_{w}")(i, rec)
        except Exception as exc:  # the harness itself must not hide a failure
            rec["problems"].append(f"harness: {type(exc).__name__}: {exc}"[:400])
            rec.setdefault("killed", False)
            rec.setdefault("temps_left", [])
        records[w].append(rec)
        bar.update(1)
        bar.set_postfix(writer=w, failures=sum(bool(r["problems"]) for rs in records.values() for r in rs))
    bar.close()
    writers = {w: summarize(w, sorted(records[w], key=lambda r: r["point"])) for w in points}
    for w in writers:
        writers[w]["reference_run_s"] = round(camp.ref[w]["wall_s"], 2)
        writers[w]["kill_window_s"] = [round(x, 2) for x in camp.ref[w]["window"]]
        writers[w]["kill_times_s"] = [r.get("kill_s") for r in sorted(records[w], key=lambda r: r["point"])]
    return {
        "seed": seed,
        "setup_s": round(setup_s, 1),
        "total": {
            "kill_points": sum(v["kill_points"] for v in writers.values()),
            "killed_while_running": sum(v["killed_while_running"] for v in writers.values()),
            "left_partial_temp": sum(v["left_partial_temp"] for v in writers.values()),
            "left_valid_previous_output": sum(v["left_valid_previous_output"] for v in writers.values()),
            "failures": sum(v["failures"] for v in writers.values()),
        },
        "writers": writers,
        "records": records,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=sum(WEIGHTS.values()), help="kill points in all (default 56)")
    ap.add_argument("--seed", type=int, default=14, help="seed of the kill times (default 14)")
    ap.add_argument("--writers", default=",".join(WEIGHTS), help=f"comma-separated subset of {','.join(WEIGHTS)}")
    ap.add_argument("--out", default=None, help="write the totals as JSON here (e.g. docs/kill_points.json)")
    ap.add_argument("--work", default=None, help="scratch folder (default: a temporary one, removed)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder")
    ap.add_argument("--quick", action="store_true", help="smaller runs (CI slice)")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    writers = [w.strip() for w in args.writers.split(",") if w.strip()]
    unknown = [w for w in writers if w not in WEIGHTS]
    if unknown or not writers:
        ap.error(f"--writers: unknown {unknown}; choose from {','.join(WEIGHTS)}")
    if args.points < len(writers):
        ap.error(f"--points must be >= the number of writers ({len(writers)})")
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="kill_points_"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        result = run_campaign(
            allocate(args.points, writers), args.seed, work.resolve(), args.quick, not args.no_progress
        )
    finally:
        if not args.keep and not args.work:
            shutil.rmtree(work, ignore_errors=True)
    wall = time.perf_counter() - t0
    cpu = next(
        (ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines() if "model name" in ln),
        platform.processor(),
    )
    result = {
        "command": " ".join(["tools/kill_points.py", *(argv if argv is not None else sys.argv[1:])]),
        "date": time.strftime("%Y-%m-%d"),
        "wall_s": round(wall, 1),
        "machine": f"{os.cpu_count()} cores, {cpu}, {platform.system()} {platform.release()}, no GPU used",
        **result,
    }
    if args.out:
        from mtl_perception.atomic_io import atomic_write_json

        atomic_write_json(args.out, result, indent=2)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for w, v in result["writers"].items():
            print(
                f"{w:14s} {v['kill_points']:3d} kills ({v['killed_while_running']} while running): "
                f"{v['left_partial_temp']} left a temp, {v['left_valid_previous_output']} kept the previous output, "
                f"{v['left_complete_new_output']} complete; recovered {v['recovered']}; failures {v['failures']}"
            )
            for line in v["failure_details"]:
                print("   FAIL", line)
        print(f"total: {result['total']} in {wall:.0f} s")
    return 1 if result["total"]["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
