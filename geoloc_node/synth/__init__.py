"""Synthetic cross-view world: a 2.5-D city, its aerial orthophoto, ground views and drives recorded as ROS 2 bags.

Modules, in the order data flows through them:

* :mod:`.grid` - the raster grid over the local ENU plane, surface materials and the road graph;
* :mod:`.procedural` / :mod:`.osm` - lay out a city (procedurally, or from an OpenStreetMap extract) onto that grid;
* :mod:`.world` - :class:`~.world.World` (height, material and colour rasters), its orthophoto, save/load, GeoTIFF;
* :mod:`.render` - ray-cast panoramas and pinhole views, aerial tiles;
* :mod:`.pairs` - aerial/ground training pairs in the CVUSA layout, and a loader for that layout;
* :mod:`.route` / :mod:`.drive` - a vehicle trajectory along the roads, recorded as a rosbag2 with GPS faults;
* :mod:`.cli` - ``geoloc synth world|pairs|drive``.
"""
