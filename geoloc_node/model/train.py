"""Training: contrastive hashing of (ground, aerial) pairs, with checkpoints, resume, logs and optional DDP.

Recipe: AdamW, linear warm-up then cosine decay, symmetric InfoNCE on tanh-relaxed codes with a learned temperature,
plus quantisation and bit-balance terms (:func:`.net.hash_loss`). Augmentation keeps the two views consistent: a
panorama and its polar aerial view are rolled by the same azimuth and mirrored together (a rotated or mirrored world is
still a world), colours jitter per view, and the ground view gets a few degrees of heading noise. Geographic hard
negatives: a share of each batch is made of places near each other (same world), and pairs closer than
``same_place_m`` are not used as each other's negatives.

Several GPUs or machines: run under ``torchrun`` (DistributedDataParallel over the gloo or NCCL backend; every process
draws the same epoch of batches and a ``DistributedSampler`` deals them out, so each trains on its own share; ``batch``
is per process and each process's InfoNCE takes its negatives from its own batch; rank 0 validates, logs and saves).
Mixed precision on CUDA (``amp``): bf16 autocast where the GPU has bf16, else fp16 with a gradient scaler.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch
from torch.utils.data.distributed import DistributedSampler

from .data import PairArrays
from .evaluate import retrieval_metrics
from .net import CrossViewHasher, ModelConfig, hash_loss


@dataclass
class TrainConfig:
    """Optimisation settings (the model's shape is :class:`.net.ModelConfig`)."""

    epochs: int = 30
    batch: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_frac: float = 0.05
    w_quant: float = 0.1
    w_balance: float = 0.05
    init_temperature: float = 0.07
    hard_negative_frac: float = 0.5  # share of batches built from geographic neighbours (needs positions)
    hard_negative_k: int = 8  # neighbours per anchor in such a batch
    same_place_m: float = 5.0  # closer pairs are not each other's negatives
    roll_aug: bool = True  # roll ground + polar aerial together (panorama, polar)
    flip_aug: bool = True
    color_jitter: float = 0.2
    heading_noise_deg: float = 3.0
    rot90_aug: bool = False  # raw aerial (drone/satellite): rotate the aerial view by multiples of 90 degrees
    rot90_roll_ground: bool = False  # ... and turn a north-aligned ground panorama with it (VIGOR, CVUSA, CVACT raw)
    freeze_backbone: bool = False  # train only the hash heads (a pretrained backbone on very little data)
    init_checkpoint: str | None = None  # start from these weights (same model config), fresh optimiser
    backbone_lr_mult: float = 1.0  # < 1: fine-tune a pretrained backbone gently (its batch norms stay frozen)
    seed: int = 0
    threads: int = 2
    time_budget_min: float = 0.0  # stop cleanly after this many minutes (0: no limit)
    eval_every: int = 1  # epochs
    out_dir: str = "runs/model"
    log_every: int = 20
    progress: bool = True
    amp: str = "auto"  # CUDA only: 'auto' (bf16 if the GPU has it, else fp16 + grad scaler), 'bf16', 'fp16', 'off'
    extra: dict = field(default_factory=dict)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


AMP_MODES = ("auto", "bf16", "fp16", "off")


def _dist_info() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return world, rank, local


def init_distributed(timeout_min: float = 60.0) -> tuple[int, int, int]:
    """(world size, rank, local rank) from torchrun's environment; joins the process group when there are several
    processes (NCCL on GPUs, gloo on CPUs). The timeout is long because rank 0 validates and saves while the others
    wait at the epoch's barrier (a large validation split takes minutes)."""
    world, rank, local = _dist_info()
    if world > 1 and not torch.distributed.is_initialized():
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(local)
        torch.distributed.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(minutes=timeout_min))
    return world, rank, local


def barrier() -> None:
    """Wait for every process (no-op in a single process)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


def _amp_dtype(mode: str, device: str):
    """The autocast dtype, or None for full precision (always on the CPU: training there stays as it was)."""
    if mode not in AMP_MODES:
        raise ValueError(f"amp must be one of {AMP_MODES}, got {mode!r}")
    if not device.startswith("cuda") or mode == "off":
        return None
    if mode == "bf16" or (mode == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16  # V100, T4 and other GPUs without bf16: fp16 needs the gradient scaler


class _Objective(torch.nn.Module):
    """The network and the loss's learned temperature in one module, so that DDP averages the temperature's
    gradient across processes like every other parameter's (left outside, each rank's temperature would drift
    apart). The checkpoint keeps them apart as before: ``model`` and ``logit_scale``."""

    def __init__(self, model: CrossViewHasher, logit_scale: torch.nn.Parameter):
        super().__init__()
        self.model = model
        self.logit_scale = logit_scale

    def forward(self, g, a):
        zg, za = self.model(g, a)
        return zg, za, self.logit_scale


def pair_mask(pairs: PairArrays, bidx, tcfg: TrainConfig, device) -> torch.Tensor | None:
    """[B, B] bool: ground i and aerial j of a batch that are also a match, so not a negative. Places closer than
    ``same_place_m`` (same group), pairs sharing their aerial image (``place``), and aerial images among ground i's
    semi-positives (``semi``)."""
    mask = None
    if pairs.en is not None and tcfg.same_place_m > 0:
        en = torch.from_numpy(pairs.en[bidx]).to(device)
        grp = torch.from_numpy(pairs.group[bidx] if pairs.group is not None
                               else np.zeros(len(bidx), np.int64)).to(device)
        mask = (torch.cdist(en, en) < tcfg.same_place_m) & (grp[:, None] == grp[None, :])
    if pairs.place is not None:
        place = torch.from_numpy(pairs.place[bidx]).to(device)
        same = place[:, None] == place[None, :]
        if pairs.semi is not None:
            semi = torch.from_numpy(pairs.semi[bidx]).to(device)  # [B, K]
            same |= (semi[:, :, None] == place[None, None, :]).any(dim=1)
        mask = same if mask is None else mask | same
    return mask


# -- augmentation -------------------------------------------------------------------------------------------------
def augment(g: torch.Tensor, a: torch.Tensor, mcfg: ModelConfig, tcfg: TrainConfig, gen: torch.Generator):
    """g, a: float [B,3,H,W] in [0,1]. Consistent geometric augmentation + per-view photometric jitter."""
    b = g.shape[0]
    aligned = mcfg.aerial_preprocess in ("polar", "projective") and mcfg.mode == "panorama"
    if aligned and tcfg.roll_aug:
        frac = torch.rand(b, generator=gen)
        g = _roll_rows(g, (frac * g.shape[-1]).long())
        a = _roll_rows(a, (frac * a.shape[-1]).long())
    if tcfg.flip_aug:  # a mirrored world is still a world: mirror both views together
        flip = torch.rand(b, generator=gen) < 0.5
        g = torch.where(flip[:, None, None, None], g.flip(-1), g)
        a = torch.where(flip[:, None, None, None], a.flip(-1), a)
    if mcfg.aerial_preprocess == "raw" and tcfg.rot90_aug:
        k = int(torch.randint(0, 4, (1,), generator=gen))
        a = torch.rot90(a, k, dims=(-2, -1))  # counter-clockwise: what was at azimuth t is now at t - 90 k
        if tcfg.rot90_roll_ground:  # so a north-aligned panorama's columns move back by a quarter turn per k
            g = torch.roll(g, shifts=-k * g.shape[-1] // 4, dims=-1)
    if aligned and tcfg.heading_noise_deg > 0:
        shift = torch.randn(b, generator=gen) * tcfg.heading_noise_deg / 360.0 * g.shape[-1]
        g = _roll_rows(g, shift.round().long())
    if tcfg.color_jitter > 0:
        g = _jitter(g, tcfg.color_jitter, gen)
        a = _jitter(a, tcfg.color_jitter, gen)
    return g, a


def _roll_rows(x: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    w = x.shape[-1]
    idx = (torch.arange(w)[None, :] - shifts[:, None]) % w  # [B, W]
    return torch.gather(x, -1, idx[:, None, None, :].expand(-1, x.shape[1], x.shape[2], -1))


def _jitter(x: torch.Tensor, s: float, gen: torch.Generator) -> torch.Tensor:
    b = x.shape[0]
    bright = 1 + (torch.rand(b, 1, 1, 1, generator=gen) * 2 - 1) * s
    contrast = 1 + (torch.rand(b, 1, 1, 1, generator=gen) * 2 - 1) * s
    colour = 1 + (torch.rand(b, 3, 1, 1, generator=gen) * 2 - 1) * s * 0.5
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return ((x - mean) * contrast + mean * bright).mul(colour).clamp(0, 1)


# -- batches ------------------------------------------------------------------------------------------------------
def make_batches(pairs: PairArrays, batch: int, tcfg: TrainConfig, rng: np.random.Generator) -> list[np.ndarray]:
    """One epoch of index batches: random ones, and (with positions) some made of geographic neighbours."""
    n = len(pairs)
    perm = rng.permutation(n)
    batches = [perm[i:i + batch] for i in range(0, n - batch + 1, batch)] or [perm]
    if pairs.en is None or tcfg.hard_negative_frac <= 0 or n < 4 * batch:
        return batches
    n_hard = int(len(batches) * tcfg.hard_negative_frac)
    group = pairs.group if pairs.group is not None else np.zeros(n, np.int64)
    k = tcfg.hard_negative_k
    for j in range(n_hard):
        anchors = rng.choice(n, size=max(1, batch // k), replace=False)
        idx = []
        for a in anchors:
            same = np.where(group == group[a])[0]
            d = np.linalg.norm(pairs.en[same] - pairs.en[a], axis=1)
            near = same[np.argsort(d)[: 4 * k]]
            idx.extend(rng.choice(near, size=min(k, len(near)), replace=False).tolist())
        idx = np.unique(np.asarray(idx))
        if len(idx) >= batch // 2:
            batches[j] = idx[:batch]
    order = rng.permutation(len(batches))
    return [batches[i] for i in order]


def _to_tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a).permute(0, 3, 1, 2).float().div_(255.0)


@torch.no_grad()
def embed_arrays(model: CrossViewHasher, pairs: PairArrays, device="cpu", batch: int = 128):
    model.eval()
    zg, za = [], []
    for i in range(0, len(pairs), batch):
        zg.append(model.ground(_to_tensor(pairs.ground[i:i + batch]).to(device)).float().cpu())
        za.append(model.aerial(_to_tensor(pairs.aerial[i:i + batch]).to(device)).float().cpu())
    return torch.cat(zg).numpy(), torch.cat(za).numpy()


# -- the loop -----------------------------------------------------------------------------------------------------
def train(mcfg: ModelConfig, tcfg: TrainConfig, train_pairs: PairArrays, val_pairs: PairArrays | None = None,
          resume: bool = True, log=print, aerial_sampler=None, on_finish=None) -> Path:
    """Train and return the path of the final checkpoint (``out_dir/last.pt``; ``best.pt`` is the best validation).

    ``aerial_sampler(indices, rng)`` (optional, e.g. :class:`.data.JitteredAerial`) draws the aerial views of a batch
    afresh instead of taking ``train_pairs.aerial``. ``on_finish(model, logit_scale)`` (optional) is called on every
    process with the trained network before returning (the DDP test compares the processes' weights with it).

    Under torchrun every process calls this with the same pairs and configs."""
    world, rank, local = init_distributed()
    device = f"cuda:{local}" if torch.cuda.is_available() else "cpu"
    amp_dtype = _amp_dtype(tcfg.amp, device)
    torch.set_num_threads(tcfg.threads)
    seed_everything(tcfg.seed + rank)
    out = Path(tcfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    main = rank == 0

    model = CrossViewHasher(mcfg).to(device, memory_format=torch.channels_last)
    if tcfg.init_checkpoint:
        init = torch.load(tcfg.init_checkpoint, map_location=device, weights_only=False)
        model.load_state_dict(init["model"])
        if main:
            log(f"initialised from {tcfg.init_checkpoint} (epoch {init.get('epoch', '?')})")
    if tcfg.freeze_backbone:
        for br in (model.ground, model.aerial):
            for p in br.backbone.parameters():
                p.requires_grad_(False)
    logit_scale = torch.nn.Parameter(torch.tensor(math.log(1.0 / tcfg.init_temperature), device=device))
    groups: dict[tuple[bool, bool], list] = {}
    for n_, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_backbone = ".backbone." in n_ and tcfg.backbone_lr_mult != 1.0
        no_wd = p.ndim < 2 or "pos_embed" in n_ or "pos_weights" in n_
        groups.setdefault((is_backbone, no_wd), []).append(p)
    groups.setdefault((False, True), []).append(logit_scale)
    opt = torch.optim.AdamW([{"params": ps, "weight_decay": 0.0 if no_wd else tcfg.weight_decay,
                              "lr": tcfg.lr * (tcfg.backbone_lr_mult if bb else 1.0)}
                             for (bb, no_wd), ps in groups.items()], lr=tcfg.lr)
    # make_batches gives max(1, N // batch) batches an epoch; the DistributedSampler deals them out in equal shares
    # (padding with repeats), so every process takes the same number of steps (DDP needs that) and one process
    # takes them all, exactly as before DDP
    steps_per_epoch = math.ceil(max(1, len(train_pairs) // tcfg.batch) / world)
    total = steps_per_epoch * tcfg.epochs
    warm = max(1, int(total * tcfg.warmup_frac))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / max(1, total)))))
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    start_epoch, step, best = 0, 0, -1.0
    ck_path = out / "last.pt"
    if resume and ck_path.exists():
        ck = torch.load(ck_path, map_location=device, weights_only=False)
        if ck.get("model_config") == mcfg.to_dict():
            model.load_state_dict(ck["model"])
            opt.load_state_dict(ck["optimizer"])
            sched.load_state_dict(ck["scheduler"])
            if ck.get("grad_scaler"):
                scaler.load_state_dict(ck["grad_scaler"])
            logit_scale.data.fill_(ck["logit_scale"])
            start_epoch, step, best = ck["epoch"] + 1, ck["step"], ck.get("best", -1.0)
            if main:
                log(f"resumed from {ck_path} at epoch {start_epoch}")
                if ck.get("world_size", 1) != world:
                    log(f"note: {ck_path} was written by {ck.get('world_size', 1)} process(es), this run has {world}: "
                        "the remaining epochs take other step counts and the schedule stretches to match")
        elif main:
            log(f"not resuming: {ck_path} has another model config")
    net = _Objective(model, logit_scale)
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(net, device_ids=[local] if device != "cpu" else None)
    metrics_file = open(out / "metrics.jsonl", "a") if main else None
    t_start = time.time()
    gen = torch.Generator().manual_seed(tcfg.seed + 1000 * rank)
    stopped_early = False
    for epoch in range(start_epoch, tcfg.epochs):
        rng = np.random.default_rng(tcfg.seed + 7 * epoch)
        epoch_batches = make_batches(train_pairs, tcfg.batch, tcfg, rng)  # the same list on every process (same rng)
        shard = DistributedSampler(range(len(epoch_batches)), num_replicas=world, rank=rank, shuffle=False)
        batches = [epoch_batches[i] for i in shard]
        net.train()
        if tcfg.freeze_backbone or tcfg.backbone_lr_mult < 1.0:  # keep batch-norm statistics as pretrained
            model.ground.backbone.eval()
            model.aerial.backbone.eval()
        it = batches
        bar = None
        if main and tcfg.progress:
            from tqdm import tqdm

            bar = tqdm(batches, desc=f"epoch {epoch + 1}/{tcfg.epochs}", unit="batch", leave=False, file=sys.stderr)
            it = bar
        run_loss = 0.0
        for bidx in it:
            g = _to_tensor(train_pairs.ground[bidx])
            a = _to_tensor(train_pairs.aerial[bidx] if aerial_sampler is None else aerial_sampler(bidx, rng))
            g, a = augment(g, a, mcfg, tcfg, gen)
            # channels-last: oneDNN's (and cuDNN's) fast convolution layout (2-core VM: an epoch 224 s instead of 236 s)
            g, a = (x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last) for x in (g, a))
            pos_mask = pair_mask(train_pairs, bidx, tcfg, device)
            with torch.autocast("cuda", dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None):
                zg, za, scale = net(g, a)
            loss, parts = hash_loss(zg.float(), za.float(), scale, tcfg.w_quant, tcfg.w_balance, pos_mask)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()  # the scaler is a no-op unless fp16 autocast runs
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 5.0)
            scaler.step(opt)
            scaler.update()
            sched.step()
            step += 1
            lv = float(loss.detach())
            run_loss = 0.9 * run_loss + 0.1 * lv if step > 1 else lv
            if bar is not None:
                bar.set_postfix(loss=f"{run_loss:.3f}", T=f"{1 / logit_scale.exp().item():.3f}")
            if main and step % tcfg.log_every == 0:
                rec = {"step": step, "epoch": epoch, "loss": lv, **parts,
                       "lr": sched.get_last_lr()[0], "temperature": float(1 / logit_scale.detach().exp()),
                       "elapsed_s": round(time.time() - t_start, 1)}
                metrics_file.write(json.dumps(rec) + "\n")
                metrics_file.flush()
            if tcfg.time_budget_min and _agree(time.time() - t_start > tcfg.time_budget_min * 60, world, device):
                stopped_early = True
                break
        if bar is not None:
            bar.close()
        val = None
        if main and val_pairs is not None and ((epoch + 1) % tcfg.eval_every == 0 or epoch + 1 == tcfg.epochs
                                               or stopped_early):
            zg_, za_ = embed_arrays(model, val_pairs, device)
            val = retrieval_metrics(zg_, za_, val_pairs.en, val_pairs.place)
            rec = {"epoch": epoch, "step": step, "val_hamming_R@1": val["hamming"]["R@1"],
                   "val_hamming_R@1%": val["hamming"]["R@1%"], "val_cosine_R@1": val["cosine"]["R@1"],
                   "elapsed_s": round(time.time() - t_start, 1)}
            metrics_file.write(json.dumps(rec) + "\n")
            metrics_file.flush()
            log(f"epoch {epoch + 1}: loss {run_loss:.3f}, val Hamming R@1 {val['hamming']['R@1']:.3f} "
                f"R@1% {val['hamming']['R@1%']:.3f} (cosine R@1 {val['cosine']['R@1']:.3f}), "
                f"{time.time() - t_start:.0f} s")
        if main:
            ck = {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                  "logit_scale": float(logit_scale.detach()), "epoch": epoch, "step": step, "best": best,
                  "grad_scaler": scaler.state_dict() if scaler.is_enabled() else None, "world_size": world,
                  "model_config": mcfg.to_dict(), "train_config": dataclasses.asdict(tcfg),
                  "metrics": {"val": val} if val else {}}
            score = val["hamming"]["R@1"] if val else -1.0
            if val and score >= best:
                ck["best"] = best = score
                _save(ck, out / "best.pt")
            _save(ck, ck_path)
        barrier()  # the others wait for rank 0's validation and checkpoint: no process runs an epoch ahead
        if stopped_early:
            if main:
                log(f"time budget of {tcfg.time_budget_min} min reached after epoch {epoch + 1}, step {step}")
            break
    if metrics_file:
        metrics_file.close()
    barrier()
    if on_finish is not None:
        on_finish(model, float(logit_scale.detach()))
    return ck_path


def _agree(flag: bool, world: int, device) -> bool:
    """True on every process if it is true on any (each process reads its own clock; all must stop at one step)."""
    if world == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return bool(t.item() > 0)


def _save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)
