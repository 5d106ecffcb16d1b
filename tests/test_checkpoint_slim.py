"""A frozen backbone loaded from a weights file is stored in checkpoints by identity (name, file, sha256), not by
weights, and rebuilt from the file on load: resuming such a checkpoint ends exactly as the uninterrupted run,
``encode`` gives the codes a full (old-style) checkpoint gives, and other weights at load time are one clear error."""
import json
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from hashbench.codes import load_codes
from hashbench.lightning_cli import run_cli
from lightning_modules.backbones import BackboneMismatchError, build_backbone
from lightning_modules.base import FROZEN_BACKBONE
from lightning_modules.bihalf import BiHalfNet as BiHalf
from tests.data_fixtures import write_cifar
from tests.test_cli import EXP, REPO
from tests.toy import ToyData

BIN = Path(sys.executable).parent


def write_weights(path: Path, seed: int) -> Path:
    """A tiny_cnn weights file (what ImageNet weights are to VGG16 here)."""
    torch.manual_seed(seed)
    torch.save(build_backbone("tiny_cnn", pretrained=False).prefix.state_dict(), path)
    return path


def _bihalf(weights) -> BiHalf:
    return BiHalf(bits=16, backbone="tiny_cnn", pretrained=False, weights_path=str(weights), optimizer="adam", lr=1e-3)


def _fit(model, tmp_path) -> Path:
    trainer = L.Trainer(max_epochs=1, limit_train_batches=2, accelerator="cpu", logger=False, limit_val_batches=0,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(model, ToyData())
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    return path


def test_checkpoint_leaves_out_the_frozen_backbone_and_load_rebuilds_it(tmp_path):
    weights = write_weights(tmp_path / "w.pt", seed=1)
    trained = _bihalf(weights)
    path = _fit(trained, tmp_path)
    ckpt = torch.load(path, weights_only=True)
    assert not [k for k in ckpt["state_dict"] if k.startswith("backbone.")]
    assert ckpt[FROZEN_BACKBONE]["name"] == "tiny_cnn" and ckpt[FROZEN_BACKBONE]["weights_file"] == str(weights)
    assert any(k.startswith("head.") for k in ckpt["state_dict"]) and ckpt["optimizer_states"]
    back = BiHalf.load_from_checkpoint(path, map_location="cpu")
    for (k, a), (_, b) in zip(trained.state_dict().items(), back.state_dict().items()):
        assert torch.equal(a, b), k


def test_trained_or_random_backbones_stay_in_the_checkpoint(tmp_path):
    model = BiHalf(bits=16, backbone="tiny_cnn", pretrained=False)  # random init: no file rebuilds it
    ckpt = torch.load(_fit(model, tmp_path), weights_only=True)
    assert FROZEN_BACKBONE not in ckpt and any(k.startswith("backbone.prefix") for k in ckpt["state_dict"])


def test_other_backbone_weights_at_load_are_one_clear_error(tmp_path):
    weights = write_weights(tmp_path / "w.pt", seed=1)
    path = _fit(_bihalf(weights), tmp_path)
    write_weights(weights, seed=2)  # the file was replaced since training
    with pytest.raises(BackboneMismatchError, match="sha256.*Put the original weights file"):
        BiHalf.load_from_checkpoint(path, map_location="cpu")


# ---- as users type it: fit, a kill, --ckpt_path last, encode, test --------------------------------------------------
EPOCHS = ["--trainer.check_val_every_n_epoch", "1", "--trainer.limit_train_batches", "3", "--trainer.max_epochs", "2"]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    base = tmp_path_factory.mktemp("slim")
    write_cifar(str(base / "cifar"), train_per_class=15, test_per_class=12)
    weights = write_weights(base / "tiny_cnn_weights.pt", seed=0)
    args = ["--config", str(EXP / "cifar_cib.yaml"), "--data.root", str(base / "cifar"), "--data.download", "false",
            "--data.scale", "0.01", "--data.image_size", "32", "--data.num_workers", "0", "--data.batch_size", "8",
            "--model.backbone", "tiny_cnn", "--model.pretrained", "false", "--model.weights_path", str(weights),
            "--model.hidden_dim", "64", "--trainer.logger", "false", "--trainer.accelerator", "cpu",
            "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(base / "runs")]
    return base, args, weights


def console(script, *args, cwd) -> subprocess.CompletedProcess:
    exe = BIN / script
    cmd = ([str(exe)] if exe.exists() else [sys.executable, "-m", "hashbench"]) + [str(a) for a in args]
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def _final(cli) -> dict:
    m = cli.trainer.callback_metrics
    return {k: float(m[k]) for k in ("val/mAP", "train/loss_epoch")}


def test_slim_checkpoint_resumes_like_the_uninterrupted_run_and_encodes_like_a_full_one(work, monkeypatch):
    """fit killed in epoch 1 → --ckpt_path last → the uninterrupted run's numbers; encode of the slim checkpoint =
    encode of the same state written with the backbone inside (the old format, which still loads); search works."""
    base, args, weights = work
    monkeypatch.chdir(base)
    whole = _final(run_cli(["fit", *args, *EPOCHS, "--run_name", "whole"]))

    kill = json.dumps({"class_path": "tests.run_helpers.KillAt", "init_args": {"epoch": 1, "step": 1}})
    killed = console("lightning", "fit", *args, *EPOCHS, "--run_name", "slim", f"--trainer.callbacks+={kill}", cwd=base)
    assert killed.returncode == -9, killed.stderr[-2000:]
    last = base / "runs" / "slim" / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, weights_only=True)
    assert FROZEN_BACKBONE in ckpt and not [k for k in ckpt["state_dict"] if k.startswith("backbone.")]

    resumed = run_cli(["fit", *args, *EPOCHS, "--run_name", "slim", "--ckpt_path", "last"])
    assert resumed.trainer.current_epoch == 2 and _final(resumed) == whole

    # the same trained state written the old way (backbone weights inside): encode gives the same codes
    ckpt = torch.load(last, weights_only=True)
    file_state = torch.load(weights, weights_only=True)
    ckpt["state_dict"].update({f"backbone.prefix.{k}": v for k, v in file_state.items()})
    del ckpt[FROZEN_BACKBONE]
    torch.save(ckpt, base / "full.ckpt")
    codes = {}
    for name, path in (("slim", "last"), ("full", base / "full.ckpt")):
        out = console("hashbench", "encode", *args, "--run_name", "slim", "--ckpt_path", path, "--split", "query",
                      "--out", base / f"codes-{name}", cwd=base)
        assert out.returncode == 0, out.stderr[-3000:]
        codes[name] = load_codes(base / f"codes-{name}")
    assert len(codes["slim"]) > 0 and np.array_equal(codes["slim"].packed, codes["full"].packed)

    # search loads the model that made the index from the slim checkpoint named in its meta.json
    from PIL import Image
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(base / "query.png")
    found = console("hashbench", "search", "--index", base / "codes-slim", "--query", base / "query.png", "-k", "3",
                    "--trainer.accelerator", "cpu", cwd=base)
    assert found.returncode == 0 and "Traceback" not in found.stderr, found.stderr[-3000:]


def test_test_with_other_backbone_weights_is_one_error_line(work, tmp_path):
    """The checkpoint's hyper-parameters name the weights file; another machine (or a replaced file) has other bytes
    there: `test` stops with one line naming the file and both digests."""
    base, args, _ = work
    own = write_weights(tmp_path / "own.pt", seed=3)
    fitted = console("lightning", "fit", *args, "--model.weights_path", own, "--trainer.max_epochs", "1",
                     "--trainer.limit_train_batches", "2", "--run_name", "mismatch", cwd=base)
    assert fitted.returncode == 0, fitted.stderr[-3000:]
    write_weights(own, seed=5)
    out = console("lightning", "test", *args, "--model.weights_path", own, "--run_name", "mismatch",
                  "--ckpt_path", "last", cwd=base)
    err = out.stderr
    assert out.returncode == 2, (out.returncode, err[-3000:])
    assert err.count("hashbench: error:") == 1 and "Traceback" not in err, err[-3000:]
    line = err[err.index("hashbench: error:"):]
    assert "sha256" in line and str(own) in line and "Put the original weights file" in line, line


def test_every_methods_on_load_checkpoint_calls_the_base_first():
    """A method that overrides on_load_checkpoint without super() would load a slim checkpoint without its backbone."""
    import ast
    missing = []
    for path in sorted((REPO / "lightning_modules").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name in ("on_load_checkpoint", "on_save_checkpoint") \
                    and path.name != "base.py":
                calls = [c for c in ast.walk(node) if isinstance(c, ast.Call) and isinstance(c.func, ast.Attribute)
                         and c.func.attr == node.name and isinstance(c.func.value, ast.Call)
                         and getattr(c.func.value.func, "id", None) == "super"]
                if not calls:
                    missing.append(f"{path.name}:{node.lineno} {node.name}")
    assert not missing, f"call super().<hook>(checkpoint) in: {missing}"
