"""The pure core, the bottom layer: exact retrieval metrics, hash layers, losses, distributed helpers, the method
registry and the on-disk feature store. Plain torch/numpy: imports no Lightning and nothing of the suite above it.

Layers, top to bottom (``lint-imports`` checks them): ``hashbench`` (commands, sweeps, reports) → ``callbacks``
(Lightning callbacks) → ``lightning_modules`` | ``datamodules`` (independent of each other) → ``hashcore``.
"""
