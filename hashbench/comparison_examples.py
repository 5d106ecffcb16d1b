"""Retrieval examples, the qualitative figure of hashing papers: fixed queries and each method's top 10.

The images are stored as small PNGs in ``results/<name>/thumbs/`` when the sweep runs, so the figure can be
redrawn from the results folder alone, without the dataset.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .comparison_figures import new_figure, title
from .comparison_rows import ReportInputError, ComparisonRows, TitleInfo

THUMBS = "thumbs"
SPLITS = ("query", "database")
THUMB_SIZE = 64
MAX_QUERIES = 6  # more rows than this stops being readable on a page
RELEVANT, IRRELEVANT = "#1a9850", "#d73027"


def thumb_path(out: Path, split: str, index: int) -> Path:
    return Path(out) / THUMBS / f"{split}_{int(index)}.png"


def save_thumbnails(out: Path, images: dict, size: int = THUMB_SIZE) -> list[Path]:
    """Store ``images[(split, index)]`` (PIL images; split "query" or "database", index = dataset index) as
    PNGs of at most ``size`` pixels a side under ``out/thumbs/``; returns their paths."""
    from PIL import Image

    folder = Path(out) / THUMBS
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for key, image in images.items():
        if not (isinstance(key, tuple) and len(key) == 2 and key[0] in SPLITS and isinstance(key[1], (int, np.integer))
                and key[1] >= 0):
            raise ReportInputError(f"thumbnail key {key!r}: expected (split, index) with split in {SPLITS} and a "
                                   "non-negative dataset index, e.g. ('query', 12)")
        if not isinstance(image, Image.Image):
            raise ReportInputError(f"thumbnail {key!r} is a {type(image).__name__}, expected a PIL.Image.Image")
        small = image.copy()
        if small.mode not in ("L", "RGB"):
            small = small.convert("RGB")
        small.thumbnail((size, size))
        path = thumb_path(out, *key)
        small.save(path)
        paths.append(path)
    return paths


def retrieval_examples_figure(out: Path, sweep: ComparisonRows, info: TitleInfo):
    """Per fixed query: the query, then each method's top 10 at the largest code length (seed 0 where it
    finished), framed green (relevant) or red (irrelevant), with the Hamming distance under each image.
    Each query's block is one mosaic image (one axes), which keeps the figure fast to draw."""
    with_examples = [b for b in sweep.bits if any(r.get("examples") for m in sweep.methods
                                                  for r in sweep.runs(m.method, b))]
    bits = max(with_examples)
    chosen = []  # (method, run): seed 0 if it finished, else the lowest finished seed
    for m in sweep.methods:
        runs = [r for r in sweep.runs(m.method, bits) if r.get("examples")]
        if runs:
            chosen.append((m, next((r for r in runs if int(r["seed"]) == 0), runs[0])))
    queries = list(dict.fromkeys(int(e["query"]) for e in chosen[0][1]["examples"]))
    shown = queries[:MAX_QUERIES]
    tiles = _load_tiles(out, shown, chosen)
    top = max(len(e["retrieved"]) for _, r in chosen for e in r["examples"])

    width = _LABEL_COL + _QUERY_COL + top * (_TILE + _GAP)
    height = len(chosen) * (_TILE + _ROW_GAP)
    fig = new_figure(9.0, len(shown) * (8.8 * height / width + 0.08) + 0.75)
    axes = fig.subplots(len(shown), 1, squeeze=False)[:, 0]
    for n, (ax, q) in enumerate(zip(axes, shown)):
        # alternate blocks on a light grey ground, so one query's rows are told from the next
        mosaic = np.full((height, width, 3), 238 if n % 2 else 255, dtype=np.uint8)
        y_query = (height - _ROW_GAP - _TILE) // 2
        mosaic[y_query:y_query + _TILE, _LABEL_COL:_LABEL_COL + _TILE] = tiles[("query", q)]
        ax.text(_LABEL_COL + _TILE / 2, y_query + _TILE + 2, f"query\n#{q}", ha="center", va="top", fontsize=7)
        row_labels = []
        for i, (m, run) in enumerate(chosen):
            y = i * (_TILE + _ROW_GAP)
            seed = "" if int(run["seed"]) == 0 else f" (seed {run['seed']})"
            example = next((e for e in run["examples"] if int(e["query"]) == q), None)
            if example is None:
                row_labels.append(f"{m.label}{seed}\nnot recorded")
                continue
            if not len(example["retrieved"]) == len(example["relevant"]) == len(example["distance"]):
                raise ReportInputError(f"examples of {m.method} {bits} bits seed {run['seed']}, query {q}: "
                                       "'retrieved', 'relevant' and 'distance' must have the same length")
            row_labels.append(f"{m.label}{seed}\n{sum(map(bool, example['relevant']))}/"
                              f"{len(example['retrieved'])} relevant")
            for j, (db, rel, dist) in enumerate(zip(example["retrieved"], example["relevant"], example["distance"])):
                x = _LABEL_COL + _QUERY_COL + j * (_TILE + _GAP)
                colour = RELEVANT if rel else IRRELEVANT
                mosaic[y:y + _TILE, x:x + _TILE] = _framed(tiles[("database", int(db))], colour)
                ax.text(x + _TILE / 2, y + _TILE + 1, f"{'✓' if rel else '✗'} d={dist}", ha="center", va="top",
                        fontsize=6.5, color=colour)
        for i, text in enumerate(row_labels):  # names drawn inside the image's label column: no layout guesswork
            ax.text(_LABEL_COL - _GAP, i * (_TILE + _ROW_GAP) + _TILE / 2, text, ha="right", va="center", fontsize=8)
        ax.imshow(mosaic, interpolation="nearest")
        ax.set_axis_off()
    n_seed0 = "seed 0" if all(int(r["seed"]) == 0 for _, r in chosen) else "seed 0 where it finished"
    more = f" (first {len(shown)} of {len(queries)})" if len(queries) > len(shown) else ""
    title(fig, info.setting, f"top-{top} database images by Hamming distance d for {len(shown)} fixed test "
          f"queries{more}, {bits} bits, {n_seed0}", "frame: green ✓ = relevant (shares a label with the query), "
          "red ✗ = irrelevant", fontsize=9)
    return fig


_TILE, _BORDER, _GAP, _ROW_GAP = 64, 4, 6, 16  # pixels of the mosaic
_QUERY_COL = _TILE + 3 * _GAP
_LABEL_COL = int(2.4 * _TILE)


def _load_tiles(out: Path, queries: list[int], chosen) -> dict:
    """The needed thumbnails as RGB tiles of _TILE pixels (or a clear error naming the missing ones)."""
    from PIL import Image, ImageOps

    needed = {("query", q) for q in queries}
    for _, run in chosen:
        needed |= {("database", int(d)) for e in run["examples"] if int(e["query"]) in queries
                   for d in e["retrieved"]}
    missing = sorted(str(thumb_path(out, *k)) for k in needed if not thumb_path(out, *k).is_file())
    if missing:
        raise FileNotFoundError(f"retrieval_examples.png needs {len(missing)} thumbnail(s) that are not there, "
                                f"e.g. {missing[0]}: save the query and retrieved images with "
                                "hashbench.comparison.save_thumbnails(out, images) before plot_all")
    tiles = {}
    for k in needed:
        side = _TILE if k[0] == "query" else _TILE - 2 * _BORDER
        with Image.open(thumb_path(out, *k)) as im:
            im = im.convert("RGB")
            resample = Image.Resampling.NEAREST if max(im.size) * 2 <= side else Image.Resampling.BILINEAR
            tiles[k] = np.asarray(ImageOps.pad(im, (side, side), method=resample, color=(255, 255, 255)))
    return tiles


def _framed(tile: np.ndarray, colour: str) -> np.ndarray:
    rgb = tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))
    framed = np.empty((_TILE, _TILE, 3), dtype=np.uint8)
    framed[:] = rgb
    framed[_BORDER:-_BORDER, _BORDER:-_BORDER] = tile
    return framed
