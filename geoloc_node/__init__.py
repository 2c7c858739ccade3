"""geoloc_node: GPS-fallback localisation by cross-view binary hashing.

The package root is ROS-free and torch-free: ``geoloc_node.codes``, ``.table``, ``.search`` and ``.estimate`` form the
retrieval core; ``geoloc_node.ros`` holds the only rclpy code, ``geoloc_node.model`` the only torch code.
"""

__version__ = "0.1.0"
