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
