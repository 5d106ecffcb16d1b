"""The feature cache's disk side, on a toy split: every byte of a row is written or the build stops with one
error naming the path and the space, and a cache entry is data only (a planted pickle never runs)."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from torch import nn

import hashcore.cache_storage as storage
from hashcore.cache_storage import CacheStorageError
from hashcore.feature_store import cache_features
from tests.toy import ToyImages


class Linear(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.net = nn.Sequential(nn.Flatten(1), nn.Linear(3 * 8 * 8, 12))

    def forward(self, x):
        return self.net(x)


def toy(n=37):
    ds = ToyImages(n, seed=1)
    ds.transform, ds.split = None, "toy"
    return ds


def build(cache_dir, **kw):
    return cache_features(toy(), Linear(), {"encoder": "linear"}, split="toy", cache_dir=str(cache_dir), batch_size=8,
                          dtype="float32", progress=False, **kw)


def test_short_writes_are_continued_and_the_entry_equals_one_written_whole(tmp_path, monkeypatch):
    whole = np.array(build(tmp_path / "whole").features)
    real = os.pwrite
    calls = []

    def short(fd, data, offset):  # the kernel may write fewer bytes than asked: at most 5 here
        calls.append(len(data))
        return real(fd, bytes(data[:5]), offset)

    monkeypatch.setattr(storage.os, "pwrite", short)
    cached = build(tmp_path / "short")
    assert max(calls) > 5  # rows were offered whole and continued after short writes
    np.testing.assert_array_equal(np.array(cached.features), whole)


def test_a_write_of_nothing_is_a_full_disk_error_naming_the_file_and_the_entry_stays_incomplete(tmp_path, monkeypatch):
    real = os.pwrite
    state = {"bytes": 0}

    def filling(fd, data, offset):  # the disk fills up after 600 bytes of rows
        room = max(0, 600 - state["bytes"])
        n = real(fd, bytes(data[:room]), offset) if room else 0
        state["bytes"] += n
        return n

    monkeypatch.setattr(storage.os, "pwrite", filling)
    with pytest.raises(CacheStorageError) as info:
        build(tmp_path)
    message = str(info.value)
    assert message.startswith("feature cache: cannot write ") and "features.npy" in message
    assert "no space left" in message and "needs" in message and "free" in message and "cache_dir" in message
    assert info.value.__context__ is None  # the CLI prints this message, not a bare "[Errno 28]" under it
    [partial] = [p for p in tmp_path.iterdir()]
    assert partial.name.endswith(".partial") and not (partial / "meta.json").exists()
    assert json.loads((partial / "progress-rank0.json").read_text())["done"] * 12 * 4 <= 600  # only rows written

    monkeypatch.setattr(storage.os, "pwrite", real)  # space freed: the rerun resumes and completes
    resumed = build(tmp_path)
    assert resumed.cache_status == "resumed"
    np.testing.assert_array_equal(np.array(resumed.features), np.array(build(tmp_path / "fresh").features))


class Payload:
    """Unpickling this creates the marker file: code run by loading data."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("planted", ["labels.npy", "features.npy"])
def test_a_pickle_planted_in_a_cache_entry_never_runs(planted, tmp_path):
    first = build(tmp_path / "cache")
    marker = tmp_path / "pwned"
    np.save(os.path.join(first.path, planted), np.array([Payload(marker)], dtype=object), allow_pickle=True)
    meta = json.loads(open(os.path.join(first.path, "meta.json")).read())
    assert meta["complete"] is True  # the entry still claims to be complete

    again = build(tmp_path / "cache")
    len(again), again.get_batch([0, 1])  # every read path of the cached split
    assert not marker.exists()
    assert again.cache_status == "built"  # the tampered entry is not used: rebuilt from the images
    np.testing.assert_array_equal(again.labels.numpy(), toy().labels.numpy())
