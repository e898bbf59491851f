"""``mtl-perception demo``: the embedded demo, a synthetic drive through the live ROS 2 node, evaluated.

Every stage is a separate process talking real DDS, as on a vehicle:

1. ``mtl-perception synth --bag``: a seeded drive (held-out seed 2024; training used seed 1) with
   ground truth, cached in the output folder while its parameters are unchanged;
2. ``perception_node`` with the shipped model (reliable input for lossless replay, ``use_sim_time``);
3. ``mtl-perception live-eval``: matches the node's outputs with the bag's ground truth, writes the
   replay-eval report and one PNG per evaluated frame (what it received: input | semantic | depth);
4. ``mtl-perception play --clock``: publishes the bag at ``--rate`` camera frames per second.

The PNGs become ``demo.gif``. All processes share one Fast DDS transport (LARGE_DATA) and a
ROS domain id that no local participant uses, and are stopped on success, failure and Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from mtl_perception.atomic_io import atomic_write_json, atomic_write_text
from mtl_perception.cli import CLIError

BAG_FPS = 10.0  # the recorded drive's frame rate; --rate only changes how fast it is replayed
DEMO_SEED = 2024  # not a training seed (config/train/mlore_lite0.yaml renders from seed 1)
NODE_FQN = "/perception/perception_node"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="synthetic drive -> live perception_node -> live evaluation: report, GIF, summary",
        description="The embedded demo. Renders (or reuses) a synthetic drive bag with ground truth, starts the "
        "perception node with the shipped model, the live evaluator and the bag player as separate ROS 2 processes, "
        "then prints mIoU, depth errors, per-frame latency and drops, and writes the evaluator's report, an animated "
        "GIF (input | semantic | depth of every evaluated frame), logs and summary.json under --out.",
    )
    p.add_argument("--out", default="outputs/demo", help="output folder (default outputs/demo)")
    p.add_argument("--frames", type=int, default=40, help="frames in the drive (default 40)")
    p.add_argument(
        "--rate",
        type=float,
        default=1.5,
        help="camera frames per second played (default 1.5; the node drops frames that arrive faster than "
        f"it infers). The drive is recorded at {BAG_FPS:g} fps and replayed at RATE/{BAG_FPS:g} speed",
    )
    p.add_argument("--seed", type=int, default=DEMO_SEED, help=f"drive seed (default {DEMO_SEED}, held out)")
    p.add_argument("--model", default="", help="model .safetensors (default: the shipped MLoRE model)")
    p.add_argument("--backend", default="onnxruntime", help="node backend (default onnxruntime)")
    p.add_argument("--precision", default="fp32", help="node precision (default fp32)")
    p.add_argument("--threads", type=int, default=0, help="node CPU threads (default 0: the library's)")
    p.add_argument("--domain-id", type=int, default=None, help="ROS_DOMAIN_ID (default: a free one in 1-101)")
    p.add_argument("--gif-width", type=int, default=256, help="width of each GIF panel in pixels (default 256)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout (progress on stderr)")
    p.set_defaults(func=run)


# ---------------------------------------------------------------------------------------------- helpers
def free_domain_id(candidates: range = range(1, 102)) -> int:
    """A ROS domain id with no participant on this host, starting at a pid-dependent point.

    Fast DDS binds UDP 7410 + 250 * id for the first participant of a domain (unicast discovery),
    so a port we can bind means nobody local is on that domain (ids above 101 may clash with
    ephemeral ports, hence the range).
    """
    ids = list(candidates)
    start = os.getpid() % len(ids)
    for d in ids[start:] + ids[:start]:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind(("", 7410 + 250 * d))
            except OSError:
                continue
            return d
    raise CLIError("no free ROS domain id in 1-101; pass --domain-id")


def _child_preexec() -> None:
    # A child ends with the demo even if the demo is SIGKILLed (no orphans); own process group so a
    # terminal Ctrl-C reaches only the demo, which then stops the children in order.
    import ctypes

    os.setpgrp()
    # a demo started from a non-interactive shell's background job inherits SIGINT ignored; the
    # children must still stop cleanly on the SIGINT that Child.stop() sends
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Child:
    """One stage process, output in ``logs/<name>.log`` (stdout optionally in its own file)."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], log_dir: Path, stdout_file: str = "") -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "w")
        self._out: TextIO | None = open(log_dir / stdout_file, "w") if stdout_file else None
        self.stdout_path = log_dir / stdout_file if stdout_file else self.log_path
        self.reaped = False  # stopped by reap_if_done after printing its result
        self._log.write("+ " + " ".join(cmd) + "\n")
        self._log.flush()
        self.proc = subprocess.Popen(
            cmd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._out or self._log,
            stderr=self._log,
            preexec_fn=_child_preexec,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def result(self) -> dict | None:
        """The JSON result the process printed to its stdout file, once complete (else None)."""
        if self.stdout_path == self.log_path or not self.stdout_path.is_file():
            return None
        try:
            return json.loads(self.stdout_path.read_text())
        except (OSError, ValueError):
            return None

    def reap_if_done(self, since: dict[str, float], grace: float = 10.0) -> None:
        """A process that printed its complete result but has not exited ``grace`` s later is hung in
        ROS/DDS teardown (seen once under load in CI): stop it, keep the result, note it in the log."""
        if self.proc.poll() is not None or self.result() is None:
            return
        t = since.setdefault(self.name, time.monotonic())
        if time.monotonic() - t > grace:
            self.stop()
            with open(self.log_path, "a") as f:  # after stop: the child's own writes cannot overwrite it
                f.write(f"[demo] {self.name} printed its result but had not exited {grace:.0f} s later: stopped\n")
            self.reaped = True

    @property
    def succeeded(self) -> bool:
        return self.proc.returncode == 0 or (self.reaped and self.result() is not None)

    def poll(self) -> int | None:
        return self.proc.poll()

    def fail(self, what: str = "") -> CLIError:
        rc = self.proc.poll()
        state = f"exited with {rc}" if rc is not None else "did not finish"
        return CLIError(f"{self.name} {state}{': ' + what if what else ''}; see {self.log_path}")

    def stop(self, timeout: float = 15.0) -> None:
        """SIGINT (clean ROS shutdown), then SIGKILL; closes the log files."""
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGINT)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        for f in (self._log, self._out):
            if f is not None and not f.closed:
                f.close()


class Progress:
    """Stage lines on stderr; a live status line (rewritten on a terminal, every few seconds otherwise)."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.t0 = time.monotonic()
        self._last = 0.0
        self._pending = False

    def stage(self, text: str) -> None:
        self._end_status()
        print(f"[demo {time.monotonic() - self.t0:6.1f} s] {text}", file=sys.stderr, flush=True)

    def status(self, text: str) -> None:
        now = time.monotonic()
        if self.tty:
            print(f"\r  {text}\033[K", end="", file=sys.stderr, flush=True)
            self._pending = True
        elif now - self._last >= 5.0:
            print(f"  {text}", file=sys.stderr, flush=True)
            self._last = now

    def _end_status(self) -> None:
        if self._pending:
            print(file=sys.stderr, flush=True)
            self._pending = False


def _tqdm_count(log: str) -> str:
    found = re.findall(r"(\d+)/(\d+) \[", log)
    return f"{found[-1][0]}/{found[-1][1]}" if found else "0"


def _finite(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else None


# ---------------------------------------------------------------------------------------------- stages
def _bag_stage(args: argparse.Namespace, out: Path, env: dict[str, str], logs: Path, prog: Progress) -> Path:
    """Render the drive unless ``out/bag`` was rendered with the same parameters (``out/bag.json``)."""
    bag, stamp = out / "bag", out / "bag.json"
    params = {"seed": args.seed, "frames": args.frames, "height": 256, "width": 512, "fps": BAG_FPS, "storage": "mcap"}
    if bag.is_dir() and stamp.is_file():
        try:
            if json.loads(stamp.read_text()) == params:
                prog.stage(f"drive bag: reusing {bag} (seed {args.seed}, {args.frames} frames)")
                return bag
        except ValueError:
            pass
    shutil.rmtree(bag, ignore_errors=True)
    stamp.unlink(missing_ok=True)
    prog.stage(f"drive bag: rendering {args.frames} frames (seed {args.seed}, 256x512, {BAG_FPS:g} fps) -> {bag}")
    cmd = [sys.executable, "-m", "mtl_perception.cli", "synth", "--bag", str(bag), "--storage", "mcap"]
    cmd += ["--rate", str(BAG_FPS), "--frames", str(args.frames), "--seed", str(args.seed), "--json"]
    cmd += ["--height", "256", "--width", "512"]
    synth = Child("synth", cmd, env, logs)
    try:
        while synth.poll() is None:
            prog.status(f"synth: frame {_tqdm_count(synth.log())}")
            time.sleep(0.5)
    finally:
        synth.stop()
    if synth.proc.returncode != 0:
        shutil.rmtree(bag, ignore_errors=True)
        raise synth.fail()
    atomic_write_text(stamp, json.dumps(params) + "\n")  # written last: a half-written bag is never reused
    return bag


def _wait_ready(node: Child, prog: Progress, timeout: float = 600.0) -> float:
    t0 = time.monotonic()
    while "ready:" not in node.log():
        if node.poll() is not None:
            fatal = [ln for ln in node.log().splitlines() if "FATAL" in ln or "Error" in ln]
            raise node.fail(fatal[-1].strip()[-300:] if fatal else "")
        if time.monotonic() - t0 > timeout:
            raise node.fail(f"not ready after {timeout:.0f} s")
        prog.status(f"perception_node: loading the model ({time.monotonic() - t0:.0f} s)")
        time.sleep(0.2)
    return time.monotonic() - t0


def _make_gif(frames_dir: Path, path: Path, panel_width: int, fps: float) -> int:
    """Evaluated frames (3 panels each) -> looping GIF, panels scaled to ``panel_width``; returns frame count."""
    from PIL import Image

    files = sorted(frames_dir.glob("frame_*.png"))
    if not files:
        return 0
    images = []
    for f in files:
        im = Image.open(f).convert("RGB")
        w = 3 * panel_width
        h = max(1, round(im.height * w / im.width))
        images.append(im.resize((w, h), Image.Resampling.LANCZOS).quantize(colors=255, dither=Image.Dither.NONE))
    images[0].save(path, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)
    return len(images)


def _summary(results: dict[str, Any], play: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    played = int(play.get("published", {}).get("/camera/image_raw", 0))
    evaluated = int(results.get("frames", 0))
    sem, dep, lat = results.get("semseg", {}), results.get("depth", {}), results.get("latency_ms", {})

    def pct(stage: str) -> dict[str, float | None]:
        p = lat.get(stage) or {}
        return {k: _finite(p.get(k)) for k in ("p50", "p90", "p99", "mean", "max")}

    return {
        "status": results.get("status"),
        "frames": {
            "in_bag": extra["frames"],
            "played": played,
            "evaluated": evaluated,
            "dropped": max(0, played - evaluated),
            "dropped_by_node": int(results.get("counters", {}).get("frames_dropped_by_node", 0)),
        },
        "rate_hz": extra["rate"],
        "semseg": {k: _finite(sem.get(k)) for k in ("miou_present", "miou_all", "pixel_acc")},
        "depth": {k: _finite(dep.get(k)) for k in ("abs_rel", "rmse", "delta1", "mae")},
        "latency_ms": {"node_total": pct("node_total"), "inference": pct("inference")},
        **{k: v for k, v in extra.items() if k not in ("frames", "rate")},
    }


def _print_summary(s: dict[str, Any]) -> None:
    f, sem, dep = s["frames"], s["semseg"], s["depth"]
    nt, inf = s["latency_ms"]["node_total"], s["latency_ms"]["inference"]

    def num(x: float | None, fmt: str) -> str:
        return "n/a" if x is None else format(x, fmt)

    print(f"demo: {s['status']} in {s['wall_s']:.1f} s ({s['device']}, domain {s['ros_domain_id']})")
    print(
        f"  frames:   played {f['played']} at {s['rate_hz']:g} Hz, evaluated {f['evaluated']}, dropped {f['dropped']}"
        + (" (the node's latest-frame policy: frames came faster than inference)" if f["dropped"] else "")
    )
    print(
        f"  semantic: mIoU {num(sem['miou_present'], '.3f')} over classes in the GT "
        f"({num(sem['miou_all'], '.3f')} over all 19), pixel accuracy {num(sem['pixel_acc'], '.3f')}"
    )
    print(
        f"  depth:    AbsRel {num(dep['abs_rel'], '.3f')}, RMSE {num(dep['rmse'], '.2f')} m, "
        f"delta<1.25 {num(dep['delta1'], '.3f')}"
    )
    print(
        f"  latency:  node per frame p50 {num(nt['p50'], '.0f')} ms, p99 {num(nt['p99'], '.0f')} ms "
        f"(inference p50 {num(inf['p50'], '.0f')} ms, p99 {num(inf['p99'], '.0f')} ms)"
    )
    p = s["paths"]
    print(f"  report:   {p['report']}")
    print(f"  gif:      {p['gif']} ({s['gif_frames']} frames: input | semantic | depth)")
    print(f"  logs:     {p['logs']}")
    print(f"  summary:  {p['summary']}")


# ---------------------------------------------------------------------------------------------- run
def run(args: argparse.Namespace) -> int:
    if args.frames < 1:
        raise CLIError(f"--frames must be >= 1, got {args.frames}")
    if args.rate <= 0:
        raise CLIError(f"--rate must be > 0 frames per second, got {args.rate}")
    if args.gif_width < 16:
        raise CLIError(f"--gif-width must be >= 16, got {args.gif_width}")
    try:
        import rclpy  # noqa: F401
    except ImportError as exc:
        raise CLIError(f"rclpy is not importable ({exc}); run `make setup` (ROS 2 wheels) or source ROS") from exc
    from mtl_perception.deploy.artifacts import DEFAULT_CHECKPOINT
    from mtl_perception.ros.harness import node_command, transport_env

    model = Path(args.model).expanduser() if args.model else DEFAULT_CHECKPOINT
    if not model.is_file():
        raise CLIError(f"model {model} not found; pass --model PATH to a .safetensors checkpoint")
    from mtl_perception.model.checkpoint import read_metadata

    read_metadata(model)  # a corrupt or foreign file fails here in one line, before any process starts
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    logs, report, frames_dir, gif = out / "logs", out / "report", out / "frames", out / "demo.gif"
    for d in (logs, report, frames_dir):  # this run's outputs only; the cached bag stays
        shutil.rmtree(d, ignore_errors=True)
    logs.mkdir()
    gif.unlink(missing_ok=True)
    (out / "summary.json").unlink(missing_ok=True)

    domain = args.domain_id if args.domain_id is not None else free_domain_id()
    env = transport_env("large_data", domain_id=domain)
    env["MTL_DEMO_OUT"] = str(out.resolve())  # tags the demo's processes (tests look for leftovers by it)
    prog = Progress()
    children: list[Child] = []

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # SIGTERM: same clean-up path as Ctrl-C

    old_term = signal.signal(signal.SIGTERM, on_term)
    t_start = time.monotonic()
    try:
        bag = _bag_stage(args, out, env, logs, prog)

        prog.stage(
            f"perception_node: {model.name}, {args.backend}/{args.precision} on the CPU, ROS_DOMAIN_ID={domain}, "
            "Fast DDS LARGE_DATA"
        )
        params = {
            "backend": args.backend,
            "precision": args.precision,
            "device": "cpu",
            "threads": args.threads,
            "use_sim_time": True,
            "input_reliability": "reliable",  # lossless replay; drops then come only from the latest-frame policy
            "input_depth": 10,
            "output_depth": 10,  # reliable keep-last: a briefly busy evaluator must not lose predictions
            "publish_points": False,  # nobody listens in the demo; saves CPU on a small machine
        }
        cmd = node_command(
            str(model), image_topic="/camera/image_raw", camera_info_topic="/camera/camera_info", params=params
        )
        node = Child("perception_node", cmd, env, logs)
        children.append(node)
        ready_s = _wait_ready(node, prog)
        ready_line = next(ln for ln in node.log().splitlines() if "ready:" in ln)
        prog.stage(f"perception_node ready in {ready_s:.1f} s: {ready_line.split('ready:', 1)[1].strip()}")

        play_s = args.frames / args.rate
        idle = max(5.0, 3.0 / args.rate)  # > the gap between frames; the evaluator's end when frames were dropped
        cmd = [sys.executable, "-m", "mtl_perception.cli", "live-eval", "--node", NODE_FQN]
        cmd += ["--expected-frames", str(args.frames), "--idle-timeout", str(idle), "--report", str(report)]
        cmd += ["--save-frames", str(frames_dir), "--json"]
        evaluator = Child("live_eval", cmd, env, logs, stdout_file="live_eval.json")
        children.append(evaluator)
        cmd = [sys.executable, "-m", "mtl_perception.cli", "play", "--bag", str(bag), "--clock"]
        cmd += ["--rate", f"{args.rate / BAG_FPS:.6g}", "--wait-for-subscribers", "60", "--delay", "1.5", "--json"]
        player = Child("play", cmd, env, logs, stdout_file="play.json")
        children.append(player)
        prog.stage(
            f"live-eval + play: {args.frames} frames at {args.rate:g} Hz (~{play_s:.0f} s of playback), /clock from "
            "the bag"
        )
        t_play = time.monotonic()
        deadline = t_play + play_s + 180.0
        finished_at: dict[str, float] = {}
        while evaluator.poll() is None or player.poll() is None:
            evaluator.reap_if_done(finished_at)
            player.reap_if_done(finished_at)
            if node.poll() is not None:
                raise node.fail("during playback")
            if player.poll() not in (None, 0) and not player.succeeded:
                raise player.fail()
            if time.monotonic() > deadline:
                raise (evaluator if evaluator.poll() is None else player).fail(
                    f"still running {deadline - t_play:.0f} s after the start of playback"
                )
            done = len(list(frames_dir.glob("frame_*.png"))) if frames_dir.is_dir() else 0
            phase = "playing" if player.poll() is None else "player done, evaluator finishing"
            prog.status(f"{phase}: {time.monotonic() - t_play:.0f} s, evaluated {done}/{args.frames} frames")
            time.sleep(0.5)
        if not player.succeeded:
            raise player.fail()
        if not evaluator.succeeded or (evaluator.result() or {}).get("status") not in ("ok", "ok_with_drops"):
            raise evaluator.fail("no frame evaluated or status not ok")
        play_stats = json.loads(player.stdout_path.read_text())
        results = json.loads((report / "metrics.json").read_text())
        prog.stage(f"evaluation done: {results['frames']} frames, status {results['status']}")
        for c in reversed(children):
            c.stop()

        prog.stage(f"GIF: {gif}")
        n_gif = _make_gif(frames_dir, gif, args.gif_width, BAG_FPS)
        summary = _summary(
            results,
            play_stats,
            {
                "frames": args.frames,
                "rate": args.rate,
                "wall_s": round(time.monotonic() - t_start, 1),
                "playback_wall_s": play_stats.get("wall_s"),
                "node_ready_s": round(ready_s, 1),
                "seed": args.seed,
                "model": str(model),
                "backend": args.backend,
                "precision": args.precision,
                "device": "cpu",
                "ros_domain_id": domain,
                "gif_frames": n_gif,
                "paths": {
                    "out": str(out),
                    "bag": str(bag),
                    "report": str(report / "report.md"),
                    "metrics": str(report / "metrics.json"),
                    "gif": str(gif),
                    "frames": str(frames_dir),
                    "logs": str(logs),
                    "summary": str(out / "summary.json"),
                },
            },
        )
        atomic_write_json(out / "summary.json", summary, indent=2)
    finally:
        for c in reversed(children):  # player, evaluator, node: inputs stop first
            c.stop()
        signal.signal(signal.SIGTERM, old_term)
        prog._end_status()
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        _print_summary(summary)
    return 0 if summary["frames"]["evaluated"] > 0 else 1
