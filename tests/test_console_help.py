"""Help and usage errors answer at once (the console imports no torch, Lightning or W&B for them), and
`lightning fit --help` / `--print_config` lead with what a researcher sets."""
import re
import sys

import pytest

from hashbench.cli import top_level_help
from tests.console_fixtures import BIN, EXP, console

HEAVY = ("torch", "lightning", "wandb", "torchvision", "numpy")


def _imported(ran) -> set:
    """Top-level packages in a `python -X importtime` report."""
    names = re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s+(\S+)", ran.stderr, re.M)
    return {n.split(".")[0] for n in names}


@pytest.mark.parametrize("argv, code, said", [
    (["--help"], 0, "commands:"),
    (["frobnicate"], 2, "hashbench: error: unknown command 'frobnicate'"),
    (["fit", "--config", "no_such_config.yaml"], 2, "hashbench: error: config file 'no_such_config.yaml' not found"),
])
def test_help_and_usage_errors_import_nothing_heavy(argv, code, said, tmp_path):
    script = BIN / "hashbench"
    if not script.exists():
        pytest.skip("package not installed with `pip install -e .` (console scripts missing)")
    ran = console(sys.executable, "-X", "importtime", script, *argv, cwd=tmp_path, timeout=120)
    assert ran.returncode == code and said in ran.stdout + ran.stderr, ran.tail()
    assert _imported(ran), "no import-time report: the check would pass vacuously"
    assert not _imported(ran) & set(HEAVY), f"imported {sorted(_imported(ran) & set(HEAVY))} for `hashbench {argv}`"
    if argv == ["--help"]:
        assert ran.stdout.strip() == top_level_help()


def test_fit_help_leads_with_model_data_run_name_and_ckpt_path(tmp_path):
    """Pins hashbench/framework_internals.py (the one use of argparse internals to move the checkpoint group)."""
    ran = console("lightning", "fit", "--help", cwd=tmp_path, timeout=180)
    assert ran.returncode == 0, ran.tail()
    out = ran.stdout
    first_trainer = out.index("  --trainer.accelerator")
    for option in ("  --model ", "  --data ", "  --run_name", "  --ckpt_path", "  --seed_everything"):
        assert out.index(option) < first_trainer, f"{option.strip()} after the Trainer's options"
    ckpt_help = out[out.index("  --ckpt_path"):out.index("  --weights_only")]
    assert "'last' = this run folder's checkpoints/last.ckpt" in " ".join(ckpt_help.split())
    assert "Lightning Model Registry" not in ckpt_help
    assert out.startswith("usage: ") and out.index("Runs the full optimization routine.") < 400  # a short usage


def test_print_config_shows_model_and_data_before_the_trainer(tmp_path):
    ran = console("lightning", "fit", "--config", EXP / "cifar_cib.yaml", "--print_config", cwd=tmp_path, timeout=180)
    assert ran.returncode == 0, ran.tail()
    top = [line.split(":")[0] for line in ran.stdout.splitlines() if re.match(r"^[a-z_]+:", line)]
    assert top.index("model") < top.index("data") < top.index("trainer"), top
    assert top.index("run_name") < top.index("trainer") and top.index("seed_everything") < top.index("trainer"), top
