"""``hashbench search``: exact Hamming top k of query images against a saved codes folder."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .codes import Codes, load_codes, sha256_file
from .errors import ConfigError
from .export_inputs import eval_transform, dataset_paths, query_images


def _search_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hashbench search",
                                description="Encode query images with the model that made a codes folder and print "
                                            "their exact Hamming top k (ties by database index).",
                                epilog="Other options go to the configuration, e.g. --trainer.accelerator cpu "
                                       "--trainer.precision 32-true on a machine without the GPU.")
    p.add_argument("--index", required=True, help="a database codes folder written by hashbench encode")
    p.add_argument("--query", required=True, help="an image file or a folder of images")
    p.add_argument("-k", "--k", type=int, default=10, help="neighbours per query (default 10)")
    p.add_argument("--backend", default="auto", choices=("auto", "faiss", "torch"),
                   help="faiss (pip install 'hashbench[search]') or the pure-torch engine; same results")
    p.add_argument("--ckpt_path", default=None, help="the checkpoint, if it moved since the index was written")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--json", help="also write the results to this file")
    return p


def load_index_model(index: Codes, ckpt_path: Optional[str], overrides: list[str]):
    """The model (eval mode, on its device) that wrote ``index``, its evaluation transform and the trainer."""
    config = index.folder / "config.yaml"
    if not config.is_file():
        raise ConfigError(f"{index.folder} has no config.yaml: search needs the model that made the codes. Write the "
                          "index with hashbench encode, or pass the codes to hashbench evaluate instead")
    ckpt = Path(ckpt_path or index.meta.get("checkpoint", ""))
    from .checkpoint_io import read_checkpoint
    from .runs import check_checkpoint_file, check_checkpoint_matches
    check_checkpoint_file(str(ckpt))
    want = index.meta.get("checkpoint_sha256")
    if want and sha256_file(ckpt) != want:
        raise ConfigError(f"checkpoint {ckpt} is not the one that made {index.folder} (sha256 differs from meta.json); "
                          "pass --ckpt_path to that checkpoint, or re-encode the database with this one")
    from .lightning_cli import run_cli
    cli = run_cli(["--config", str(config), "--trainer.logger", "false", "--trainer.devices", "1",
                   "--trainer.strategy", "auto", *overrides], run=False)
    model = cli.model
    checkpoint = read_checkpoint(ckpt)  # checksum, then data only: a crafted pickle named by meta.json runs nothing
    check_checkpoint_matches(checkpoint, cli.config, ckpt)
    model.on_load_checkpoint(checkpoint)  # a frozen backbone stored by identity: its weights, or a clear refusal
    model.load_state_dict(checkpoint["state_dict"])
    model.to(cli.trainer.strategy.root_device).eval()
    return model, eval_transform(cli.datamodule), cli.trainer


@torch.no_grad()
def encode_images(model, dataset, trainer, batch_size: int = 32) -> np.ndarray:
    """±1 codes of a dataset's images, as evaluation computes them (eval mode, the run's precision)."""
    out = []
    for start in range(0, len(dataset), batch_size):
        x = torch.stack([dataset[i][0] for i in range(start, min(len(dataset), start + batch_size))])
        with trainer.precision_plugin.forward_context():
            out.append(model.encode(x.to(trainer.strategy.root_device)).float().cpu())
    return torch.cat(out).numpy()


def search_main(argv: list[str]) -> int:
    args, overrides = _search_parser().parse_known_args(argv)
    from .search import HammingIndex
    index = load_codes(args.index)
    if not Path(args.query).exists():
        raise FileNotFoundError(f"--query {args.query}: no such image file or folder")
    model, transform, trainer = load_index_model(index, args.ckpt_path, overrides)
    dataset = query_images(Path(args.query), transform)
    paths = dataset_paths(dataset)
    codes = encode_images(model, dataset, trainer, args.batch_size)
    if codes.shape[1] != index.bits:
        raise ConfigError(f"the model gives {codes.shape[1]}-bit codes but {args.index} holds {index.bits}-bit codes")
    order = np.argsort(index.index, kind="stable")  # ties are broken by dataset index, as in evaluation
    positions, dist = HammingIndex.from_packed(index.packed[order], index.bits, args.backend).search(codes, args.k)
    positions = order[positions]
    results = []
    for qpath, pos_row, dist_row in zip(paths, positions, dist):
        hits = []
        for rank, (pos, d) in enumerate(zip(pos_row.tolist(), dist_row.tolist()), 1):
            hit = {"rank": rank, "distance": d, "index": int(index.index[pos])}
            if index.paths is not None:
                hit["path"] = index.paths[pos]
            if index.has_labels:
                row = index.labels[pos]
                hit["labels"] = [int(row)] if row.ndim == 0 else np.nonzero(row)[0].tolist()
            hits.append(hit)
        results.append({"query": qpath, "neighbours": hits})
    for r in results:
        print(f"query {r['query']}")
        for h in r["neighbours"]:
            extra = "".join(f"  {k} {h[k]}" for k in ("path", "labels") if k in h)
            print(f"  {h['rank']:>3}  distance {h['distance']:>3}  index {h['index']:>8}{extra}")
    if args.json:
        Path(args.json).write_text(json.dumps(results))
    return 0
