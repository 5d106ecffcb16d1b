"""Which code produced a result: one identity for sweep runs, results tables and run folders.

A result's identity is its resolved config (``sweep_config_hash.config_hash``) plus the *code* that ran it. The code is
identified by a hash of the suite's own source files (``lightning_modules``, ``datamodules``, ``callbacks``,
``hashbench``: the files that define behaviour), so any change to them, committed or not, is a new code version,
while a commit that only touches docs or configs is not (configs are in the config hash). For people, the same
version is described by its git commit and whether the package files differ from it::

    commit 87ce2ee                                   (clean checkout)
    commit 87ce2ee + uncommitted changes 3f9a1c0b   (dirty tree: the hash of the diff of the package files)
    hashbench 0.1.0, sources 5d1e9a04c2b7           (not a git checkout, e.g. installed from a wheel)

No torch/Lightning import here: the CLI may call it before anything heavy is loaded.
"""
from __future__ import annotations

import functools
import hashlib
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

PACKAGES = ("lightning_modules", "datamodules", "callbacks", "hashbench")
ROOT = Path(__file__).resolve().parent.parent  # the folder holding the packages (a checkout or site-packages)


@dataclass(frozen=True)
class CodeVersion:
    code_id: str  # sha256[:12] of the package sources: THE identity of the code
    commit: str = ""  # short git commit of the checkout, "" when not a git checkout
    dirty: str = ""  # sha256[:8] of the uncommitted changes of the package files, "" when clean
    version: str = ""  # hashbench.__version__

    @property
    def text(self) -> str:
        """How summaries and messages name this code."""
        if self.commit:
            return f"commit {self.commit}" + (f" + uncommitted changes {self.dirty}" if self.dirty else "")
        return f"hashbench {self.version or '?'}, sources {self.code_id}"

    def as_row(self) -> dict:
        """The columns a results row carries (``git_commit`` kept for older readers)."""
        return {"code_id": self.code_id, "code": self.text, "git_commit": self.commit or "unknown",
                "uncommitted_changes": self.dirty}

    def as_dict(self) -> dict:
        return asdict(self)


def source_files(root: Path = ROOT) -> list[Path]:
    """The suite's source files under ``root``, in a stable order."""
    files = [p for pkg in PACKAGES for p in (root / pkg).rglob("*.py") if "__pycache__" not in p.parts]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def sources_hash(root: Path = ROOT) -> str:
    h = hashlib.sha256()
    for path in source_files(root):
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def _git(root: Path, *args: str) -> Optional[bytes]:
    try:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, check=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def _uncommitted(root: Path) -> str:
    """Hash of the package files' changes against HEAD (tracked diff + untracked files), "" when there are none."""
    pkgs = [p for p in PACKAGES if (root / p).is_dir()]
    diff = _git(root, "diff", "HEAD", "--binary", "--", *pkgs) or b""
    untracked = (_git(root, "ls-files", "--others", "--exclude-standard", "-z", "--", *pkgs) or b"").split(b"\0")
    untracked = sorted(n for n in untracked if n and not n.endswith(b".pyc"))
    if not diff and not untracked:
        return ""
    h = hashlib.sha256(diff)
    for name in untracked:
        h.update(name + b"\0")
        path = root / name.decode()
        if path.is_file():
            h.update(path.read_bytes())
    return h.hexdigest()[:8]


@functools.lru_cache(maxsize=None)
def code_version(root: Path = ROOT) -> CodeVersion:
    """The code version of the packages under ``root`` (computed once per process)."""
    from . import __version__

    commit = _git(root, "rev-parse", "--short", "HEAD") if (root / ".git").exists() else None
    commit_text = commit.decode().strip() if commit else ""
    dirty = _uncommitted(root) if commit_text else ""
    return CodeVersion(code_id=sources_hash(root), commit=commit_text, dirty=dirty, version=__version__)


def row_code_text(row: dict) -> str:
    """How a results row names the code that produced it (rows written before code ids: their commit)."""
    return row.get("code") or (f"commit {row['git_commit']}" if row.get("git_commit") else "unknown code")
