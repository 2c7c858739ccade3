"""Localisation of the shipped panorama model against the full region table of the unseen world (seed 99), searching
a window of 50/100/200 m around the true position (what the pipeline does with a prior during a GPS outage).

    python benchmarks/eval_window.py     # needs runs/cache/synth_99_*.npz (made by geoloc train/eval --data synth)
"""
import glob
import json
import os
import tempfile

import numpy as np

from geoloc_node.encoders import load_encoder
from geoloc_node.model.data import PairArrays
from geoloc_node.search import TableSearch
from geoloc_node.synth.world import WorldConfig, make_world
from geoloc_node.table import open_table
from geoloc_node.table_builder import build_table_from_geotiff

sc='geoloc_node/models/synth_pano256.json'
p=PairArrays.load(glob.glob('runs/cache/synth_99_*.npz')[0])
w=make_world(WorldConfig(size_m=700, seed=99)); d=tempfile.mkdtemp()
tif=w.write_geotiff(os.path.join(d,'w.tif'))
t=open_table(build_table_from_geotiff(tif, sc, os.path.join(d,'t.gltab'), progress=False))
codes=load_encoder(sc).encode(p.ground)  # pairs are already north-aligned at the model size
lat,lon=w.frame.to_latlon(p.en[:,0],p.en[:,1]); e,n=t.frame.to_en(lat,lon); q=np.stack([e,n],1)
s=TableSearch(t); out={}
for radius in (50.0, 100.0, 200.0):
    err=[]
    for c,(qe,qn) in zip(codes,q):
        m=s.topk_window(c, qe, qn, radius, k=1)
        err.append(np.linalg.norm(m.en[0]-[qe,qn]))
    err=np.array(err); out[f"window_{radius:g}m"]={"top1_within_25m": float((err<=25).mean()), "median_m": float(np.median(err))}
print(json.dumps(out))
