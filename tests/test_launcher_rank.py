"""Rank and world size are read in one place each: from a launcher's environment variables before a process group
exists (hashcore/launcher.py, torch-free for the console), from torch.distributed after (hashcore/distributed.py);
the commands and the train sampler ask them instead of reading the variables or torch themselves."""
import pytest

from hashcore.launcher import LAUNCHER_RANK_VARIABLES, is_launching_process, launcher_rank
from tests.console_fixtures import console


@pytest.fixture()
def no_launcher(monkeypatch):
    for key in LAUNCHER_RANK_VARIABLES:
        monkeypatch.delenv(key, raising=False)
    return monkeypatch


@pytest.mark.parametrize("variable", LAUNCHER_RANK_VARIABLES)
def test_every_launcher_variable_marks_a_started_process(no_launcher, variable):
    from datamodules.sampling import _world
    from hashbench.runs import is_global_zero

    assert launcher_rank() is None and is_launching_process() and is_global_zero()
    no_launcher.setenv(variable, "0")
    assert launcher_rank() is None and is_global_zero()
    no_launcher.setenv(variable, "3")
    assert launcher_rank() == f"3 ({variable})"
    assert not is_launching_process() and not is_global_zero()
    assert _world() == (1, 0)  # no process group: the sampler is one replica, whatever the environment says


def test_a_slurm_task_started_without_its_command_names_its_rank(tmp_path):
    """SLURM sets only SLURM_PROCID: the process knew it was not the launching one, but said 'rank ?'."""
    ran = console("hashbench", cwd=tmp_path, timeout=60, SLURM_PROCID="3")
    assert ran.returncode == 2 and ran.stderr.count("hashbench: error:") == 1, ran.tail()
    assert "started as DDP rank 3 (SLURM_PROCID)" in ran.stderr, ran.tail()


def test_the_console_still_imports_no_torch_to_answer():
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", "import sys, hashbench.cli, hashbench.runs; "
                          "print('torch' in sys.modules)"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr
