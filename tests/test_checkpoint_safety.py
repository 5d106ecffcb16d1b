"""Checkpoints and codes folders as users hand them to the console commands: a crafted pickle runs nothing, a
checkpoint of another method or code length is refused before training, flipped bytes are caught by the checksum,
and a full or read-only disk is one clear line. Every case runs the console command as typed, on a tiny MNIST."""
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from hashbench.codes import save_codes
from tests.data_fixtures import CreatesFile, write_mnist_idx

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
RUN = "mnist-cifar_like-dch-16b-seed0"


def tiny(root) -> list:
    return ["--data.root", str(root), "--data.download", "false", "--data.scale", "0.01", "--data.image_size", "32",
            "--data.num_workers", "0", "--data.batch_size", "8", "--data.val_queries", "5",
            "--model.backbone", "tiny_cnn", "--model.pretrained", "false", "--trainer.accelerator", "cpu",
            "--trainer.limit_train_batches", "2", "--trainer.enable_progress_bar", "false"]


def console(script: str, *args, cwd, ulimit_kib=None) -> subprocess.CompletedProcess:
    """``<script> args...`` as a user types it (``ulimit -f`` first when asked: writes past it fail with EFBIG).
    TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 turns every torch.load that leaves weights_only to torch's default into a
    full unpickler, so only explicitly data-only loads pass these tests."""
    exe = BIN / script
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "hashbench"]
    cmd += [str(a) for a in args]
    if ulimit_kib is not None:
        cmd = ["bash", "-c", f'ulimit -f {int(ulimit_kib)}; exec "$@"', "bash", *cmd]
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "WANDB_MODE": "disabled", "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1",
           "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def one_error(out: subprocess.CompletedProcess, *words: str) -> str:
    err = out.stderr
    assert out.returncode == 2, (out.returncode, err[-3000:])
    assert err.count("hashbench: error:") == 1 and "Traceback" not in err, err[-3000:]
    line = err[err.index("hashbench: error:"):]
    for w in words:
        assert w in line, line
    return line


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One epoch of DCH, 16 bits, as `lightning fit` writes it (its config's W&B logger, W&B disabled)."""
    base = tmp_path_factory.mktemp("ckpt_safety")
    write_mnist_idx(str(base / "mnist"), train_per_class=12, test_per_class=4)
    out = console("lightning", "fit", "--config", "mnist_dch.yaml", *tiny(base / "mnist"), "--model.bits", "16",
                  "--trainer.max_epochs", "1", cwd=base)
    assert out.returncode == 0, out.stderr[-3000:]
    return base


@pytest.fixture()
def work(trained, tmp_path):
    """A private copy of the trained run (tests damage it)."""
    shutil.copytree(trained / "runs", tmp_path / "runs")
    os.symlink(trained / "mnist", tmp_path / "mnist")
    return tmp_path


def crafted_checkpoint(real: Path, out: Path, marker: Path) -> Path:
    """A real checkpoint with one more entry whose unpickling calls open(marker, 'w')."""
    ckpt = torch.load(real, weights_only=True)
    ckpt["callbacks"]["evil"] = CreatesFile(str(marker))
    torch.save(ckpt, out)
    assert zipfile.is_zipfile(out)
    return out


def last(base: Path, run: str = RUN) -> Path:
    return base / "runs" / run / "checkpoints" / "last.ckpt"


# ---- 1. no code runs from a checkpoint or a codes folder ------------------------------------------------------
@pytest.mark.parametrize("command", ["fit", "validate", "test"])
def test_a_crafted_checkpoint_runs_nothing_in_the_lightning_commands(work, command):
    marker = work / "pwned"
    evil = crafted_checkpoint(last(work), work / "evil.ckpt", marker)
    out = console("lightning", command, "--config", "mnist_dch.yaml", *tiny(work / "mnist"), "--model.bits", "16",
                  "--trainer.max_epochs", "2", "--run_name", "other", "--ckpt_path", evil, cwd=work)
    assert not marker.exists()
    one_error(out, "evil.ckpt", "refused")


def test_a_crafted_checkpoint_runs_nothing_in_encode(work):
    marker = work / "pwned"
    evil = crafted_checkpoint(last(work), work / "evil.ckpt", marker)
    out = console("hashbench", "encode", "--config", "mnist_dch.yaml", *tiny(work / "mnist"), "--model.bits", "16",
                  "--ckpt_path", evil, "--split", "query", "--out", work / "codes", cwd=work)
    assert not marker.exists()
    one_error(out, "evil.ckpt", "refused")
    assert not (work / "codes" / "codes.npy").exists()


def test_crafted_codes_arrays_run_nothing_in_evaluate(tmp_path):
    marker = tmp_path / "pwned"
    rng = np.random.default_rng(0)
    for role, n in (("query", 4), ("database", 12)):
        save_codes(tmp_path / "codes" / role, rng.integers(0, 2, (n, 16)) * 2 - 1, np.eye(4)[rng.integers(0, 4, n)])
    labels = np.empty(4, dtype=object)
    labels[:] = [CreatesFile(str(marker))] * 4
    np.save(tmp_path / "codes" / "query" / "labels.npy", labels, allow_pickle=True)
    out = console("hashbench", "evaluate", "--codes", tmp_path / "codes", "--top-k", "5", cwd=tmp_path)
    assert not marker.exists()
    one_error(out, "labels.npy", "Python objects")


def test_search_runs_nothing_from_the_checkpoint_an_index_names(work):
    marker = work / "pwned"
    evil = crafted_checkpoint(last(work), work / "evil.ckpt", marker)
    index = work / "index"
    rng = np.random.default_rng(0)
    save_codes(index, rng.integers(0, 2, (12, 16)) * 2 - 1, np.eye(10)[rng.integers(0, 10, 12)],
               meta={"checkpoint": str(evil)})  # meta.json of an index someone handed over
    import yaml
    config = yaml.safe_load((work / "runs" / RUN / "config.yaml").read_text())
    for fit_only in ("ckpt_path", "weights_only"):  # as encode writes it: the run's config without fit's options
        config.pop(fit_only, None)
    (index / "config.yaml").write_text(yaml.safe_dump(config))
    img = work / "query.png"
    from PIL import Image
    Image.fromarray(np.zeros((28, 28, 3), np.uint8)).save(img)
    out = console("hashbench", "search", "--index", index, "--query", img, "-k", "3", "--trainer.accelerator", "cpu",
                  cwd=work)
    assert not marker.exists()
    one_error(out, "evil.ckpt", "refused")


# ---- 2. a checkpoint of another method or code length ----------------------------------------------------------
def test_a_checkpoint_of_another_method_is_refused_before_training(work):
    out = console("lightning", "fit", "--config", "mnist_cib.yaml", *tiny(work / "mnist"), "--model.bits", "16",
                  "--trainer.max_epochs", "2", "--ckpt_path", last(work), cwd=work)
    one_error(out, "DCH", "CIBHash", "method DCH vs CIBHash")
    assert not list((work / "runs").glob("*cib*/checkpoints/*.ckpt"))  # nothing trained in the CIBHash folder


def test_a_checkpoint_of_another_code_length_is_refused_before_training(work):
    out = console("lightning", "fit", "--config", "mnist_dch.yaml", *tiny(work / "mnist"), "--model.bits", "32",
                  "--trainer.max_epochs", "2", "--ckpt_path", last(work), cwd=work)
    one_error(out, "bits 16 vs 32")
    assert not list((work / "runs").glob("*-32b-*/checkpoints/*.ckpt"))


def test_encode_with_a_checkpoint_of_another_code_length_is_the_same_one_error(work):
    out = console("hashbench", "encode", "--config", "mnist_dch.yaml", *tiny(work / "mnist"), "--model.bits", "32",
                  "--ckpt_path", last(work), "--split", "query", "--out", work / "codes", cwd=work)
    one_error(out, "bits 16 vs 32", "--config")


# ---- 3. integrity ------------------------------------------------------------------------------------------------
def flip_tensor_bytes(path: Path) -> None:
    """Flip 8 bytes in the middle of the checkpoint's largest tensor (the zip directory stays valid)."""
    with zipfile.ZipFile(path) as z:
        info = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    raw = bytearray(path.read_bytes())
    h = info.header_offset
    start = h + 30 + int.from_bytes(raw[h + 26:h + 28], "little") + int.from_bytes(raw[h + 28:h + 30], "little")
    for i in range(start + info.file_size // 2, start + info.file_size // 2 + 8):
        raw[i] ^= 0xFF
    path.write_bytes(bytes(raw))


def test_flipped_bytes_in_last_ckpt_stop_the_resume_and_name_a_checkpoint_that_verifies(work):
    ckpt = last(work)
    assert (ckpt.parent / "last.ckpt.sha256").is_file()
    shutil.copy(ckpt, ckpt.parent / "best-epoch=0.ckpt")  # an older checkpoint with its own checksum
    shutil.copy(ckpt.parent / "last.ckpt.sha256", ckpt.parent / "best-epoch=0.ckpt.sha256")
    (ckpt.parent / "best-epoch=0.ckpt.sha256").write_text(
        (ckpt.parent / "last.ckpt.sha256").read_text().replace("last.ckpt", "best-epoch=0.ckpt"))
    flip_tensor_bytes(ckpt)
    damaged = ckpt.read_bytes()
    out = console("lightning", "fit", "--config", "mnist_dch.yaml", *tiny(work / "mnist"), "--model.bits", "16",
                  "--trainer.max_epochs", "2", "--ckpt_path", "last", cwd=work)
    one_error(out, "is damaged", "best-epoch=0.ckpt", "--ckpt_path")
    assert ckpt.read_bytes() == damaged  # no training wrote a new one


def test_a_checkpoint_without_a_checksum_file_still_resumes_with_one_note(work):
    (last(work).parent / "last.ckpt.sha256").unlink()
    out = console("lightning", "fit", "--config", "mnist_dch.yaml", *tiny(work / "mnist"), "--model.bits", "16",
                  "--trainer.max_epochs", "2", "--ckpt_path", "last", cwd=work)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stderr.count("has no checksum file") == 1
    assert (last(work).parent / "last.ckpt.sha256").is_file()  # the new last.ckpt has one
    assert torch.load(last(work), weights_only=True)["epoch"] == 1


def test_two_processes_write_a_checkpoint_that_verifies_and_resumes(work):
    """ddp_spawn hands the workers' weights back through the same checkpoint plugin; rank 0 writes the checksum."""
    args = ["fit", "--config", "mnist_dch.yaml", *tiny(work / "mnist"), "--model.bits", "16", "--run_name", "ddp",
            "--trainer.devices", "2", "--trainer.strategy", "ddp_spawn"]
    first = console("lightning", *args, "--trainer.max_epochs", "1", cwd=work)
    assert first.returncode == 0 and "error" not in first.stderr, first.stderr[-3000:]
    again = console("lightning", *args, "--trainer.max_epochs", "2", "--ckpt_path", "last", cwd=work)
    assert again.returncode == 0 and "error" not in again.stderr, again.stderr[-3000:]
    ckpt = last(work, "ddp")
    import hashlib
    assert (ckpt.parent / "last.ckpt.sha256").read_text().split()[0] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert torch.load(ckpt, weights_only=True)["epoch"] == 1


# ---- 4. a full or read-only disk -------------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["ENOSPC", "EFBIG"])
def test_a_full_disk_while_saving_is_one_line_and_keeps_the_previous_checkpoint(work, how):
    """Real write errors, as root too: ENOSPC from /dev/full (the file the save writes first is a link to it), or
    EFBIG from ``ulimit -f`` below the checkpoint's size."""
    ckpt = last(work)
    before = ckpt.read_bytes()
    limit = None
    if how == "ENOSPC":
        os.symlink("/dev/full", ckpt.parent / "last.ckpt.partial")
    else:
        limit = len(before) // 2048
    out = console("lightning", "fit", "--config", "mnist_dch.yaml", *tiny(work / "mnist"), "--model.bits", "16",
                  "--trainer.max_epochs", "2", "--ckpt_path", "last", cwd=work, ulimit_kib=limit)
    one_error(out, "could not write checkpoint", str(ckpt), "intact", "--ckpt_path last")
    assert ckpt.read_bytes() == before and not list(ckpt.parent.glob("*.partial"))
    import hashlib
    assert (ckpt.parent / "last.ckpt.sha256").read_text() == f"{hashlib.sha256(before).hexdigest()}  last.ckpt\n"


def test_a_read_only_run_folder_is_refused_before_training(work):
    """/sys refuses to create anything, as root too (chmod does not stop root)."""
    ro = Path("/sys/hashbench-runs")
    try:
        ro.mkdir()
    except OSError:
        pass
    else:  # pragma: no cover - a writable /sys
        ro.rmdir()
        pytest.skip("/sys is writable here")
    out = console("lightning", "fit", "--config", "mnist_dch.yaml", *tiny(work / "mnist"), "--model.bits", "16",
                  "--trainer.max_epochs", "1", "--trainer.default_root_dir", ro, cwd=work)
    one_error(out, "is not writable", str(ro), "--trainer.default_root_dir")


# ---- 5. run folders ----------------------------------------------------------------------------------------------
def test_a_run_with_wandb_disabled_keeps_its_metrics_in_the_run_folder(trained):
    files = list((trained / "runs" / RUN).glob("csv/version_*/metrics.csv"))
    assert len(files) == 1
    header, *rows = files[0].read_text().splitlines()
    assert "train/loss_epoch" in header.split(",") and rows


def test_seed_everything_true_names_the_run_after_the_seed_used(work):
    out = console("lightning", "fit", "--config", "mnist_dch.yaml", *tiny(work / "mnist"), "--model.bits", "8",
                  "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1", "--seed_everything", "true",
                  cwd=work)
    assert out.returncode == 0, out.stderr[-3000:]
    runs = [p.name for p in (work / "runs").glob("*-8b-*")]
    assert len(runs) == 1 and "seedNone" not in runs[0], runs
    seed = int(runs[0].rsplit("seed", 1)[1])
    import yaml
    assert yaml.safe_load((work / "runs" / runs[0] / "config.yaml").read_text())["seed_everything"] == seed
    assert f"Seed set to {seed}" in out.stderr + out.stdout
