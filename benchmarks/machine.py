"""One line describing where a benchmark ran (printed next to every result)."""
from __future__ import annotations

import contextlib
import os
import platform

import lightning as L
import torch


def machine_info(device: str) -> str:
    cpu = platform.processor() or "?"
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",)
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "none"
    return (f"machine: {platform.node()} | {platform.platform()} | CPU {cpu} | {os.cpu_count()} cores | "
            f"torch threads {torch.get_num_threads()} | GPU {gpu} | device used: {device}\n"
            f"python {platform.python_version()} | torch {torch.__version__} | lightning {L.__version__} | "
            f"load average at start {tuple(round(x, 2) for x in load)}")

