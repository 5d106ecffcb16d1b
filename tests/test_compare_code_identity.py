"""`hashbench compare` never keeps a result of other code silently: a run's identity is its config AND its code.

The test works the way a user does: a git checkout of the suite (a throwaway copy committed in a temp repo), one
sweep, a committed change to a method, the same sweep again (console command, subprocess).
"""
import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hashbench.provenance import PACKAGES
from tests.data_fixtures import write_cifar
from tests.test_cli import REPO

TINY = ["--data.download", "false", "--data.scale", "0.01", "--data.image_size", "32", "--data.num_workers", "0",
        "--data.batch_size", "8", "--model.backbone", "tiny_cnn", "--model.pretrained", "false",
        "--trainer.logger", "false", "--trainer.max_epochs", "1", "--trainer.accelerator", "cpu"]
HASHBENCH = str(Path(sys.executable).parent / "hashbench")  # the console command users type


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                          capture_output=True, text=True).stdout.strip()


@pytest.fixture()
def checkout(tmp_path):
    """A git checkout of the suite's code (copied from this one) and a CIFAR miniature."""
    repo = tmp_path / "suite"
    for folder in (*PACKAGES, "experiments"):
        shutil.copytree(REPO / folder, repo / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "suite")
    write_cifar(str(tmp_path / "cifar"), train_per_class=15, test_per_class=12)

    def compare(*extra):
        env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
        out = subprocess.run(
            [HASHBENCH, "compare", "--config", str(repo / "experiments" / "data" / "cifar.yaml"), "--methods", "bihalf",
             "--baselines", "", "--bits", "8", "--seeds", "1", "--name", "t", "--out", str(tmp_path / "results"),
             "--examples", "0", "--data.root", str(tmp_path / "cifar"), *TINY, *extra],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
        return out.stdout
    return repo, compare, tmp_path / "results" / "t"


def _change_the_code(repo: Path) -> None:
    """What a researcher does: edit a method (here Bi-half: centre the scores before binarising them; on this
    miniature the untouched method gives every image the same code, the edited one does not)."""
    path = repo / "lightning_modules" / "bihalf.py"
    text = path.read_text()
    old = "    def training_step(self, batch, batch_idx):"
    assert old in text
    path.write_text(text.replace(old, "    def hash_scores(self, x):\n        s = super().hash_scores(x)\n"
                                      "        return s - s.mean(0)\n\n" + old))


def _rows(out: Path) -> list[dict]:
    return list(csv.DictReader(open(out / "runs.csv")))


def test_a_committed_code_change_reruns_the_run_and_the_summary_shows_the_new_result(checkout):
    repo, compare, out = checkout
    compare()
    [before] = _rows(out)
    first_commit = _git(repo, "rev-parse", "--short", "HEAD")
    assert before["git_commit"] == first_commit

    _change_the_code(repo)
    _git(repo, "commit", "-q", "-am", "bihalf: centred scores")
    new_commit = _git(repo, "rev-parse", "--short", "HEAD")
    printed = compare()
    assert "finished earlier, kept" not in printed
    assert printed.count("finished earlier by other code") == 1 and f"commit {first_commit}" in printed
    [after] = _rows(out)  # the old row is not mixed into the tables
    assert after["git_commit"] == new_commit and after["finished"] != before["finished"]
    assert float(after["mAP@1000"]) != float(before["mAP@1000"])  # the new code gives other codes
    summary = (out / "summary.md").read_text()
    assert f"commit {new_commit};" in summary and "uncommitted" not in summary
    assert f"{float(after['mAP@1000']):.4f}" in summary
    assert len(list((out / "runs").glob("bihalf_8b_seed0-*/result.json"))) == 2  # the old run is not deleted

    printed = compare()  # same code again: kept
    assert "finished earlier, kept" in printed and len(_rows(out)) == 1


def test_keep_old_code_keeps_the_old_row_and_marks_it_and_a_dirty_tree_is_flagged(checkout):
    repo, compare, out = checkout
    compare()
    [before] = _rows(out)
    _change_the_code(repo)  # not committed: a dirty tree
    printed = compare("--keep-old-code")
    assert "kept as asked by --keep-old-code" in printed
    [row] = _rows(out)
    assert row["finished"] == before["finished"] and row["other_code"] == "True"
    summary = (out / "summary.md").read_text()
    commit = _git(repo, "rev-parse", "--short", "HEAD")
    head = summary.splitlines()[2]
    assert head.startswith(f"commit {commit} + uncommitted changes ")  # this sweep's code: a dirty tree
    assert "trained by other code" in summary and f"seed 0: commit {commit} (" in summary  # the footnote

    printed = compare()  # without the option: rerun with the dirty tree's code, and said so
    assert "finished earlier by other code" in printed
    [row] = _rows(out)
    assert row["other_code"] == "False" and row["uncommitted_changes"] and row["finished"] != before["finished"]
    assert "trained by other code" not in (out / "summary.md").read_text()


def test_code_identity_is_the_package_sources_and_names_a_dirty_tree(tmp_path):
    """In-process, on a copy: docs do not change the identity, any package file does, committed or not; without
    git the identity is the sources' hash and the version."""
    from hashbench.provenance import code_version

    repo = tmp_path / "suite"
    for folder in PACKAGES:
        shutil.copytree(REPO / folder, repo / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    plain = code_version(repo)
    assert not plain.commit and plain.text == f"hashbench {plain.version}, sources {plain.code_id}"
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "suite")
    code_version.cache_clear()
    clean = code_version(repo)
    assert clean.code_id == plain.code_id and clean.text == f"commit {_git(repo, 'rev-parse', '--short', 'HEAD')}"
    (repo / "NOTES.md").write_text("docs only\n")
    code_version.cache_clear()
    assert code_version(repo) == clean  # not the package's code
    (repo / "callbacks" / "scratch.py").write_text("X = 1\n")  # an untracked file in a package
    code_version.cache_clear()
    dirty = code_version(repo)
    assert dirty.code_id != clean.code_id and dirty.dirty and dirty.text.endswith(f"uncommitted changes {dirty.dirty}")
