"""The reproduction ledger: every row has a source and a config; a cell is compared only with the same row."""
import re
from pathlib import Path

import pytest

from hashbench import ledger

ROOT = Path(__file__).resolve().parent.parent


def _row(**kw):
    base = dict(paper="p", table="table1", method="bihalf", dataset="cifar10", protocol="bihalf_i",
                metric="mAP@1000", bits=16, backbone="vgg16", value=0.561, config="experiments/cifar_bihalf.yaml",
                source="arXiv 2012.12334, Table 1")
    base.update(kw)
    return ledger.Reported(**base)


CELL = dict(method="bihalf", dataset="cifar10", protocol="bihalf_i", metric="mAP@1000", bits=16, backbone="vgg16")


# a source names a paper (arXiv id), a repository at a commit (owner/repo@commit:path) or an issue thread (URL)
SOURCE = re.compile(r"arXiv \d{4}\.\d{4,5}|[\w.-]+/[\w.-]+@[0-9a-f]{7,40}|[\w.-]+@[0-9a-f]{7,40} \S+\.py|"
                    r"https://github\.com/[\w.-]+/[\w.-]+/issues/\d+")


def test_every_ledger_row_has_a_source_and_an_existing_config():
    rows = ledger.load()
    assert rows, "experiments/reported/ holds no rows"
    for r in rows:
        assert SOURCE.search(r.source), f"{r.paper}:{r.table} {r.method} {r.bits}: source {r.source!r} names no paper, commit or issue"
        assert (ROOT / r.config).is_file(), f"{r.config} of {r.paper}:{r.table} does not exist"
        assert 0 < r.value <= 1


def test_same_row_is_matched_and_judged_by_the_seeds_spread():
    c = ledger.compare_cell(CELL, [0.55, 0.56, 0.57], [_row()])
    assert c.ours == pytest.approx(0.56) and c.delta == pytest.approx(-0.001)
    assert c.verdict.startswith("agrees")
    far = ledger.compare_cell(CELL, [0.40, 0.41, 0.42], [_row()])
    assert far.verdict.startswith("below paper")
    assert ledger.compare_cell(CELL, [0.40], [_row()]).verdict == "one seed: no verdict"


@pytest.mark.parametrize("key,value,why", [("protocol", "bihalf_ii", "protocol"), ("backbone", "alexnet", "backbone")])
def test_different_protocol_or_backbone_is_not_compared(key, value, why):
    c = ledger.compare_cell({**CELL, key: value}, [0.56, 0.56], [_row()])
    assert c.verdict.startswith("not comparable") and why in c.verdict
    assert c.ours is None and c.delta is None


def test_other_bits_or_metric_have_no_row():
    assert ledger.compare_cell({**CELL, "bits": 32}, [0.5], [_row()]) is None
    assert ledger.compare_cell({**CELL, "metric": "mAP@all"}, [0.5], [_row()]) is None


def test_percent_and_fraction_units_mean_the_same(tmp_path):
    (tmp_path / "a.yaml").write_text(
        "paper: a\nrows:\n"
        "- {table: t, method: m, dataset: d, protocol: p, metric: mAP@all, bits: 16, backbone: b, value: 56.1,"
        " unit: percent, config: c, source: s}\n"
        "- {table: t, method: m, dataset: d, protocol: p, metric: mAP@all, bits: 32, backbone: b, value: 0.561,"
        " unit: fraction, config: c, source: s}\n")
    a, b = ledger.load(tmp_path)
    assert a.value == pytest.approx(0.561) and b.value == pytest.approx(0.561)
    (tmp_path / "a.yaml").write_text("paper: a\nrows:\n- {table: t, method: m, value: 56.1, unit: percent}\n")
    with pytest.raises(ledger.LedgerError, match="lacks"):
        ledger.load(tmp_path)


def test_select_by_paper_and_table():
    rows = ledger.load()
    assert {r.table for r in ledger.select(rows, "bihalf:table1")} == {"table1"}
    assert len(ledger.select(rows, "bihalf")) > len(ledger.select(rows, "bihalf:table1"))


def test_every_ledger_config_trains_the_rows_method_on_the_rows_protocol():
    """reproduce passes the row's config to compare with the row's method: both must name the same model class,
    and the config's data protocol must be the row's (else the row would never match its own run)."""
    import yaml
    for r in ledger.load():
        config = yaml.safe_load((ROOT / r.config).read_text())
        method = yaml.safe_load((ROOT / "experiments" / "methods" / f"{r.method}.yaml").read_text())
        assert config["model"]["class_path"] == method["model"]["class_path"], r
        assert config["data"]["init_args"]["protocol"] == r.protocol, r
        assert config["model"]["init_args"].get("backbone") == r.backbone, r


def test_annotate_puts_the_paper_next_to_every_seed_of_the_cell_and_table_summarises_it():
    rows = [{**CELL, "status": "ok", "seed": s, "headline": "mAP@1000", "mAP@1000": v}
            for s, v in ((0, 0.55), (1, 0.57))] + [{**CELL, "bits": 32, "status": "ok", "seed": 0,
                                                    "headline": "mAP@1000", "mAP@1000": 0.5}]
    for r in rows:
        del r["metric"]
    out = ledger.annotate(rows, [_row()])
    assert [r.get("reported") for r in out] == [0.561, 0.561, None]
    assert out[0]["delta"] == pytest.approx(-0.001) and "agrees" in out[0]["verdict"]
    assert "verdict" not in rows[0]  # the caller's rows are left alone


def test_a_broken_ledger_file_is_reported_not_fatal_to_the_report(tmp_path, monkeypatch, capsys):
    (tmp_path / "bad.yaml").write_text("paper: x\nrows:\n- {table: t}\n")
    monkeypatch.setenv("HASHBENCH_LEDGER", str(tmp_path))
    rows = [{**CELL, "status": "ok", "seed": 0, "headline": "mAP@1000", "mAP@1000": 0.5}]
    assert ledger.annotate(rows) == rows
    assert "hashbench: warning:" in capsys.readouterr().err


def test_per_seed_rows_take_their_mean_and_refuse_a_second_value(tmp_path):
    head = "paper: a\nrows:\n- {table: t, method: m, dataset: d, protocol: p, metric: mAP@all, bits: 16, backbone: b,"
    (tmp_path / "a.yaml").write_text(head + " per_seed: {0: 0.46, 2: 0.44}, unit: fraction, kind: official code run,"
                                     " config: c, source: s}\n")
    (row,) = ledger.load(tmp_path)
    assert row.value == pytest.approx(0.45) and row.per_seed == (0.46, 0.44) and row.reference == "official"
    (tmp_path / "a.yaml").write_text(head + " per_seed: {0: 0.46}, value: 0.46, unit: fraction, config: c, source: s}\n")
    with pytest.raises(ledger.LedgerError, match="either value or per_seed"):
        ledger.load(tmp_path)
    (tmp_path / "a.yaml").write_text(head + " per_seed: {0: high}, unit: fraction, config: c, source: s}\n")
    with pytest.raises(ledger.LedgerError, match="per_seed must map each seed"):
        ledger.load(tmp_path)


def test_official_runs_are_held_against_ours_as_two_samples_of_seeds():
    ae = dict(method="ae_bihalf", dataset="MNIST", protocol="bihalf_ae", metric="mAP@all", bits=16, backbone="mnist_mlp")
    one = _row(**{**ae, "value": 0.4606, "per_seed": (0.4606,), "kind": "official code run"})
    ours = [0.4406, 0.4408, 0.4687]  # docs/reproduction.md, the suite's three bi-half seeds
    c = ledger.compare_cell(ae, ours, [one])
    # one official seed: its spread is taken to be ours, so the tolerance is 2·std·√(1/3 + 1)
    std = 0.016166
    assert c.delta == pytest.approx(0.450033 - 0.4606, abs=1e-5)
    assert c.verdict.startswith("agrees") and "3 seeds vs 1 official seed" in c.verdict
    assert f"±{2 * std * (1 / 3 + 1) ** 0.5:.4f}" in c.verdict
    # three official seeds, tight: the standard errors of both means, and a gap beyond them is "below official"
    three = _row(**{**ae, "value": 0.4806, "per_seed": (0.4800, 0.4806, 0.4812), "kind": "official code run"})
    far = ledger.compare_cell(ae, ours, [three])
    assert far.verdict.startswith("below official") and "3 seeds vs 3 official seeds" in far.verdict


def test_the_studys_compare_cells_match_the_autoencoder_rows_exactly():
    """The cells `hashbench compare --config experiments/data/mnist_binary.yaml --methods ae_*` produces (dataset,
    protocol and cut-off from the data config, backbone from each method's config) are compared, not 'not comparable'."""
    import yaml
    from datamodules import BinarizedMNIST
    data = yaml.safe_load((ROOT / "experiments" / "data" / "mnist_binary.yaml").read_text())["data"]["init_args"]
    rows = [r for r in ledger.load() if r.table == "autoencoder"]
    assert {r.method for r in rows} >= {"ae_bihalf", "ae_sign"} and all(r.kind == "official code run" for r in rows)
    for r in rows:
        method = yaml.safe_load((ROOT / "experiments" / "methods" / f"{r.method}.yaml").read_text())
        cell = dict(method=r.method, bits=r.bits, metric="mAP@all", dataset=BinarizedMNIST.display_name,
                    protocol=data["protocol"], backbone=method["model"]["init_args"]["backbone"])
        c = ledger.compare_cell(cell, [r.value, r.value], rows)
        assert c.row == r and c.verdict.startswith("agrees"), c.verdict
