"""scripts/train_shipped_models.sh, the one command that reproduces the shipped models, stays in step with the
`geoloc train` CLI and with what the shipped sidecars record about their own training."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from geoloc_node.models import MODELS_DIR, SHIPPED

pytest.importorskip("torch")  # the train extra: `geoloc train`'s parser lives beside the training code

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "train_shipped_models.sh"


def _recorded_commands(tmp_path, which: str) -> list[list[str]]:
    """Run the script with a fake `geoloc` (a test seam) that only records its arguments."""
    log = tmp_path / "calls.jsonl"
    fake_geoloc = tmp_path / "fake_geoloc"
    fake_geoloc.write_text(f"#!{sys.executable}\nimport json, sys\n"
                           f"open({str(log)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n")
    fake_geoloc.chmod(0o755)
    subprocess.run(["bash", str(SCRIPT), which], check=True, env={**os.environ, "GEOLOC": str(fake_geoloc)})
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_the_script_refuses_an_unknown_model():
    r = subprocess.run(["bash", str(SCRIPT), "fisheye"], capture_output=True, text=True,
                       env={**os.environ, "GEOLOC": "/bin/false"})
    assert r.returncode == 2 and "usage" in r.stderr


@pytest.mark.parametrize("mode", sorted(SHIPPED))
def test_the_script_reproduces_each_shipped_sidecar(tmp_path, mode):
    from geoloc_node.cli import build_parser

    calls = _recorded_commands(tmp_path, mode)
    assert len(calls) == 2 and all(c[0] == "train" for c in calls)
    parser = build_parser("train")
    stage1, stage2 = (parser.parse_args(c) for c in calls)
    name = SHIPPED[mode].removesuffix(".json")
    spec = json.loads((MODELS_DIR / SHIPPED[mode]).read_text())
    training = spec["training"]

    assert stage1.export_name is None and stage2.export_name == name
    assert Path(stage2.export_dir).resolve() == MODELS_DIR.resolve()
    assert stage2.init == str(Path(stage1.out_dir) / "best.pt")
    # The run folders sit under $RUNS (the shipped files may come from a run beside them, RUNS=runs/x): compare the
    # run folder's name, not where $RUNS was.
    assert Path(training["init_checkpoint"]).parts[-2:] == Path(stage2.init).parts[-2:]
    assert (stage2.epochs, stage2.lr, stage2.seed, stage2.batch, Path(stage2.out_dir).name) == (
        training["epochs"], training["lr"], training["seed"], training["batch"], Path(training["out_dir"]).name)
    for args in (stage1, stage2):  # both stages build the same network as the shipped one
        assert args.backbone == spec["model_config"]["backbone"]
        assert json.loads(args.backbone_kwargs) == spec["model_config"]["backbone_kwargs"]
        assert args.mode == spec["mode"]
        assert list(args.ground_hw) == spec["ground"]["input_hw"]
        assert args.aerial_preprocess == spec["aerial"]["preprocess"]
        if mode == "pinhole":
            assert args.hfov_deg == spec["hfov_deg"] and args.heading_bins == spec["heading_bins"]
