"""README truth: every command in README.md's fenced shell blocks (and its inline multi-GPU command) runs, as typed,
on a miniature. The table below gives each README command the overlay it needs to be a miniature (a tiny backbone,
a few steps, a dataset written in the real format where the README expects the real one) and the folder state it
expects (the run an earlier README command trained). A command added to the README without an entry here fails
`test_every_readme_command_has_a_miniature`. DDP commands run with 2 CPU processes."""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.console_fixtures import REPO, console
from tests.data_fixtures import write_cifar, write_jpeg, write_list_dataset, write_mnist_idx

README = REPO / "README.md"
INLINE = re.compile(r"`((?:lightning|hashbench) (?:fit|validate|test|predict|compare|encode|evaluate|search) [^`]+)`")

#: not run here, and why
EXEMPT = {
    "make demo": "the full demo (minutes of real MNIST training); CI runs `make test`, the demo is checked by hand",
    "make test": "CI runs it (.ci/run): it is the command that runs this test",
    ". .venv/bin/activate": "these tests run with the environment's console scripts first on PATH (console_fixtures)",
}

#: a miniature of a CIFAR-10 run: the README's configs read data/cifar10 (written here in the real format)
CIFAR_MINI = ["--data.download", "false", "--data.scale", "0.01", "--data.image_size", "32", "--data.num_workers", "0",
              "--model.backbone", "tiny_cnn", "--model.pretrained", "false", "--trainer.max_epochs", "1",
              "--trainer.limit_train_batches", "2", "--trainer.enable_progress_bar", "false",
              "--trainer.enable_model_summary", "false", "--trainer.accelerator", "cpu"]
FIT_MINI = [*CIFAR_MINI, "--data.batch_size", "8", "--trainer.check_val_every_n_epoch", "1"]


@dataclass
class Mini:
    """How one README command runs on a miniature."""
    overlay: list = field(default_factory=list)  # appended to the command (later options win)
    replace: dict = field(default_factory=dict)  # README value -> miniature value (a path that cannot exist here)
    folder: str = "own"  # "own": a fresh folder; any other name: the folder shared with the README commands before
    expect: str = ""  # printed on stdout or stderr when it worked


CIB = "lightning fit --config experiments/cifar_cib.yaml"
TABLE = {
    "hashbench --help": Mini(expect="commands:"),
    CIB: Mini(FIT_MINI, folder="cib", expect="`Trainer.fit` stopped"),
    "lightning fit --config cifar_cib.yaml": Mini(FIT_MINI, expect="`Trainer.fit` stopped"),
    "lightning fit --config experiments/cifar_bihalf.yaml --model.bits 32":
        Mini([*FIT_MINI, "--data.val_queries", "20"], expect="`Trainer.fit` stopped"),  # 1000 of 170 train images
    "lightning fit --config experiments/methods/dch.yaml --config experiments/data/coco.yaml --data.root /data/coco":
        Mini(["--data.batch_size", "8", "--data.image_size", "32", "--data.num_workers", "0", "--model.backbone",
              "tiny_cnn", "--model.pretrained", "false", "--trainer.max_epochs", "1", "--trainer.accelerator", "cpu",
              "--trainer.enable_progress_bar", "false"], replace={"/data/coco": "coco"},
             expect="`Trainer.fit` stopped"),
    # the run the first command trained: resumed for one more epoch, tested, configuration printed, encoded
    CIB + " --ckpt_path last": Mini([*FIT_MINI, "--trainer.max_epochs", "2"], folder="cib", expect="Restoring states"),
    "lightning test --config experiments/cifar_cib.yaml --ckpt_path best": Mini(FIT_MINI, folder="cib",
                                                                                  expect="RetrievalEvaluation test"),
    CIB + " --print_config": Mini(folder="cib", expect="class_path: lightning_modules.CIBHash"),
    CIB + " --trainer.devices 4 --trainer.strategy ddp": Mini([*FIT_MINI, "--trainer.devices", "2"],
                                                             expect="MEMBER: 2/2"),
    "hashbench compare --config experiments/data/cifar.yaml --methods cib,bihalf,dch,greedy --bits 16,32,64 --seeds 3":
        Mini(["--bits", "16", "--seeds", "1", "--examples", "1", *CIFAR_MINI, "--trainer.logger", "false",
              "--data.batch_size", "16"],  # LSH/ITQ's batch of 256 is more than the miniature's 170 train images
             expect="results: results/cifar/"),
    "hashbench encode --config experiments/cifar_cib.yaml --ckpt_path last --split database --out codes/database":
        Mini(CIFAR_MINI, folder="cib", expect="hashbench encode:"),
    "hashbench encode --config experiments/cifar_cib.yaml --ckpt_path last --split query --out codes/query":
        Mini(CIFAR_MINI, folder="cib", expect="hashbench encode:"),
    "hashbench evaluate --codes codes": Mini(folder="cib", expect="mAP"),
    "hashbench search --index codes/database --query photo.jpg -k 10": Mini(folder="cib", expect="photo.jpg"),
    # the autoencoder study on a miniature MNIST written in the real IDX format at data/mnist, then its figures
    "hashbench compare --config experiments/data/mnist_binary.yaml --methods ae_sign,ae_signreg,ae_bihalf --bits 16 "
    "--seeds 3 --baselines '' --name mnist_ae --parallel 2":
        Mini(["--bits", "3", "--seeds", "1", "--data.source", "root", "--data.val_queries", "20", "--data.batch_size",
              "32", "--trainer.max_epochs", "1"], folder="ae", expect="results/mnist_ae"),
    "python -m hashbench.ae_figures results/mnist_ae": Mini(folder="ae", expect="ae_latent_3d.png"),
    # the ledger's autoencoder rows: 3 configs × 16/32/64 bits, one seed, one epoch each
    "hashbench reproduce bihalf:autoencoder --seeds 3":
        Mini(["--seeds", "1", "--data.source", "root", "--data.val_queries", "20", "--data.batch_size", "32",
              "--trainer.max_epochs", "1"], expect="bihalf:autoencoder ae_bihalf"),
}


def readme_commands(text: str) -> list[str]:
    """Every command line of README.md's fenced shell blocks (comments dropped), then its inline run commands."""
    found = []
    for block in re.findall(r"^```(?:bash|sh|shell|console)?\n(.*?)^```", text, re.S | re.M):
        for line in block.replace("\\\n", " ").splitlines():  # a backslash continues the command
            words = shlex.split(line, comments=True)
            if words:
                found.append(shlex.join(words))
    found += [shlex.join(shlex.split(m)) for m in INLINE.findall(text)]
    return list(dict.fromkeys(found))


def test_every_readme_command_has_a_miniature():
    commands = readme_commands(README.read_text())
    assert "hashbench --help" in commands and CIB in commands  # the parser finds the blocks
    missing = [c for c in commands if c not in TABLE and c not in EXEMPT]
    assert not missing, f"README commands with no miniature in tests/test_console_readme.py TABLE: {missing}"
    stale = [c for c in TABLE if c not in commands]
    assert not stale, f"TABLE entries no longer in README.md (update the table): {stale}"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    base = tmp_path_factory.mktemp("readme_data")
    write_cifar(str(base / "cifar10"), train_per_class=15, test_per_class=12)
    write_list_dataset(str(base / "coco"), 80, n_query=6, n_train=12, n_database=24)
    write_mnist_idx(str(base / "mnist"), train_per_class=12, test_per_class=4)
    return base


@pytest.fixture(scope="module")
def folders(tmp_path_factory, data):
    """A fresh working folder per README command, or the shared one; each looks like the repository root."""
    made = {}

    def folder(name: str) -> Path:
        if name == "own" or name not in made:
            path = tmp_path_factory.mktemp(f"readme_{name}")
            (path / "experiments").symlink_to(REPO / "experiments")
            (path / "data").mkdir()
            (path / "data" / "cifar10").symlink_to(data / "cifar10")
            (path / "data" / "mnist").symlink_to(data / "mnist")
            (path / "coco").symlink_to(data / "coco")
            write_jpeg(str(path / "photo.jpg"), 3)
            made[name] = path
        return made[name]
    return folder


@pytest.mark.parametrize("command", [c for c in readme_commands(README.read_text()) if c not in EXEMPT])
def test_readme_command_runs_on_a_miniature(command, folders):
    mini = TABLE.get(command)
    if mini is None:
        pytest.fail(f"no miniature for README command {command!r} (see test_every_readme_command_has_a_miniature)")
    words = [mini.replace.get(w, w) for w in shlex.split(command)] + mini.overlay
    ran = console(*words, cwd=folders(mini.folder), timeout=600)
    assert ran.returncode == 0, ran.tail()
    assert mini.expect in ran.stdout + ran.stderr, ran.tail()
    assert "Traceback" not in ran.stderr and "hashbench: error" not in ran.stderr, ran.tail()
    if command.startswith("hashbench evaluate"):
        assert re.search(r"mAP\S*\s+[01]\.\d+", ran.stdout), ran.tail()

