"""The deploy package has no import cycle: every module imports alone, in a fresh interpreter, and
nothing in it imports ``engine`` at module level (the engine imports backends and artifacts
lazily; they reach the shared types through the leaf module ``interface``)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parents[1] / "mtl_perception" / "deploy"
MODULES = sorted(
    "mtl_perception.deploy." + ".".join(p.relative_to(DEPLOY).with_suffix("").parts)
    for p in DEPLOY.rglob("*.py")
    if p.name != "__init__.py"
)


def _module_level_imports(path: Path) -> set[str]:
    """Modules (and ``module.name``) imported by statements executed at import time: not inside
    functions or methods; ``if TYPE_CHECKING:`` blocks are skipped since they never run. Relative
    imports are resolved against the module's package."""
    package = ["mtl_perception", *path.relative_to(DEPLOY.parent).parent.parts]
    found: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else []
                module = ".".join([*base, *([node.module] if node.module else [])])
                found.add(module)
                found.update(f"{module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.If):
                if not (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"):
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, (ast.Try, ast.With)):
                visit(node.body)
                for h in getattr(node, "handlers", []):
                    visit(h.body)
                visit(getattr(node, "orelse", []))
                visit(getattr(node, "finalbody", []))
            elif isinstance(node, ast.ClassDef):
                visit(node.body)  # a class body runs at import; its methods' bodies do not

    visit(ast.parse(path.read_text()).body)
    return found


def test_relative_imports_are_resolved(tmp_path, monkeypatch):
    """The checker itself: ``from ..engine import X`` in a backend counts as importing the engine."""
    fake = DEPLOY / "backends" / "ort_backend.py"
    monkeypatch.setattr(Path, "read_text", lambda self: "from ..engine import EngineError\nfrom . import x\n")
    assert {"mtl_perception.deploy.engine", "mtl_perception.deploy.backends.x"} <= _module_level_imports(fake)


def test_the_module_list_is_complete():
    wanted = {f"mtl_perception.deploy.{m}" for m in ("engine", "interface", "artifacts", "preprocess")}
    assert wanted <= set(MODULES)
    assert any(m.endswith("backends.tensorrt_backend") for m in MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_alone(module):
    """A fresh interpreter per module: a cycle shows up as an ImportError on a partially initialised module."""
    if module.endswith("tensorrt_backend"):
        pytest.importorskip("torch")  # imports torch lazily only; the module itself must still import
    proc = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.parametrize("module", [m for m in MODULES if not m.endswith(".engine")])
def test_no_deploy_module_imports_engine_at_module_level(module):
    path = DEPLOY.joinpath(*module.split(".")[2:]).with_suffix(".py")
    imports = _module_level_imports(path)
    engine = "mtl_perception.deploy.engine"
    bad = sorted(i for i in imports if i == engine or i.startswith(engine + "."))
    assert not bad, f"{module} imports the engine at module level: {bad}; import from mtl_perception.deploy.interface"


def test_interface_is_a_leaf():
    """``interface`` imports nothing of the package, so it can never be part of a cycle."""
    imports = _module_level_imports(DEPLOY / "interface.py")
    assert not [i for i in imports if i.startswith("mtl_perception")], imports


def test_engine_reexports_the_shared_types():
    from mtl_perception.deploy import engine, interface, preprocess
    from mtl_perception.geometry import DEFAULT_HFOV_DEG

    assert engine.EngineError is interface.EngineError
    assert engine.ModelInfo is interface.ModelInfo
    assert engine.Backend is interface.Backend
    assert engine.preprocess_frames is preprocess.preprocess_frames
    # the leaf module's copy of the default field of view must not drift from geometry's
    assert interface.DEFAULT_HFOV_DEG == DEFAULT_HFOV_DEG
    assert interface.ModelInfo((1, 1), [0.0] * 3, [1.0] * 3, [], [], "x", "h").default_hfov_deg == DEFAULT_HFOV_DEG
