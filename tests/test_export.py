"""Codes out of the lab: the codes folder round trip, encode → evaluate = the run's test metrics, and
images → codes → search = the evaluation's ranking; the predict writer under DDP = one process."""
import json
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import yaml
from torch.utils.data import DataLoader

from hashcore import retrieval_metrics as rm
from hashbench.codes import CodesFormatError, load_codes, pack_codes, save_codes, unpack_codes
from hashbench.codes_writer import CodesWriter
from hashbench.encode_command import encode_main
from hashbench.evaluate_command import evaluate_main
from hashbench.search_command import search_main
from hashbench.search import faiss_available
from tests.data_fixtures import write_cifar
from tests.toy import ToyHash, ToyImages


# ---- the codes folder ------------------------------------------------------------------------------------------
def test_packing_convention_is_numpy_big_endian_with_one_for_plus_one():
    codes = np.array([[1, -1, -1, -1, -1, -1, -1, 1, 1], [-1] * 8 + [1]])
    packed = pack_codes(codes)
    assert packed.dtype == np.uint8 and packed.tolist() == [[0b10000001, 0b10000000], [0b00000000, 0b10000000]]
    assert unpack_codes(packed, 9).tolist() == codes.tolist()
    assert pack_codes(codes > 0).tolist() == pack_codes((codes + 1) // 2).tolist() == packed.tolist()
    for bad in (np.array([[0.5, -1.0]]), np.array([[-1, 0, 1]]), np.zeros(3)):
        with pytest.raises(CodesFormatError):
            pack_codes(bad)


def test_codes_folder_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 2, (37, 21)) * 2 - 1
    labels = (rng.random((37, 5)) < 0.3).astype(np.float32)
    index = rng.permutation(100)[:37]
    paths = [f"/images/{i}.jpg" for i in index]
    save_codes(tmp_path / "db", codes, labels, index, meta={"method": "X", "top_k": 10}, paths=paths)
    got = load_codes(tmp_path / "db")
    assert got.bits == 21 and len(got) == 37 and got.packed.shape == (37, 3)
    assert np.array_equal(got.signed(), codes) and np.array_equal(got.labels, labels) and got.labels.dtype == np.uint8
    assert got.index.tolist() == index.tolist() and got.paths == paths
    assert got.meta["method"] == "X" and got.meta["count"] == 37 and got.meta["labels"] == "multi-hot"
    assert "packbits" in got.meta["code_convention"] and got.meta["created"]
    save_codes(tmp_path / "db", codes, None)  # unknown labels, default indices; the stale paths.txt goes
    again = load_codes(tmp_path / "db")
    assert not again.has_labels and again.index.tolist() == list(range(37)) and again.paths is None


def test_a_broken_codes_folder_is_one_clear_error(tmp_path):
    save_codes(tmp_path / "c", np.ones((4, 12)), np.eye(4))
    meta = json.loads((tmp_path / "c" / "meta.json").read_text())
    (tmp_path / "c" / "meta.json").write_text(json.dumps({**meta, "bits": 20}))
    with pytest.raises(CodesFormatError, match=r"codes.npy must be uint8 \(N, 3\) for 20 bits"):
        load_codes(tmp_path / "c")
    (tmp_path / "c" / "meta.json").write_text(json.dumps({**meta, "bits": 10}))  # 12 bits packed, 10 claimed
    with pytest.raises(CodesFormatError, match="padding bits"):
        load_codes(tmp_path / "c")
    (tmp_path / "c" / "meta.json").unlink()
    with pytest.raises(CodesFormatError, match="meta.json is missing"):
        load_codes(tmp_path / "c")
    with pytest.raises(FileNotFoundError, match="hashbench encode"):
        load_codes(tmp_path / "nothing")


def test_foreign_codes_written_with_the_documented_numpy_recipe_are_scored_by_our_conventions(tmp_path, capsys):
    import os
    rng = np.random.default_rng(1)
    for role, n in (("query", 9), ("database", 60)):
        B, L_ = rng.integers(0, 2, (n, 16)), (rng.random((n, 4)) < 0.4).astype(np.uint8)  # {0,1} codes
        os.makedirs(tmp_path / role, exist_ok=True)
        np.save(tmp_path / role / "codes.npy", np.packbits(B > 0, axis=1)); np.save(tmp_path / role / "labels.npy", L_)
        json.dump({"bits": B.shape[1]}, open(tmp_path / role / "meta.json", "w"))
        if role == "query":
            qB, qL = B, L_
        else:
            dB, dL = B, L_
    assert evaluate_main(["--codes", str(tmp_path), "--top-k", "10", "all", "--json", str(tmp_path / "r.json")]) == 0
    got = json.loads((tmp_path / "r.json").read_text())["metrics"]
    # bool: int 0/1 would be binarised by sign (0 -> +1) by the metrics, not read as bits
    assert got["mAP@10"] == rm.mean_average_precision(qB > 0, qL, dB > 0, dL, top_k=10)
    assert got["mAP@all"] == rm.mean_average_precision(qB > 0, qL, dB > 0, dL)
    assert got["mAP"] == got["mAP@10"]  # the headline is the first cut-off
    assert "mAP@10" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # no protocol top_k recorded and none given
        evaluate_main(["--codes", str(tmp_path)])


# ---- the predict writer under DDP ------------------------------------------------------------------------------
def _predict(devices: int, state: dict, out: Path) -> None:
    model = ToyHash(bits=12)
    model.load_state_dict(state)
    trainer = L.Trainer(accelerator="cpu", devices=devices, strategy="ddp_spawn" if devices > 1 else "auto",
                        logger=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[CodesWriter(out, {"method": "ToyHash"})])
    trainer.predict(model, dataloaders=DataLoader(ToyImages(23, seed=5), batch_size=4), return_predictions=False)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_codes_writer_under_ddp_equals_one_process(tmp_path):
    torch.manual_seed(6)
    state = ToyHash(bits=12).state_dict()
    _predict(1, state, tmp_path / "one")
    _predict(2, state, tmp_path / "two")
    one, two = load_codes(tmp_path / "one"), load_codes(tmp_path / "two")
    assert len(one) == len(two) == 23 and one.index.tolist() == list(range(23)) == two.index.tolist()
    assert np.array_equal(one.packed, two.packed) and np.array_equal(one.labels, two.labels)
    assert two.meta["world_size"] == 2 and not (tmp_path / "two" / ".parts").exists()
    model = ToyHash(bits=12)
    model.load_state_dict(state)
    model.eval()
    with torch.no_grad():
        want = model.encode(ToyImages(23, seed=5).images)
    assert np.array_equal(one.signed(), want.numpy())


# ---- the whole way: a run, its test, encode, evaluate, search --------------------------------------------------
@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A 1-epoch GreedyHash run on a CIFAR-10 miniature, tested with 6 retrieval examples saved."""
    from hashbench.cli import run_cli

    tmp = tmp_path_factory.mktemp("export")
    write_cifar(str(tmp / "cifar"), train_per_class=15, test_per_class=12)
    config = {
        "seed_everything": 0,
        "model": {"class_path": "GreedyHash", "init_args": {"bits": 16, "backbone": "tiny_cnn", "pretrained": False,
                                                            "freeze": False, "optimizer": "adam", "lr": 1e-3}},
        "data": {"class_path": "CIFAR10", "init_args": {"root": str(tmp / "cifar"), "download": False, "scale": 0.01,
                                                        "image_size": 32, "num_workers": 0, "batch_size": 8}},
        "trainer": {"max_epochs": 1, "accelerator": "cpu", "logger": False, "enable_progress_bar": False,
                    "enable_model_summary": False, "num_sanity_val_steps": 0, "default_root_dir": str(tmp / "runs"),
                    "callbacks": [{"class_path": "RetrievalEvaluation",
                                   "init_args": {"examples": 6, "save_dir": str(tmp / "eval")}}]},
    }
    path = tmp / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    run_cli(["fit", "--config", str(path)])
    cli = run_cli(["test", "--config", str(path), "--ckpt_path", "last"])
    return {"tmp": tmp, "config": str(path), "test": json.loads((tmp / "eval" / "test_last.json").read_text()),
            "datamodule": cli.datamodule}


def test_encode_then_evaluate_gives_the_runs_test_metrics(trained_run):
    tmp, config, test = trained_run["tmp"], trained_run["config"], trained_run["test"]
    for split in ("query", "database"):
        assert encode_main(["--config", config, "--ckpt_path", "last", "--split", split,
                            "--out", str(tmp / "codes" / split)]) == 0
    db = load_codes(tmp / "codes" / "database")
    assert len(db) == test["num_database"] and db.bits == 16 and (tmp / "codes" / "database" / "config.yaml").is_file()
    assert db.meta["method"] == "GreedyHash" and db.meta["dataset"] == "CIFAR10" and db.meta["split"] == "database"
    assert len(db.meta["checkpoint_sha256"]) == 64
    assert db.meta["top_k"] == (None if test["top_k"] == ["all"] else int(test["top_k"][0]))
    out = tmp / "evaluate.json"
    assert evaluate_main(["--codes", str(tmp / "codes"), "--json", str(out)]) == 0
    got = json.loads(out.read_text())
    assert (got["num_query"], got["num_database"]) == (test["num_query"], test["num_database"])
    # the same codes and the same per-query reduction: bit-for-bit the logged test numbers (the ball's mAP differs:
    # the run re-ranks the ball by continuous scores, saved codes have none)
    for key, value in test["metrics"].items():
        if key.startswith(("mAP", "P@", "R@")) and key != "mAP@H<=2":
            assert got["metrics"][key] == value, key
    assert got["curves"] == test["curves"]


@pytest.mark.parametrize("backend", ["torch", pytest.param("faiss", marks=pytest.mark.skipif(
    not faiss_available(), reason="needs faiss-cpu"))])
def test_images_to_codes_to_search_give_the_evaluations_neighbours(trained_run, backend):
    tmp, test, dm = trained_run["tmp"], trained_run["test"], trained_run["datamodule"]
    if not (tmp / "codes" / "database" / "meta.json").is_file():
        encode_main(["--config", trained_run["config"], "--ckpt_path", "last", "--split", "database",
                     "--out", str(tmp / "codes" / "database")])
    folder = tmp / f"queries-{backend}"
    folder.mkdir()
    examples = test["examples"]
    assert len(examples) == 6
    for e in examples:  # the test queries' images as files (PNG is lossless: the same pixels)
        dm.image("query", e["query"]).save(folder / f"q{e['query']:05d}.png")
    out = tmp / f"search-{backend}.json"
    assert search_main(["--index", str(tmp / "codes" / "database"), "--query", str(folder), "-k", "10",
                        "--backend", backend, "--json", str(out)]) == 0
    found = json.loads(out.read_text())
    assert [Path(r["query"]).name for r in found] == [f"q{e['query']:05d}.png" for e in examples]
    for r, e in zip(found, examples):
        assert [h["index"] for h in r["neighbours"]] == e["retrieved"]
        assert [h["distance"] for h in r["neighbours"]] == e["distance"]


def test_command_line_mistakes_are_one_error_line(tmp_path, capsys):
    from hashbench.cli import main
    for argv, words in ((["evaluate", "--codes", str(tmp_path / "nowhere")], "codes folder not found"),
                        (["search", "--index", str(tmp_path / "nowhere"), "--query", "x.jpg"], "codes folder not found")):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and err.startswith("hashbench: error:") and words in err, err
    save_codes(tmp_path / "db", np.ones((3, 8)), np.eye(3))  # no config.yaml: not an index hashbench wrote
    (tmp_path / "q.png").write_bytes(b"")
    with pytest.raises(SystemExit):
        main(["search", "--index", str(tmp_path / "db"), "--query", str(tmp_path / "q.png")])
    assert "has no config.yaml" in capsys.readouterr().err


def test_a_list_file_and_an_image_folder_encode_like_the_split(trained_run):
    tmp, dm = trained_run["tmp"], trained_run["datamodule"]
    query_dir = tmp / "codes" / "query"
    if not (query_dir / "meta.json").is_file():
        encode_main(["--config", trained_run["config"], "--ckpt_path", "last", "--split", "query", "--out", str(query_dir)])
    split = load_codes(query_dir)
    picked = [0, 3, 17, 42]
    images = tmp / "listed"
    images.mkdir()
    lines = []
    for i in picked:
        dm.image("query", i).save(images / f"{i:03d}.png")
        label = dm.eval_dataset("query")[i][1].int().tolist()
        lines.append(f"{i:03d}.png {' '.join(map(str, label))}")
    (images / "list.txt").write_text("\n".join(lines) + "\n")
    for source, out in ((images / "list.txt", tmp / "codes-list"), (images, tmp / "codes-folder")):
        assert encode_main(["--config", trained_run["config"], "--ckpt_path", "last", "--split", str(source),
                            "--out", str(out)]) == 0
    listed, folder = load_codes(tmp / "codes-list"), load_codes(tmp / "codes-folder")
    rows = [int(np.nonzero(split.index == i)[0][0]) for i in picked]
    assert np.array_equal(listed.packed, split.packed[rows]) and np.array_equal(folder.packed, split.packed[rows])
    assert np.array_equal(listed.labels, split.labels[rows]) and listed.meta["labels"] == "multi-hot"
    assert not folder.has_labels and folder.meta["labels"] == "none"
    assert [Path(p).name for p in listed.paths] == [Path(p).name for p in folder.paths] == \
        [f"{i:03d}.png" for i in picked]
