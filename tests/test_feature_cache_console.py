"""The feature cache through the console, as users run it: two `lightning fit` on one cache folder at once both
finish (one builds, the other waits and loads), and a disk that cannot hold an entry gives one `hashbench: error:`
line naming the file and the space, no traceback."""
from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.data_fixtures import write_cifar
from tests.test_cli import REPO

LIGHTNING = str(Path(sys.executable).parent / "lightning")  # the console command users type


def _config(tmp_path: Path, cache_dir: Path, together: bool) -> Path:
    callbacks = [{"class_path": "FeatureCache",
                  "init_args": {"cache_dir": str(cache_dir), "dtype": "float32", "progress": False,
                                "random_train_transform": "images"}}]
    if together:
        callbacks.insert(0, {"class_path": "tests.fit_markers.StartTogether",
                             "init_args": {"folder": str(tmp_path / "start"), "count": 2}})
    cfg = {"seed_everything": 0,
           "model": {"class_path": "BiHalfNet",
                     "init_args": {"bits": 8, "backbone": "tiny_cnn", "pretrained": False, "freeze": True}},
           "data": {"class_path": "CIFAR10",
                    "init_args": {"root": str(tmp_path / "cifar"), "download": False, "protocol": "bihalf_i",
                                  "scale": 0.01, "image_size": 32, "num_workers": 0, "batch_size": 8}},
           "trainer": {"accelerator": "cpu", "max_epochs": 1, "logger": False, "enable_progress_bar": False,
                       "enable_model_summary": False, "default_root_dir": str(tmp_path / "runs"),
                       "callbacks": callbacks}}
    path = tmp_path / "tiny_cached.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}


@pytest.fixture()
def cifar(tmp_path):
    write_cifar(str(tmp_path / "cifar"), train_per_class=15, test_per_class=12)
    return tmp_path


def test_two_fits_building_the_same_cache_entries_at_once_both_finish(cifar):
    tmp_path = cifar
    config = _config(tmp_path, tmp_path / "cache", together=True)
    procs = [subprocess.Popen([LIGHTNING, "fit", "--config", str(config), "--run_name", name], cwd=tmp_path,
                              env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name in ("a", "b")]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
        assert "Traceback" not in err
    assert any("another process is building" in err for _, err in outs)  # they met: one waited for the other
    entries = sorted(os.listdir(tmp_path / "cache"))
    assert entries and not any(e.endswith(".partial") for e in entries), entries  # every entry complete, once
    for run in ("a", "b"):
        assert (tmp_path / "runs" / run / "checkpoints" / "last.ckpt").is_file()


def _limit_file_size(limit: int):
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_a_cache_entry_larger_than_the_process_may_write_is_one_error_line(cifar):
    """`ulimit -f` (RLIMIT_FSIZE, SIGXFSZ ignored) gives real EFBIG errors to the cache's writes without root."""
    tmp_path = cifar
    config = _config(tmp_path, tmp_path / "cache", together=False)
    out = subprocess.run([LIGHTNING, "fit", "--config", str(config), "--run_name", "full"], cwd=tmp_path, env=_env(),
                         capture_output=True, text=True, timeout=600, preexec_fn=_limit_file_size(20_000))
    assert out.returncode == 2, out.stderr[-3000:]
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("hashbench: error:")]
    assert len(errors) == 1 and "Traceback" not in out.stderr, out.stderr[-3000:]
    assert "feature cache: cannot write " + str(tmp_path / "cache") in errors[0] and "features.npy" in errors[0]
    assert "file-size limit" in errors[0] and "needs" in errors[0] and "cache_dir" in errors[0]


def test_a_full_disk_is_said_before_encoding_with_the_space_needed_and_free(cifar):
    """A real small filesystem (tmpfs, needs root to mount; skipped elsewhere)."""
    tmp_path = cifar
    small = tmp_path / "small_disk"
    small.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(small)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        config = _config(tmp_path, small / "cache", together=False)
        out = subprocess.run([LIGHTNING, "fit", "--config", str(config), "--run_name", "full"], cwd=tmp_path,
                             env=_env(), capture_output=True, text=True, timeout=600)
    finally:
        subprocess.run(["umount", str(small)], check=False)
    assert out.returncode == 2, out.stderr[-3000:]
    errors = [ln for ln in out.stderr.splitlines() if ln.startswith("hashbench: error:")]
    assert len(errors) == 1 and "Traceback" not in out.stderr, out.stderr[-3000:]
    assert "feature cache: cannot write " + str(small / "cache") in errors[0]
    assert "no space left on the device" in errors[0] and "KiB is free there" in errors[0]
