"""The report: summary.md numbers recomputed here with numpy, the ITQ verdicts, dropped constant columns and
every figure (files, titles, labels, and the plotted curve = the point-wise mean over seeds)."""
import csv
import math
import re

import numpy as np
import pytest
from PIL import Image

from hashbench import comparison as report
from hashbench.comparison_figures import line_styles, mean_curve, pr_curves_figure, precision_at_n_figure
from hashbench.comparison_rows import ReportInputError, ComparisonRows, TitleInfo
from tests.report_fixtures import BITS, HEADLINE, METHODS, make_rows, thumbnails

LABEL = {"cibhash": "CIBHash", "bihalf": "BiHalfNet", "dch": "DCH (supervised)", "greedy": "GreedyHash",
         "lsh": "LSH (baseline)", "itq": "ITQ (baseline)"}


def values(rows, method, bits, key=HEADLINE):
    return [r[key] for r in rows if r["status"] == "ok" and r["method"] == method and r["bits"] == bits]


def cell(vals):
    """The table cell written independently: sample std (ddof=1), no ± for a single seed."""
    if len(vals) == 1:
        return f"{vals[0]:.4f} (n=1)"
    return f"{np.mean(vals):.4f} ± {np.std(vals, ddof=1):.4f} (n={len(vals)})"


def section(text, title):
    """The lines of one '## title' section."""
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


@pytest.fixture
def rows():
    return make_rows()


@pytest.fixture
def info(rows):
    return TitleInfo.from_rows(rows)


def test_headline_table_comes_first_with_mean_std_n_and_marks(rows, info):
    text = report.summary_markdown(rows, info)
    headings = re.findall(r"^## (.*)$", text, flags=re.M)
    assert headings[0] == f"{HEADLINE} (headline metric of the cifar_like protocol)"
    assert headings[1] == f"Against ITQ ({HEADLINE})"
    table = section(text, headings[0])
    best = {b: max(np.mean(values(rows, m, b)) for m, *_ in METHODS) for b in BITS}
    for method, *_ in METHODS:
        cells = []
        for b in BITS:
            vals = values(rows, method, b)
            cells.append(f"**{cell(vals)}**" if np.mean(vals) == best[b] else cell(vals))
        assert f"| {LABEL[method]} | " + " | ".join(cells) + " |" in table
    assert "| GreedyHash |" in table and "0.4240 (n=1)" in table  # its seed 1 at 32 bits failed
    # learned methods first, baselines last; the setting line names dataset, protocol, sizes and seeds
    order = [line.split(" | ")[0][2:] for line in table.splitlines() if line.startswith("| ") and "bits" not in line]
    assert order == ["CIBHash", "BiHalfNet", "DCH (supervised)", "GreedyHash", "ITQ (baseline)", "LSH (baseline)"]
    assert text.startswith("**MNIST, cifar_like protocol (30 queries, 300 database items); 2 seeds (0, 1); "
                           "24 runs, 1 failed.**")


def test_a_line_per_method_and_length_says_whether_it_beats_itq(rows, info):
    text = section(report.summary_markdown(rows, info), f"Against ITQ ({HEADLINE})")
    for method, _, _, baseline in METHODS:
        for b in BITS:
            line = next((x for x in text.splitlines() if x.startswith(f"- {LABEL[method]}, {b} bits:")), None)
            if baseline:
                assert line is None
                continue
            mine, itq = values(rows, method, b), values(rows, "itq", b)
            gap = np.mean(mine) - np.mean(itq)
            verb = f"beats ITQ by {gap:+.4f}" if gap > 0 else f"**below ITQ** by {gap:+.4f}"
            assert f"{verb} ({gap / np.mean(itq):+.1%}), {np.mean(mine):.4f} vs {np.mean(itq):.4f}" in line
            if len(mine) > 1:
                se = math.sqrt(np.var(mine, ddof=1) / len(mine) + np.var(itq, ddof=1) / len(itq))
                assert ("Not conclusive" in line) == (abs(gap) < 2 * se), line
    assert "- DCH (supervised), 32 bits: beats ITQ by +0.0050" in text
    assert "- BiHalfNet, 16 bits: beats ITQ by +0.0070 (+1.6%), 0.4570 vs 0.4500. Not conclusive" in text
    assert "- GreedyHash, 32 bits: **below ITQ** by -0.0760" in text and "(n=1 vs n=2" in text
    assert "CIBHash beats ITQ at every compared code length." in text
    assert "**ITQ beats GreedyHash at every compared code length.**" in text
    assert "BiHalfNet and DCH (supervised): not ahead of ITQ at every length" in text


def test_constant_columns_are_left_out_with_one_sentence_but_stay_in_runs_csv(rows, info, tmp_path):
    text = report.summary_markdown(rows, info)
    headers = [line for line in text.splitlines() if line.startswith("| method")]
    assert len(headers) == 3 and all("P@all" not in h and "distinct_codes" not in h for h in headers)
    assert all("P@1000" in h or "bit_entropy" in h or HEADLINE not in h for h in headers)
    assert ("Left out of the tables because every run has the same value: P@all = 0.1000 (precision over the "
            "whole database is the share of relevant items, whatever the ranking); distinct_codes = 1.0000. "
            "runs.csv and runs.json keep them.") in text
    report.write_rows(tmp_path, rows)
    with open(tmp_path / "runs.csv") as f:
        csv_rows = list(csv.DictReader(f))
    assert {r["P@all"] for r in csv_rows if r["status"] == "ok"} == {"0.1"}
    assert {r["distinct_codes"] for r in csv_rows if r["status"] == "ok"} == {"1.0"}


def test_other_metrics_tables_hold_the_informative_metrics(rows, info):
    text = report.summary_markdown(rows, info)
    table = section(text, "Other retrieval metrics")
    assert "| method | bits | n | mAP@1000_tie_avg | P@1000 | mAP@H<=2 | P@H<=2 | R@H<=2 |" in table
    vals = values(rows, "bihalf", 32, "P@1000")
    assert f"| BiHalfNet | 32 | 2 | " in table
    assert f"{np.mean(vals):.4f} ± {np.std(vals, ddof=1):.4f}" in table
    codes = section(text, "Codes and cost")
    entropy = values(rows, "dch", 16, "bit_entropy")
    fit = values(rows, "dch", 16, "fit_seconds")
    assert (f"| DCH (supervised) | 16 | 2 | {np.mean(entropy):.4f} ± {np.std(entropy, ddof=1):.4f} | "
            f"{np.mean(fit):.1f} ± {np.std(fit, ddof=1):.1f} |") in codes


def test_a_precision_cut_off_past_the_database_is_explained_like_p_at_all(rows, info):
    small = [dict(r, num_database=800) if r["status"] == "ok" else r for r in rows]  # P@1000 covers it all
    for r in small:
        if r["status"] == "ok":
            r["P@1000"] = 0.1
    text = report.summary_markdown(small, {**vars(info), "num_database": 800})
    assert ("P@1000 = 0.1000 (precision over the whole database is the share of relevant items, whatever the "
            "ranking)") in text


def test_failed_runs_are_listed_with_their_error(rows, info):
    text = section(report.summary_markdown(rows, info), "Failed runs (left out of every mean)")
    assert "- GreedyHash, 32 bits, seed 1: RuntimeError: boom" in text


def test_single_seed_sweep_shows_no_spread_and_says_so_once():
    rows = make_rows(seeds=(0,), failed=None)
    text = report.summary_markdown(rows, TitleInfo.from_rows(rows))
    table = section(text, f"{HEADLINE} (headline metric")
    assert "±" not in table.split("| method |")[1] and "(n=1)" in table
    assert text.count("Every run has a single seed") == 1 and "(n=1 vs" not in text
    assert "1 seed (0)" in text.splitlines()[0]


def test_without_itq_the_summary_says_that_nothing_is_compared():
    rows = make_rows(methods=[m for m in METHODS if m[0] != "itq"])
    text = report.summary_markdown(rows, TitleInfo.from_rows(rows))
    assert "No ITQ baseline in these runs" in text and "beats ITQ" not in text


def test_title_info_and_rows_are_checked(rows):
    with pytest.raises(ReportInputError, match=r"title_info lacks \['seeds'\]"):
        report.summary_markdown(rows, {"dataset": "MNIST", "protocol": "p", "num_query": 1, "num_database": 2})
    info = {"dataset": "MNIST", "protocol": "cifar_like", "num_query": 30, "num_database": 300, "seeds": [0, 1]}
    assert TitleInfo.coerce(info) == TitleInfo.from_rows(rows)
    mixed = [dict(r, protocol="other") if r["method"] == "lsh" else r for r in rows]
    with pytest.raises(ReportInputError, match="mix protocol values"):
        TitleInfo.from_rows(mixed)
    two = [dict(r, headline="mAP@all") if r["method"] == "lsh" else r for r in rows]
    with pytest.raises(ReportInputError, match="same 'headline' key"):
        report.summary_markdown(two, info)
    with pytest.raises(ReportInputError, match="no run finished"):
        report.summary_markdown([r for r in rows if r["status"] != "ok"], info)


def test_curves_are_the_point_wise_mean_over_seeds(rows, info):
    sweep = ComparisonRows(rows)
    styles = line_styles(sweep.methods)
    fig = pr_curves_figure(sweep, info, styles)
    ranking, radius = fig.axes[0], fig.axes[len(BITS)]  # 16 bits: top row by ranking, bottom row by radius
    runs = [r for r in rows if r["status"] == "ok" and r["method"] == "cibhash" and r["bits"] == 16]
    for ax, kind in ((ranking, "rank"), (radius, "radius")):
        line = next(x for x in ax.lines if x.get_label() == "CIBHash")
        expected_x = np.mean([r["curves"][f"{kind}_recall"] for r in runs], axis=0)
        expected_y = np.mean([r["curves"][f"{kind}_precision"] for r in runs], axis=0)
        np.testing.assert_allclose(line.get_xdata(), expected_x)
        np.testing.assert_allclose(line.get_ydata(), expected_y)
    fig = precision_at_n_figure(sweep, info, styles)
    line = next(x for x in fig.axes[1].lines if x.get_label() == "ITQ (baseline)")  # 32 bits
    runs = [r for r in rows if r["status"] == "ok" and r["method"] == "itq" and r["bits"] == 32]
    np.testing.assert_allclose(line.get_xdata(), runs[0]["curves"]["rank_rank"])
    np.testing.assert_allclose(line.get_ydata(), np.mean([r["curves"]["rank_precision"] for r in runs], axis=0))
    assert line.get_linestyle() == "--"  # baselines dashed


def test_curves_of_different_grids_are_not_averaged(rows):
    runs = [r for r in rows if r["status"] == "ok" and r["method"] == "itq" and r["bits"] == 16]
    runs[1] = dict(runs[1], curves=dict(runs[1]["curves"], rank_rank=[r + 1 for r in runs[1]["curves"]["rank_rank"]]))
    with pytest.raises(ReportInputError, match="cannot be averaged point-wise"):
        mean_curve(runs, "rank_rank", ("rank_precision",))


def test_plot_all_writes_every_figure_titled_and_labelled(rows, info, tmp_path):
    report.save_thumbnails(tmp_path, thumbnails(rows))
    paths = report.plot_all(tmp_path, rows, info)
    assert [p.name for p in paths] == list(report.FIGURES)
    for p in paths:
        with Image.open(p) as im:
            assert im.info["dpi"][0] >= 110 and min(im.size) > 300, p.name
    sweep = ComparisonRows(rows)
    styles = line_styles(sweep.methods)
    from hashbench.comparison_figures import bit_balance_figure, map_vs_bits_figure
    for fig, metric in ((map_vs_bits_figure(sweep, info, styles), HEADLINE),
                        (pr_curves_figure(sweep, info, styles), "precision–recall"),
                        (precision_at_n_figure(sweep, info, styles), "precision@N"),
                        (bit_balance_figure(sweep, info, styles), "share of +1")):
        title = fig.get_suptitle()
        assert "MNIST, cifar_like protocol (30 queries, 300 database items)" in title and metric in title
        drawn = [ax for ax in fig.axes if ax.axison]
        assert drawn and all(ax.get_xlabel() for ax in drawn)
        legend_labels = {t.get_text() for leg in [*fig.legends, *(ax.get_legend() for ax in fig.axes)] if leg
                         for t in leg.get_texts()}
        if metric != "share of +1":
            assert "2 seeds (0, 1)" in title
            assert {"DCH (supervised)", "ITQ (baseline)", "LSH (baseline)"} <= legend_labels
        else:
            assert any("0.5" in t for t in legend_labels)
            assert {ax.get_ylabel() for ax in drawn} >= {"share of +1"} and {ax.get_xlabel() for ax in drawn} == {"bit"}


def test_retrieval_examples_need_thumbnails_and_stale_figures_go(rows, info, tmp_path):
    with pytest.raises(FileNotFoundError, match="save_thumbnails"):
        report.plot_all(tmp_path, rows, info)
    report.save_thumbnails(tmp_path, thumbnails(rows))
    assert (tmp_path / "retrieval_examples.png") in report.plot_all(tmp_path, rows, info)
    without = [{k: v for k, v in r.items() if k != "examples"} for r in rows]
    assert (tmp_path / "retrieval_examples.png") not in report.plot_all(tmp_path, without, info)
    assert not (tmp_path / "retrieval_examples.png").exists()


def test_save_thumbnails_stores_small_pngs_and_rejects_bad_keys(tmp_path):
    big = Image.new("RGB", (256, 128), (10, 20, 30))
    (path,) = report.save_thumbnails(tmp_path, {("database", 7): big})
    assert path == tmp_path / "thumbs" / "database_7.png"
    with Image.open(path) as im:
        assert max(im.size) == 64 and im.getpixel((0, 0)) == (10, 20, 30)
    with pytest.raises(ReportInputError, match="split in"):
        report.save_thumbnails(tmp_path, {("train", 1): big})
    with pytest.raises(ReportInputError, match="PIL.Image"):
        report.save_thumbnails(tmp_path, {("query", 1): np.zeros((4, 4))})


@pytest.mark.parametrize("bits", [(16, 32), (16,)])
def test_nothing_sticks_out_of_a_figure(rows, bits, tmp_path):
    """Titles, legends and labels lie inside the canvas, also for the narrowest figure (one code length)."""
    import io

    from hashbench.comparison_examples import retrieval_examples_figure
    from hashbench.comparison_figures import DPI, bit_balance_figure, map_vs_bits_figure

    rows = [r for r in rows if r["bits"] in bits]
    info = TitleInfo.from_rows(rows)
    sweep = ComparisonRows(rows)
    styles = line_styles(sweep.methods)
    report.save_thumbnails(tmp_path, thumbnails(rows))
    for fig in (map_vs_bits_figure(sweep, info, styles), pr_curves_figure(sweep, info, styles),
                precision_at_n_figure(sweep, info, styles), bit_balance_figure(sweep, info, styles),
                retrieval_examples_figure(tmp_path, sweep, info)):
        fig.savefig(io.BytesIO(), dpi=DPI)
        box, (w, h) = fig.get_tightbbox(), fig.get_size_inches()
        assert box.x0 >= -0.01 and box.y0 >= -0.01 and box.x1 <= w + 0.01 and box.y1 <= h + 0.01, (
            fig.get_suptitle(), box, (w, h))
