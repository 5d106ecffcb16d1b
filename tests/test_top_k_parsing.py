"""The mAP cut-off ``top_k`` is read by one function (hashcore/retrieval_metrics/cut_offs.py) wherever a user writes
it: data.top_k, RetrievalEvaluation.top_k, ``hashbench evaluate --top-k`` and the metrics' ``top_k=``."""
import argparse

import numpy as np
import pytest
import torch

from hashcore import retrieval_metrics as rm
from hashcore.retrieval_metrics.cut_offs import parse_top_k, parse_top_ks, top_k_name

WHOLE = [None, "all", "ALL", " all ", "-1", -1, "full", "none", np.int64(-1)]
INTEGERS = [(1000, 1000), ("1000", 1000), (" 5000 ", 5000), (np.int32(7), 7), (1, 1)]
REFUSED = [0, "0", -2, "-2", 2.5, 1000.0, "1000.0", "1e3", "ten", "", True, False, np.bool_(True), [1000], {}]


@pytest.mark.parametrize("value", WHOLE)
def test_the_whole_database_forms(value):
    assert parse_top_k(value, "data.top_k") is None


@pytest.mark.parametrize("value, k", INTEGERS)
def test_integer_forms(value, k):
    got = parse_top_k(value, "data.top_k")
    assert got == k and type(got) is int


@pytest.mark.parametrize("value", REFUSED)
def test_refused_forms_name_the_option_and_what_to_write(value):
    with pytest.raises(ValueError) as info:
        parse_top_k(value, "data.top_k")
    assert str(info.value) == (f"data.top_k must be a positive integer or 'all' (the whole database), got {value!r}; "
                               "e.g. 1000 or all")


def test_lists_of_cut_offs():
    assert parse_top_ks([5000, "all"], "cb.top_k") == [5000, None]
    assert parse_top_ks(1000, "cb.top_k") == [1000]
    assert parse_top_ks("all", "cb.top_k") == [None]
    assert parse_top_ks(("100", -1), "cb.top_k") == [100, None]


@pytest.mark.parametrize("value, message", [
    ([], "cb.top_k is empty; give positive integers or 'all' (the whole database), e.g. [1000] or [5000, all]"),
    ([5, 0], "cb.top_k has an invalid entry 0: give positive integers or 'all' (the whole database), "
             "e.g. [1000] or [5000, all]"),
    ([5, "5"], "cb.top_k lists a cut-off twice: [5, '5']; give each once, e.g. [1000] or [5000, all]"),
    (["all", -1], "cb.top_k lists a cut-off twice: ['all', -1]; give each once, e.g. [1000] or [5000, all]"),
])
def test_refused_lists(value, message):
    with pytest.raises(ValueError) as info:
        parse_top_ks(value, "cb.top_k")
    assert str(info.value) == message


def test_metric_names():
    assert [top_k_name(k) for k in parse_top_ks([1000, "all"])] == ["1000", "all"]


def test_every_reader_accepts_and_refuses_the_same_forms():
    """The datamodule, the callback, the evaluate command and the metrics agree on every form above."""
    from callbacks.retrieval import RetrievalEvaluation
    from datamodules.base import resolve_top_k
    from hashbench.evaluate_command import _top_k

    codes = torch.tensor([[1.0, -1.0], [-1.0, 1.0]])
    labels = torch.tensor([0, 1])
    for value, k in [*((v, None) for v in WHOLE if v is not None), *INTEGERS]:
        assert resolve_top_k(value, default=123) == k
        assert RetrievalEvaluation(top_k=[value]).top_k == [k]
        assert _top_k(str(value)) == k
        if str(value).strip() == "-1":  # DeepHash-pytorch's -1 (all but the last item): the metrics refuse it
            with pytest.raises(ValueError, match="top_k=-1 is ambiguous"):
                rm.mean_average_precision(codes, labels, codes, labels, top_k=value)
        else:
            rm.mean_average_precision(codes, labels, codes, labels, top_k=value)  # accepted
    assert resolve_top_k(None, default=123) == 123  # not given: the protocol's
    for value in REFUSED:
        for read in (lambda v: resolve_top_k(v, default=123), lambda v: RetrievalEvaluation(top_k=[v]),
                     lambda v: rm.mean_average_precision(codes, labels, codes, labels, top_k=v)):
            with pytest.raises(ValueError, match="positive integers? or 'all'"):
                read(value)
        if isinstance(value, str):
            with pytest.raises(argparse.ArgumentTypeError, match="the cut-off must be a positive integer or 'all'"):
                _top_k(value)
