"""Benchmark the deployed hashing model against timm peers: file size, ONNX Runtime CPU latency, int8 agreement.

    python benchmarks/bench_model.py [--model geoloc_node/models/synth_pano256.json] [--threads 2] [--json out.json]

Measures, on this machine and in one run (so the ratios are fair even on a loaded CPU):

* the shipped ground and aerial ONNX files: size, batch-1 latency (median of ``--repeat`` runs, ``--threads`` intra-op
  threads), batched throughput;
* an fp32 and a dynamic-int8 version of the ground branch (made from the shipped file): size, latency, and the share
  of code bits that agree with the shipped model on real inputs (cached synthetic panoramas when present, else the
  University-1652 sample drone views);
* peers built from timm *without weights* at the same input size, exported the same way: ConvNeXt-Base (the
  Sample4Geo backbone) and the R50+ViT-B/16 hybrid (the backbone of the source paper's L2LTR): parameters, fp32 size,
  latency, and the ratios to ours.
"""

from __future__ import annotations

import argparse
import glob
import json
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PEERS = {"convnext_base": "ConvNeXt-Base (Sample4Geo)", "vit_base_r50_s16_224": "R50+ViT-B/16 hybrid (L2LTR/paper)"}


def session(path, threads):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def latency_ms(sess, shape, repeat):
    name = sess.get_inputs()[0].name
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    for _ in range(3):
        sess.run(None, {name: x})
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        sess.run(None, {name: x})
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), min(times)


def fp32_from_fp16_weights(src, dst):
    """Fold the fp16->fp32 Cast nodes of an ``fp16-weights`` export back into fp32 initialisers."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(src))
    inits = {i.name: i for i in m.graph.initializer}
    keep_nodes, new_inits = [], []
    used = set()
    for node in m.graph.node:
        if node.op_type == "Cast" and len(node.input) == 1 and node.input[0] in inits:
            arr = numpy_helper.to_array(inits[node.input[0]]).astype(np.float32)
            new_inits.append(numpy_helper.from_array(arr, node.output[0]))
            used.add(node.input[0])
        else:
            keep_nodes.append(node)
    rest = [i for i in m.graph.initializer if i.name not in used]
    del m.graph.initializer[:]
    m.graph.initializer.extend(rest + new_inits)
    del m.graph.node[:]
    m.graph.node.extend(keep_nodes)
    onnx.save(m, str(dst))
    return Path(dst)


def real_inputs(hw, n=256):
    from geoloc_node.encoders.preprocess import resize_batch, to_nchw_float

    files = sorted(glob.glob(str(ROOT / "runs" / "cache" / "synth_*.npz")))
    if files:
        with np.load(files[-1]) as z:
            g = z["ground"][:n]
        return to_nchw_float(resize_batch(g, hw)), f"synthetic panoramas ({Path(files[-1]).name})"
    from geoloc_node.model.data import u1652_cells

    drone, _ = u1652_cells()
    return to_nchw_float(resize_batch(drone[:n], hw)), "University-1652 sample drone views"


def export_peer(name, hw, out):
    import timm
    import torch

    kw = {"img_size": hw} if "vit" in name else {}
    m = timm.create_model(name, pretrained=False, num_classes=0, **kw).eval()
    n_params = sum(p.numel() for p in m.parameters())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m, (torch.rand(1, 3, *hw),), str(out), input_names=["image"], output_names=["f"],
                          opset_version=17, dynamic_axes={"image": {0: "b"}}, dynamo=False)
    return n_params


def main(argv=None) -> int:
    from geoloc_node.codes import pack_signs
    from geoloc_node.encoders.spec import read_spec

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=50)
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--json", default=None, help="write the results here too")
    args = ap.parse_args(argv)
    if args.model is None:
        from geoloc_node.models import shipped_model_path

        args.model = shipped_model_path()
    spec = read_spec(args.model)
    hw = tuple(spec.ground.input_hw)
    res = {"model": str(args.model), "precision": spec.precision, "input_hw": list(hw), "threads": args.threads,
           "bits": spec.bits, "branches": {}}
    for b in ("ground", "aerial"):
        p = spec.onnx_path(b)
        s = session(p, args.threads)
        med, best = latency_ms(s, (1, 3, *spec.branch(b).input_hw), args.repeat)
        bmed, _ = latency_ms(s, (32, 3, *spec.branch(b).input_hw), max(3, args.repeat // 10))
        res["branches"][b] = {"bytes": p.stat().st_size, "MB": round(p.stat().st_size / 1e6, 2),
                              "latency_b1_ms_median": round(med, 2), "latency_b1_ms_min": round(best, 2),
                              "batch32_ms_per_image": round(bmed / 32, 2)}
    x, source = real_inputs(hw)
    with tempfile.TemporaryDirectory() as tmp:
        g = spec.onnx_path("ground")
        fp32 = fp32_from_fp16_weights(g, Path(tmp) / "g32.onnx") if spec.precision == "fp16-weights" else g
        from onnxruntime.quantization import QuantType, quantize_dynamic

        q = Path(tmp) / "g8.onnx"
        quantize_dynamic(str(fp32), str(q), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"])
        ref = pack_signs(session(g, args.threads).run(None, {"image": x})[0])
        variants = {}
        for name, path in (("fp32", fp32), ("int8-dynamic", q)):
            s = session(path, args.threads)
            codes = pack_signs(s.run(None, {"image": x})[0])
            ref32 = pack_signs(session(fp32, args.threads).run(None, {"image": x})[0])
            med, _ = latency_ms(s, (1, 3, *hw), args.repeat)
            variants[name] = {"MB": round(Path(path).stat().st_size / 1e6, 2), "latency_b1_ms_median": round(med, 2),
                              "bits_agree_with_shipped": round(float(1 - np.unpackbits(codes ^ ref).mean()), 5),
                              "bits_agree_with_fp32": round(float(1 - np.unpackbits(codes ^ ref32).mean()), 5)}
        res["ground_variants"] = variants
        res["agreement_inputs"] = f"{len(x)} {source}"
        if not args.no_peers:
            ours = res["branches"]["ground"]
            peers = {}
            for name, label in PEERS.items():
                out = Path(tmp) / f"{name}.onnx"
                n_params = export_peer(name, hw, out)
                med, _ = latency_ms(session(out, args.threads), (1, 3, *hw), max(5, args.repeat // 5))
                size = out.stat().st_size
                peers[name] = {"label": label, "params": n_params, "MB_fp32": round(size / 1e6, 1),
                               "latency_b1_ms_median": round(med, 1),
                               "size_ratio_vs_ours": round(size / ours["bytes"], 1),
                               "latency_ratio_vs_ours": round(med / ours["latency_b1_ms_median"], 1)}
            res["peers"] = peers
    print(json.dumps(res, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
