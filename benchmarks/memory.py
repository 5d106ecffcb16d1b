"""Resident memory of a benchmark process (Linux /proc), without importing torch (some runs measure NumPy alone)."""
from __future__ import annotations

import threading


def rss_mib() -> float:
    """This process' resident set size (Linux ``/proc``), MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class PeakRSS:
    """Highest resident set size seen by a sampling thread while the ``with`` block runs (``.peak``, MiB)."""

    def __init__(self, interval: float = 0.01):
        self.interval = interval

    def __enter__(self):
        self.peak, self._stop = rss_mib(), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, rss_mib())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mib())
