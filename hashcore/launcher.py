"""Which process a launcher started, read from the environment (no torch: the console asks before importing it).

Lightning's DDP launcher, torchrun and SLURM give every process they start its rank in environment variables,
before any process group exists; the process the user started has none of them (or 0). After the process group is
up, :func:`hashcore.distributed.global_rank` and :func:`hashcore.distributed.world_size` say the same from torch.
"""
from __future__ import annotations

import os
from typing import Optional

#: how launchers (Lightning's DDP launcher, torchrun, SLURM) tell a process its rank before any process group exists
LAUNCHER_RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID")


def launcher_rank() -> Optional[str]:
    """``"<n> (<VARIABLE>)"`` for the first launcher variable giving this process a non-zero rank; None when none does
    (the process a user started, which launches the others)."""
    return next((f"{os.environ[k]} ({k})" for k in LAUNCHER_RANK_VARIABLES if os.environ.get(k, "0") not in ("0", "")),
                None)


def is_launching_process() -> bool:
    """True in the process the user started; False in the ones a launcher started (they re-run the command line).
    Readable before torch.distributed is initialised, unlike :func:`global_rank`."""
    return launcher_rank() is None
