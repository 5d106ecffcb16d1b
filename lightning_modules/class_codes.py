"""A mixin for methods whose targets are fixed ±1 codes per class (OrthoHash's codebook, DPN's centres).

The codes are a buffer ``class_codes`` built in ``set_num_classes`` (the CLI hands the datamodule's ``num_classes``
over) from a ``codebook_seed`` hyperparameter's own generator, so a run's codes are a function of its seed and travel
in its checkpoints; ``num_classes`` is recorded in ``hparams`` so ``load_from_checkpoint`` rebuilds the shape.
"""
from __future__ import annotations

import torch


class ClassCodes:
    """Call ``init_class_codes(num_classes)`` in ``__init__``; implement ``make_class_codes(C, generator)``."""

    def init_class_codes(self, num_classes) -> None:
        self.register_buffer("class_codes", torch.zeros(0, self.bits))
        if num_classes is not None:
            self.set_num_classes(num_classes)

    def make_class_codes(self, num_classes: int, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def set_num_classes(self, num_classes: int) -> None:
        self.record_num_classes(num_classes)
        if self.class_codes.shape[0] == num_classes:
            return
        g = torch.Generator().manual_seed(self.hparams.codebook_seed)
        self.class_codes = self.make_class_codes(int(num_classes), g).to(self.class_codes.device)

    def on_fit_start(self) -> None:
        if self.class_codes.shape[0] == 0:
            raise ValueError(f"{type(self).__name__} needs the number of classes for its class codes: set "
                             "model.num_classes, or run through the hashbench CLI, which hands the datamodule's "
                             "num_classes over")
