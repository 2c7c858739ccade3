"""The training loop's promises: resume from last.pt, a clean stop on the time budget, fine-tuning from --init."""

import json

import pytest

torch = pytest.importorskip("torch")

from geoloc_node.model.train import TrainConfig, train  # noqa: E402

from .conftest import toy_pairs  # noqa: E402


@pytest.fixture(scope="module")
def pairs(tiny_cfg):
    return toy_pairs(1, 256, tiny_cfg), toy_pairs(2, 64, tiny_cfg)


def _tcfg(out, **kw) -> TrainConfig:
    base = dict(epochs=1, batch=64, lr=3e-3, out_dir=str(out), progress=False, threads=1, log_every=1,
                hard_negative_frac=0.0, same_place_m=0.0, heading_noise_deg=0.0)
    return TrainConfig(**{**base, **kw})


def _records(out) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_resume_continues_from_the_last_checkpoint(tmp_path, tiny_cfg, pairs):
    tr, va = pairs
    train(tiny_cfg, _tcfg(tmp_path, epochs=2, time_budget_min=1e-6), tr, va, log=lambda s: None)  # stops in epoch 1
    first = torch.load(tmp_path / "last.pt", weights_only=False)
    assert (first["epoch"], first["step"]) == (0, 1)
    logs = []
    train(tiny_cfg, _tcfg(tmp_path, epochs=2), tr, va, log=logs.append)
    assert any("resumed from" in s and "epoch 1" in s for s in logs)
    last = torch.load(tmp_path / "last.pt", weights_only=False)
    assert last["epoch"] == 1 and last["step"] == 1 + len(tr) // 64  # epoch 2 only, from step 1 on
    steps = [r["step"] for r in _records(tmp_path) if "loss" in r]
    assert steps == list(range(1, last["step"] + 1))  # one log, no step twice


def test_time_budget_stops_after_the_step_that_spends_it(tmp_path, tiny_cfg, pairs):
    tr, va = pairs
    logs = []
    train(tiny_cfg, _tcfg(tmp_path, epochs=50, time_budget_min=1e-6), tr, va, log=logs.append)
    ck = torch.load(tmp_path / "last.pt", weights_only=False)
    assert (ck["epoch"], ck["step"]) == (0, 1)
    assert (tmp_path / "best.pt").exists()  # validated on the way out
    assert any("time budget" in s for s in logs)


def test_init_starts_from_the_given_weights(tmp_path, tiny_cfg, pairs):
    tr, va = pairs
    base = train(tiny_cfg, _tcfg(tmp_path / "a"), tr, va, log=lambda s: None)
    logs = []
    # lr 0: fine-tuning changes nothing, so the run must end on exactly the weights it started from
    train(tiny_cfg, _tcfg(tmp_path / "b", lr=0.0, init_checkpoint=str(base)), tr, va, log=logs.append)
    before = torch.load(base, weights_only=False)["model"]
    after = torch.load(tmp_path / "b" / "last.pt", weights_only=False)["model"]
    params = [k for k in before if "running_" not in k and "num_batches" not in k]
    assert params and all(torch.equal(before[k], after[k]) for k in params)
    assert any("initialised from" in s for s in logs)

