import os

# Tests never talk to W&B; the one offline test opts back in with monkeypatch.
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("MPLBACKEND", "Agg")

from tests.report_tables import REPORT_TABLES  # noqa: E402


def pytest_terminal_summary(terminalreporter):
    """Print the result tables tests asked for (e.g. the learning-signal table) at the end of the run."""
    for table in REPORT_TABLES:
        terminalreporter.write_sep("-", "hashbench report")
        terminalreporter.write_line(table)


import pytest  # noqa: E402


@pytest.fixture()
def wandb_offline(monkeypatch):
    """W&B in offline mode for one test. wandb reads WANDB_MODE once, when its process-wide setup first runs (an
    earlier test may have run it with WANDB_MODE=disabled) and a WandbLogger reuses a run left open, so both are
    reset before and after."""
    import wandb
    if wandb.run is not None:  # a run an earlier test left open would be reused by the next WandbLogger
        wandb.run.finish()
    wandb.teardown()
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_DIR", raising=False)
    yield wandb
    wandb.teardown()


def settled(path: str, timeout: float = 20.0) -> str:
    """``path`` once its size has stopped changing (W&B's service may still be writing the run file after finish())."""
    import os
    import time
    deadline, last = time.monotonic() + timeout, -1
    while time.monotonic() < deadline:
        size = os.path.getsize(path) if os.path.exists(path) else -1
        if size == last and size > 0:
            return path
        last = size
        time.sleep(0.25)
    return path


#: variables a launcher reads (name prefixes); Lightning's cluster environments write some of them into os.environ
#: when a test only builds a Trainer (SLURMEnvironment.main_address sets MASTER_ADDR from SLURM_NODELIST), and every
#: later DDP test's subprocess would inherit them (a rendezvous with a node named in an earlier test: a hang)
LAUNCHER_VARIABLES = ("SLURM_", "RANK", "LOCAL_RANK", "WORLD_SIZE", "GROUP_RANK", "LOCAL_WORLD_SIZE", "NODE_RANK",
                      "MASTER_", "TORCHELASTIC_")
_RESTORED = LAUNCHER_VARIABLES + ("PL_GLOBAL_SEED", "PL_TRAINER_GPUS")


@pytest.fixture(autouse=True)
def _launcher_variables_restored():
    before = {k: v for k, v in os.environ.items() if k.startswith(_RESTORED)}
    yield
    for key in [k for k in os.environ if k.startswith(_RESTORED)]:
        if key not in before:
            del os.environ[key]
    for key, value in before.items():
        if os.environ.get(key) != value:
            os.environ[key] = value
