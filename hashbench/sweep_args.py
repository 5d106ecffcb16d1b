"""The command line of ``hashbench compare``: every option, parsed and checked here (one place, so a new option is one
edit); what the runs do with them lives in the other ``sweep_*`` files."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional

import yaml

from lightning_modules import get_method, method_names, resolve_method_name

from . import paper_settings
from .config_files import resolve as resolve_config
from .errors import ConfigError

DEFAULT_BASELINES = ("lsh", "itq")


def all_image_methods() -> list[str]:
    """What ``--methods all`` runs: every registered method that reads images (learned and closed form)."""
    return [name for name in method_names() if get_method(name).image_input]


def _parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hashbench compare", description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", action="append", required=True, help="LightningCLI config(s): data, trainer, ...")
    p.add_argument("--methods", default="cib,bihalf,dch,greedy",
                   help=f"comma list of {', '.join(method_names())}; 'all' = every method that reads images "
                        f"({', '.join(all_image_methods())}), i.e. all but the autoencoder study's, which read flat "
                        "binarised pixels (their class sets image_input = False)")
    p.add_argument("--bits", default="16,32,64", help="comma list of code lengths")
    p.add_argument("--seeds", default="1", help="a count N (seeds 0..N-1) or a comma list of seeds (one seed: --seeds 5,)")
    p.add_argument("--baselines", default=",".join(DEFAULT_BASELINES),
                   help="classic baselines added to every comparison (on the same features and splits); '' for none")
    p.add_argument("--method-config", default=None,
                   help="YAML mapping a method name to LightningCLI overrides for that method only (e.g. its epochs)")
    p.add_argument("--name", default=None, help="results folder name (default: the first config's stem)")
    p.add_argument("--out", default="results", help="parent folder of the results")
    p.add_argument("--examples", type=int, default=5, help="fixed test queries shown in retrieval_examples.png")
    p.add_argument("--force", action="store_true", help="rerun runs that already finished")
    p.add_argument("--keep-old-code", action="store_true",
                   help="keep runs finished by other code (another commit or uncommitted changes) instead of rerunning "
                        "them; they are marked in runs.csv (other_code) and summary.md")
    p.add_argument("--verbose", action="store_true", help="show Lightning's own output (progress, tables, tips)")
    _add_launch_options(p)
    return p


def _add_launch_options(p: argparse.ArgumentParser) -> None:
    """Where and how many runs at once. Launchers (``--launcher``) and ``--status`` are added here too, and checked in
    ``_check_launch_options``."""
    launch = p.add_argument_group("running several runs at once")
    launch.add_argument("--parallel", default="1", metavar="N",
                        help="train up to N runs at the same time on this machine, each in its own process pinned to "
                             "its own GPU(s) (CUDA_VISIBLE_DEVICES; on CPU when there is no GPU); results are those "
                             "of the same sweep run one at a time")
    launch.add_argument("--gpus-per-run", default="1", metavar="G",
                        help="with --parallel: GPUs given to each run (--parallel 4 --gpus-per-run 2 uses 8 GPUs)")
    from .launch_slurm import add_cluster_options  # --launcher slurm|local-submitit, --status
    add_cluster_options(p)


def _positive(text: str, option: str, example: str) -> int:
    try:
        value = int(str(text).strip())
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"{option} takes a whole number of at least 1, got {text!r} (e.g. {example})")
    return value


def _check_launch_options(args: argparse.Namespace) -> None:
    args.parallel = _positive(args.parallel, "--parallel", "--parallel 4 runs four runs at a time")
    args.gpus_per_run = _positive(args.gpus_per_run, "--gpus-per-run",
                                  "--parallel 4 --gpus-per-run 2 gives each of 4 runs 2 GPUs")


def _ints(text: str, what: str, p: argparse.ArgumentParser) -> list[int]:
    try:
        return [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        p.error(f"--{what} takes integers, e.g. --bits 16,32,64 --seeds 3")


def parse(argv: list[str], description: str = "") -> tuple[argparse.Namespace, list[str]]:
    """The compare options, checked, and the rest of ``argv`` (LightningCLI overrides for every run)."""
    p = _parser(description)
    args, overrides = p.parse_known_args(argv)
    try:
        names = [m.strip() for m in args.methods.split(",") if m.strip()]
        names = [n for m in names for n in (all_image_methods() if m.lower() == "all" else [m])]
        methods = [resolve_method_name(m) for m in names]
        baselines = [resolve_method_name(m) for m in args.baselines.split(",") if m.strip()]
        for name in methods + baselines:  # every run's official schedule exists before the first run starts
            paper_settings.settings_of(name)
    except ValueError as err:
        p.error(str(err))
    args.methods = list(dict.fromkeys(methods + [b for b in baselines if b not in methods]))
    args.baseline_names = [m for m in args.methods if get_method(m).baseline]
    args.bits = _ints(args.bits, "bits", p)
    if not args.bits or any(b < 1 or b > 4096 for b in args.bits):
        p.error(f"--bits must be code lengths between 1 and 4096, got {args.bits!r}")
    seeds = _ints(args.seeds, "seeds", p)
    if "," not in args.seeds:
        if not seeds or seeds[0] < 1:
            p.error(f"--seeds N runs seeds 0..N-1, so N must be at least 1 (got {args.seeds!r}); "
                    "for particular seeds give a comma list: --seeds 0, (seed 0 alone) or --seeds 3,4")
        seeds = list(range(seeds[0]))
    args.seeds = seeds
    if args.examples < 0:
        p.error("--examples must be >= 0")
    try:
        args.config = [resolve_config(c) for c in args.config]
        args.method_overrides = _method_overrides(args.method_config)
    except ValueError as err:  # ConfigError, or an unknown method name in the --method-config file
        p.error(str(err))
    args.name = args.name or Path(args.config[0]).stem
    _check_launch_options(args)
    return args, overrides


def _method_overrides(path: Optional[str]) -> dict:
    if not path:
        return {}
    data = yaml.safe_load(Path(resolve_config(path)).read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"--method-config {path}: expected a mapping of method name to config overrides")
    return {resolve_method_name(k): v for k, v in data.items()}
