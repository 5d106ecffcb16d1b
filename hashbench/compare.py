"""``hashbench compare``: methods × code lengths × seeds, with the LSH and ITQ baselines, into one results folder.

    hashbench compare --config experiments/data/mnist.yaml --methods cib,bihalf,dch,greedy --bits 16,32,64 \\
        --seeds 3 --name mnist   [--parallel 8]   [any LightningCLI override, e.g. --trainer.max_epochs 5]

Every run fits with its method's official schedule (its class's ``paper_settings``) on the splits of YOUR data
config (all methods share them), then is tested on the test queries with its final weights. Configs are stacked
``<method's settings> → --config files → --method-config <file>[method] → bits/seed → your overrides``.

The folder never loses work: each run lives in
``results/<name>/runs/<method>_<bits>b_seed<seed>-<config hash>-<code id>/`` with its checkpoints and
``result.json``. A run is identified by its resolved config AND the code that trains it (``hashbench/provenance.py``:
the suite's sources; summaries name the commit and flag uncommitted changes). A rerun of the same command skips the
runs that finished with the same config and code, reruns the ones finished by other code (``--keep-old-code`` keeps
them instead, marked in runs.csv and summary.md), resumes an interrupted one from its last epoch, runs the rest, and
rebuilds ``runs.csv``, ``runs.json``, ``summary.md`` and the figures from every finished run of this code;
``--force`` reruns. Ctrl-C keeps what finished and writes the summary of it. Under DDP only rank 0 prints and
writes. Two compares on one folder never train the same run: a run being trained by another compare is skipped,
then waited for at the end (``hashbench/sweep_locks.py``). ``--parallel N`` trains N runs at a time on this machine,
each on its own GPU(s) (``--gpus-per-run``), with the same results as one at a time.

The parts: options ``sweep_args``, run identity ``sweep_config_hash``, per-method configs ``sweep_configs``, one run
``sweep_run``, results folder ``sweep_results``, the sweep ``sweep_runner``, --parallel ``sweep_parallel``.
"""
from __future__ import annotations

from .launch_slurm import dispatch
from .sweep_args import parse
from .sweep_config_hash import config_hash
from .sweep_run import quiet
from .sweep_runner import SweepRunner


def main(argv: list[str]) -> list[dict]:
    args, overrides = parse(argv, description=__doc__)
    typed = list(argv)

    class Runner(SweepRunner):  # carries the command as typed: --parallel workers and submitted jobs rerun it
        def __init__(self, args, overrides):
            super().__init__(args, overrides, argv=typed)

    with quiet(args.verbose):  # --status, --launcher slurm|local-submitit, one submitted cell, or the sweep here
        return dispatch(args, overrides, typed, Runner, config_hash)
