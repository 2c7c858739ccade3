"""Multi-process training (what torchrun runs): two CPU processes over gloo must end on identical weights.

Each process gets its own seed (so its own initial weights and augmentation) and its own share of the batches; only
DistributedDataParallel's broadcast at the start and its gradient averaging keep them equal. Without DDP, or with a
parameter left out of it (the loss's temperature once was), the two would drift apart within a step.
"""

import json
import socket
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
mp = pytest.importorskip("torch.multiprocessing")

from geoloc_node.model.net import ModelConfig  # noqa: E402
from geoloc_node.model.train import TrainConfig  # noqa: E402

from .conftest import HW, toy_pairs  # noqa: E402

CFG = ModelConfig(backbone="vit_micro", bits=64, ground_hw=HW, aerial_hw=HW, aerial_preprocess="polar",
                  polar_src_px=64, share_weights=False, pool_maps=4, pool_dim=0)
STEPS = 3  # per epoch and process: 2 processes x 3 batches of 32 = the 192 toy pairs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out_dir: str, result_dir: str, epochs: int) -> None:
    import os

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank))
    from geoloc_node.model.train import train

    pairs = toy_pairs(1, STEPS * 32 * world, CFG)
    seen = []

    def sampler(idx, rng):  # records which pairs this process trained on, and hands back the cached aerial views
        seen.append(np.asarray(idx).tolist())
        return pairs.aerial[idx]

    tcfg = TrainConfig(epochs=epochs, batch=32, lr=3e-3, out_dir=out_dir, progress=False, threads=1, log_every=1,
                       hard_negative_frac=0.0, same_place_m=0.0, heading_noise_deg=0.0, seed=0)

    def finish(model, logit_scale):
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        torch.save({"params": {n: p.detach().cpu() for n, p in model.named_parameters()}, "state": state,
                    "logit_scale": logit_scale, "seen": seen}, f"{result_dir}/rank{rank}.pt")

    train(CFG, tcfg, pairs, None, log=lambda s: None, aerial_sampler=sampler, on_finish=finish)
    torch.distributed.destroy_process_group()


def _run(tmp_path, epochs: int):
    port = _free_port()
    mp.spawn(_worker, args=(2, port, str(tmp_path / "run"), str(tmp_path), epochs), nprocs=2, join=True)
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1)]


def test_two_gloo_processes_end_on_identical_weights(tmp_path):
    t0 = time.perf_counter()
    r0, r1 = _run(tmp_path, epochs=2)
    wall = time.perf_counter() - t0
    # each process trained on its own batches: together they cover every batch of the epoch once
    assert len(r0["seen"]) == len(r1["seen"]) == 2 * STEPS
    first_epoch = [set(b) for b in r0["seen"][:STEPS]] + [set(b) for b in r1["seen"][:STEPS]]
    assert all(not (a & b) for i, a in enumerate(first_epoch) for b in first_epoch[i + 1:])
    assert set().union(*first_epoch) == set(range(2 * STEPS * 32))
    # and yet the weights agree to the last bit: the gradients were averaged (the temperature's too)
    for name, p0 in r0["params"].items():
        assert torch.equal(p0, r1["params"][name]), name
    assert r0["logit_scale"] == r1["logit_scale"]
    # training moved them: a run that did nothing would also "agree"
    ck = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert ck["step"] == 2 * STEPS and ck["world_size"] == 2
    saved = ck["model"]
    assert all(torch.equal(saved[k], r0["state"][k]) for k in saved)  # rank 0 saved what it ended with
    from geoloc_node.model.net import CrossViewHasher
    from geoloc_node.model.train import seed_everything

    seed_everything(0)  # rank 0's initial weights (train seeds each process with seed + rank before building)
    fresh = dict(CrossViewHasher(CFG).named_parameters())
    assert any(not torch.equal(fresh[n].detach(), p) for n, p in r0["params"].items())
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 2 * STEPS and np.mean(losses[-STEPS:]) < np.mean(losses[:STEPS])
    assert wall < 120, f"2-process DDP run took {wall:.0f} s"


def test_rot90_turns_a_north_aligned_panorama_with_its_raw_aerial_image():
    from geoloc_node.model.train import augment

    cfg = ModelConfig(backbone="vit_micro", bits=64, ground_hw=(4, 16), aerial_hw=(8, 8), aerial_preprocess="raw")
    tcfg = TrainConfig(rot90_aug=True, rot90_roll_ground=True, flip_aug=False, color_jitter=0.0,
                       heading_noise_deg=0.0)
    g = torch.zeros(1, 3, 4, 16)
    g[..., 0] = 1.0  # a landmark due north: column 0 of a north-aligned panorama
    a = torch.zeros(1, 3, 8, 8)
    a[..., 0, 3:5] = 1.0  # the same landmark at the top (north) edge of the aerial image
    seen = set()
    for seed in range(40):
        g2, a2 = augment(g, a, cfg, tcfg, torch.Generator().manual_seed(seed))
        # the aerial landmark's azimuth from the image centre, clockwise from north (row 0 = north)
        rows, cols = np.nonzero(a2[0, 0].numpy())
        az_aerial = np.degrees(np.arctan2(cols.mean() - 3.5, 3.5 - rows.mean())) % 360
        col = int(np.nonzero(g2[0, 0, 0].numpy())[0][0])
        az_ground = 360.0 * col / 16
        assert az_ground == pytest.approx(az_aerial, abs=1e-6), seed
        seen.add(round(az_aerial))
    assert seen == {0, 90, 180, 270}
