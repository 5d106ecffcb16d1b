"""docs/ADDING.md works as written: each of its three walkthroughs (a method, a list dataset, a dataset with its own
file format) is read FROM THE DOC TEXT, its files are written into a fresh copy of the repository, and its commands
run there as console commands on a miniature of the data. Only miniature options are added to `lightning fit` lines
(tiny backbone, small images and batches, no logger); nothing else of the doc is changed, so the doc cannot rot."""
from __future__ import annotations

import re
import shlex
import shutil
import textwrap
from pathlib import Path

import numpy as np

from tests.console_fixtures import REPO, console
from tests.data_fixtures import write_list_dataset, write_mnist_idx

DOC = (REPO / "docs" / "ADDING.md").read_text()
#: ``<!-- guide:<walkthrough> <write|append|run> [path] -->`` right above a fenced block
STEP = re.compile(r"^[ ]*<!-- guide:(\w+) (write|append|run)(?: (\S+))? -->[ ]*\n[ ]*```\w*\n(.*?)^[ ]*```",
                  re.S | re.M)
COPIED = ("hashbench", "hashcore", "lightning_modules", "datamodules", "callbacks", "experiments", "tests")
SKIPPED = {"__pycache__", ".pytest_cache", ".cache", "runs", "results"}
SMALL = ["--model.backbone", "tiny_cnn", "--model.pretrained", "false", "--data.image_size", "32",
         "--data.num_workers", "0", "--data.batch_size", "8", "--trainer.logger", "false",
         "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
         "--trainer.accelerator", "cpu"]


def steps(walkthrough: str) -> list[tuple[str, str, str]]:
    found = [(action, path, textwrap.dedent(code)) for name, action, path, code in STEP.findall(DOC)
             if name == walkthrough]
    assert found, f"docs/ADDING.md has no `<!-- guide:{walkthrough} ... -->` blocks"
    return found


def fresh_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "repo"
    for name in COPIED:
        shutil.copytree(REPO / name, copy / name, ignore=lambda _dir, names: [n for n in names if n in SKIPPED])
    shutil.copy(REPO / "pyproject.toml", copy / "pyproject.toml")
    return copy


def follow(walkthrough: str, copy: Path, small: list[str]) -> list:
    """Write and run the walkthrough's blocks in order; returns what each command printed."""
    ran = []
    for action, path, code in steps(walkthrough):
        if action == "write":
            assert not (copy / path).exists(), f"the guide says {path} is a new file, but it exists"
            (copy / path).parent.mkdir(parents=True, exist_ok=True)
            (copy / path).write_text(code)
        elif action == "append":
            assert (copy / path).is_file(), f"the guide appends to {path}, which does not exist"
            with open(copy / path, "a") as f:
                f.write(code)
        else:
            for line in code.splitlines():
                command = shlex.split(line, comments=True)
                if not command:
                    continue
                if command[:2] == ["lightning", "fit"]:
                    command += small
                result = console(*command, cwd=copy, timeout=600, PYTHONPATH=str(copy))
                assert result.returncode == 0, result.tail()
                ran.append(result)
    return ran


def only_new_files(walkthrough: str) -> bool:
    return all(action != "append" for action, _, _ in steps(walkthrough))


def checkpoints(copy: Path) -> list[Path]:
    return sorted((copy / "runs").glob("*/checkpoints/last.ckpt"))


def test_the_method_walkthrough_adds_a_method_that_trains_from_its_own_settings(tmp_path):
    copy = fresh_copy(tmp_path)
    write_mnist_idx(str(copy / "data" / "mnist"), train_per_class=12, test_per_class=4)
    ran = follow("method", copy, SMALL + ["--data.scale", "0.01"])
    assert [r.command[:2] for r in ran] == [["python", "experiments/make_configs.py"], ["python", "-m"],
                                            ["lightning", "fit"]]
    assert "1 passed" in ran[1].stdout, ran[1].tail()
    generated = (copy / "experiments" / "methods" / "mymethod.yaml").read_text()
    assert "class_path: MyMethod" in generated and "me/mymethod@0123abc" in generated  # its own paper_settings
    assert (copy / "experiments" / "cifar_mymethod.yaml").is_file()
    changed = [f.relative_to(copy).as_posix() for f in sorted((copy / "experiments").rglob("*.yaml"))
               if "mymethod" not in f.name and f.read_bytes() != (REPO / f.relative_to(copy)).read_bytes()]
    assert not changed, f"adding a method rewrote other configs: {changed}"
    assert len(checkpoints(copy)) == 1 and "mymethod" in checkpoints(copy)[0].parts[-3].lower()


def test_the_list_dataset_walkthrough_loads_lists_with_one_yaml(tmp_path):
    assert only_new_files("list")
    copy = fresh_copy(tmp_path)
    write_list_dataset(str(copy / "data" / "mydata"), 38, n_query=6, n_train=12, n_database=24,
                       train_in_database=False)
    follow("list", copy, SMALL + ["--data.val_queries", "4"])
    assert len(checkpoints(copy)) == 1
    assert list((copy / "data" / "mydata" / "splits").iterdir()), "no split file: the lists were never read"


def write_mydigits(path: Path, train_per_class: int = 8, test_per_class: int = 3) -> None:
    """The format the guide's module reads: uint8 N × H × W × 3 images, class ids 0..9, train and test arrays."""
    rng = np.random.default_rng(0)

    def part(per_class: int):
        labels = np.repeat(np.arange(10), per_class)
        images = (labels[:, None, None, None] * 25 + rng.integers(0, 20, (len(labels), 16, 16, 3))).astype(np.uint8)
        return images, labels

    (train_images, train_labels), (test_images, test_labels) = part(train_per_class), part(test_per_class)
    path.parent.mkdir(parents=True)
    np.savez(path, train_images=train_images, train_labels=train_labels, test_images=test_images,
             test_labels=test_labels)


def test_the_own_format_walkthrough_adds_a_dataset_module_without_editing_any_file(tmp_path):
    assert only_new_files("format"), "adding a dataset module must edit no existing file"
    copy = fresh_copy(tmp_path)
    write_mydigits(copy / "data" / "mydigits" / "mydigits.npz")
    follow("format", copy, SMALL + ["--data.val_queries", "4"])
    assert len(checkpoints(copy)) == 1
    assert list((copy / "data" / "mydigits" / "splits").iterdir()), "no split file: the archive was never read"


def test_every_code_block_of_the_guide_is_written_or_run_by_these_tests():
    """No block escapes: every fenced block of the doc carries a guide marker, and each walkthrough runs commands."""
    openings = re.findall(r"^[ ]*```\w+$", DOC, flags=re.M)
    assert len(openings) == len(STEP.findall(DOC))
    for walkthrough in ("method", "list", "format"):
        assert any(action == "run" for action, _, _ in steps(walkthrough)), walkthrough
