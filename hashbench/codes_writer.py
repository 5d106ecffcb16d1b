"""The predict-loop callback of ``hashbench encode``: every rank's codes, merged by rank 0 into one codes folder."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable, Optional

import lightning as L
import numpy as np

from .codes import pack_codes, save_packed


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

