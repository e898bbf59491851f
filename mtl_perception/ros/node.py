"""``perception_node``: camera images in; semantic labels, their confidence (``~/semantic/confidence``,
32FC1 softmax probability of each pixel's class in [0, 1] at the model's calibrated temperature),
metric depth, its uncertainty (``~/depth/uncertainty``, 32FC1 metres: half the width of the 1-sigma
interval of the model's Gaussian on log depth; models with the uncertainty head only), camera_info, a
semantic point cloud (``max_point_uncertainty`` drops uncertain points), a PerceptionResult and stats
out, every output stamped with its input's header.

Managed (lifecycle) node: configure builds the engine and the publishers, activate subscribes
(so "subscribed" means "ready to infer"), deactivate unsubscribes, cleanup releases the engine.
With ``autostart`` (default) it configures and activates itself; with ``autostart:=false`` a
lifecycle manager drives it (``ros2 lifecycle set /perception/perception_node configure``).

Runtime model switch: setting ``decoder``, ``model_path``, ``precision``, ``backend``, ``device``
or ``threads`` builds the new engine in a background thread while the old one keeps serving; the
worker swaps engines between two frames (``mtl_perception.deploy.hot_swap``). A failed build
keeps the old engine and reverts the parameters, with an error naming the cause.

Cameras: ``cameras: [front, left, ...]`` serves N cameras from this one engine; the latest frame
of every camera that has one is batched into one inference call and each camera's products are
published under ``~/<camera>/`` with that camera's header and intrinsics (``CameraStream``).

Threading: the executor thread only deserialises and drops each message into its camera's
one-frame slot (``LatestSlots``); a worker thread decodes, runs ``FramePipeline`` and publishes. A
frame that arrives while another of the same camera waits replaces it (counted as a stale drop),
so nothing stale is ever processed and latency is bounded by one inference. Outputs without
subscribers are not built.

Intrinsics: each frame is processed with K from the latest camera_info (rescaled to the image if
it is for another size), which turns a canonical-camera model's depth into metres. Without a
usable camera_info the model's default field of view is assumed: warned once, counted per frame
(``frames_default_intrinsics``), and ~/points and ~/depth/camera_info are not published.

Bad input (unsupported encoding, truncated data, wrong step, zero size, camera_info of another
size, out-of-order stamps) is logged with a throttled warning, counted in ``~/stats`` and
/diagnostics, and the node keeps running. A missing model or unusable engine fails at start with
one line naming the file and the fix (exit code 1).

Load and faults (``test/test_node_faults.py``, ``mtl-perception bench-node --faults``): every frame
the node received is processed or counted (frames_received = frames_processed +
frames_dropped_stale + frames_dropped_invalid + frames_failed, plus at most one frame in flight);
frames the camera sent that never reached the node are counted from gaps in the publisher's
sequence numbers (frames_lost_input). Publishing never waits for a slow or vanished subscriber
(KEEP_LAST outputs). camera_info that stops: the last one is kept, frames counted in
frames_stale_camera_info, a throttled warning and WARN on /diagnostics after camera_info_timeout s.
The clock (sim time) or the image stamps jumping back restart the out-of-order check
(stamp_resets) instead of dropping frames until the stamps catch up; /diagnostics runs on a steady
timer, so it keeps publishing while sim time stalls or jumps. Parameter changes with a wrong type,
out of range, an unknown choice, read-only or undeclared are refused with the reason in the
SetParameters result and counted (parameter_rejections); the node keeps its values.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from rclpy.clock import JumpThreshold
from rclpy.duration import Duration
from rclpy.exceptions import ParameterNotDeclaredException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import CameraInfo, Image

from mtl_perception.deploy.hot_swap import EngineSettings, EngineSwapper, SwapReport
from mtl_perception.pipeline import FramePipeline, PipelineOptions
from mtl_perception.ros import params as P
from mtl_perception.ros.camera_stream import FIRST_CAMERA_INFO_WAIT_S, CameraStream, PerceptionResult, PerceptionStats
from mtl_perception.ros.conversions import camera_info_for, semantic_cloud_msg
from mtl_perception.ros.diagnostics import ERROR, OK, Diagnostics, assess, since
from mtl_perception.ros.latest import LatestSlots
from mtl_perception.ros.shutdown import ShutdownWatchdog, exit_process
from mtl_perception.ros.stats import NODE_COUNTERS, NodeStats, Throttle

NODE_NAME = "perception_node"
# node parameter -> the pipeline's depth option it sets (also when the parameter changes at run time)
_PIPELINE_OPTION = {param: option for option, param in PipelineOptions.NODE_PARAMETER.items()}


class StartupError(RuntimeError):
    """The node cannot start; the message names the cause and the fix (one line)."""


def resolve_model_path(model_path: str, decoder: str) -> Path:
    """The checkpoint to load: ``model_path`` or the shipped model of ``decoder``."""
    from mtl_perception.deploy.artifacts import shipped_checkpoint

    if model_path:
        path = Path(model_path).expanduser()
        if not path.is_file():
            raise StartupError(
                f"model file {path} (parameter model_path) not found; pass an existing .safetensors file, "
                "e.g. --ros-args -p model_path:=/path/to/model.safetensors"
            )
        return path
    try:
        return shipped_checkpoint(decoder)
    except FileNotFoundError as exc:
        raise StartupError(f"{exc} (node parameter model_path:=/path/to/model.safetensors)") from exc


def load_class_file(path: str, n_classes: int) -> tuple[list[str], np.ndarray | None]:
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
        classes = [str(c) for c in data["classes"]]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise StartupError(
            f"class_names_file {path} unreadable ({exc.__class__.__name__}: {exc}); it must be YAML/JSON with "
            "`classes: [name, ...]` and optional `palette: [[r, g, b], ...]`"
        ) from exc
    if len(classes) != n_classes:
        raise StartupError(f"class_names_file {path} lists {len(classes)} classes but the model has {n_classes}")
    palette = None
    if data.get("palette") is not None:
        palette = np.asarray(data["palette"])
        if palette.shape != (n_classes, 3) or palette.min() < 0 or palette.max() > 255:
            raise StartupError(f"class_names_file {path}: palette must be {n_classes} x [r, g, b] in 0..255")
        palette = palette.astype(np.uint8)
    return classes, palette


class PerceptionNode(LifecycleNode):
    """See the module docstring. ``engine`` may be injected (tests); it serves until a parameter
    change asks for another one."""

    def __init__(self, engine: Any = None, node_name: str = NODE_NAME, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        try:
            self.p = P.declare(self)
        except ValueError as exc:
            raise StartupError(str(exc)) from exc
        self.add_on_set_parameters_callback(P.on_set_parameters)
        self.add_post_set_parameters_callback(self._on_params_set)
        self._injected_engine = engine
        self.engine: Any = None
        self.pipeline: FramePipeline | None = None
        self._describe: dict[str, Any] = {}
        self.class_names: list[str] = []
        self.palette = np.zeros((0, 3), np.uint8)
        self.streams = [CameraStream(self, name, self.p) for name in (self.p["cameras"] or [""])]
        for i, stream in enumerate(self.streams):
            stream.index = i
        # counters the generated PerceptionStats has: a msg package older than this code (not rebuilt
        # after an upgrade) must not fail every frame on an unknown keyword
        self._stats_fields = set(PerceptionStats.get_fields_and_field_types()) if PerceptionStats else set()
        self._slots = LatestSlots(range(len(self.streams)))
        self._swapper: EngineSwapper | None = None
        self._worker: threading.Thread | None = None
        self._visual_executor: Any = None  # helper thread for ~/semantic_color and ~/points (see _publish)
        self._active = False
        self._startup_error = ""
        self._log_warn = Throttle(self.get_logger().warning)
        self.last_switch: dict[str, Any] | None = None
        self._processed_at_request = 0
        self.diagnostics = Diagnostics(self, "perception", "mtl_perception", self._fill_diagnostics)
        self._prev_counts = self._counts()
        # sim time (use_sim_time + /clock) going backwards: the streams' out-of-order checks follow it
        self._clock_jump_handle = self.get_clock().create_jump_callback(
            JumpThreshold(min_forward=None, min_backward=Duration(nanoseconds=-1), on_clock_change=False),
            post_callback=self._on_clock_jump,
        )
        if self.p["autostart"]:
            for step in (self.trigger_configure, self.trigger_activate):
                if step() != TransitionCallbackReturn.SUCCESS:
                    reason = self._startup_error or f"lifecycle {step.__name__} failed (see the log)"
                    self.close()
                    self.destroy_node()  # a node that failed to start leaves no timers or services behind
                    raise StartupError(reason)

    def _on_clock_jump(self, jump: Any) -> None:
        for s in self.streams:
            s.clock_jumped_back()
        self._log_warn(
            "clock_jump",
            f"the clock jumped back {-jump.delta.nanoseconds / 1e9:.3f} s (sim time): frames stamped on the new "
            "time are followed, not dropped as out-of-order (counted in stamp_resets)",
        )

    def set_parameters_atomically(self, parameter_list: list[Any]) -> Any:
        """rclpy's, plus: a refused change is counted (parameter_rejections) and logged with its
        reason (the SetParameters / SetParametersAtomically services and ``ros2 param set`` come here)."""
        try:
            result = super().set_parameters_atomically(parameter_list)
        except ParameterNotDeclaredException as exc:
            # rclpy's own message lists no names (it consumes its generator): name them
            names = [p.name for p in parameter_list if not self.has_parameter(p.name)]
            self._rejected(parameter_list, f"undeclared parameter(s) {names}")
            raise ParameterNotDeclaredException(names) from exc
        if not result.successful:
            if result.reason.startswith("Wrong parameter type"):
                result.reason = self._type_reason(parameter_list) or result.reason
            self._rejected(parameter_list, result.reason)
        return result

    def _type_reason(self, parameter_list: list[Any]) -> str:
        """rclpy says "Wrong parameter type, expected '2' got '4'": name the parameter and the types."""
        from rclpy.parameter import Parameter

        for prm in parameter_list:
            expected = self.describe_parameter(prm.name).type
            if prm.type_.value != expected:
                want = Parameter.Type(expected).name.lower()
                example = P.BY_NAME[prm.name].default if prm.name in P.BY_NAME else "..."
                example = str(example).lower() if isinstance(example, bool) else example
                return (
                    f"{prm.name}={prm.value!r} has the wrong type ({prm.type_.name.lower()}); it takes "
                    f"{'an' if want[0] in 'aeiou' else 'a'} {want}, e.g. {prm.name}:={example}"
                )
        return ""

    def _rejected(self, parameter_list: list[Any], reason: str) -> None:
        for s in getattr(self, "streams", ()):
            s.stats.add("parameter_rejections")
        names = ", ".join(p.name for p in parameter_list)
        self._log_warn(f"param/{names}", f"refused to set {names}: {reason}; the node keeps its values")

    @property
    def stats(self) -> NodeStats:
        """The counters of the (first) camera; each camera has its own (``streams[i].stats``)."""
        return self.streams[0].stats

    @property
    def image_topic(self) -> str:
        return self.streams[0].image_topic

    # ------------------------------------------------------------------ engine
    def _settings(self) -> EngineSettings:
        p = self.p
        return EngineSettings(
            model_path=p["model_path"],
            decoder=p["decoder"],
            backend=p["backend"],
            precision=p["precision"],
            device=p["device"],
            threads=int(p["threads"]),
            cache_dir=p["engine_cache_dir"],
            max_batch=self._max_batch(p["device"]),
        )

    def _max_batch(self, device: str) -> int:
        """Frames per backend run for N cameras: N on a GPU (one launch for all cameras). On the CPU
        1: the batch still goes through one ``infer`` call, image by image on the static export,
        because ONNX Runtime's dynamic-batch export runs ~35 % slower per image on the CPU
        (measured with `bench --batch 1 6` at 1280x720, mlore_lite0: 14.6 vs 10.2 frames/s)."""
        from mtl_perception.deploy.engine import cuda_available

        on_gpu = device == "cuda" or (device == "" and cuda_available())
        return len(self.streams) if on_gpu else 1

    def _build_engine(self, settings: EngineSettings) -> Any:
        """A ready (warmed-up) engine for ``settings``; StartupError names the cause and the fix."""
        if self._injected_engine is not None:
            engine, self._injected_engine = self._injected_engine, None
        else:
            from mtl_perception.deploy.engine import EngineError, InferenceEngine

            path = resolve_model_path(settings.model_path, settings.decoder)
            try:
                engine = InferenceEngine.create(
                    path,
                    backend=settings.backend,
                    precision=settings.precision,
                    device=settings.device or None,
                    cache_dir=settings.cache_dir or None,
                    threads=settings.threads or None,
                    max_batch=settings.max_batch,  # one inference call per round of N cameras
                )
            except (EngineError, FileNotFoundError, ImportError) as exc:
                raise StartupError(f"cannot build the inference engine for {path}: {exc}") from exc
            if settings.decoder and engine.info.decoder != settings.decoder:
                raise StartupError(
                    f"model file {path} holds a {engine.info.decoder} model but decoder:={settings.decoder}; "
                    f"pass decoder:={engine.info.decoder} or the matching model_path"
                )
            engine.warmup(2)
        if self.p["input_size"] != [0, 0] and list(engine.input_size) != self.p["input_size"]:
            raise StartupError(
                f"input_size {self.p['input_size']} does not match the model's {list(engine.input_size)} "
                "(fixed at export); set input_size:=[0, 0] or use a model exported at that size"
            )
        if self.p["class_names_file"]:
            load_class_file(self.p["class_names_file"], len(engine.info.classes))  # fails before the swap
        return engine

    def _install(self, engine: Any) -> None:
        """Make ``engine`` the serving one (configure, or the worker between two frames)."""
        info = engine.info
        class_names, palette = list(info.classes), np.asarray(info.palette, np.uint8)
        if self.p["class_names_file"]:
            names, pal = load_class_file(self.p["class_names_file"], len(class_names))
            class_names = names
            if pal is not None:
                palette = pal
        # the worker publishes and drops every product before the next frame: reuse the buffers
        self.pipeline = FramePipeline.from_options(
            engine,
            PipelineOptions.from_node_parameters(self.p),
            output_resolution=self.p["output_resolution"],
            reuse_buffers=True,
            camera_height=float(self.p["camera_height"]) or None,
        )
        if not self.pipeline.has_depth_uncertainty:
            # once per engine: the topic exists but stays silent, ~/points keeps every point
            self.get_logger().info(
                "model has no depth uncertainty head: ~/depth/uncertainty is not published and "
                "max_point_uncertainty has no effect (train one: config/train/uncertainty_head.yaml)"
            )
        self.engine = engine
        self.class_names, self.palette = class_names, palette
        self._describe = engine.describe()

    def _on_switch_built(self, report: SwapReport) -> None:
        self.get_logger().info(
            f"new engine ready after {report.built_s:.2f} s ({self._engine_text(report.new)}); swapping it in "
            "between two frames"
        )

    def _on_switch_failed(self, settings: EngineSettings, exc: Exception) -> None:
        for s in self.streams:
            s.stats.add("engine_switch_failures")
        serving = self._swapper.settings if self._swapper else None
        self.get_logger().error(
            f"engine switch to {self._engine_text(settings)} failed: {exc}; the previous engine keeps serving "
            "and the parameters are set back"
        )
        if serving is None:
            return
        from rclpy.parameter import Parameter

        back = [
            Parameter(name, value=getattr(serving, "cache_dir" if name == "engine_cache_dir" else name))
            for name in P.ENGINE_PARAMS
            if self.p[name] != getattr(serving, name)
        ]
        if back:
            self.set_parameters(back)

    @staticmethod
    def _engine_text(s: EngineSettings) -> str:
        model = s.model_path or f"shipped {s.decoder or 'mlore'}"
        return f"{model}, {s.backend}/{s.precision}" + (f" on {s.device}" if s.device else "")

    def _switch(self, engine: Any, report: SwapReport) -> None:
        """Worker thread, between two frames: continue with the new engine."""
        old = self._describe
        self._install(engine)
        processed = self._processed() - self._processed_at_request
        for s in self.streams:
            s.stats.add("engine_switches")
        self.last_switch = {
            "from": {k: old.get(k) for k in ("decoder", "backend", "precision", "model_hash")},
            "to": {k: self._describe.get(k) for k in ("decoder", "backend", "precision", "model_hash")},
            "build_s": round(report.built_s, 3),
            "switch_s": round(report.switch_s, 3),
            "frames_served_while_building": processed,
        }
        self.get_logger().info(
            f"engine switched {old.get('decoder')} {old.get('backend')}/{old.get('precision')} -> "
            f"{self._describe.get('decoder')} {self._describe.get('backend')}/{self._describe.get('precision')} "
            f"in {report.switch_s:.2f} s; the old engine served {processed} frames meanwhile"
        )

    def _processed(self) -> int:
        return sum(s.stats.snapshot()["frames_processed"] for s in self.streams)

    def _on_params_set(self, changed: list[Any]) -> None:
        engine_changed = False
        for prm in changed:
            if prm.name in P.BY_NAME:
                self.p[prm.name] = prm.value
                if prm.name == "output_resolution" and self.pipeline is not None:
                    self.pipeline.output_resolution = prm.value
                if prm.name == "camera_height" and self.pipeline is not None:
                    self.pipeline.camera_height = float(prm.value) or None
                if prm.name in _PIPELINE_OPTION and self.pipeline is not None:
                    # validated by the parameter's Spec before it got here; PipelineOptions converts it
                    option = _PIPELINE_OPTION[prm.name]
                    options = replace(self.pipeline.options, **{option: prm.value})
                    setattr(self.pipeline, option, getattr(options, option))
                engine_changed |= prm.name in P.ENGINE_PARAMS
        if engine_changed and self._swapper is not None:
            settings = self._settings()
            if self._swapper.request(settings):
                self._processed_at_request = self._processed()
                self.get_logger().info(
                    f"building {self._engine_text(settings)} in the background; the current engine keeps serving"
                )

    # ------------------------------------------------------------------ lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._swapper = EngineSwapper(
            self._build_engine, on_failure=self._on_switch_failed, on_built=self._on_switch_built
        )
        settings = self._settings()
        self.get_logger().info(f"configuring: building the engine ({self._engine_text(settings)})")
        try:
            engine = self._swapper.build_now(settings)
            self._install(engine)
        except StartupError as exc:
            self._startup_error = str(exc)
            if not self.p["autostart"]:  # with autostart, main() reports it: one FATAL line, exit 2
                self.get_logger().error(str(exc))
            self._swapper = None
            return TransitionCallbackReturn.FAILURE
        for s in self.streams:
            s.create_publishers()
        self._slots = LatestSlots(range(len(self.streams)))
        self._worker = threading.Thread(target=self._work, name="perception_worker", daemon=True)
        self._worker.start()
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        ret = super().on_activate(state)  # enables the lifecycle publishers
        for s in self.streams:
            s.subscribe(self._on_image)
        self._active = True
        d = self._describe
        cams = ", ".join(f"{s.image_topic} + {s.info_topic}" for s in self.streams)
        self.get_logger().info(
            f"ready: {self.engine.info.decoder} {d.get('backend')}/{d.get('precision')} on {d.get('device')}, "
            f"network {self.engine.input_size[0]}x{self.engine.input_size[1]}, {len(self.streams)} camera(s), "
            f"subscribed {cams} ({self.p['input_transport']}, {self.p['input_reliability']})"
        )
        return ret

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        for s in self.streams:
            s.unsubscribe()
        for idx in self._slots.clear_keys():  # frames received but never processed: counted as stale drops
            self.streams[idx].stats.add("frames_dropped_stale")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self._active:
            self.on_deactivate(state)
        self._release()
        return super().on_shutdown(state)

    def _release(self) -> None:
        self._stop_worker()
        for s in self.streams:
            s.destroy_publishers()
        if self._swapper is not None:
            self._swapper.close()
            self._swapper = None
        self.engine = self.pipeline = None

    def _stop_worker(self, timeout: float = 5.0) -> None:
        self._slots.close()
        if self._worker is not None and self._worker.is_alive():
            self._worker.join(timeout)
        self._worker = None
        if self._visual_executor is not None:  # after the worker: a frame in flight may wait on it
            self._visual_executor.shutdown(wait=False)
            self._visual_executor = None

    # ------------------------------------------------------------------ executor thread
    def _on_image(self, stream: CameraStream, msg: Any, info: Any = None) -> None:
        if not self._active:
            return
        stream.note_sequence(info)
        stream.stats.add("frames_received")
        if self._slots.put(stream.index, (msg, time.perf_counter())):
            stream.stats.add("frames_dropped_stale")

    # ------------------------------------------------------------------ worker thread
    def _work(self) -> None:
        slots = self._slots
        while not slots.closed:
            items = slots.take_all(timeout=0.25)
            swapper = self._swapper
            ready = swapper.take_ready() if swapper is not None else None
            if ready is not None:
                self._switch(*ready)
            if not items:
                continue
            try:
                self._process_batch(items)
            except Exception as exc:  # never let the worker die: count, log, continue
                for idx in items:
                    self.streams[idx].stats.add("frames_failed")
                if rclpy.ok(context=self.context):
                    self._log_warn("failed", f"frame failed: {exc.__class__.__name__}: {exc}")

    def _process(self, msg: Any, t_receipt: float) -> None:
        """One frame of the first camera (tests, tools)."""
        self._process_batch({0: (msg, t_receipt)})

    def _process_batch(self, items: dict[int, tuple[Any, float]]) -> None:
        """The latest frame of each camera in ``items``: decode, one inference call, publish per camera."""
        pipeline, engine = self.pipeline, self.engine  # the worker is the only thread that swaps them
        frames = []
        for idx, (msg, t_receipt) in items.items():
            s = self.streams[idx]
            t0 = time.perf_counter()
            if not s.stamp_ok(msg):
                continue
            rgb = s.decode(msg)
            if rgb is None:
                continue
            hw = rgb.shape[:2]
            s.check_resolution(hw)
            K, cam = s.intrinsics_for_frame(hw, engine.info)
            frames.append((s, msg, t_receipt, t0, time.perf_counter(), rgb, K, cam))
        if not frames:
            return
        # the confidence costs ~2 ms at 720p: built only for cameras with a subscriber that wants it
        conf = [self._wants_confidence(f[0]) for f in frames]
        # the depth uncertainty likewise (~1 ms at 720p), and only for a model with the head
        unc = [pipeline.has_depth_uncertainty and self._wants_uncertainty(f[0]) for f in frames]
        if len(frames) == 1:
            results = [pipeline.process(frames[0][5], K=frames[0][6], confidence=conf[0], depth_uncertainty=unc[0])]
        else:
            results = pipeline.process_batch([f[5] for f in frames], [f[6] for f in frames], conf, unc)
        for (s, msg, t_receipt, t0, t1, rgb, _K, cam), res in zip(frames, results):
            if res.intrinsics_source == "default":
                s.stats.add("frames_default_intrinsics")
            s.ground_scale = res.ground_scale
            encode_ms, publish_ms = self._publish(s, msg.header, rgb, res, cam)
            t_end = time.perf_counter()
            timings = {
                "conversion": 1e3 * (t1 - t0),
                "preprocess": float(res.timings_ms["preprocess"]),
                "inference": float(res.timings_ms["inference"]),
                "postprocess": float(res.timings_ms["postprocess"]),
                "encode": encode_ms,
                "publish": publish_ms,
                "queue": 1e3 * (t0 - t_receipt),
                "end_to_end": 1e3 * (t_end - t_receipt),
            }
            timings["node"] = timings["conversion"] + timings["preprocess"] + timings["postprocess"] + encode_ms
            s.stats.frame_done(timings)
            self._publish_stats(s, msg.header, timings)

    def _wants_confidence(self, s: CameraStream) -> bool:
        """~/semantic/confidence or ~/result (which carries it) has a subscriber and it is enabled."""
        return s.wants("publish_confidence", "confidence") or (
            bool(self.p["publish_confidence"]) and s.wants("publish_result", "result")
        )

    def _wants_uncertainty(self, s: CameraStream) -> bool:
        """~/depth/uncertainty or ~/result wants it, or ~/points filters on it."""
        return (
            s.wants("publish_depth_uncertainty", "depth_uncertainty")
            or (bool(self.p["publish_depth_uncertainty"]) and s.wants("publish_result", "result"))
            or (float(self.p["max_point_uncertainty"]) > 0 and s.wants("publish_points", "points"))
        )

    def _publish(
        self, s: CameraStream, header: Any, rgb: np.ndarray, res: Any, cam: CameraInfo | None
    ) -> tuple[float, float]:
        """Build and publish the outputs of one camera that have subscribers; (encode ms, publish ms).

        ``cam``: the camera_info of this image (its size) or None; ~/depth/camera_info and ~/points
        use it scaled to the products' size. At ``output_resolution: network`` with a letterboxing
        model the products are the frame's content window inside the network input, i.e. the frame
        resized by (content / frame) per axis and not padded, so ``camera_info_for`` (a plain
        resize of K) is exactly their camera.

        The colour image and the point cloud (~3-5 ms at 720p) are built on a helper thread while this
        one builds and publishes the depth and semantic images (numpy and OpenCV release the GIL; the
        products are read-only by now). Encode ms is this thread's time: its own message building
        plus any wait for the helper, i.e. what the frame's outputs add to its latency."""
        enc = pub = 0.0
        t = time.perf_counter()
        pubs = s.publishers
        want_result = s.wants("publish_result", "result")
        want_color = s.wants("publish_semantic_color", "semantic_color")
        want_points = s.wants("publish_points", "points")
        want_info = s.wants("publish_depth", "depth_info")
        out_hw = res.labels.shape
        info_out = None
        if cam is not None and (want_points or want_info or want_result):
            info_out = camera_info_for(cam, out_hw, header)
        want_points = want_points and info_out is not None
        visual = None
        if want_color or want_points:
            visual = self._visual_pool().submit(
                self._visual_messages, s, rgb, res, info_out, header, want_color, want_points
            )

        def send(key: str, msg: Any) -> None:
            nonlocal pub
            t_pub = time.perf_counter()
            pubs[key].publish(msg)
            pub += time.perf_counter() - t_pub

        def image(key: str, pixels: np.ndarray, encoding: str) -> Any:
            nonlocal enc, t
            t = time.perf_counter()
            msg = s.images.image(key, pixels, encoding, header)
            enc += time.perf_counter() - t
            return msg

        enc += time.perf_counter() - t
        depth_msg = sem_msg = conf_msg = unc_msg = None
        try:
            if s.wants("publish_depth", "depth") or want_result:
                depth_msg = image("depth", res.depth, "32FC1")
                if s.wants("publish_depth", "depth"):
                    send("depth", depth_msg)
            if want_info and info_out is not None:
                send("depth_info", info_out)
            if res.depth_uncertainty is not None and bool(self.p["publish_depth_uncertainty"]):
                unc_msg = image("depth_uncertainty", res.depth_uncertainty, "32FC1")
                if s.wants("publish_depth_uncertainty", "depth_uncertainty"):
                    send("depth_uncertainty", unc_msg)
            if s.wants("publish_semantic", "semantic") or want_result:
                sem_msg = image("semantic", res.labels, "mono8")
                if s.wants("publish_semantic", "semantic"):
                    send("semantic", sem_msg)
            if res.confidence is not None:  # asked for in _process_batch: the topic or ~/result wants it
                conf_msg = image("confidence", res.confidence, "32FC1")
                if s.wants("publish_confidence", "confidence"):
                    send("confidence", conf_msg)
        finally:
            # always waited for: the helper reads this frame's buffers, which the next frame reuses
            t = time.perf_counter()
            color_msg, cloud = visual.result() if visual is not None else (None, None)
            enc += time.perf_counter() - t
        if color_msg is not None:
            send("semantic_color", color_msg)
        if cloud is not None:
            send("points", cloud)
        if want_result:
            t = time.perf_counter()
            d = self._describe
            result = PerceptionResult(
                header=header,
                semantic=sem_msg,
                depth=depth_msg,
                confidence=conf_msg if conf_msg is not None else Image(header=header),
                depth_uncertainty=unc_msg if unc_msg is not None else Image(header=header),
                camera_info=info_out or CameraInfo(header=header, height=out_hw[0], width=out_hw[1]),
                class_names=self.class_names,
                decoder=str(d.get("decoder", "")),
                backend=str(d.get("backend", "")),
                precision=str(d.get("precision", "")),
                model_hash=str(d.get("model_hash", "")),
                preprocess_ms=res.timings_ms["preprocess"],
                inference_ms=res.timings_ms["inference"],
                postprocess_ms=res.timings_ms["postprocess"],
            )
            enc += time.perf_counter() - t
            send("result", result)
        return 1e3 * enc, 1e3 * pub

    def _visual_pool(self) -> Any:
        """One helper thread per node for the colour image and the point cloud (see ``_publish``)."""
        if self._visual_executor is None:
            from concurrent.futures import ThreadPoolExecutor

            self._visual_executor = ThreadPoolExecutor(1, thread_name_prefix="visual_outputs")
        return self._visual_executor

    def _visual_messages(
        self,
        s: CameraStream,
        rgb: np.ndarray,
        res: Any,
        info_out: CameraInfo | None,
        header: Any,
        want_color: bool,
        want_points: bool,
    ) -> tuple[Any, Any]:
        """(~/semantic_color message or None, ~/points message or None) of one frame (helper thread).

        The colour message has its own key in the stream's message pool, so its buffer is never one
        the worker thread fills at the same time."""
        from mtl_perception.visualize import blend, colorize_labels_resized

        out_hw = res.labels.shape
        colors = colorize_labels_resized(res.grid_labels, out_hw, self.palette)
        color_msg = cloud = None
        if want_color:
            shown = colors
            alpha = float(self.p["color_blend"])
            if alpha > 0:
                import cv2

                base = rgb if rgb.shape[:2] == out_hw else cv2.resize(rgb, out_hw[::-1], interpolation=cv2.INTER_AREA)
                shown = blend(np.ascontiguousarray(base), colors, 1.0 - alpha)
            color_msg = s.images.image("semantic_color", shown, "rgb8", header)
        if want_points:
            cloud = semantic_cloud_msg(
                res.depth,
                res.labels,
                colors,
                info_out.k,
                int(self.p["point_stride"]),
                header,
                res.depth_uncertainty,  # None unless the model has the head and something asked for it
                float(self.p["max_point_uncertainty"]),
            )
        return color_msg, cloud

    def _publish_stats(self, s: CameraStream, header: Any, t: dict[str, float]) -> None:
        publisher = s.publishers.get("stats")
        if publisher is None:
            return
        c = s.stats.snapshot()
        msg = PerceptionStats(
            header=header,
            conversion_ms=t["conversion"],
            preprocess_ms=t["preprocess"],
            inference_ms=t["inference"],
            postprocess_ms=t["postprocess"],
            encode_ms=t["encode"],
            publish_ms=t["publish"],
            queue_ms=t["queue"],
            node_ms=t["node"],
            end_to_end_ms=t["end_to_end"],
            fps=s.stats.fps(),
            **{k: c[k] for k in c if k in self._stats_fields},
        )
        publisher.publish(msg)

    # ------------------------------------------------------------------ diagnostics
    def _counts(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for s in self.streams:
            for k, v in s.stats.snapshot().items():
                total[k] = v if k in NODE_COUNTERS else total.get(k, 0) + v  # node-wide: once, not summed
        return total

    def _fill_diagnostics(self, stat: Any) -> Any:
        counts = self._counts()
        last = [s.stats.last_frame_time for s in self.streams if s.stats.last_frame_time is not None]
        state = "active" if self._active else ("inactive" if self.engine is not None else "unconfigured")
        if state == "active":
            level, text = assess(counts, self._prev_counts, since(max(last) if last else None))
        else:
            level, text = OK, f"{state} (lifecycle)"
        self._prev_counts = counts
        stat.summary(level, text)
        stat.add("lifecycle_state", state)
        stat.add("fps", f"{sum(s.stats.fps(2.0) for s in self.streams):.2f}")
        for k, v in counts.items():
            stat.add(k, v)
        for k, v in self.stats.percentiles(50).items():
            stat.add(f"{k}_ms_p50", f"{v:.2f}")
        for k in ("backend", "device", "precision", "decoder", "model_hash"):
            stat.add(k, self._describe.get(k, ""))
        if self._swapper is not None and self._swapper.building:
            stat.add("engine_switch", "building")
        if self._swapper is not None and self._swapper.last_error:
            stat.add("engine_switch_last_error", self._swapper.last_error)
        if len(self.streams) > 1:
            for s in self.streams:
                stat.add(f"{s.name}.fps", f"{s.stats.fps(2.0):.2f}")
        for s in self.streams:
            key = "ground_plane" if len(self.streams) == 1 else f"{s.name}.ground_plane"
            stat.add(key, ground_plane_text(s.ground_scale, self.p["camera_height"]))
        if self.pipeline is not None:
            stat.add("depth_options", depth_options_text(self.pipeline.options))
        stat.add("image_topic", ", ".join(s.image_topic for s in self.streams))
        return stat

    # ------------------------------------------------------------------ shutdown
    def close(self, timeout: float = 5.0) -> None:
        """Stop the worker (it finishes the frame in flight) and drop pending engine builds."""
        self._active = False
        self._stop_worker(timeout)
        if self._swapper is not None:
            self._swapper.close()


def depth_options_text(options: PipelineOptions) -> str:
    """/diagnostics value of the depth options in force, by the node's parameter names (a recorded
    /diagnostics then says which post-processing made the depth and the cloud)."""
    values = options.as_dict()
    text = []
    for option, param in PipelineOptions.NODE_PARAMETER.items():
        v = values[option]
        text.append(f"{param}={str(v).lower() if isinstance(v, bool) else f'{v:g}'}")
    return " ".join(text)


def ground_plane_text(g: Any, camera_height: float) -> str:
    """/diagnostics value of the last frame's road-plane scale (``FrameResult.ground_scale``)."""
    if not camera_height:
        return "off (camera_height 0)"
    if g is None:
        return "no frame yet"
    if not g.applied:
        return f"not applied: {g.reason}"
    return f"depth x{g.factor:.3f} (road plane {g.fitted_height:.2f} m below, mounted {camera_height:.2f} m)"


__all__ = ["FIRST_CAMERA_INFO_WAIT_S", "NODE_NAME", "OK", "ERROR", "PerceptionNode", "StartupError", "main"]


def main(args: list[str] | None = None) -> int:
    """Entry point of ``perception_node`` / ``ros2 run mtl_perception perception_node`` (takes --ros-args).

    SIGINT / SIGTERM only set a flag: the executor loop ends, the worker finishes its frame, the
    node is destroyed and only then is the context shut down. With rclpy's own handler the context
    is invalidated while the executor may be building a wait set, and the node exits 1 with
    "failed to initialize wait set: the given context is not valid" (seen under load). After a clean
    shutdown the process ends with ``os._exit(0)`` (see the end), so call it as a process entry point."""
    import faulthandler
    import os

    from rclpy.signals import SignalHandlerOptions

    # The error contract of every command (issue 14): bad input (a parameter, a params file, the model)
    # -> one FATAL line naming it and the fix, exit 2, no traceback; `--debug` (before --ros-args) or
    # MTL_PERCEPTION_DEBUG=1 adds the traceback.
    argv = sys.argv if args is None else args
    ros_at = argv.index("--ros-args") if "--ros-args" in argv else len(argv)
    debug = "--debug" in argv[:ros_at] or os.environ.get("MTL_PERCEPTION_DEBUG", "") not in ("", "0")

    def fatal(text: str) -> int:
        if debug:
            import traceback

            traceback.print_exc()
        print(f"[FATAL] [{NODE_NAME}]: {' '.join(text.split())}", file=sys.stderr, flush=True)
        return 2

    try:
        rclpy.init(args=argv, signal_handler_options=SignalHandlerOptions.NO)
    except Exception as exc:  # rcl's RCLError: an unreadable --params-file, a malformed --ros-args
        return fatal(
            f"{exc}; pass a ROS 2 parameters YAML (see config/ros/*.param.yaml) and valid --ros-args "
            "(`ros2 run mtl_perception perception_node --ros-args -p NAME:=VALUE`)"
        )
    stop = threading.Event()
    starting = True
    watchdog = ShutdownWatchdog(NODE_NAME)

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()
        watchdog.arm()  # the cleanup below gets a deadline (a hang is dumped and ended, not SIGKILLed)
        if starting:
            # Building the engine can take a minute (ONNX export, int8 calibration): stop now, not
            # after it. Nothing is lost: artifacts are written to a temp file and renamed when done.
            # (Raising KeyboardInterrupt into the export left the process dying by SIGINT, exit -2.)
            print(f"[INFO] [{NODE_NAME}]: interrupted during start-up", file=sys.stderr, flush=True)
            os._exit(0)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    watchdog.listen((signal.SIGINT, signal.SIGTERM))  # arms the deadline even if the main thread is stuck
    # `kill -USR1 <pid>` writes every thread's stack to stderr from C, without the GIL: it works even
    # when a native call hangs holding it, where no Python-level handler (nor the watchdog) can run.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    try:
        node = PerceptionNode()
        starting = False
    except StartupError as exc:
        if debug:
            import traceback

            traceback.print_exc()
        rclpy.logging.get_logger(NODE_NAME).fatal(" ".join(str(exc).split()))
        rclpy.try_shutdown()
        return 2
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        while not stop.is_set():
            executor.spin_once(timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not interrupt the cleanup
        node.close()
        executor.shutdown(timeout_sec=1.0)
        node.destroy_node()
        rclpy.try_shutdown()
        watchdog.disarm()
    # Everything is closed above: skip the interpreter's teardown, whose final garbage collection ran
    # a DDS destructor that blocked forever holding the GIL (see shutdown.exit_process)
    exit_process(0)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
