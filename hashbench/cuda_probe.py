"""Stop a CPU-only run from probing for an NVIDIA driver on every optimiser step.

Importing Lightning sets ``PYTORCH_NVML_BASED_CUDA_CHECK=1`` (``lightning/fabric/__init__.py``) so that
``torch.cuda.is_available()`` asks NVML instead of initialising CUDA, which keeps forked DataLoader workers safe.
``Adam.step`` (like most of ``torch.optim``) calls ``torch.accelerator.current_accelerator(check_available=True)``
on every step (its graph-capture health check, torch 2.14); with the variable set and no driver installed, each call
retries ``CDLL("libnvidia-ml.so.1")`` and fails (the answer is cached only once CUDA is initialised). On the Bi-half
autoencoder study's 7 ms CPU steps that is 0.3-0.5 ms a step (``benchmarks/bench_ae_overhead.py``). Without the driver
there is no CUDA to initialise and no fork to protect, so the variable is dropped; with one it stays as Lightning set it.
"""
from __future__ import annotations

import ctypes
import os

VARIABLE = "PYTORCH_NVML_BASED_CUDA_CHECK"
NVML_LIBRARY = "libnvidia-ml.so.1"


def nvidia_driver_present() -> bool:
    """Whether NVML (installed with the NVIDIA driver) loads in this process."""
    try:
        ctypes.CDLL(NVML_LIBRARY)
    except OSError:
        return False
    return True


def skip_nvml_probe_without_driver() -> bool:
    """Unset ``PYTORCH_NVML_BASED_CUDA_CHECK`` when no NVIDIA driver is installed; True when it did. A ROCm build of
    torch counts AMD GPUs through the same variable (amdsmi, no NVML), so there it is always left alone."""
    import torch

    if os.environ.get(VARIABLE) != "1" or torch.version.hip is not None or nvidia_driver_present():
        return False
    del os.environ[VARIABLE]
    return True
