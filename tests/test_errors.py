"""Every user mistake of the trust issue ends in one `hashbench: error:` message naming the option or file, exit 2,
and no traceback (HASHBENCH_TRACEBACK=1 brings it back)."""
import os
import pickle
import subprocess
import sys
import zipfile

import pytest

from hashbench.cli import main
from tests.data_fixtures import write_cifar, write_list_dataset
from tests.test_cli import EXP, FAST, REPO


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    write_cifar(str(root), train_per_class=15, test_per_class=12)
    return str(root)


LIST_FAST = FAST[4:] + ["--data.val_queries", "4", "--trainer.max_epochs", "1"]  # FAST without download/scale


def _fails(argv, capsys, code=2) -> str:
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == code, err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("hashbench: error:")]
    assert len(lines) == 1, err
    return err


def _fit(config, root, *extra):
    return ["fit", "--config", str(EXP / config), "--data.root", root, *FAST, "--trainer.max_epochs", "1", *extra]


BAD_OPTIONS = {
    "bits": (("cifar_bihalf.yaml", "--model.bits", "0"), "model.bits"),
    "top_k": (("cifar_bihalf.yaml", "--data.top_k", "0"), "top_k"),
    "protocol": (("cifar_bihalf.yaml", "--data.protocol", "cifar10_9"), "unknown protocol 'cifar10_9'"),
    "backbone": (("cifar_bihalf.yaml", "--model.backbone", "resnet9000"), "unknown backbone 'resnet9000'"),
    "odd batch": (("cifar_bihalf.yaml", "--data.batch_size", "7"), "data.batch_size must be even"),
    "batch of one": (("cifar_cib.yaml", "--data.batch_size", "1"), "at least 2 images"),
    "monitor": (("cifar_cib.yaml", "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
                 "--trainer.callbacks.monitor", "val/mAP@5000"), "not 'val/mAP@5000'"),
    "monitor on test": (("cifar_cib.yaml", "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
                         "--trainer.callbacks.monitor", "test/mAP"), "never selected on the test queries"),
    "evaluation top_k": (("cifar_bihalf.yaml", "--trainer.callbacks+=RetrievalEvaluation",
                          "--trainer.callbacks.top_k", "[0]"), "RetrievalEvaluation.top_k"),
}


@pytest.mark.parametrize("name", list(BAD_OPTIONS))
def test_bad_option_is_one_clear_error(name, cifar_root, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (config, *extra), needle = BAD_OPTIONS[name]
    assert needle in _fails(_fit(config, cifar_root, *extra), capsys)


def test_truncated_checkpoint_names_the_file(cifar_root, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    good = tmp_path / "good.ckpt"
    with zipfile.ZipFile(good, "w") as z:
        z.writestr("archive/data.pkl", b"x" * 4096)
    bad = tmp_path / "cut.ckpt"
    bad.write_bytes(good.read_bytes()[:1000])
    err = _fails(["test", "--config", str(EXP / "cifar_bihalf.yaml"), "--data.root", cifar_root, *FAST,
                  "--ckpt_path", str(bad)], capsys)
    assert str(bad) in err and "truncated" in err


def test_crafted_cifar_pickle_is_refused_and_runs_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "cifar"
    write_cifar(str(root), train_per_class=15, test_per_class=12)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (root / "cifar-10-batches-py" / "data_batch_1").write_bytes(pickle.dumps({b"data": Evil(), b"labels": [0]}))
    err = _fails(_fit("cifar_bihalf.yaml", str(root), "--data.verify_checksums", "false"), capsys)
    assert "data_batch_1" in err and not marker.exists()


def test_corrupt_image_names_the_file_and_its_list_entry(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "nus"
    split = write_list_dataset(str(root), 21, n_query=6, n_train=12, n_database=24)
    victim = root / split["database"]["paths"][3]
    victim.write_bytes(victim.read_bytes()[:40])  # a truncated JPEG
    err = _fails(["fit", "--config", str(EXP / "nuswide_bihalf.yaml"), "--data.root", str(root), *LIST_FAST], capsys)
    assert str(victim) in err and ("database.txt:" in err or "train.txt:" in err)  # the list entry


def test_unknown_option_is_one_line_naming_it(cifar_root, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    err = _fails(["fit", "--config", str(EXP / "nuswide_bihalf.yaml"), "--data.download", "false"], capsys)
    assert "Option 'download' is not accepted" in err and "hashbench fit --help" in err and "usage:" not in err


def test_compare_seeds_zero_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["compare", "--config", str(EXP / "data" / "mnist.yaml"), "--seeds", "0"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "--seeds N runs seeds 0..N-1" in err
    assert "--seeds 0, (seed 0 alone)" in err  # the way that works, not the input just refused


def test_unknown_method_in_compare_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["compare", "--config", str(EXP / "data" / "mnist.yaml"), "--methods", "cib,foo"])
    assert info.value.code == 2 and "unknown method 'foo'" in capsys.readouterr().err


def _console(*args, cwd):
    env = {**os.environ, "HASHBENCH_TRACEBACK": ""}
    return subprocess.run([sys.executable, "-m", "hashbench", *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd, env=env)


def test_config_name_alone_is_found_under_experiments_and_a_typo_lists_close_names(tmp_path):
    out = _console("fit", "--config", "cifar_bihalf.yaml", "--print_config", cwd=REPO)
    assert out.returncode == 0 and "using experiments/cifar_bihalf.yaml" in out.stderr
    assert "class_path: lightning_modules.BiHalfNet" in out.stdout
    out = _console("fit", "--config", "cifar_bihlaf.yaml", cwd=tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "hashbench: error: config file 'cifar_bihlaf.yaml' not found" in out.stderr
    assert "experiments/cifar_bihalf.yaml" in out.stderr  # the close name


def test_through_the_console_command_no_traceback_and_traceback_on_request(cifar_root, tmp_path):
    args = ["fit", "--config", str(EXP / "cifar_bihalf.yaml"), "--data.root", cifar_root, *FAST, "--model.bits", "0"]
    out = _console(*args, cwd=tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert [ln for ln in out.stderr.splitlines() if ln.startswith("hashbench: error:")] == [
        next(ln for ln in out.stderr.splitlines() if "model.bits" in ln)]
    env = {**os.environ, "HASHBENCH_TRACEBACK": "1"}
    out = subprocess.run([sys.executable, "-m", "hashbench", *args], capture_output=True, text=True, timeout=300,
                         cwd=tmp_path, env=env)
    assert out.returncode != 0 and "Traceback" in out.stderr
