"""With WANDB_MODE=offline, log_wandb_summary writes one new "summary" run holding the comparison table
(values recomputed here with numpy), the figures as images and the headline-vs-bits line plot."""
import glob
import json
import math

import numpy as np
import pytest

from hashbench import comparison as report
from tests.conftest import settled
from tests.report_fixtures import HEADLINE, make_rows, thumbnails


def test_summary_run_holds_table_figures_and_line_plot(tmp_path, wandb_offline):
    wandb = wandb_offline

    rows = make_rows()
    info = report.TitleInfo.from_rows(rows)
    with pytest.raises(FileNotFoundError, match="plot_all"):
        report.log_wandb_summary(rows, tmp_path, info, project="hashbench", group="g", name="n")
    report.save_thumbnails(tmp_path, thumbnails(rows))
    figures = report.plot_all(tmp_path, rows, info)
    # a run still open in this process (e.g. a sweep's last WandbLogger run) must not receive the summary
    other = wandb.init(project="hashbench", name="still-open", dir=str(tmp_path / "other"), reinit="create_new")
    report.log_wandb_summary(rows, tmp_path, info, project="hashbench", group="MNIST-compare",
                             name="MNIST summary")
    other.log({"x": 1})
    other.finish()
    assert not glob.glob(str(tmp_path / "other" / "wandb" / "offline-run-*" / "files" / "media" / "table" / "*"))

    (run_dir,) = glob.glob(str(tmp_path / "wandb" / "offline-run-*"))
    raw = open(settled(glob.glob(f"{run_dir}/run-*.wandb")[0]), "rb").read()
    assert b"MNIST-compare" in raw and b"MNIST summary" in raw and b"summary" in raw  # group, name, job_type
    (table_file,) = glob.glob(f"{run_dir}/files/media/table/comparison_*.table.json")
    table = json.load(open(table_file))
    columns = table["columns"]
    got = {(r[columns.index("method")], r[columns.index("bits")]): dict(zip(columns, r)) for r in table["data"]}
    assert len(got) == 6 * 2 and got[("greedy", 32)]["n_seeds"] == 1 and got[("itq", 16)]["baseline"] is True
    assert "P@all mean" not in columns  # the same in every run: no information
    for (method, bits), row in got.items():
        vals = [r[HEADLINE] for r in rows if r["status"] == "ok" and r["method"] == method and r["bits"] == bits]
        itq = [r[HEADLINE] for r in rows if r["status"] == "ok" and r["method"] == "itq" and r["bits"] == bits]
        assert row[f"{HEADLINE} mean"] == pytest.approx(np.mean(vals))
        if len(vals) > 1:
            assert row[f"{HEADLINE} std"] == pytest.approx(np.std(vals, ddof=1))
        else:
            assert row[f"{HEADLINE} std"] is None or math.isnan(row[f"{HEADLINE} std"])
        gap = row[f"{HEADLINE} vs ITQ"]
        assert gap is None if method == "itq" else gap == pytest.approx(np.mean(vals) - np.mean(itq))
    images = " ".join(glob.glob(f"{run_dir}/files/media/images/figures/*.png"))
    assert all(p.stem in images for p in figures)
    lines = glob.glob(f"{run_dir}/files/media/table/{HEADLINE}_vs_bits_table_*.table.json")
    points = {(key, bits): value for bits, key, value in json.load(open(lines[0]))["data"]}  # step, lineKey, lineVal
    assert points[("CIBHash", 32)] == pytest.approx(got[("cibhash", 32)][f"{HEADLINE} mean"])
    assert points[("ITQ (baseline)", 16)] == pytest.approx(got[("itq", 16)][f"{HEADLINE} mean"])
