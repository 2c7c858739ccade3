"""``geoloc train``, ``geoloc eval`` and ``geoloc export``: the model's command line (torch is imported here only)."""

from __future__ import annotations

import argparse
import ast
import json
import sys
import tempfile
import time
from pathlib import Path


def _hw(text: str) -> tuple[int, int]:
    try:
        h, w = text.lower().split("x")
        return int(h), int(w)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW (e.g. 64x256), got {text!r}") from None


def _ints(text: str) -> list[int]:
    try:
        if "-" in text and "," not in text:
            a, b = text.split("-")
            return list(range(int(a), int(b) + 1))
        return [int(v) for v in text.split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seeds like 1,2,3 or 1-8, got {text!r}") from None


def _add_data_args(p, train: bool) -> None:
    p.add_argument("--data", choices=["synth", "cvusa", "cvact", "vigor", "university1652", "u1652", "npz"],
                   default="synth", help="synth worlds; a public dataset in its published layout (cvusa, cvact, vigor, "
                                         "university1652: --data-root); the University-1652 sample mosaics (u1652); "
                                         "PairArrays files (npz)")
    if train:
        p.add_argument("--seeds", type=_ints, default=[1, 2, 3, 4], help="synth: training world seeds")
        p.add_argument("--pairs-per-world", type=int, default=1500)
        p.add_argument("--max-per-place", type=int, default=0,
                       help="public datasets: at most this many training pairs per aerial image, evenly spread "
                            "(University-1652 has 54 drone views per building; 0: all)")
    p.add_argument("--val-seed", type=int, default=99, help="synth: a world seed never used in training")
    p.add_argument("--val-pairs", type=int, default=1000)
    p.add_argument("--val-world-size-m", type=float, default=None,
                   help="synth: side of the test world (default: --world-size-m)")
    p.add_argument("--val-min-separation-m", type=float, default=0.0,
                   help="synth: test places at least this far apart (distinct places, as CVUSA's; 0: anywhere, so "
                        "that many test places lie a few metres from another)")
    p.add_argument("--world-size-m", type=float, default=700.0)
    p.add_argument("--tile-size-m", type=float, default=50.0)
    p.add_argument("--cache-dir", default="runs/cache", help="synth: rendered pairs are cached here")
    p.add_argument("--data-root", default=None, help="cvusa, cvact, vigor, university1652: the dataset's folder "
                                                     "(see docs/model.md for each layout)")
    p.add_argument("--cvusa-root", default=None, help="cvusa: the same as --data-root (kept for old commands)")
    p.add_argument("--vigor-area", choices=["same", "cross"], default="same",
                   help="vigor: same-area (all four cities) or cross-area (train NewYork+Seattle, test SanFrancisco+"
                        "Chicago)")
    p.add_argument("--vigor-labels", default="splits", help="vigor: label folder (splits, or splits__corrected)")
    p.add_argument("--u1652-view", choices=["drone", "street"], default="drone",
                   help="university1652: the ground side of the pairs")
    p.add_argument("--load-workers", type=int, default=4, help="public datasets: image decoding threads")
    p.add_argument("--u1652-dir", default=None, help="u1652: folder of the two sample mosaics")
    p.add_argument("--u1652-val-cells", type=int, default=0,
                   help="u1652: hold out the last N training cells and evaluate on them instead of the test rows "
                        "(choosing a recipe without looking at the test split)")
    p.add_argument("--npz", default=None, help="npz: PairArrays file(s), train[,val]")


class _Defaults(dict):
    """Dataclass defaults read from source: attribute access, and None for a default that is not a literal."""

    __getattr__ = dict.get


def _literal_defaults(path: Path) -> dict[str, dict]:
    """``{class name: {field: default}}`` plus ``{"": {CONSTANT: value}}``: the literal values of a module's source,
    read with ``ast`` (the module is not imported)."""
    out: dict[str, dict] = {"": {}}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                out[""][node.targets[0].id] = ast.literal_eval(node.value)
            except (ValueError, TypeError, SyntaxError):
                pass
        elif isinstance(node, ast.ClassDef):
            fields = out.setdefault(node.name, {})
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name) and item.value is not None:
                    try:
                        fields[item.target.id] = ast.literal_eval(item.value)
                    except (ValueError, TypeError, SyntaxError):
                        pass
    return out


def config_defaults():
    """(ModelConfig(), TrainConfig(), AERIAL_PREPROCESSINGS) for the options' defaults.

    Why the fallback: net.py and train.py import torch, which a runtime-only install lacks, yet ``geoloc train
    --help`` must still print its usage with the real defaults; so without torch the same defaults are read from
    their source (they keep one home). Running the command then says which extra to install (see ``geoloc_node.cli``).
    """
    try:
        from .net import AERIAL_PREPROCESSINGS, ModelConfig
        from .train import TrainConfig

        return ModelConfig(), TrainConfig(), AERIAL_PREPROCESSINGS
    except ImportError:
        here = Path(__file__).parent
        net, train = _literal_defaults(here / "net.py"), _literal_defaults(here / "train.py")
        return (_Defaults(net.get("ModelConfig", {})), _Defaults(train.get("TrainConfig", {})),
                tuple(net[""].get("AERIAL_PREPROCESSINGS", ())))


def register(subparsers) -> None:
    m, t, aerial_preprocessings = config_defaults()
    # -- train
    p = subparsers.add_parser("train", help="train the cross-view hashing model",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _add_data_args(p, train=True)
    p.add_argument("--backbone", default=m.backbone, help="preset (vit_hybrid_pano, vit_tiny_pano, vit_micro, ...; "
                                                          "see docs/model.md) or any timm model name")
    p.add_argument("--backbone-kwargs", default="{}", help="JSON of extra timm.create_model arguments")
    p.add_argument("--bits", type=int, default=m.bits, choices=[64, 128, 256, 512])
    p.add_argument("--mode", choices=["panorama", "pinhole"], default=m.mode)
    p.add_argument("--hfov-deg", type=float, default=None)
    p.add_argument("--ground-hw", type=_hw, default=m.ground_hw)
    p.add_argument("--aerial-hw", type=_hw, default=m.aerial_hw)
    p.add_argument("--polar-hw", type=_hw, default=None, help="pinhole: full polar image (the sector is cut from it)")
    p.add_argument("--aerial-preprocess", choices=list(aerial_preprocessings) or None, default=m.aerial_preprocess,
                   help="polar transform, ground-plane projection into the ground camera's geometry, or raw tiles")
    p.add_argument("--share-weights", action=argparse.BooleanOptionalAction, default=m.share_weights,
                   help="one backbone for both branches (views that look alike: projected aerial tiles, drone and "
                        "satellite images)")
    p.add_argument("--pool-maps", type=int, default=m.pool_maps, help="spatial pooling maps of the hash head")
    p.add_argument("--pool-dim", type=int, default=m.pool_dim, help="token width before pooling (0: backbone's)")
    p.add_argument("--drop-path", type=float, default=m.drop_path)
    p.add_argument("--pretrained", default=None, help="local state_dict file for the backbone (never downloaded)")
    p.add_argument("--epochs", type=int, default=t.epochs)
    p.add_argument("--batch", type=int, default=t.batch)
    p.add_argument("--lr", type=float, default=t.lr)
    p.add_argument("--weight-decay", type=float, default=t.weight_decay)
    p.add_argument("--hard-negative-frac", type=float, default=t.hard_negative_frac)
    p.add_argument("--freeze-backbone", action="store_true", help="train only the hash heads")
    p.add_argument("--backbone-lr-mult", type=float, default=1.0, help="learning-rate factor of the backbone "
                                                                       "(< 1: gentle fine-tuning, batch norms frozen)")
    p.add_argument("--tile-jitter-m", type=float, default=0.0, help="synth: cut each training aerial tile afresh "
                                                                    "around its place moved up to this far, every "
                                                                    "time it is used (table tiles sit on a grid)")
    p.add_argument("--heading-bins", type=int, default=None, help="pinhole: codes per region-table tile (default "
                                                                  "8); with --tile-jitter-m the aerial sector is drawn "
                                                                  "up to half a bin off the camera heading")
    p.add_argument("--init", default=None, help="start from this checkpoint's weights (fine-tuning)")
    p.add_argument("--time-budget-min", type=float, default=0.0, help="stop cleanly after this many minutes")
    p.add_argument("--seed", type=int, default=t.seed)
    p.add_argument("--amp", choices=["auto", "bf16", "fp16", "off"], default=t.amp or "auto",
                   help="CUDA mixed precision: auto = bf16 where the GPU has it, else fp16 with a gradient scaler")
    p.add_argument("--threads", type=int, default=t.threads)
    p.add_argument("--out-dir", default=t.out_dir)
    p.add_argument("--no-resume", action="store_true")
    p.add_argument("--export-name", default=None, help="export the best checkpoint to ONNX + sidecar under this name")
    p.add_argument("--export-dir", default=None, help="where to export (default: --out-dir)")
    p.add_argument("--precision", default="fp16-weights", choices=["fp32", "fp16-weights", "int8"])
    p.set_defaults(func=cmd_train)
    # -- eval
    p = subparsers.add_parser("eval", help="evaluate a model: recall, localisation error, speed",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("model", help="model sidecar JSON (ONNX branches) or a training checkpoint (.pt)")
    _add_data_args(p, train=False)
    p.add_argument("--backend", default="onnxruntime", choices=["auto", "onnxruntime", "tensorrt", "torch"])
    p.add_argument("--table", action="store_true", help="synth: also build the full region table of the test world "
                                                        "(10 m stride) and localise every query against it")
    p.add_argument("--stride-m", type=float, default=10.0)
    p.add_argument("--json", action="store_true", help="print the JSON report to stdout")
    p.add_argument("--out-dir", default=None, help="write eval.json and eval.md here")
    p.add_argument("--threads", type=int, default=2)
    p.set_defaults(func=cmd_eval)
    # -- export
    p = subparsers.add_parser("export", help="export a trained model to ONNX",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("--out-dir", default="geoloc_node/models")
    p.add_argument("--name", default=None)
    p.add_argument("--precision", default="fp16-weights", choices=["fp32", "fp16-weights", "int8"])
    p.add_argument("--keep-checkpoint", action="store_true", help="name the checkpoint in the sidecar (torch "
                                                                  "backend)")
    p.set_defaults(func=cmd_export)


def _err(cmd: str, msg) -> int:
    print(f"geoloc {cmd}: {msg}", file=sys.stderr)
    return 2


def _val_world_m(args) -> float:
    return args.val_world_size_m or args.world_size_m


def load_pairs(args, cfg, split: str):
    """PairArrays for ``split`` ('train' or 'val') from the source the arguments name."""
    from . import data

    if args.data == "synth":
        if split == "train":
            return data.synth_pairs_cached(args.seeds, args.pairs_per_world, cfg, args.cache_dir, args.world_size_m,
                                           args.tile_size_m, workers=args.threads)
        return data.synth_pairs_cached([args.val_seed], args.val_pairs, cfg, args.cache_dir, _val_world_m(args),
                                       args.tile_size_m, min_separation_m=args.val_min_separation_m)
    if args.data in ("cvusa", "cvact", "vigor", "university1652"):
        from .datasets import load_view_set

        options = {"vigor": {"area": args.vigor_area, "label_dir": args.vigor_labels},
                   "university1652": {"view": args.u1652_view}}.get(args.data, {})
        root = args.data_root or (args.cvusa_root if args.data == "cvusa" else None)
        vs = load_view_set(args.data, root, split, **options)
        if vs.skipped:
            print(f"{vs.name} {vs.split}: {len(vs.skipped)} pairs skipped, an image missing (first: {vs.skipped[0]})",
                  file=sys.stderr)
        per_place = getattr(args, "max_per_place", 0) if split == "train" else 0
        return data.view_set_pairs_cached(vs, cfg, args.cache_dir, per_place, args.load_workers,
                                          progress=sys.stderr.isatty())
    if args.data == "u1652":
        return data.u1652_pairs("train" if split == "train" else "test", cfg, args.u1652_dir,
                                val_cells=args.u1652_val_cells)
    files = (args.npz or "").split(",")
    if not files[0]:
        raise ValueError("--data npz needs --npz train.npz[,val.npz]")
    f = files[0] if split == "train" or len(files) == 1 else files[1]
    return data.PairArrays.load(f)


def cmd_train(args) -> int:
    import torch

    from .net import ModelConfig
    from .train import TrainConfig, barrier, init_distributed, train

    try:
        kwargs = json.loads(args.backbone_kwargs)
        mcfg = ModelConfig(backbone=args.backbone, backbone_kwargs=kwargs, bits=args.bits, mode=args.mode,
                           hfov_deg=args.hfov_deg, ground_hw=args.ground_hw, aerial_hw=args.aerial_hw,
                           aerial_preprocess=args.aerial_preprocess, polar_hw=args.polar_hw,
                           share_weights=args.share_weights, pretrained_path=args.pretrained,
                           pool_maps=args.pool_maps, pool_dim=args.pool_dim, drop_path=args.drop_path,
                           tile_size_m=args.tile_size_m, heading_bins=args.heading_bins)
        tcfg = TrainConfig(epochs=args.epochs, batch=args.batch, lr=args.lr, weight_decay=args.weight_decay,
                           hard_negative_frac=args.hard_negative_frac, time_budget_min=args.time_budget_min,
                           seed=args.seed, threads=args.threads, out_dir=args.out_dir,
                           rot90_aug=args.aerial_preprocess == "raw", freeze_backbone=args.freeze_backbone,
                           # north-aligned panoramas turn with their raw aerial image (drone views have no north)
                           rot90_roll_ground=args.aerial_preprocess == "raw" and args.data in ("cvusa", "cvact",
                                                                                               "vigor"),
                           backbone_lr_mult=args.backbone_lr_mult, init_checkpoint=args.init, amp=args.amp)
    except (ValueError, json.JSONDecodeError) as exc:
        return _err("train", exc)
    # under torchrun: join the process group first; rank 0 reads (and renders or caches) the data while the others
    # wait, then they read its cache instead of all writing the same files at once
    world, rank, _ = init_distributed()
    main = rank == 0
    try:
        t0 = time.time()
        if not main:
            barrier()
        try:
            tr = load_pairs(args, mcfg, "train")
            va = load_pairs(args, mcfg, "val")
        finally:
            if main:
                barrier()
        if main:
            print(f"data: {len(tr)} training pairs, {len(va)} validation pairs ({time.time() - t0:.0f} s)"
                  + (f", {world} processes" if world > 1 else ""), file=sys.stderr)
    except (ValueError, FileNotFoundError) as exc:
        return _err("train", exc)
    sampler = None
    if args.tile_jitter_m > 0:
        if args.data != "synth":
            return _err("train", "--tile-jitter-m needs --data synth (the orthophotos of the training worlds)")
        from .data import JitteredAerial

        # a pinhole camera's heading falls anywhere inside a table bin: train on sectors up to half a bin off it
        half_bin = 180.0 / mcfg.table_heading_bins if mcfg.mode == "pinhole" else 0.0
        sampler = JitteredAerial(tr, mcfg, args.tile_jitter_m, args.world_size_m, args.tile_size_m, half_bin)
    last = train(mcfg, tcfg, tr, va, resume=not args.no_resume, log=lambda s: print(s, file=sys.stderr),
                 aerial_sampler=sampler)
    if world > 1:
        torch.distributed.destroy_process_group()
    if not main:
        return 0
    best = Path(args.out_dir) / "best.pt"
    print(f"checkpoints: {last} (last), {best} (best validation)")
    if args.export_name:
        from .export import export_model

        sidecar = export_model(best if best.exists() else last, args.export_dir or args.out_dir, args.export_name,
                               args.precision)
        print(f"exported {sidecar}")
    return 0


def _encoders_for(model_path, backend: str, threads: int, tmpdir: str):
    """(ground, aerial) encoders and the sidecar path; a checkpoint is exported to ONNX in ``tmpdir`` first."""
    from ..encoders import load_encoder

    path = Path(model_path)
    if path.suffix == ".pt":
        from .export import export_model

        path = export_model(path, tmpdir, "eval", precision="fp32")
    return (load_encoder(path, backend, branch="ground", threads=threads),
            load_encoder(path, backend, branch="aerial", threads=threads), path)


def cmd_eval(args) -> int:
    import numpy as np

    from ..encoders import ModelFileError
    from ..encoders.preprocess import to_nchw_float
    from .evaluate import markdown_table, retrieval_metrics, table_localisation
    from .net import ModelConfig

    with tempfile.TemporaryDirectory() as tmp:
        try:
            ge, ae, sidecar = _encoders_for(args.model, args.backend, args.threads, tmp)
            mcfg = ModelConfig.from_dict(ge.spec.extra.get("model_config", {}))
            pairs = load_pairs(args, mcfg, "val")
        except (ModelFileError, ValueError, FileNotFoundError) as exc:
            return _err("eval", exc)
        t = time.perf_counter()
        zg = ge.embed_preprocessed(to_nchw_float(pairs.ground))
        dt = time.perf_counter() - t
        za = ae.embed_preprocessed(to_nchw_float(pairs.aerial))
        m = retrieval_metrics(zg, za, pairs.en, pairs.place)
        m.update({"name": f"{ge.spec.name} on {pairs.name}", "model": str(args.model), "backend": ge.backend,
                  "codes_per_s": round(len(pairs) / dt, 1),
                  "model_bytes": {b: ge.spec.onnx_path(b).stat().st_size for b in ("ground", "aerial")},
                  "precision": ge.spec.precision})
        if args.table:
            if args.data != "synth":
                return _err("eval", "--table needs --data synth (positions on a world)")
            from ..synth.world import WorldConfig, make_world
            from ..table import open_table
            from ..table_builder import build_table_from_geotiff

            world = make_world(WorldConfig(size_m=_val_world_m(args), seed=args.val_seed))
            tif = world.write_geotiff(Path(tmp) / "world.tif")
            t = time.perf_counter()
            out = build_table_from_geotiff(tif, sidecar, Path(tmp) / "world.gltab", tile_size_m=args.tile_size_m,
                                           stride_m=args.stride_m, progress=False, backend=args.backend,
                                           threads=args.threads)
            build_s = time.perf_counter() - t
            table = open_table(out, expected_fingerprint=ge.aerial_fingerprint)
            loc = table_localisation(np.packbits(zg > 0, axis=1), pairs.en, table, query_frame=world.frame,
                                     query_headings=pairs.heading)
            loc["build_seconds"] = round(build_s, 1)
            m["table_localisation"] = loc
        ge.close()
        ae.close()
    md = markdown_table(m)
    if args.out_dir:
        d = Path(args.out_dir)
        d.mkdir(parents=True, exist_ok=True)
        (d / "eval.json").write_text(json.dumps(m, indent=1))
        (d / "eval.md").write_text(md)
    if args.json:
        print(json.dumps(m, indent=1))
    else:
        print(md)
    return 0


def cmd_export(args) -> int:
    from .export import export_model

    try:
        path = export_model(args.checkpoint, args.out_dir, args.name, args.precision,
                            keep_checkpoint=args.keep_checkpoint)
    except (FileNotFoundError, ValueError) as exc:
        return _err("export", exc)
    print(f"exported {path}")
    return 0
