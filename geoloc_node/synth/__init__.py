"""Synthetic cross-view world: a 2.5-D city, its aerial orthophoto, ground views and drives recorded as ROS 2 bags.

Modules, in the order data flows through them (docs/synthetic_world.md tells the whole story):

* :mod:`.grid` - the raster grid over the local ENU plane, surface materials and the road graph;
* :mod:`.canvas` - the rasters a layout paints into (height, material, top and wall colours);
* :mod:`.procedural` / :mod:`.osm` - lay out a city (procedurally, or from an OpenStreetMap extract);
* :mod:`.aerial` - the orthophoto (shadows, blur, noise) and tiles cut from it;
* :mod:`.world` - :class:`~.world.World`, ``make_world``, ``world_from_osm``, save/load, GeoTIFF;
* :mod:`.render` - ray-cast panoramas and pinhole views with domain randomisation, ``aerial_tile``;
* :mod:`.pairs` - aerial/ground training pairs in the CVUSA layout, and a loader for that layout;
* :mod:`.route` / :mod:`.drive` - a vehicle trajectory along the roads, recorded as a rosbag2 with GPS faults;
* :mod:`.cli` - ``geoloc synth world|pairs|drive``; :mod:`.figure` - the picture in docs/synthetic_sample.png.
"""
