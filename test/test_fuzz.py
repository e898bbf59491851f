"""Property-based fuzzing of everything that parses outside data (issue 14, part 2).

One target per parser. Contract: only the documented error types escape (ImageDecodeError,
BagError, CheckpointError, ConfigError, EngineError, and ValueError where the function documents
it); every call returns or fails within ``FUZZ_TIMEOUT_S`` (a longer call is a hang); what is
returned is well-formed.

* ``make test`` runs a small, derandomized slice (``FUZZ_CASES``, default 30 examples per target).
* ``make fuzz`` runs the campaign: ``FUZZ_CASES=10000`` per target, ``FUZZ_REPORT=docs/fuzz_totals.json``
  writes the totals per parser (cases, documented errors, accepted inputs, failures, hangs, seconds).

Targets: image messages (every encoding, random sizes / steps / truncations / endianness / data
containers), CompressedImage payloads (mutated jpeg/png, random bytes), CameraInfo intrinsics, bag
readers (mutated synthetic mcap and sqlite3 bags: truncated, bit-flipped, overwritten, wrong or
missing metadata.yaml), checkpoint loading (mutated safetensors), model and train config loading,
node parameter validation, ONNX metadata.
"""

from __future__ import annotations

import array
import json
import os
import shutil
import signal
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import yaml

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

pytestmark = pytest.mark.fuzz

CASES = int(os.environ.get("FUZZ_CASES", "30"))
CAMPAIGN = CASES > 1000
TIMEOUT_S = float(os.environ.get("FUZZ_TIMEOUT_S", "10"))
FUZZ = settings(
    max_examples=CASES,
    derandomize=not CAMPAIGN,  # the CI slice is the same every run; the campaign takes --hypothesis-seed
    deadline=None,  # our own per-case timeout below counts hangs
    database=None,
    print_blob=True,
    suppress_health_check=list(HealthCheck),
)

TOTALS: dict[str, dict[str, float]] = defaultdict(
    lambda: {"cases": 0, "documented_errors": 0, "accepted": 0, "failures": 0, "hangs": 0, "seconds": 0.0}
)


class FuzzHang(Exception):
    """A case ran longer than FUZZ_TIMEOUT_S."""


def _alarm(signum, frame):
    raise FuzzHang(f"case ran longer than {TIMEOUT_S} s")


def run_case(target: str, fn, allowed: tuple[type[BaseException], ...]) -> Any:
    """Run one case: count it; an allowed error is fine, anything else is a failure (re-raised)."""
    t = TOTALS[target]
    t["cases"] += 1
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, TIMEOUT_S)
    t0 = time.perf_counter()
    try:
        out = fn()
    except FuzzHang:
        t["hangs"] += 1
        raise
    except allowed:
        t["documented_errors"] += 1
        return None
    except Exception:
        t["failures"] += 1
        raise
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        t["seconds"] += time.perf_counter() - t0
    t["accepted"] += 1
    return out


@pytest.fixture(scope="module", autouse=True)
def _report(request):
    t0 = time.time()
    yield
    target = os.environ.get("FUZZ_REPORT")
    if target and TOTALS:
        seed = request.config.getoption("hypothesis_seed", None)
        report = {
            "command": f"FUZZ_CASES={CASES} pytest -m fuzz test/test_fuzz.py --hypothesis-seed={seed}",
            "wall_s": round(time.time() - t0, 1),
            "cases_per_target": CASES,
            "timeout_s": TIMEOUT_S,
            "derandomized": not CAMPAIGN,
            "targets": {k: {**v, "seconds": round(v["seconds"], 2)} for k, v in sorted(TOTALS.items())},
        }
        Path(target).write_text(json.dumps(report, indent=2) + "\n")


def _mutate(raw: bytes, seed: int, kind: str, header: int | None = None) -> bytes:
    """``raw`` changed by ``kind``: flip (1-8 bits), overwrite (a random run), truncate, insert, or
    header (flips inside the first ``header`` bytes)."""
    rng = np.random.default_rng(seed)
    b = bytearray(raw)
    if not b or kind == "truncate":
        return bytes(b[: int(rng.integers(0, max(len(b), 1)))])
    if kind in ("flip", "header"):
        span = min(header or len(b), len(b))
        for _ in range(int(rng.integers(1, 9))):
            i = int(rng.integers(0, span))
            b[i] ^= 1 << int(rng.integers(0, 8))
    elif kind == "overwrite":
        i = int(rng.integers(0, len(b)))
        n = int(rng.integers(1, 64))
        b[i : i + n] = rng.integers(0, 256, min(n, len(b) - i), np.uint8).tobytes()
    elif kind == "insert":
        i = int(rng.integers(0, len(b)))
        b[i:i] = rng.integers(0, 256, int(rng.integers(1, 32)), np.uint8).tobytes()
    return bytes(b)


MUTATIONS = st.sampled_from(["flip", "overwrite", "truncate", "insert", "header"])
SEEDS = st.integers(0, 2**32 - 1)


# ------------------------------------------------------------------------------- image messages
def _container(data: bytes, kind: str) -> Any:
    if kind == "list":
        return list(data)
    if kind == "ndarray":
        return np.frombuffer(data, np.uint8)
    if kind == "array":
        return array.array("B", data)
    return data


@st.composite
def image_messages(draw):
    from mtl_perception.imaging import _LAYOUT, SUPPORTED_ENCODINGS

    enc = draw(st.sampled_from((*SUPPORTED_ENCODINGS, "16UC1", "32FC1", "", "RGB8", "jpeg")) | st.text(max_size=6))
    h, w = draw(st.integers(-2, 24)), draw(st.integers(-2, 24))
    ch, nb = _LAYOUT.get(enc, (3, 1))
    row = max(w, 0) * ch * nb
    step = draw(
        st.sampled_from([row, row + 1, row + 3, row - 1, 0, -row]) | st.integers(-8, row + 16) | st.integers(0, 2**40)
    )
    need = step * max(h, 0) if 0 < step < 10**5 else 64
    n = draw(st.sampled_from([need, need - 1, need - max(step - row, 0), need + 7, 0]) | st.integers(0, need + 16))
    seed = draw(SEEDS)
    data = np.random.default_rng(seed).integers(0, 256, max(n, 0), np.uint8).tobytes()
    return SimpleNamespace(
        height=h, width=w, encoding=enc, step=step, is_bigendian=draw(st.sampled_from([0, 1, True, False])),
        data=_container(data, draw(st.sampled_from(["bytes", "list", "ndarray", "array"]))),
    )  # fmt: skip


@FUZZ
@given(msg=image_messages())
def test_fuzz_image_msg(msg):
    from mtl_perception.imaging import ImageDecodeError, image_msg_to_rgb

    out = run_case("image_msg", lambda: image_msg_to_rgb(msg, use_cv_bridge=False), (ImageDecodeError,))
    if out is not None:
        assert out.dtype == np.uint8 and out.shape == (msg.height, msg.width, 3), (out.shape, msg)


# ------------------------------------------------------------------------------- CompressedImage
def _compressed_seeds() -> list[bytes]:
    import cv2

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (12, 20, 3), np.uint8)
    out = []
    for ext, a in ((".jpg", img), (".png", img), (".png", img[..., 0]), (".png", img.astype(np.uint16) * 257),
                   (".png", np.dstack([img, img[..., :1]])), (".jpg", img[..., 0])):  # fmt: skip
        ok, buf = cv2.imencode(ext, a)
        assert ok
        out.append(buf.tobytes())
    return out


COMPRESSED = _compressed_seeds()


@FUZZ
@given(
    base=st.integers(0, len(COMPRESSED) - 1), kind=MUTATIONS | st.just("none") | st.just("random"), seed=SEEDS,
    fmt=st.sampled_from(["jpeg", "png", "rgb8; jpeg compressed bgr8", "16UC1; compressedDepth png", ""])
    | st.text(max_size=12),
    container=st.sampled_from(["bytes", "list", "ndarray", "array"]),
)  # fmt: skip
def test_fuzz_compressed_image(base, kind, seed, fmt, container):
    from mtl_perception.imaging import ImageDecodeError, compressed_msg_to_rgb

    if kind == "random":
        raw = np.random.default_rng(seed).integers(0, 256, seed % 2048, np.uint8).tobytes()
    else:
        raw = COMPRESSED[base] if kind == "none" else _mutate(COMPRESSED[base], seed, kind, header=64)
    msg = SimpleNamespace(format=fmt, data=_container(raw, container))
    out = run_case("compressed_image", lambda: compressed_msg_to_rgb(msg), (ImageDecodeError,))
    if out is not None:
        assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3 and out.size > 0


# ------------------------------------------------------------------------------- CameraInfo
FLOATS = st.floats(allow_nan=True, allow_infinity=True) | st.floats(-1e4, 1e4) | st.sampled_from([0.0, -0.0, 1e-320])


@FUZZ
@given(
    k=st.lists(FLOATS, min_size=9, max_size=9) | st.lists(FLOATS, max_size=12) | st.none() | st.text(max_size=4),
    hw=st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
    | st.tuples(st.integers(0, 4096), st.integers(0, 4096)),
    image_hw=st.tuples(st.integers(1, 8192), st.integers(1, 8192)),
    missing=st.booleans(),
)  # fmt: skip
# found: fy = 1e-320 rescaled from 4048 rows to 1 underflowed to a K with fy = 0, returned as usable
@example(k=[1.0, 0.0, 0.0, 0.0, 1e-320, 0.0, 0.0, 0.0, 1.0], hw=(4048, 1), image_hw=(1, 1), missing=False)
def test_fuzz_camera_info(k, hw, image_hw, missing):
    from mtl_perception.imaging import frame_intrinsics

    info = None if missing else SimpleNamespace(k=k, height=hw[0], width=hw[1])
    out = run_case("camera_info", lambda: frame_intrinsics(info, image_hw), ())
    K, reason = out
    if K is not None:
        assert K.shape == (3, 3) and np.isfinite(K).all() and K[0, 0] > 0 and K[1, 1] > 0, (K, reason)


# ------------------------------------------------------------------------------- bags
@pytest.fixture(scope="module")
def base_bags(tmp_path_factory) -> dict[str, Path]:
    from mtl_perception.data.synthetic_io import write_bag

    root = tmp_path_factory.mktemp("fuzz_bags")
    return {s: (write_bag(root / s, 3, 2, 16, 32, storage=s), root / s)[1] for s in ("mcap", "sqlite3")}


def _read_bag(path: Path) -> int:
    """Everything replay-eval and play read: summary, topics, every message, images, GT, intrinsics."""
    from mtl_perception.data import bags
    from mtl_perception.imaging import ImageDecodeError, compressed_msg_to_rgb, frame_intrinsics, image_msg_to_rgb

    n = 0
    with bags.open_bag(path) as bag:
        bag.summary()
        bag.describe_topics()
        try:
            bags.find_image_topic(bag)
            bags.find_gt_topics(bag)
            bags.find_camera_info_topics(bag, bags.find_image_topic(bag))
        except bags.TopicError:
            pass
        for m in bag.messages():
            n += 1
            if m.error or m.msg is None:
                continue
            t = m.msgtype.rsplit("/", 1)[-1]
            try:
                if t == "CompressedImage":
                    compressed_msg_to_rgb(m.msg)
                elif t == "Image" and "gt" in m.topic:
                    bags.gt_image_to_array(m.msg)  # documented: ValueError for an inconsistent GT image
                elif t == "Image":
                    image_msg_to_rgb(m.msg, use_cv_bridge=False)
                elif t == "CameraInfo":
                    frame_intrinsics(m.msg, (16, 32))
            except (ImageDecodeError, ValueError):
                pass
    return n


@FUZZ
@given(
    storage=st.sampled_from(["mcap", "sqlite3"]),
    target=st.sampled_from(["storage", "storage", "metadata", "metadata_random", "metadata_yaml", "metadata_gone",
                            "single_file"]),
    kind=MUTATIONS, seed=SEEDS,
)  # fmt: skip
# crashes found by the fuzzer, kept as regressions: a corrupt TEXT cell in a truncated sqlite3 bag's repair
# (UnicodeDecodeError), metadata.yaml with ros_distro: 1.5 (AttributeError) and message_count: {} (TypeError)
@example(storage="sqlite3", target="storage", kind="overwrite", seed=130408226)
@example(storage="mcap", target="metadata_yaml", kind="flip", seed=28)
@example(storage="mcap", target="metadata_yaml", kind="flip", seed=1)
@example(storage="mcap", target="metadata_yaml", kind="flip", seed=168)  # found: files: "x" failed in close()
@example(storage="sqlite3", target="storage", kind="flip", seed=37889)  # found: page size 0 -> ZeroDivisionError
def test_fuzz_bag_reader(base_bags, storage, target, kind, seed):
    from mtl_perception.data.bags import BagError

    src = base_bags[storage]
    with tempfile.TemporaryDirectory(prefix="fuzzbag_") as tmp:
        bag = Path(tmp) / "bag"
        shutil.copytree(src, bag)
        store = next(p for p in bag.iterdir() if p.suffix in (".mcap", ".db3"))
        meta = bag / "metadata.yaml"
        rng = np.random.default_rng(seed)
        if target in ("storage", "single_file"):
            store.write_bytes(_mutate(store.read_bytes(), seed, kind, header=512))
        elif target == "metadata":
            meta.write_bytes(_mutate(meta.read_bytes(), seed, kind))
        elif target == "metadata_random":
            meta.write_bytes(rng.integers(0, 256, int(rng.integers(0, 512)), np.uint8).tobytes())
        elif target == "metadata_yaml":  # valid YAML, wrong content: a field set to another type
            doc = yaml.safe_load(meta.read_text())
            info = doc["rosbag2_bagfile_information"]
            key = sorted(info)[int(rng.integers(0, len(info)))]
            info[key] = [None, -1, "x", [], {}, 2**70, 1.5, {"nanoseconds": "x"}][int(rng.integers(0, 8))]
            meta.write_text(yaml.safe_dump(doc))
        else:
            meta.unlink()
        path = store if target == "single_file" else bag
        run_case("bag_reader", lambda: _read_bag(path), (BagError,))


# ------------------------------------------------------------------------------- checkpoints
@pytest.fixture(scope="module")
def base_checkpoint(tmp_path_factory) -> bytes:
    from tiny_models import tiny_config

    from mtl_perception.model import build_model, save_checkpoint

    cfg = tiny_config("baseline", channels=8)
    cfg["backbone"]["kwargs"] = {"depth": 4, "embed_dim": 32, "num_heads": 2}
    path = save_checkpoint(build_model(cfg, load_pretrained=False), tmp_path_factory.mktemp("ck") / "tiny.safetensors")
    return path.read_bytes()


def _edit_header(raw: bytes, seed: int) -> bytes:
    """Valid JSON header, one semantic change: a metadata value, a dtype, a shape or offsets."""
    rng = np.random.default_rng(seed)
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    names = sorted(k for k in header if k != "__metadata__")
    meta = header.setdefault("__metadata__", {})
    choice = int(rng.integers(0, 6))
    if choice == 0:  # a metadata value replaced
        key = ["format", "config", "config_sha256", "dtype"][int(rng.integers(0, 4))]
        meta[key] = ["", "{}", "[]", "null", '{"decoder": 3}', "x" * 5, json.dumps({"input_size": "big"})][
            int(rng.integers(0, 7))
        ]
    elif choice == 1:  # the embedded config: one key replaced by a value of another type
        cfg = json.loads(meta["config"])
        sec = sorted(cfg)[int(rng.integers(0, len(cfg)))]
        cfg[sec] = [None, 0, -3, "x", [], {}, [1, 2], 1e9][int(rng.integers(0, 8))]
        meta["config"] = json.dumps(cfg)
    else:
        t = header[names[int(rng.integers(0, len(names)))]]
        if choice == 2:
            t["dtype"] = ["F16", "I8", "BOOL", "F64", "U8", "XX"][int(rng.integers(0, 6))]
        elif choice == 3:
            t["shape"] = [[], [0], [2**40], [1, 1, 1], [-1]][int(rng.integers(0, 5))]
        elif choice == 4:
            a, b = t["data_offsets"]
            t["data_offsets"] = [[b, a], [a, b + 4], [0, 2**62], [a, a]][int(rng.integers(0, 4))]
        else:
            header.pop(names[int(rng.integers(0, len(names)))])
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + raw[8 + n :]


@FUZZ
@given(kind=MUTATIONS | st.just("edit") | st.just("edit"), seed=SEEDS)
# found by the fuzzer: embedded config with decoder: 0 (AttributeError) and camera: -3 (TypeError); tensor
# shapes that do not match the config (RuntimeError in load_state_dict), a config that is not JSON
@example(kind="edit", seed=54)
@example(kind="edit", seed=411)
def test_fuzz_checkpoint(base_checkpoint, kind, seed):
    from mtl_perception.model.checkpoint import load_checkpoint, read_metadata
    from mtl_perception.model.errors import CheckpointError, ConfigError

    n = int.from_bytes(base_checkpoint[:8], "little") + 8
    raw = _edit_header(base_checkpoint, seed) if kind == "edit" else _mutate(base_checkpoint, seed, kind, header=n)
    with tempfile.TemporaryDirectory(prefix="fuzzck_") as tmp:
        path = Path(tmp) / "model.safetensors"
        path.write_bytes(raw)

        def load():
            read_metadata(path)
            return load_checkpoint(path)

        model = run_case("checkpoint", load, (CheckpointError, ConfigError))
        if model is not None:
            assert not model.training


# ------------------------------------------------------------------------------- configs
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)


def _set_path(doc: dict, rng: np.random.Generator, value: Any) -> dict:
    """``doc`` with one (possibly nested) key replaced by ``value``."""
    node = doc
    while True:
        keys = sorted(node, key=str)
        if not keys:
            break
        key = keys[int(rng.integers(0, len(keys)))]
        if isinstance(node[key], dict) and rng.random() < 0.6:
            node = node[key]
            continue
        node[key] = value
        break
    return doc


def _model_base() -> dict:
    import copy

    from tiny_models import tiny_config

    return copy.deepcopy(tiny_config("mlore"))  # tiny_config shares nested dicts with module constants


@FUZZ
@given(value=JSONISH, seed=SEEDS, text=st.none() | st.text(max_size=64) | st.binary(max_size=64))
@example(value=None, seed=0, text=b"\x80")  # found: a binary file -> UnicodeDecodeError
def test_fuzz_model_config(value, seed, text, tmp_path_factory):
    from mtl_perception.model.config import load_config
    from mtl_perception.model.errors import ConfigError

    if text is None:
        arg: Any = _set_path(_model_base(), np.random.default_rng(seed), value)
    else:
        arg = tmp_path_factory.getbasetemp() / "fuzz_model.yaml"
        arg.write_bytes(text.encode() if isinstance(text, str) else text)
    cfg = run_case("model_config", lambda: load_config(arg), (ConfigError,))
    if cfg is not None:
        assert isinstance(cfg, dict) and len(cfg["input_size"]) == 2


@FUZZ
@given(
    value=JSONISH, seed=SEEDS, text=st.none() | st.text(max_size=64) | st.binary(max_size=64),
    override=st.none() | st.text(max_size=24),
)  # fmt: skip
@example(value=None, seed=0, text=None, override="=\x1f")  # found: yaml ReaderError escaped from --set
@example(value=None, seed=0, text=None, override="=:")  # found: yaml ParserError
def test_fuzz_train_config(value, seed, text, override, tmp_path_factory):
    from mtl_perception.model.errors import ConfigError
    from mtl_perception.train.config import load_train_config

    base = {"model": "../models/mlore.yaml", "data": {"train": {"type": "synthetic", "root": "x"}}, "steps": 10,
            "optim": {"lr": 1e-3}, "schedule": {"type": "poly"}}  # fmt: skip
    d = tmp_path_factory.getbasetemp()
    if text is None:
        arg: Any = _set_path(base, np.random.default_rng(seed), value)
    else:
        arg = d / "fuzz_train.yaml"
        arg.write_bytes(text.encode() if isinstance(text, str) else text)
    overrides = [override] if override is not None else None
    run_case("train_config", lambda: load_train_config(arg, overrides), (ConfigError,))


ROS_VALUES = (
    st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=True) | st.text(max_size=12)
    | st.binary(max_size=8) | st.lists(st.booleans()) | st.lists(st.integers(-(2**63), 2**63 - 1), max_size=4)
    | st.lists(st.floats(allow_nan=True), max_size=4) | st.lists(st.text(max_size=6), max_size=4) | st.none()
)  # fmt: skip


def _param_names() -> list[str]:
    from mtl_perception.ros.params import BY_NAME

    return sorted(BY_NAME)


@FUZZ
@given(name=st.sampled_from(_param_names()) | st.text(max_size=10), value=ROS_VALUES)
@example(name="cameras", value=1)  # found: TypeError
@example(name="input_size", value=7)
def test_fuzz_node_params(name, value):
    """Every value a ROS parameter (or params YAML) can carry: validate answers None or a reason."""
    from mtl_perception.ros import params as P

    reason = run_case("node_params", lambda: P.validate(name, value), ())
    assert reason is None or (isinstance(reason, str) and name in reason)


# ------------------------------------------------------------------------------- ONNX metadata
def _onnx_base() -> bytes:
    from onnx import TensorProto, helper

    node = helper.make_node("Identity", ["x"], ["y"])
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
    )  # fmt: skip
    model = helper.make_model(graph)
    for k, v in {"classes": json.dumps(["road", "car"]), "input_size": "[64, 128]", "model_hash": "ab" * 8}.items():
        model.metadata_props.add(key=k, value=v)
    return model.SerializeToString()


ONNX_BASE = _onnx_base()


@FUZZ
@given(kind=MUTATIONS | st.just("random"), seed=SEEDS)
@example(kind="flip", seed=0)  # found: a flipped byte in a metadata value -> bytes, not str
@example(kind="random", seed=100)  # found: protobuf DecodeError escaped
def test_fuzz_onnx_metadata(kind, seed, tmp_path_factory):
    from mtl_perception.deploy.export import read_metadata
    from mtl_perception.deploy.interface import EngineError

    rng = np.random.default_rng(seed)
    raw = rng.integers(0, 256, seed % 512, np.uint8).tobytes() if kind == "random" else _mutate(ONNX_BASE, seed, kind)
    path = tmp_path_factory.getbasetemp() / "fuzz.onnx"
    path.write_bytes(raw)
    meta = run_case("onnx_metadata", lambda: read_metadata(path), (EngineError,))
    if meta is not None:
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items())
