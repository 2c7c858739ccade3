"""The distributed engine of ``geoloc build-table --ray``: Ray Data encodes the shards, this process keeps them.

A dataset of the pending shard ids goes through ``map_batches`` with a pool of encoder actors: each actor opens the
tile source and loads the model once (in ``__init__``), then reads, warps and encodes one shard per call, exactly as
the plain engine does (:func:`.build_shards.encode_shard`). The codes come back to the driver through Ray's object
store, and the driver writes each shard file, so workers need no write access to the output (only read access to
the orthophoto and the model, at the same path or URL). With GPUs in the cluster each actor takes one
(``num_gpus=1``) and the encoder backend picks TensorRT or CUDA there.

Ray is imported here only: the runtime path and the node never load it (``pip install -e '.[cluster]'``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

_RESULT_KEYS = ("shard", "ids", "codes", "lat", "lon", "counts")


class ShardEncoder:
    """A Ray Data actor: one tile source and one encoder for its lifetime, one shard per row."""

    def __init__(self, recipe: dict, model_path: str, backend: str, threads: int, bins: int, batch: int):
        from .build_shards import open_source
        from .encoders import load_encoder

        self.source = open_source(recipe)
        self.encoder = load_encoder(model_path, backend=backend, branch="aerial", threads=threads)
        self.bins, self.batch = bins, batch

    def __call__(self, rows: dict) -> dict:
        from .build_shards import encode_shard

        out = {k: [] for k in _RESULT_KEYS}
        for shard in np.asarray(rows["shard"]).tolist():
            arrays = encode_shard(self.source, int(shard), self.encoder, self.bins, self.batch).arrays()
            for k in _RESULT_KEYS:
                out[k].append(arrays[k])
        # shards hold different numbers of tiles: ragged columns go as object arrays (pickled by Ray)
        return {k: _objects(v) if k in ("ids", "codes", "lat", "lon", "counts") else np.asarray(v)
                for k, v in out.items()}


def _objects(values: list) -> np.ndarray:
    a = np.empty(len(values), dtype=object)
    a[:] = values
    return a


def encode_shards_on_ray(recipe: dict, model_path, pending: list[int], cfg, bins: int, save,
                         on_positions) -> tuple[int, float]:
    """Encode ``pending`` shards with Ray Data; ``save`` gets each :class:`.build_shards.ShardResult` as it arrives
    (in any order), ``on_positions`` its tile positions. Returns the number of encoder actors and the seconds from
    Ray being up to the last shard (actor start and model load included, Ray's own start not)."""
    try:
        import ray
    except ImportError:
        from .errors import TableBuildError

        raise TableBuildError("--ray needs Ray Data: pip install -e '.[cluster]' (ray[data])") from None
    from .build_shards import ShardResult

    _init_ray(ray, cfg.ray)
    try:
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        threads = max(1, int(cfg.threads))
        workers = cfg.ray_workers or (gpus or max(1, int(resources.get("CPU", 1)) // threads))
        t0 = time.perf_counter()
        if not pending:
            return workers, 0.0
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # our own progress line counts tiles; Ray's would count shards
        ctx.execution_options.preserve_order = False  # shard files are kept by id: arrival order is free
        ds = ray.data.from_items([{"shard": int(s)} for s in pending], override_num_blocks=len(pending))
        ds = ds.map_batches(
            ShardEncoder, batch_size=1, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=0 if gpus else threads, num_gpus=1 if gpus else 0,
            fn_constructor_kwargs={"recipe": recipe, "model_path": str(model_path), "backend": cfg.backend,
                                   "threads": threads, "bins": bins, "batch": cfg.batch})
        for row in ds.iter_rows():
            result = ShardResult.from_arrays(row)
            save(result)
            on_positions(result.counts.positions)
        return workers, time.perf_counter() - t0
    finally:
        if cfg.ray == "local":
            ray.shutdown()


def _init_ray(ray, address: str) -> None:
    """Connect to ``address``, or start a Ray on this machine ("local"). The workers import this very copy of
    geoloc_node (shipped as a py_module), so a cluster needs no install of it, and a checkout runs its own code."""
    import geoloc_node

    package = str(Path(geoloc_node.__file__).resolve().parent)
    runtime_env = {"py_modules": [package], "env_vars": {"OMP_NUM_THREADS": "1"}}
    if address == "local":
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no phoning home from a build tool
        ray.init(include_dashboard=False, log_to_driver=False, runtime_env=runtime_env, configure_logging=False)
    else:
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=False)
