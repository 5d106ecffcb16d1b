"""``hashbench encode``: a checkpoint's bit-packed codes of a split, a list file or an image folder."""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from .codes import load_codes, sha256_file
from .codes_writer import CodesWriter
from .export_inputs import EXPORT_HELP, SPLITS, split_dataset


def _encode_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hashbench encode", description=EXPORT_HELP,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Other options go to the configuration, e.g. --trainer.devices 2 "
                                       "--data.eval_batch_size 256.")
    p.add_argument("--config", action="append", required=True, help="the run's config(s), as for fit")
    p.add_argument("--ckpt_path", required=True, help="a .ckpt file, or last / best of the config's run directory")
    p.add_argument("--split", required=True,
                   help=f"one of {', '.join(SPLITS)}, a list file ('<image path> <C 0/1 labels>' per line) or an "
                        "image folder")
    p.add_argument("--out", required=True, help="the codes folder to write (hashbench/codes.py)")
    p.add_argument("--image_root", default=None, help="what a list file's relative paths are relative to "
                                                      "(default: the list file's folder)")
    return p


def _checkpoint(cli, value: str) -> Path:
    """The checkpoint file, verified (checksum, data only) and checked to hold the model the config builds."""
    from .checkpoint_io import read_checkpoint
    from .runs import check_checkpoint_file, check_checkpoint_matches, find_checkpoint
    path = find_checkpoint(cli.run, value) if value in ("last", "best") else Path(value)
    check_checkpoint_file(str(path))
    check_checkpoint_matches(read_checkpoint(path, mmap=True), cli.config, path)
    return path


def encode_main(argv: list[str]) -> int:
    args, overrides = _encode_parser().parse_known_args(argv)
    from .lightning_cli import run_cli
    cli_args = [a for c in args.config for a in ("--config", c)] + ["--trainer.logger", "false", *overrides]
    cli = run_cli(cli_args, run=False)
    model, dm, trainer = cli.model, cli.datamodule, cli.trainer
    ckpt = _checkpoint(cli, args.ckpt_path)
    dataset, labels_known, paths = split_dataset(dm, args.split, args.image_root)
    meta = {"method": type(model).__name__, "method_class": f"{type(model).__module__}.{type(model).__qualname__}",
            "checkpoint": str(ckpt.resolve()), "checkpoint_sha256": sha256_file(ckpt),
            "dataset": type(dm).__name__, "protocol": getattr(dm, "protocol", None),
            "split": args.split if args.split in SPLITS else str(Path(args.split).resolve()),
            "top_k": getattr(dm, "top_k", None), "num_classes": getattr(dm, "num_classes", None),
            "eval_transform": getattr(dm, "eval_transform", None), "image_size": getattr(dm, "image_size", None),
            "normalize": getattr(dm, "normalize", None), "config": "config.yaml"}
    writer = CodesWriter(args.out, meta, labels_known, (lambda i: paths[i]) if paths is not None else None)
    from callbacks.feature_cache import FeatureCache
    trainer.callbacks[:] = [c for c in trainer.callbacks if not isinstance(c, FeatureCache)] + [writer]
    loader = torch.utils.data.DataLoader(dataset, batch_size=getattr(dm, "eval_batch_size", 64), shuffle=False,
                                         num_workers=getattr(dm, "num_workers", 0))
    trainer.predict(model, dataloaders=loader, ckpt_path=str(ckpt), return_predictions=False)
    if trainer.is_global_zero:
        (Path(args.out) / "config.yaml").write_text(cli.parser.dump(cli.config, skip_none=False))
        codes = load_codes(args.out)
        print(f"hashbench encode: {len(codes):,} codes of {codes.bits} bits ({args.split}) -> {args.out}")
    return 0

