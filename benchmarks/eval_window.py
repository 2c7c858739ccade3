"""Localisation of the shipped panorama model against the full region table of the unseen world (seed 99), searching
a window of 50/100/200 m around the true position (what the pipeline does with a prior during a GPS outage).

    python benchmarks/eval_window.py     # needs runs/cache/synth_99_*.npz (made by geoloc train/eval --data synth)
"""

import glob
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from geoloc_node.encoders import load_encoder  # noqa: E402
from geoloc_node.model.data import PairArrays  # noqa: E402
from geoloc_node.search import TableSearch  # noqa: E402
from geoloc_node.synth.world import WorldConfig, make_world  # noqa: E402
from geoloc_node.table import open_table  # noqa: E402
from geoloc_node.table_builder import build_table_from_geotiff  # noqa: E402


def main() -> int:
    sidecar = "geoloc_node/models/synth_pano256.json"
    pairs = PairArrays.load(glob.glob("runs/cache/synth_99_*.npz")[0])
    world = make_world(WorldConfig(size_m=700, seed=99))
    tmp = tempfile.mkdtemp()
    tif = world.write_geotiff(os.path.join(tmp, "w.tif"))
    table = open_table(build_table_from_geotiff(tif, sidecar, os.path.join(tmp, "t.gltab"), progress=False))
    codes = load_encoder(sidecar).encode(pairs.ground)  # the cached panoramas are north-aligned at the model size
    lat, lon = world.frame.to_latlon(pairs.en[:, 0], pairs.en[:, 1])
    east, north = table.frame.to_en(lat, lon)
    search = TableSearch(table)
    out = {}
    for radius in (50.0, 100.0, 200.0):
        err = np.array([np.linalg.norm(search.topk_window(c, e, n, radius, k=1).en[0] - [e, n])
                        for c, e, n in zip(codes, east, north)])
        out[f"window_{radius:g}m"] = {"top1_within_25m": float((err <= 25).mean()), "median_m": float(np.median(err))}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
