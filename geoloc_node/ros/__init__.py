"""The ROS 2 wrapper: the only package of geoloc_node that imports rclpy and ROS message packages.

* :mod:`geoloc_node.ros.params`  - the node's parameters: the core's ``GeolocConfig`` fields plus the node-only
  :class:`~geoloc_node.ros.params.NodeConfig`, declared with descriptors and validated on every change;
* :mod:`geoloc_node.ros.interfaces` - message classes by name, QoS profiles, parameter descriptors (the messages
  themselves come from the ROS-free :mod:`geoloc_node.session`, as in a replay);
* :mod:`geoloc_node.ros.worker`  - the inference thread that owns the encoder (and its CUDA context);
* :mod:`geoloc_node.ros.node`    - the lifecycle node and ``main()``.

The node is a thin layer: every decision about inputs, health, matching, fusion and outputs is the session's and the
pipeline's.
"""
