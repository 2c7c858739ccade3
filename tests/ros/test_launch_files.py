"""Static checks of the files the node ships but CI cannot run (no `launch`, RViz or Docker here)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_launch_file_arguments():
    tree = ast.parse((ROOT / "launch" / "geoloc.launch.py").read_text())
    args = {c.args[0].value for c in ast.walk(tree) if isinstance(c, ast.Call)
            and getattr(c.func, "id", "") == "DeclareLaunchArgument"}
    assert {"params_file", "use_sim_time", "bag", "rviz", "autostart"} <= args
    src = (ROOT / "launch" / "geoloc.launch.py").read_text()
    assert '"ros2", "bag", "play", bag, "--clock"' in src and "geoloc.rviz" in src and "LifecycleNode" in src


def test_rviz_config_shows_the_node_topics_in_the_map_frame():
    rviz = yaml.safe_load((ROOT / "config" / "geoloc.rviz").read_text())
    vm = rviz["Visualization Manager"]
    assert vm["Global Options"]["Fixed Frame"] == "map"
    topics = {d["Topic"]["Value"] for d in vm["Displays"] if "Topic" in d}
    assert {"/geoloc_node/markers", "/geoloc_node/pose", "/camera/image_raw"} <= topics


def test_dockerfiles_install_the_package_as_setup_py_says():
    x86 = (ROOT / "docker" / "Dockerfile.x86").read_text()
    jetson = (ROOT / "docker" / "Dockerfile.jetson").read_text()
    assert "pip install '.[ros]'" in x86 and "onnxruntime" in x86
    assert re.search(r"FROM nvcr.io/nvidia/l4t-jetpack:\$\{L4T_TAG\}", jetson) and "L4T_TAG=r36" in jetson
    assert "ROS_DISTRO=humble" in jetson and "colcon build --packages-select geoloc_node" in jetson
    assert "import tensorrt" in jetson and "--no-deps \"$TORCH_WHL\"" in jetson
    setup = (ROOT / "setup.py").read_text()
    assert "geoloc_node = geoloc_node.ros.node:main" in setup
    for df in (x86, jetson):
        assert "/var/cache/geoloc" in df and "VOLUME" in df
