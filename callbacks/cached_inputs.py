"""Which inputs a model's backbone receives while a FeatureCache is attached: cached rows or images, as one explicit
state with named transitions (one place decides, so no hook can leave the backbone reading images as features).

The state is what was cached (``train``, the evaluation splits) and the phase Lightning is in: ``idle`` (images),
``training`` (cached rows if the train split was cached) or ``evaluating`` (cached rows if the evaluation splits were).
"""
from __future__ import annotations

import enum


class Phase(enum.Enum):
    IDLE = "idle"
    TRAINING = "training"
    EVALUATING = "evaluating"


class CachedInputs:
    """``inputs_cached``: whether the backbone reads cached rows now. Transitions, in the order Lightning calls them:
    ``cached(train, evaluation)`` after a stage's setup built or loaded the cache; ``start_training()`` at each train
    epoch; ``start_evaluation()`` at validation / test / predict start; ``end_evaluation(fitting)`` at validation end
    (back to training while fitting); ``end_stage()`` when a stage ends; ``reset()`` at teardown (nothing cached)."""

    def __init__(self) -> None:
        self.train = False       # the train split is served from the cache
        self.evaluation = False  # the evaluation splits (val / query / database) are
        self.phase = Phase.IDLE

    @property
    def inputs_cached(self) -> bool:
        return {Phase.IDLE: False, Phase.TRAINING: self.train, Phase.EVALUATING: self.evaluation}[self.phase]

    def cached(self, train: bool, evaluation: bool) -> None:
        self.train, self.evaluation, self.phase = bool(train), bool(evaluation), Phase.IDLE

    def start_training(self) -> None:
        self.phase = Phase.TRAINING

    def start_evaluation(self) -> None:
        self.phase = Phase.EVALUATING

    def end_evaluation(self, fitting: bool) -> None:
        self.phase = Phase.TRAINING if fitting else Phase.IDLE

    def end_stage(self) -> None:
        self.phase = Phase.IDLE

    def reset(self) -> None:
        self.cached(False, False)

    def __repr__(self) -> str:
        return f"CachedInputs(phase={self.phase.value}, train={self.train}, evaluation={self.evaluation})"
