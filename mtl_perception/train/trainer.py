"""The training loop: composite multi-task loss, AdamW, warm-up + poly/cosine, clipping, AMP,
periodic atomic checkpoints, exact resume, CSV (+ TensorBoard when installed) logs, DDP."""

from __future__ import annotations

import csv
import fnmatch
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from mtl_perception.atomic_io import atomic_path, atomic_write_json, atomic_write_text, clean_stale_temps
from mtl_perception.model import CheckpointError, build_model, load_checkpoint, save_checkpoint
from mtl_perception.model.config import config_to_json
from mtl_perception.model.errors import ConfigError
from mtl_perception.model.uncertainty import OUTPUT as UNC_OUTPUT
from mtl_perception.model.uncertainty import gaussian_log_depth_nll
from mtl_perception.train.data import AugmentedDataset, ResumableShardedSampler
from mtl_perception.train.depth_gradient import log_depth_gradient_loss
from mtl_perception.train.distributed import DistInfo, all_reduce_mean, barrier, cleanup, init_distributed

STATE_SUFFIX = ".state.pt"


def lr_multiplier(step: int, total: int, sched: dict[str, Any]) -> float:
    """Linear warm-up from ``warmup_ratio`` to 1, then poly / cosine / constant decay."""
    warm = int(sched.get("warmup_steps", 0))
    if step < warm:
        r = float(sched.get("warmup_ratio", 0.01))
        return r + (1 - r) * step / max(1, warm)
    progress = min(1.0, (step - warm) / max(1, total - warm))
    if sched["type"] == "poly":
        return (1 - progress) ** float(sched.get("power", 0.9))
    if sched["type"] == "cosine":
        return 0.5 * (1 + math.cos(math.pi * progress))
    return 1.0


def param_groups(model: nn.Module, cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """No weight decay on norms, biases, position embeddings and frozen/gating scalars."""
    lr, wd = cfg["optim"]["lr"], cfg["optim"]["weight_decay"]
    bb_mult = cfg["optim"].get("backbone_lr_mult", 1.0)
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        no_decay = p.ndim <= 1 or name.endswith((".bias", "pos_embed", "cls_token")) or "codebook" in name
        groups.setdefault((name.startswith("backbone."), no_decay), []).append(p)
    return [
        {
            "params": ps,
            "lr": lr * (bb_mult if is_bb else 1.0),
            "weight_decay": 0.0 if nd else wd,
            "base_lr": lr * (bb_mult if is_bb else 1.0),
        }
        for (is_bb, nd), ps in groups.items()
    ]


def state_path_of(ckpt: Path) -> Path:
    """The training state (optimizer, scaler, RNG, step) saved next to checkpoint ``ckpt``."""
    return ckpt.with_name(ckpt.name.replace(".safetensors", STATE_SUFFIX))


def latest_checkpoint(out_dir: Path) -> Path | None:
    """The newest complete checkpoint under ``out_dir/checkpoints``: weights and training state both
    present (each is written atomically, the state first, so a checkpoint file means its state is
    whole). Temporaries of a killed save are hidden names and never match."""
    ckpts = [
        p for p in sorted((Path(out_dir) / "checkpoints").glob("step_*.safetensors")) if state_path_of(p).is_file()
    ]
    return ckpts[-1] if ckpts else None


def warm_start(model: nn.Module, checkpoint: str | Path, exclude: Sequence[str] = ()) -> dict[str, Any]:
    """Copy every tensor of ``checkpoint`` whose name and shape match into ``model``.

    Used to start another decoder from a trained model's backbone (and whatever else has the
    same shape) instead of ImageNet alone. Names starting with a prefix in ``exclude`` keep the
    model's own values (``[backbone.]``: a trained decoder on another ImageNet backbone, whose
    early blocks would otherwise take the donor's tensors of equal shape). Returns counts so the
    run log says what was reused.
    """
    from safetensors import safe_open

    from mtl_perception.model.checkpoint import read_metadata

    read_metadata(checkpoint)  # clear error for a missing / foreign file
    own = model.state_dict()
    copied, shape_mismatch, excluded = [], [], []
    prefixes = tuple(exclude)
    with safe_open(str(checkpoint), framework="pt") as f:
        for name in f.keys():
            if name not in own:
                continue
            if prefixes and name.startswith(prefixes):
                excluded.append(name)
                continue
            tensor = f.get_tensor(name)
            if tensor.shape != own[name].shape:
                shape_mismatch.append(name)
                continue
            own[name].copy_(tensor.to(own[name].dtype))
            copied.append(name)
    if not copied:
        raise ValueError(f"init_from {str(checkpoint)!r}: no tensor matches the model by name and shape")
    numel = sum(own[n].numel() for n in copied)
    total = sum(v.numel() for v in own.values())
    return {
        "checkpoint": str(checkpoint),
        "tensors_copied": len(copied),
        "tensors_total": len(own),
        "shape_mismatch": len(shape_mismatch),
        "excluded": len(excluded),
        "fraction_of_values": round(numel / max(total, 1), 4),
    }


def expand_train_only(model: nn.Module, train_only: list[str]) -> list[str]:
    """Module names for ``freeze.train_only``: plain names as given, glob patterns (``*``, ``?``, ``[``;
    e.g. ``"*.depth"``, every task-specific depth module of the decoder and heads) expanded over the
    model's module names, outermost matches only. Raises ValueError naming what matched nothing."""
    modules = [n for n, _ in model.named_modules() if n]
    out: list[str] = []
    missing = []
    for entry in train_only:
        entry = entry.rstrip(".")
        if any(ch in entry for ch in "*?["):
            hits = [n for n in modules if fnmatch.fnmatchcase(n, entry)]
            hits = [n for n in hits if not any(n.startswith(h + ".") for h in hits)]
        else:
            hits = [entry] if entry in modules else []
        if not hits:
            missing.append(entry)
        out += [h for h in hits if h not in out]
    if missing:
        raise ValueError(f"freeze.train_only: no module named or matching {missing} in the model")
    return out


def apply_freeze(model: nn.Module, train_only: list[str]) -> dict[str, Any]:
    """Train only the parameters under the modules ``train_only`` names (e.g. ``["uncertainty"]``, or a
    glob such as ``["*.depth"]``: ``expand_train_only``).

    Everything else gets ``requires_grad=False`` AND eval mode: frozen BatchNorm statistics, no
    dropout / drop-path / noisy gating, so the frozen part computes exactly what the warm-start
    checkpoint computed (its outputs stay bit-identical). Call after every ``model.train()``."""
    names = expand_train_only(model, train_only)
    prefixes = tuple(n + "." for n in names)
    modules = dict(model.named_modules())
    model.eval()
    for n in names:
        modules[n].train()
    trained = 0
    for name, param in model.named_parameters():
        keep = name.startswith(prefixes)
        param.requires_grad_(keep)
        trained += param.numel() if keep else 0
    return {"train_only": list(train_only), "modules": len(names), "trainable_values": trained}


def canonical_depth_target(depth: torch.Tensor, focal: torch.Tensor, canonical_focal: float) -> torch.Tensor:
    """Metric depth (B,1,H,W) -> the canonical camera's depth: d * f_c / fx per image (Metric3D).
    Images without a known fx (NaN) get no depth supervision (0 = invalid)."""
    f = focal.to(depth.dtype).view(-1, 1, 1, 1)
    known = torch.isfinite(f) & (f > 0)
    scale = torch.where(known, canonical_focal / torch.where(known, f, torch.ones_like(f)), torch.zeros_like(f))
    return depth * scale


def compute_loss(
    model: nn.Module,
    outputs: dict,
    aux: dict,
    batch: dict,
    class_weights: dict[str, torch.Tensor] | None = None,
    depth_gradient: dict[str, Any] | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted sum of the task losses (+ the uncertainty NLL and the decoders' aux losses).
    ``class_weights`` maps a semseg task to its per-class loss weights (``class_balance``);
    ``depth_gradient`` ({weight, scales}, ``depth_gradient_loss``) adds the log-depth gradient term to
    every depth task, logged as ``<task>_gradient`` (weighted)."""
    specs = model.task_specs
    parts: dict[str, torch.Tensor] = {}
    total = torch.zeros((), device=batch["image"].device)
    canonical_focal = (model.config.get("camera") or {}).get("canonical_focal")
    for name, spec in specs.items():
        target = batch[spec.type] if spec.type in batch else batch[name]
        if spec.type == "depth" and canonical_focal and "focal" in batch:
            target = canonical_depth_target(target, batch["focal"], float(canonical_focal))
        pred = outputs[name].float()
        if class_weights and name in class_weights:
            loss = spec.loss(pred, target, class_weight=class_weights[name])
        else:
            loss = spec.loss(pred, target)
        parts[name] = loss.detach()
        total = total + spec.loss_weight * loss
        if spec.type == "depth" and depth_gradient:
            grad = depth_gradient["weight"] * log_depth_gradient_loss(pred, target, depth_gradient["scales"])
            parts[f"{name}_gradient"] = grad.detach()
            total = total + spec.loss_weight * grad
        if name == getattr(model, "uncertainty_task", None) and UNC_OUTPUT in outputs:
            # Gaussian NLL on log depth against the (canonical) target; mu = log depth detached, and
            # log sigma is scale-free, so the canonical rescale above is all it needs
            nll = gaussian_log_depth_nll(pred, outputs[UNC_OUTPUT].float(), target)
            parts[UNC_OUTPUT] = nll.detach()
            total = total + float(model.config["uncertainty"].get("loss_weight", 1.0)) * nll
    for name, value in aux.items():
        parts[name] = value.detach()
        total = total + value.float()
    return total, {k: float(v) for k, v in parts.items()}


OWN_METADATA = ("format", "config", "config_sha256", "dtype", "step", "train_config")


def carried_metadata(checkpoint: str | Path) -> dict[str, str]:
    """Metadata a frozen-except-new-modules run keeps from its init_from checkpoint: what describes the
    unchanged outputs (e.g. ``semseg_temperature``, ``semseg_calibration``) plus that checkpoint's own
    step and recipe as ``base_step`` / ``base_train_config`` (provenance)."""
    from mtl_perception.model.checkpoint import read_metadata

    meta = read_metadata(checkpoint)
    out = {k: v for k, v in meta.items() if k not in OWN_METADATA and not k.startswith("base_")}
    for k in ("step", "train_config"):
        if k in meta:
            out[f"base_{k}"] = meta[f"base_{k}"] if f"base_{k}" in meta else meta[k]
    return out


def _check_frozen_were_copied(model: nn.Module, checkpoint: str | Path, train_only: list[str]) -> None:
    """A frozen tensor that init_from did not provide would stay random forever: refuse to start."""
    from safetensors import safe_open

    prefixes = tuple(p.rstrip(".") + "." for p in train_only)
    own = model.state_dict()
    with safe_open(str(checkpoint), framework="pt") as f:
        have = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    lost = [k for k, v in own.items() if not k.startswith(prefixes) and have.get(k) != tuple(v.shape)]
    if lost:
        raise ValueError(
            f"freeze.train_only {list(train_only)}: {len(lost)} frozen tensors are not in init_from "
            f"{str(checkpoint)!r} with the same shape (e.g. {lost[:3]}); use the checkpoint's own config "
            "(model: <that checkpoint>.safetensors)"
        )


class Trainer:
    def __init__(
        self,
        cfg: dict[str, Any],
        out_dir: str | Path,
        dataset: Any,
        transform,
        resume: str | Path | bool | None = None,
        device: str | None = None,
    ):
        self.cfg = cfg
        self.out = Path(out_dir)
        self.dist: DistInfo = init_distributed(device)
        torch.manual_seed(cfg["seed"] + self.dist.rank)
        self.step = 0
        self.warm_start: dict[str, Any] | None = None
        resume_path = self._resolve_resume(resume)
        if resume_path:
            self.model = load_checkpoint(resume_path).train()
        else:
            init_seed = cfg["seed"] if cfg.get("init_seed") is None else cfg["init_seed"]
            torch.manual_seed(init_seed)  # identical initial weights on every rank (and across seeds, with init_seed)
            self.model = build_model(cfg["model"]).train()
            if cfg.get("init_from"):
                self.warm_start = warm_start(self.model, cfg["init_from"], cfg.get("init_exclude") or ())
            if init_seed != cfg["seed"]:  # what is drawn from here on (dropout, augmentation) follows seed again
                torch.manual_seed(cfg["seed"] + self.dist.rank)
        self.freeze: dict[str, Any] | None = None
        self.carried_metadata: dict[str, str] = {}
        train_only = (cfg.get("freeze") or {}).get("train_only")
        if train_only:
            self.freeze = apply_freeze(self.model, train_only)
            if self.warm_start and not resume_path:
                _check_frozen_were_copied(self.model, cfg["init_from"], train_only)
            if cfg.get("init_from"):
                self.carried_metadata = carried_metadata(cfg["init_from"])
        self.model.to(self.dist.device)
        if cfg["sync_bn"] and self.dist.enabled:
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.optimizer = torch.optim.AdamW(param_groups(self.model, cfg), betas=tuple(cfg["optim"]["betas"]))
        self.amp_dtype = self._amp_dtype()
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        if resume_path:
            self._load_state(resume_path)
        self.ddp = (
            DistributedDataParallel(
                self.model,
                device_ids=[self.dist.device.index] if self.dist.device.type == "cuda" else None,
                find_unused_parameters=cfg["find_unused_parameters"],
            )
            if self.dist.enabled
            else self.model
        )
        self.class_balance = self._class_balance(dataset)
        self.feature_anchor = None
        if cfg.get("feature_anchor"):
            from mtl_perception.train.feature_anchor import FeatureAnchor

            self.feature_anchor = FeatureAnchor(self.model, cfg["feature_anchor"])
        self.class_weights = {
            name: torch.tensor(v["weights"], dtype=torch.float32, device=self.dist.device)
            for name, v in self.class_balance.items()
        }
        norm = self.model.config["normalization"]
        self.train_set = AugmentedDataset(dataset, transform, norm["mean"], norm["std"])
        per_rank = cfg["batch_size"] // self.dist.world_size
        if per_rank < 1:
            raise ValueError(
                f"batch_size {cfg['batch_size']} is smaller than the number of processes {self.dist.world_size}"
            )
        self.per_rank_batch = per_rank
        rare, self.rare_class_sampling = self._rare_class_sampler(dataset)
        sampler = ResumableShardedSampler(
            len(self.train_set),
            cfg["seed"],
            self.dist.rank,
            self.dist.world_size,
            start=self.step * per_rank,
            rare=rare,
        )
        workers = int(cfg["data"].get("num_workers", 0))
        self.loader = DataLoader(
            self.train_set,
            batch_size=per_rank,
            sampler=sampler,
            num_workers=workers,
            pin_memory=self.dist.device.type == "cuda",
            persistent_workers=workers > 0,
            drop_last=True,
            # Own generator: creating the iterator must not consume the global RNG, or a
            # resumed run's dropout / noisy-gating draws would diverge from the straight run.
            generator=torch.Generator().manual_seed(cfg["seed"]),
        )

    # ------------------------------------------------------------------ setup helpers
    def _class_balance(self, dataset: Any) -> dict[str, dict[str, list[float]]]:
        """Per semseg task: the sampled label frequencies and the loss weights (``class_balance``).
        Deterministic in the dataset, so a resumed run recomputes the same weights."""
        spec = self.cfg.get("class_balance")
        if not spec:
            return {}
        from mtl_perception.train.class_balance import balanced_weights, label_frequencies

        out: dict[str, dict[str, list[float]]] = {}
        for name, task in self.model.task_specs.items():
            if task.type != "semseg":
                continue
            n = task.out_channels
            if "weights" in spec:
                if len(spec["weights"]) != n:
                    raise ConfigError(
                        f"class_balance.weights has {len(spec['weights'])} entries but task {name!r} has {n} classes"
                    )
                out[name] = {"weights": list(spec["weights"])}
                continue
            freq = label_frequencies(dataset, n, spec["frames"], task.params["ignore_index"], key=task.type)
            w = balanced_weights(freq, spec["power"], spec["max_weight"], spec["min_weight"])
            out[name] = {"frequency": [round(float(f), 6) for f in freq], "weights": [round(float(x), 4) for x in w]}
        return out

    def _rare_class_sampler(self, dataset: Any) -> tuple[Any, dict[str, Any] | None]:
        """The rare-class sampler of ``rare_class_sampling`` (on the first semseg task's labels) and
        its per-class summary for config.json; (None, None) when off. Deterministic in the dataset."""
        spec = self.cfg.get("rare_class_sampling")
        if not spec:
            return None, None
        from mtl_perception.train.rare_class import RareClassSampler, class_pixel_counts

        semseg = [(n, t) for n, t in self.model.task_specs.items() if t.type == "semseg"]
        if not semseg:
            raise ConfigError("rare_class_sampling needs a semseg task in the model; remove it from the recipe")
        name, task = semseg[0]
        counts = class_pixel_counts(dataset, task.out_channels, task.params["ignore_index"], progress=self.dist.is_main)
        rare = RareClassSampler(counts, spec["temperature"], spec["min_pixels"], spec["classes"], spec["fraction"])
        names = None
        if task.out_channels == 19:
            from mtl_perception.data.cityscapes_classes import CITYSCAPES_CLASSES

            names = list(CITYSCAPES_CLASSES)
        return rare, {"task": name, **spec, "census": rare.summary(names)}

    def _amp_dtype(self) -> torch.dtype | None:
        amp = self.cfg["amp"]
        if self.dist.device.type != "cuda" or amp == "off":
            return None
        if amp == "bf16" or (amp == "auto" and torch.cuda.is_bf16_supported()):
            return torch.bfloat16
        return torch.float16

    def _resolve_resume(self, resume) -> Path | None:
        if not resume:
            return None
        if resume is True or str(resume) == "latest":
            path = latest_checkpoint(self.out)
            if path is None:
                raise FileNotFoundError(
                    f"--resume: no checkpoint under {self.out / 'checkpoints'}; start without --resume"
                )
            return path
        path = Path(resume)
        if not path.is_file():
            raise FileNotFoundError(f"--resume: checkpoint {path} not found")
        return path

    def _load_state(self, ckpt: Path) -> None:
        state_path = state_path_of(ckpt)
        if not state_path.is_file():
            raise FileNotFoundError(f"--resume: training state {state_path} missing next to {ckpt}")
        try:
            state = torch.load(state_path, map_location="cpu", weights_only=True)
            step = int(state["step"])
        except Exception as exc:  # truncated / foreign file: never resume from a partial state
            raise CheckpointError(
                f"--resume: training state {state_path} is unreadable ({type(exc).__name__}: "
                f"{' '.join(str(exc).split())[:200]}); delete it and {ckpt.name} to resume from the previous "
                "checkpoint, or start without --resume"
            ) from exc
        meta_step = (getattr(self.model, "checkpoint_metadata", None) or {}).get("step")
        if meta_step is not None and str(step) != str(meta_step):
            raise CheckpointError(
                f"--resume: training state {state_path} is for step {step} but {ckpt.name} for step {meta_step}; "
                "delete the mismatched pair to resume from the previous checkpoint"
            )
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.step = step
        torch.set_rng_state(state["torch_rng"][self.dist.rank % len(state["torch_rng"])])

    # ------------------------------------------------------------------ checkpoints
    def save(self, final: bool = False) -> Path | None:
        rngs = [torch.get_rng_state()]
        if self.dist.enabled:
            gathered: list[Any] = [None] * self.dist.world_size
            torch.distributed.all_gather_object(gathered, rngs[0])
            rngs = gathered
        if not self.dist.is_main:
            return None
        ckdir = self.out / "checkpoints"
        ckdir.mkdir(parents=True, exist_ok=True)
        path = ckdir / f"step_{self.step:07d}.safetensors"
        dtype = torch.float16 if self.cfg["save_dtype"] == "float16" else torch.float32
        meta = {
            **self.carried_metadata,
            "step": self.step,
            "train_config": json.dumps({k: v for k, v in self.cfg.items() if k != "_base_dir"}, default=str),
        }
        if self.class_balance:  # the loss weights, for `logit-adjust` (and `average`, which combines them)
            meta["class_balance"] = json.dumps(self.class_balance)
        state = {
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": self.step,
            "torch_rng": rngs,
        }
        # Order matters for crash safety: the state first, then the weights (each atomic), so a
        # step_*.safetensors file always has its whole state next to it (latest_checkpoint).
        with atomic_path(state_path_of(path)) as tmp:
            torch.save(state, tmp)
        save_checkpoint(self.model, path, extra_metadata=meta, dtype=torch.float32)  # exact for resume
        if final:
            save_checkpoint(self.model, self.out / "model.safetensors", extra_metadata=meta, dtype=dtype)
        keep = int(self.cfg["keep_checkpoints"])
        old = sorted(ckdir.glob("step_*.safetensors"))[:-keep] if keep > 0 else []
        for p in old:
            p.unlink(missing_ok=True)  # the weights first: a state without weights is never resumed from
            state_path_of(p).unlink(missing_ok=True)
        return path

    def _trim_log(self) -> None:
        """Keep ``train_log.csv`` consistent with the step training continues from: rows after it
        (logged before a kill, re-run now) and a half-written last row are dropped, so a resumed run's
        log has every step once, as an uninterrupted run's has."""
        path = self.out / "train_log.csv"
        if not path.is_file():
            return
        lines = path.read_text(errors="replace").splitlines(keepends=True)
        if not lines:
            return
        keep = [lines[0]] if lines[0].startswith("step,") else []
        for line in lines[len(keep) :]:
            try:
                row = next(csv.reader([line]))
                complete = line.endswith("\n") and len(row) == 5 and int(row[0]) <= self.step
            except (ValueError, StopIteration, csv.Error):
                complete = False
            if not complete:
                break
            keep.append(line)
        if keep != lines:
            atomic_write_text(path, "".join(keep))

    # ------------------------------------------------------------------ loop
    def train(self, progress: bool = True) -> dict[str, Any]:
        cfg, total = self.cfg, self.cfg["steps"]
        if self.dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            clean_stale_temps(self.out)
            clean_stale_temps(self.out / "checkpoints")  # temporaries of a killed save
            atomic_write_json(
                self.out / "config.json",
                {
                    "train": {k: v for k, v in cfg.items() if k != "_base_dir"},
                    "warm_start": self.warm_start,
                    "freeze": self.freeze,
                    "class_balance": self.class_balance or None,
                    "rare_class_sampling": self.rare_class_sampling,
                    "model": json.loads(config_to_json(self.model.config)),
                },
                newline=False,
                indent=2,
                default=str,
            )
            self._trim_log()
        log_file = writer = tb = None
        if self.dist.is_main:
            new = not (self.out / "train_log.csv").exists()
            log_file = open(self.out / "train_log.csv", "a", newline="")
            writer = csv.writer(log_file)
            if new:
                writer.writerow(["step", "loss", "lr", "images_per_s", "parts_json"])
            try:
                from torch.utils.tensorboard import SummaryWriter

                tb = SummaryWriter(str(self.out / "tensorboard"))
            except ImportError:
                tb = None
        bar = None
        if progress and self.dist.is_main:
            from tqdm import tqdm

            bar = tqdm(total=total, initial=self.step, desc="train", unit="step", dynamic_ncols=True)
        it = iter(self.loader)
        t_last, seen, last = time.perf_counter(), 0, {}
        try:
            while self.step < total:
                batch = {k: v.to(self.dist.device, non_blocking=True) for k, v in next(it).items()}
                mult = lr_multiplier(self.step, total, cfg["schedule"])
                for g in self.optimizer.param_groups:
                    g["lr"] = max(cfg["schedule"].get("min_lr", 0.0), g["base_lr"] * mult)
                with torch.autocast(
                    self.dist.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None
                ):
                    outputs, aux = self.ddp(batch["image"], with_aux=True)
                if self.feature_anchor is not None:
                    # logged weighted, like the decoders' auxiliary losses
                    aux = {**aux, "feature_anchor": self.feature_anchor.loss(batch["image"])}
                loss, parts = compute_loss(
                    self.model, outputs, aux, batch, self.class_weights, cfg["depth_gradient_loss"]
                )
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"non-finite loss at step {self.step}: {parts}; lower optim.lr or enable grad_clip"
                    )
                self.optimizer.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()
                if cfg["grad_clip"]:
                    self.scaler.unscale_(self.optimizer)
                    nn.utils.clip_grad_norm_(self.model.parameters(), cfg["grad_clip"])
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.step += 1
                seen += self.per_rank_batch * self.dist.world_size
                mean_loss = float(all_reduce_mean(loss.detach(), self.dist))
                if self.dist.is_main and (self.step % cfg["log_every"] == 0 or self.step == total):
                    now = time.perf_counter()
                    ips = seen / max(now - t_last, 1e-9)
                    t_last, seen = now, 0
                    lr = self.optimizer.param_groups[0]["lr"]
                    writer.writerow([self.step, f"{mean_loss:.6f}", f"{lr:.3e}", f"{ips:.2f}", json.dumps(parts)])
                    log_file.flush()
                    if tb:
                        tb.add_scalar("loss/total", mean_loss, self.step)
                        for k, v in parts.items():
                            tb.add_scalar(f"loss/{k}", v, self.step)
                        tb.add_scalar("lr", lr, self.step)
                    last = {"loss": mean_loss, **parts, "images_per_s": ips}
                if bar:
                    bar.update(1)
                    bar.set_postfix(
                        loss=f"{mean_loss:.3f}", **({"img/s": f"{last['images_per_s']:.1f}"} if last else {})
                    )
                if self.step % cfg["checkpoint_every"] == 0 and self.step < total:
                    self.save()
            self.save(final=True)
            barrier(self.dist)
        finally:
            if bar:
                bar.close()
            if log_file:
                log_file.close()
            if tb:
                tb.close()
        summary = {"step": self.step, "out_dir": str(self.out), "last": last, "world_size": self.dist.world_size}
        if self.warm_start:
            summary["warm_start"] = self.warm_start
        if self.freeze:
            summary["freeze"] = self.freeze
        return summary

    def close(self) -> None:
        if self.feature_anchor is not None:
            self.feature_anchor.remove()
        cleanup(self.dist)
