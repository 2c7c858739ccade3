"""The cross-view hashing network: two timm backbones (ground view, aerial view) and a spatial hash head each.

Each branch: normalise -> backbone tokens (any timm model: ViT-like ``forward_features`` tokens, or a CNN feature map
flattened) -> layer norm -> spatial-aware pooling (K learned weightings of the token positions, as SAFA's spatial-aware
feature aggregation; the geometry of a north-aligned panorama and of a polar aerial view agree column for column, so
*where* a feature sits carries the signal) -> linear -> ``bits`` real values. Training relaxes the sign with tanh;
inference (and the ONNX export) returns the raw values whose signs are the code.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..codes import check_bits

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Named backbone settings. "vit_hybrid_pano" is the default and "vit_hybrid_slim_pano", its slimmer-stemmed variant,
#: the shipped models' network: timm's VisionTransformer on a small convolutional stem (see docs/model.md for the
#: comparison with the plain ViTs "vit_tiny_pano" & co.).
BACKBONE_PRESETS = {
    "vit_micro": ("vit_tiny_patch16_224", {"patch_size": 8, "embed_dim": 64, "depth": 2, "num_heads": 2}),
    "vit_tiny_pano": ("vit_tiny_patch16_224", {"patch_size": (8, 16), "embed_dim": 128, "depth": 4, "num_heads": 4}),
    "vit_tiny_pano_p8": ("vit_tiny_patch16_224", {"patch_size": 8, "embed_dim": 128, "depth": 4, "num_heads": 4}),
    "vit_small_pano": ("vit_tiny_patch16_224", {"patch_size": 8, "embed_dim": 192, "depth": 6, "num_heads": 3}),
    # The same ViT on a small convolutional stem instead of the linear patch projection: early convolutions make a
    # ViT train faster and more data-efficiently (Xiao et al., "Early convolutions help transformers see better",
    # NeurIPS 2021); three stride-2 3x3 convs give an 8x downsampled map, cut into 1x2 patches (same 128 tokens).
    "vit_conv_pano": ("vit_tiny_patch16_224", {"conv_stem": (24, 48, 96), "patch_size": (1, 2), "embed_dim": 128,
                                               "depth": 4, "num_heads": 4}),
    "vit_hybrid_pano": ("vit_tiny_patch16_224", {"conv_stem": (32, 64, 96, 128), "patch_size": 1, "embed_dim": 128,
                                                 "depth": 2, "num_heads": 4}),
    # vit_hybrid_pano with a 16-channel first conv: that layer runs at half resolution over the whole image and
    # dominated the training step on CPU; 16 channels cut the step from 0.68 to 0.39 s for 2 % fewer parameters
    # (docs/model.md, "Training time from scratch").
    "vit_hybrid_slim_pano": ("vit_tiny_patch16_224", {"conv_stem": (16, 48, 96, 128), "patch_size": 1,
                                                      "embed_dim": 128, "depth": 2, "num_heads": 4}),
    "vit_hybrid0_pano": ("vit_tiny_patch16_224", {"conv_stem": (32, 64, 96, 128), "patch_size": 1, "embed_dim": 128,
                                                  "depth": 0, "num_heads": 4}),
}


#: How the aerial tile is shown to the aerial branch: polar transform, the ground-plane projection into the ground
#: camera's geometry (see geoloc_node.encoders.preprocess), or the tile as it is.
AERIAL_PREPROCESSINGS = ("polar", "projective", "raw")


@dataclass
class ModelConfig:
    """Everything that defines the network's shape; stored in checkpoints and the export sidecar.

    backbone: a preset of ``BACKBONE_PRESETS`` or any timm model name (built without weights; ``backbone_kwargs`` go to
    ``timm.create_model``). mode: 'panorama' or 'pinhole' (``hfov_deg``). aerial_preprocess: 'polar' (the aerial tile is
    polar-transformed into a panorama-like view), 'projective' (drawn into the ground camera's geometry as a flat
    world would look) or 'raw'. pool_maps: learned position weightings of the hash head; 0 keeps every position
    (flatten: for views aligned pixel for pixel). share_weights: one backbone for both branches (useful when
    both views look alike, e.g. drone and satellite images).
    """

    backbone: str = "vit_hybrid_pano"
    backbone_kwargs: dict = field(default_factory=dict)
    bits: int = 256
    mode: str = "panorama"
    hfov_deg: float | None = None
    ground_hw: tuple[int, int] = (64, 256)
    aerial_hw: tuple[int, int] = (64, 256)
    aerial_preprocess: str = "projective"
    polar_src_px: int = 128
    polar_hw: tuple[int, int] | None = None  # pinhole: the full 360-degree polar image the sector is cut from
    heading_bins: int | None = None  # pinhole: codes per table tile (bin b at b*360/bins); None: 8 (panorama: 1)
    tile_size_m: float = 50.0  # ground size of an aerial tile (projective: metres matter; tables must agree)
    camera_height_m: float = 2.0  # projective: the ground camera's height above the road
    ceiling_m: float = 6.0  # projective: rows above the horizon are drawn on a plane this far above the camera
    share_weights: bool = True
    pool_maps: int = 0  # 0: every position keeps its own weights (flatten); K > 0: K learned position weightings
    pool_dim: int = 32  # project tokens to this width before pooling (0: keep the backbone width)
    drop_path: float = 0.0
    pretrained_path: str | None = None  # a local state_dict for the backbone(s); never downloaded

    def __post_init__(self):
        check_bits(self.bits)
        self.ground_hw = tuple(int(v) for v in self.ground_hw)
        self.aerial_hw = tuple(int(v) for v in self.aerial_hw)
        if self.polar_hw is not None:
            self.polar_hw = tuple(int(v) for v in self.polar_hw)
        if self.mode not in ("panorama", "pinhole"):
            raise ValueError(f"mode must be 'panorama' or 'pinhole', got {self.mode!r}")
        if self.mode == "pinhole" and not self.hfov_deg:
            raise ValueError("a pinhole model needs hfov_deg")
        if self.heading_bins is not None and (self.heading_bins < 1 or
                                              (self.mode == "panorama" and self.heading_bins != 1)):
            raise ValueError(f"heading_bins={self.heading_bins}: a panorama model has 1, a pinhole model >= 1")
        if self.aerial_preprocess not in AERIAL_PREPROCESSINGS:
            raise ValueError(f"aerial_preprocess must be one of {AERIAL_PREPROCESSINGS}, got "
                             f"{self.aerial_preprocess!r}")

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @property
    def table_heading_bins(self) -> int:
        """Codes per region-table tile: 1 for a panorama (its code covers every heading), else ``heading_bins``."""
        return 1 if self.mode == "panorama" else int(self.heading_bins or 8)

    def aerial_view(self):
        """The aerial preprocessing of this model (the same object the runtime encoders build from the sidecar)."""
        from ..encoders.preprocess import AerialView

        return AerialView(kind="resize" if self.aerial_preprocess == "raw" else self.aerial_preprocess,
                          input_hw=self.aerial_hw, hfov_deg=self.hfov_deg if self.mode == "pinhole" else None,
                          polar_src_px=self.polar_src_px, polar_hw=self.polar_hw, tile_size_m=self.tile_size_m,
                          camera_height_m=self.camera_height_m, ceiling_m=self.ceiling_m)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def create_backbone(name: str, img_hw: tuple[int, int], kwargs: dict | None = None, drop_path: float = 0.0):
    """A timm model without weights and without classifier, for images of ``img_hw``."""
    import timm

    kw = {}
    if name in BACKBONE_PRESETS:
        name, kw = BACKBONE_PRESETS[name]
        kw = dict(kw)
    kw.update(kwargs or {})
    stem = kw.pop("conv_stem", None)
    if stem:
        kw["embed_layer"] = functools.partial(_conv_stem_embed, widths=tuple(stem))
    base = dict(pretrained=False, num_classes=0, **kw)
    if drop_path:
        base["drop_path_rate"] = drop_path
    try:
        return timm.create_model(name, img_size=img_hw, **base)
    except TypeError:  # CNNs take no img_size
        return timm.create_model(name, **base)


def _conv_stem(widths: tuple[int, ...], in_chans: int = 3) -> nn.Sequential:
    """3x3 stride-2 conv + batch norm + ReLU per width: a 2**len(widths) downsampled feature map."""
    layers, c = [], in_chans
    for w in widths:
        layers += [nn.Conv2d(c, w, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
        c = w
    return nn.Sequential(*layers)


def _conv_stem_embed(img_size, patch_size, in_chans, embed_dim, widths, **kw):
    """timm's HybridEmbed (a CNN feature map cut into patches) on :func:`_conv_stem`: a ViT ``embed_layer``."""
    from timm.layers import HybridEmbed

    kw.pop("bias", None)
    return HybridEmbed(_conv_stem(widths, in_chans), img_size=img_size, patch_size=patch_size, in_chans=in_chans,
                       embed_dim=embed_dim, **kw)


class SpatialHashHead(nn.Module):
    """Tokens [B, T, C] -> K position weightings -> [B, K*C'] -> linear -> [B, bits].

    ``maps=0``: no pooling, every position keeps its own weights ([B, T*C'] -> linear): for inputs whose two views are
    aligned position by position (the ground-plane projection), where *where* a feature sits is the signal.
    """

    def __init__(self, tokens: int, dim: int, bits: int, maps: int = 8, proj_dim: int = 0):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.proj = nn.Linear(dim, proj_dim) if proj_dim else nn.Identity()
        d = proj_dim or dim
        self.pos_weights = nn.Parameter(torch.randn(maps, tokens) * 0.02 + 1.0 / tokens) if maps else None
        self.fc = nn.Linear((maps or tokens) * d, bits)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.proj(self.norm(tokens))
        if self.pos_weights is not None:
            x = torch.einsum("kt,btc->bkc", self.pos_weights, x)
        return self.fc(x.flatten(1))


class Branch(nn.Module):
    """One view: [B, 3, H, W] RGB in [0, 1] -> [B, bits] real values."""

    def __init__(self, backbone: nn.Module, img_hw: tuple[int, int], cfg: ModelConfig):
        super().__init__()
        self.backbone = backbone
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        with torch.no_grad():
            t = self.tokens(torch.zeros(1, 3, *img_hw))
        self.head = SpatialHashHead(t.shape[1], t.shape[2], cfg.bits, cfg.pool_maps, cfg.pool_dim)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        f = self.backbone.forward_features((x - self.mean) / self.std)
        if f.ndim == 4:  # CNN feature map [B, C, h, w]
            return f.flatten(2).transpose(1, 2)
        n_prefix = getattr(self.backbone, "num_prefix_tokens", 0)
        return f[:, n_prefix:] if n_prefix else f

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.tokens(x))


class CrossViewHasher(nn.Module):
    """Ground and aerial branches. ``forward(ground, aerial)`` gives both real-valued embeddings."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        g_backbone = create_backbone(cfg.backbone, cfg.ground_hw, cfg.backbone_kwargs, cfg.drop_path)
        if cfg.share_weights:
            if cfg.ground_hw != cfg.aerial_hw:
                raise ValueError("share_weights needs ground_hw == aerial_hw")
            a_backbone = g_backbone
        else:
            a_backbone = create_backbone(cfg.backbone, cfg.aerial_hw, cfg.backbone_kwargs, cfg.drop_path)
        if cfg.pretrained_path:
            load_pretrained(g_backbone, cfg.pretrained_path)
            if a_backbone is not g_backbone:
                load_pretrained(a_backbone, cfg.pretrained_path)
        self.ground = Branch(g_backbone, cfg.ground_hw, cfg)
        self.aerial = Branch(a_backbone, cfg.aerial_hw, cfg)

    def forward(self, ground: torch.Tensor, aerial: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.ground(ground), self.aerial(aerial)

    def n_params(self, branch: str | None = None) -> int:
        mods = [self] if branch is None else [getattr(self, branch)]
        return sum(p.numel() for m in mods for p in m.parameters())


def load_pretrained(backbone: nn.Module, path) -> None:
    """Load a local state_dict into a backbone (non-matching keys and shapes are skipped and counted)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"pretrained weights {path}: no such file (weights are never downloaded)")
    sd = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(sd, dict) and "state_dict" in sd:
        sd = sd["state_dict"]
    own = backbone.state_dict()
    ok = {k: v for k, v in sd.items() if k in own and own[k].shape == v.shape}
    backbone.load_state_dict(ok, strict=False)
    if not ok:
        raise ValueError(f"pretrained weights {path}: no tensor matches the backbone (wrong architecture?)")


def relaxed_codes(z: torch.Tensor) -> torch.Tensor:
    """The training-time relaxation of sign(z)."""
    return torch.tanh(z)


def hash_loss(zg: torch.Tensor, za: torch.Tensor, logit_scale: torch.Tensor, w_quant: float = 0.1,
              w_balance: float = 0.05, pos_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """Symmetric InfoNCE on the cosine of tanh-relaxed codes + quantisation + bit balance.

    The cosine of two +-1 codes of K bits is 1 - 2 * Hamming / K, so the contrastive term trains Hamming ranking
    directly. ``pos_mask`` (optional, [B, B] bool) marks extra pairs that are also true matches (e.g. two samples of
    the same place), removed from the negatives.
    """
    hg, ha = relaxed_codes(zg), relaxed_codes(za)
    sim = F.normalize(hg, dim=1) @ F.normalize(ha, dim=1).t()
    logits = sim * logit_scale.exp().clamp(max=100.0)
    if pos_mask is not None:
        eye = torch.eye(len(sim), dtype=torch.bool, device=sim.device)
        logits = logits.masked_fill(pos_mask & ~eye, float("-inf"))
    target = torch.arange(len(sim), device=sim.device)
    nce = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))
    quant = 0.5 * ((hg.abs() - 1).pow(2).mean() + (ha.abs() - 1).pow(2).mean())
    balance = 0.5 * (hg.mean(0).pow(2).mean() + ha.mean(0).pow(2).mean())
    loss = nce + w_quant * quant + w_balance * balance
    return loss, {"nce": float(nce.detach()), "quant": float(quant.detach()), "balance": float(balance.detach())}
