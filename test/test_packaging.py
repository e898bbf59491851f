"""Packaging consistency: package.xml / setup.py / __version__, entry points, share files."""

from __future__ import annotations

import os
import runpy
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import mtl_perception
from mtl_perception.paths import package_share_dir

ROOT = Path(__file__).resolve().parents[1]


def _setup_kwargs() -> dict:
    """The keyword arguments setup.py passes to setuptools.setup (without running a build)."""
    import setuptools

    captured: dict = {}
    orig = setuptools.setup
    setuptools.setup = lambda **kw: captured.update(kw)
    cwd = os.getcwd()
    try:
        os.chdir(ROOT)  # setup.py globs config/, launch/ relative to the cwd, as pip runs it
        runpy.run_path(str(ROOT / "setup.py"), run_name="__main__")
    finally:
        setuptools.setup = orig
        os.chdir(cwd)
    return captured


@pytest.fixture(scope="module")
def setup_kwargs() -> dict:
    return _setup_kwargs()


def test_package_xml_matches_version(setup_kwargs):
    root = ET.parse(ROOT / "package.xml").getroot()
    assert root.tag == "package" and root.get("format") == "3"
    assert root.findtext("name") == "mtl_perception"
    assert root.findtext("version") == mtl_perception.__version__ == setup_kwargs["version"]
    assert root.findtext("export/build_type") == "ament_cmake"
    assert root.findtext("member_of_group") == "rosidl_interface_packages"


def test_console_scripts(setup_kwargs):
    scripts = dict(
        (name.strip(), target.strip())
        for name, target in (s.split("=", 1) for s in setup_kwargs["entry_points"]["console_scripts"])
    )
    assert scripts["mtl-perception"] == "mtl_perception.cli:run"
    assert scripts["perception_node"] == "mtl_perception.ros.node:main"
    # the ROS executable installed by CMakeLists.txt to lib/mtl_perception
    node = ROOT / "scripts" / "perception_node"
    assert os.access(node, os.X_OK)
    assert node.read_text().startswith("#!/usr/bin/env python3\n")


def test_setup_ships_all_config_files(setup_kwargs):
    shipped = {f for _dest, files in setup_kwargs["data_files"] for f in files}
    configs = {str(p.relative_to(ROOT)) for p in (ROOT / "config").rglob("*.yaml")}
    assert configs and configs <= shipped
    assert "package.xml" in shipped and "resource/mtl_perception" in shipped


def test_package_share_dir_has_config():
    share = package_share_dir()
    assert (share / "config" / "models").is_dir(), share
    assert (share / "package.xml").is_file(), share


def test_share_found_through_ament_index(monkeypatch):
    """After `make setup` (or a pip / colcon install) the ament index knows the package."""
    pytest.importorskip("ament_index_python", reason="ament_index_python not installed")
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

    if not os.environ.get("AMENT_PREFIX_PATH"):
        monkeypatch.setenv("AMENT_PREFIX_PATH", sys.prefix)
    try:
        share = Path(get_package_share_directory("mtl_perception"))
    except PackageNotFoundError:
        pytest.fail(
            "mtl_perception is not in the ament index "
            f"(AMENT_PREFIX_PATH={os.environ['AMENT_PREFIX_PATH']}): run `make setup`"
        )
    assert (share / "package.xml").is_file()
    assert sorted(p.name for p in (share / "config" / "models").glob("*.yaml")) == sorted(
        p.name for p in (ROOT / "config" / "models").glob("*.yaml")
    )
