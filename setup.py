"""pip install for users who train or evaluate without ROS (``pip install .``).

The ROS 2 build (colcon / ament_cmake) ignores this file and uses CMakeLists.txt, which also
generates the msg/ interfaces. Never ``pip install .`` into the same prefix as a CMake/colcon
install: pip would uninstall the merged package, generated ``msg/`` included.
"""

import re
from glob import glob
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent
VERSION = re.search(r'__version__ = "([^"]+)"', (ROOT / "mtl_perception" / "__init__.py").read_text()).group(1)
SHARE = "share/mtl_perception"


PACKAGE_DATA = [
    f"{d}/{pat}"
    for d in ("assets", "assets/**", "weights", "weights/**")
    for pat in ("*.safetensors", "*.json", "*.yaml", "*.onnx", "*.txt")
]


def _files(pattern: str) -> list[str]:
    return sorted(p for p in glob(pattern, recursive=True) if Path(p).is_file())


def _tree(top: str, patterns: tuple[str, ...]) -> list[tuple[str, list[str]]]:
    """data_files entries mirroring ``top/**`` under share/mtl_perception (one entry per dir)."""
    by_dir: dict[str, list[str]] = {}
    for pat in patterns:
        for f in _files(f"{top}/**/{pat}"):
            by_dir.setdefault(str(Path(f).parent), []).append(f)
    return [(f"{SHARE}/{d}", sorted(fs)) for d, fs in sorted(by_dir.items())]


setup(
    name="mtl_perception",
    version=VERSION,
    description="Multi-task perception (semantic segmentation + metric depth) for ROS 2: models, training, "
    "evaluation, deployment",
    long_description=(ROOT / "README.md").read_text() if (ROOT / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    packages=find_packages(include=["mtl_perception", "mtl_perception.*"]),
    # Shipped non-Python files (model weights, model cards, configs) inside the package.
    package_data={"mtl_perception": PACKAGE_DATA},
    include_package_data=False,
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.4",
        "timm>=1.0",
        "numpy",
        "opencv-python-headless",
        "safetensors",
        "PyYAML",
        "tqdm",
        "matplotlib",
        "onnx",
        "onnxruntime",
        "rosbags",
        "rosbags-image",
    ],
    extras_require={"test": ["pytest"], "export": ["onnxscript"]},
    data_files=[
        entry
        for entry in [
            ("share/ament_index/resource_index/packages", ["resource/mtl_perception"]),
            (SHARE, ["package.xml"]),
            (f"{SHARE}/launch", _files("launch/*.py")),
            *_tree("config", ("*.yaml", "*.yml", "*.xml", "*.json")),
            (f"{SHARE}/rviz", _files("rviz/*.rviz")),
        ]
        if entry[1]  # skip empty dirs (launch/, rviz/ until files land there)
    ],
    entry_points={
        "console_scripts": [
            "mtl-perception = mtl_perception.cli:run",
            "perception_node = mtl_perception.ros.node:main",
        ]
    },
)
