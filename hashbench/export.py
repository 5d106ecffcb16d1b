"""``hashbench encode`` / ``evaluate`` / ``search``: codes out of the lab, re-scored or searched anywhere.

    hashbench encode --config experiments/cifar_cib.yaml --ckpt_path last --split database --out codes/database
    hashbench encode --config experiments/cifar_cib.yaml --ckpt_path last --split query --out codes/query
    hashbench evaluate --codes codes/                 # or --query codes/query --database codes/database
    hashbench search --index codes/database --query photo.jpg -k 10

``encode`` builds model and datamodule from the config like ``fit`` does, loads the checkpoint and encodes a
split (``query``, ``database``, ``train``, ``val_query``), a list file (``<image path> <C 0/1 labels>`` per
line) or an image folder with ``trainer.predict``: under DDP every rank writes its part and rank 0 merges them,
dropping repeats by dataset index as evaluation does. The codes folder format is in hashbench/codes.py.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Callable, Optional

import lightning as L
import numpy as np
import torch

from hashcore import retrieval_metrics as rm

from .codes import Codes, load_codes, pack_codes, save_packed, sha256_file
from .errors import ConfigError

from hashcore.splits import SPLITS  # noqa: E402,F401


# ---- what to encode ------------------------------------------------------------------------------------------
def _eval_transform(dm):
    from datamodules.transforms import build_transform
    return build_transform(dm.eval_transform, False, dm.image_size, dm.normalize)


def _paths(ds) -> Optional[list[str]]:
    """Image path of every item of a file dataset (None for images held in memory)."""
    return [ds.paths[int(j)] for j in ds.pool_indices] if hasattr(ds, "paths") else None


def split_dataset(dm, split: str, image_root: Optional[str] = None):
    """``(dataset, labels known, paths or None)`` for a split name, a list file or an image folder, all with the
    datamodule's deterministic evaluation transform (``train`` too: codes of the images, not of augmentations)."""
    if split in SPLITS:
        dm.prepare_data()
        dm.setup("predict")
        ds = dm.eval_dataset(split)
        return ds, True, _paths(ds)
    if not Path(split).exists():
        raise ConfigError(f"--split {split!r} is neither a split ({', '.join(SPLITS)}) nor an existing list file or "
                          "image folder")
    from datamodules import image_dataset
    folder = Path(split).is_dir()
    ds = image_dataset(split, _eval_transform(dm), None if folder else dm.num_classes, image_root,
                       allow_outside_root=bool(getattr(dm, "allow_outside_root", False)))
    return ds, not folder, _paths(ds)


def query_images(path: Path, transform):
    """An image file or a folder of images (recursively, sorted) as a dataset without labels."""
    from datamodules import image_dataset
    from datamodules.datasets import ImageFileDataset
    if path.is_dir():
        return image_dataset(str(path), transform)
    if not path.is_file():
        raise FileNotFoundError(f"--query {path}: no such image file or folder")
    return ImageFileDataset([str(path.resolve())], np.zeros((1, 0), np.float32), np.arange(1), transform, "query")


# ---- the predict-loop writer -------------------------------------------------------------------------------
class CodesWriter(L.Callback):
    """Keeps ``predict_step``'s codes, labels and dataset indices per rank; at the end every rank writes its part
    and rank 0 merges them into one codes folder, keeping the first occurrence of every index (sorted by index).

    Args:
        out: the codes folder to write.
        meta: provenance for meta.json.
        labels_known: False for an image folder (no labels).
        path_of: dataset index -> image path, for paths.txt (file datasets).
    """

    def __init__(self, out, meta: dict, labels_known: bool = True, path_of: Optional[Callable[[int], str]] = None):
        self.out, self.meta, self.labels_known, self.path_of = Path(out), meta, labels_known, path_of
        self.written: Optional[Path] = None

    def on_predict_epoch_start(self, trainer, pl_module) -> None:
        self._parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if not isinstance(outputs, dict) or "codes" not in outputs:
            raise ValueError(f"{type(pl_module).__name__}.predict_step must return a dict with 'codes' (and 'index'), "
                             "as HashModule.predict_step does")
        _, labels, index = batch
        codes = outputs["codes"].detach().cpu()
        self.bits = codes.shape[1]
        self._parts.append((pack_codes(codes), labels.detach().cpu().numpy(), outputs["index"].detach().cpu().numpy()))

    def on_predict_epoch_end(self, trainer, pl_module) -> None:
        parts_dir = self.out / ".parts"
        if trainer.is_global_zero:
            shutil.rmtree(parts_dir, ignore_errors=True)
        trainer.strategy.barrier()
        parts_dir.mkdir(parents=True, exist_ok=True)
        bits = getattr(self, "bits", pl_module.bits)
        width = -(-bits // 8)
        packed = np.concatenate([p[0] for p in self._parts]) if self._parts else np.zeros((0, width), np.uint8)
        labels = np.concatenate([p[1] for p in self._parts]) if self._parts else np.zeros((0, 0), np.float32)
        index = np.concatenate([p[2] for p in self._parts]) if self._parts else np.zeros(0, np.int64)
        np.savez(parts_dir / f"part-{trainer.global_rank:05d}.npz", packed=packed, labels=labels, index=index,
                 bits=bits)
        trainer.strategy.barrier()
        if trainer.is_global_zero:
            self.written = self._merge(parts_dir, trainer.world_size)
            shutil.rmtree(parts_dir, ignore_errors=True)
        trainer.strategy.barrier()

    def _merge(self, parts_dir: Path, world: int) -> Path:
        parts = [np.load(parts_dir / f"part-{r:05d}.npz", allow_pickle=False) for r in range(world)]
        bits = int(parts[0]["bits"])
        packed = np.concatenate([p["packed"] for p in parts])
        labels = np.concatenate([p["labels"] for p in parts if len(p["index"])])
        index = np.concatenate([p["index"] for p in parts]).astype(np.int64)
        index, first = np.unique(index, return_index=True)  # sorted; the first occurrence of each index
        packed, labels = packed[first], labels[first]
        paths = [self.path_of(int(i)) for i in index] if self.path_of is not None else None
        return save_packed(self.out, packed, bits, labels if self.labels_known else None, index,
                           meta={**self.meta, "world_size": world}, paths=paths)


# ---- encode --------------------------------------------------------------------------------------------------
def _encode_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hashbench encode", description=__doc__,
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
    from .cli import run_cli
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


# ---- evaluate ------------------------------------------------------------------------------------------------
def _top_k(value: str):
    if value == "all":
        return None
    try:
        k = int(value)
    except ValueError:
        k = 0
    if k < 1:
        raise argparse.ArgumentTypeError(f"--top-k takes positive integers or 'all', got {value!r}")
    return k


def _evaluate_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hashbench evaluate", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Re-score saved codes with the suite's exact metrics (ranking by Hamming distance, ties by "
                    "database index; AP@k normalised by the relevant items found in the top k; a query with none "
                    "counts 0). Codes from another codebase: see the 3-line recipe in hashbench/codes.py.",
        epilog="The Hamming ball (P/R/mAP@H<=r) is ranked by (distance, index): saved codes carry no continuous "
               "scores, so mAP@H<=r is not DCH's score-re-ranked number.")
    p.add_argument("--codes", help="a folder holding query/ and database/ codes folders")
    p.add_argument("--query", help="the query codes folder")
    p.add_argument("--database", help="the database codes folder")
    p.add_argument("--top-k", "--top_k", dest="top_k", nargs="+", type=_top_k, default=None,
                   help="cut-offs, e.g. 1000 or 5000 all (default: the protocol's, from the database's meta.json)")
    p.add_argument("--radius", type=int, default=2, help="Hamming ball radius (-1: none)")
    p.add_argument("--exclude-no-relevant", action="store_true", help="thulab: drop queries with no relevant item")
    p.add_argument("--tie-averaged", action="store_true", help="also the expected mAP over orders inside ties")
    p.add_argument("--json", help="also write the metrics and curves to this file")
    return p


def _labelled(codes: Codes, role: str) -> None:
    if not codes.has_labels:
        raise ConfigError(f"the {role} codes in {codes.folder} have no labels (labels.npy missing or (N, 0)); "
                          "evaluation needs labels: encode a split or a list file, not an image folder")


def evaluate_codes(query: Codes, database: Codes, top_k, radius: Optional[int] = 2, exclude_no_relevant=False,
                   tie_averaged=False) -> dict:
    """The suite's metrics and curves of saved codes (database ranked in dataset-index order)."""
    if query.bits != database.bits:
        raise ConfigError(f"query codes have {query.bits} bits but database codes {database.bits}: they come from "
                          "different models")
    _labelled(query, "query")
    _labelled(database, "database")
    order = np.argsort(database.index, kind="stable")  # ties are broken by dataset index
    per_query = rm.per_query_metrics(
        torch.from_numpy(query.signed()), torch.from_numpy(query.labels), torch.from_numpy(database.signed()[order]),
        torch.from_numpy(database.labels[order]), top_ks=top_k, radius=radius, tie_average=tie_averaged, curves=True)
    metrics = rm.summarize(per_query, exclude_no_relevant=exclude_no_relevant)
    name = "all" if top_k[0] is None else str(top_k[0])
    curves = {k.replace("pr_", "").replace("/", "_"): v.tolist() for k, v in rm.summarize_curves(per_query).items()}
    return {"metrics": {"mAP": metrics[f"mAP@{name}"], **metrics}, "num_query": len(query),
            "num_database": len(database), "bits": query.bits, "curves": curves,
            "query": str(query.folder), "database": str(database.folder),
            "checkpoint_sha256": {"query": query.meta.get("checkpoint_sha256"),
                                  "database": database.meta.get("checkpoint_sha256")}}


def evaluate_main(argv: list[str]) -> int:
    p = _evaluate_parser()
    args = p.parse_args(argv)
    if args.codes and (args.query or args.database) or not args.codes and not (args.query and args.database):
        p.error("give --codes DIR (holding query/ and database/), or both --query DIR and --database DIR")
    qdir, dbdir = (Path(args.codes) / "query", Path(args.codes) / "database") if args.codes else \
        (Path(args.query), Path(args.database))
    query, database = load_codes(qdir), load_codes(dbdir)
    top_k = args.top_k
    if top_k is None:
        if "top_k" not in database.meta:
            p.error(f"{dbdir}/meta.json names no protocol top_k; give --top-k (e.g. --top-k 1000, or all)")
        top_k = [database.meta["top_k"]]
    shas = {query.meta.get("checkpoint_sha256"), database.meta.get("checkpoint_sha256")}
    if len(shas) > 1 and None not in shas:
        print("hashbench evaluate: warning: query and database codes were made by different checkpoints "
              "(checkpoint_sha256 differs in meta.json)", file=sys.stderr)
    results = evaluate_codes(query, database, top_k, None if args.radius < 0 else args.radius,
                             args.exclude_no_relevant, args.tie_averaged)
    m = results["metrics"]
    print(f"hashbench evaluate: {results['num_query']:,} queries x {results['num_database']:,} database items, "
          f"{results['bits']} bits")
    print("  " + "   ".join(f"{k} {v:.4f}" for k, v in m.items() if "H<=" not in k))
    ball = [k for k in m if "H<=" in k]
    if ball:
        print("  " + "   ".join(f"{k} {m[k]:.4f}" for k in ball) + "   (ball ranked by Hamming distance, then index)")
    if args.json:
        Path(args.json).write_text(json.dumps(results))
    return 0


# ---- search --------------------------------------------------------------------------------------------------
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
    from .cli import run_cli
    cli = run_cli(["--config", str(config), "--trainer.logger", "false", "--trainer.devices", "1",
                   "--trainer.strategy", "auto", *overrides], run=False)
    model = cli.model
    checkpoint = read_checkpoint(ckpt)  # checksum, then data only: a crafted pickle named by meta.json runs nothing
    check_checkpoint_matches(checkpoint, cli.config, ckpt)
    model.load_state_dict(checkpoint["state_dict"])
    model.to(cli.trainer.strategy.root_device).eval()
    return model, _eval_transform(cli.datamodule), cli.trainer


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
    paths = _paths(dataset)
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
