"""The autoencoder study's figures: the official scatter-image selection, and both PNGs built from a real (miniature)
``hashbench compare`` over the three layers, as a researcher runs it."""
import json

import numpy as np
import pytest

from hashbench import ae_figures
from hashbench.cli import main as hashbench_main
from tests.data_fixtures import write_mnist_idx


def test_scatter_images_are_the_official_per_class_draw():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 10, 700)
    got = ae_figures.scatter_indices(labels, per_class=20)
    expected = []
    for label in range(10):  # AutoEncoder/BiHalf.py, the visualisation loop
        index = np.where(labels == label)[0]
        np.random.seed(0)
        perm = np.random.permutation(index.shape[0])
        expected.append(index[perm][0:20])
    assert np.array_equal(got, np.concatenate(expected))
    assert [int(labels[got[i * 20]]) for i in range(10)] == list(range(10))


def test_compare_over_the_three_layers_then_both_figures(tmp_path, monkeypatch):
    root = tmp_path / "mnist"
    write_mnist_idx(str(root), train_per_class=20, test_per_class=6)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    hashbench_main(["compare", "--config", str(ae_figures_config()), "--methods", "ae_sign,ae_signreg,ae_bihalf",
                    "--bits", "3,8", "--seeds", "1", "--baselines", "", "--name", "ae", "--data.root", str(root),
                    "--data.source", "root", "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false"])
    folder = tmp_path / "results" / "ae"
    rows = [json.loads(p.read_text()) for p in folder.glob("runs/*/result.json")]
    assert sorted((r["method"], r["bits"]) for r in rows) == sorted(
        (m, b) for m in ("ae_sign", "ae_signreg", "ae_bihalf") for b in (3, 8))
    assert all(r["status"] == "ok" and "mAP@all" in r and "mAP@all_tie_avg" in r for r in rows)
    written = ae_figures.write_figures(folder, root=str(root))
    assert [p.name for p in written] == ["ae_map_vs_bits.png", "ae_latent_3d.png"]
    for p in written:
        assert p.stat().st_size > 20_000  # a drawn figure, not an empty canvas


def test_figures_on_a_folder_without_autoencoder_runs_is_one_clear_error(tmp_path, capsys):
    (tmp_path / "runs").mkdir()
    with pytest.raises(SystemExit) as info:
        ae_figures.main([str(tmp_path)])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.startswith("hashbench: error: ") and "no finished ae_sign" in err
    assert "Traceback" not in err


def ae_figures_config():
    from pathlib import Path
    return Path(__file__).resolve().parents[1] / "experiments" / "data" / "mnist_binary.yaml"


def test_the_legend_says_how_many_seeds_each_code_length_has():
    """A study with 3 seeds at 16 bits and 1 at 3 bits must not claim 3 seeds for every point."""
    from hashbench.ae_figures import _layer_label
    rows = [{"method": "ae_sign", "bits": 16, "seed": s} for s in (0, 1, 2)] + [
        {"method": "ae_sign", "bits": b, "seed": 0} for b in (3, 32)]
    label = _layer_label("ae_sign", rows)
    assert "3 seeds at 16 bits" in label and "1 seed at 3, 32 bits" in label
    assert _layer_label("ae_sign", rows[:3]).endswith("(3 seeds)")
