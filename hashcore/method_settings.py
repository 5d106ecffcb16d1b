"""``MethodSettings``: how a method's official code trains it, declared by the method class itself.

Each method class in ``lightning_modules/`` sets ``paper_settings = MethodSettings(...)`` next to its code, so the
registry is the only list of methods; ``hashbench/paper_settings.py`` reads the attribute to write the experiment
configs and ``hashbench compare``'s per-method schedules. Standard library only (the pure core).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass(frozen=True)
class MethodSettings:
    """How the official code trains a method (sources in docs/methods.md).

    Only what the class signature cannot hold: the model's hyperparameter defaults (lr, optimiser, γ, …) are its
    ``__init__`` defaults; per-dataset changes of the papers are ``hashbench.paper_settings.DATASETS``.
    """

    #: where the settings come from: repo@commit (files): the official schedule in words
    source: str
    epochs: int
    batch_size: int
    val_every: int = 5
    #: the official code keeps its best validation epoch (only where the protocol has a validation split)
    select_on_validation: bool = False
    #: epochs that depend on the code length (CIBHash: ≥ 80 at 16 bits; GreedyHash: 300 at 16 bits)
    epochs_at_bits: dict = field(default_factory=dict)
    #: an official schedule counted in iterations (HashNet: 10,000): training stops there; ``epochs=-1`` then means
    #: "as many epochs as that takes"
    max_steps: Optional[int] = None
    #: the only datasets the method's paper configs are written for (None = every dataset of ``DATASETS``)
    datasets: Optional[tuple] = None
    #: extra init args of the RetrievalEvaluation callback (e.g. the tie-averaged mAP next to the stable one)
    retrieval: dict = field(default_factory=dict)
