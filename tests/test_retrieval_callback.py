"""RetrievalEvaluation: logged values equal an independent computation; DDP (2 gloo processes) equals 1 process."""
import json
import math

import lightning as L
import pytest
import torch

from hashcore import retrieval_metrics as rm
from callbacks.retrieval import RetrievalEvaluation, deduplicate_by_index, format_results
from tests.toy import FlippedBitHash, OnePassHash, RankMetricsRecorder, ToyData, ToyHash


def _trainer(**kw):
    kw.setdefault("accelerator", "cpu")
    kw.setdefault("devices", 1)
    return L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, **kw)


def _encode_all(model, dataset):
    """What encode() and hash_scores() give for every item of ``dataset`` (eval mode, no grad)."""
    model.eval()
    with torch.no_grad():
        x = torch.stack([dataset[i][0] for i in range(len(dataset))])
        return model.encode(x), model.hash_scores(x)


def _brute_topk(q_code, db_codes, k):
    dist = [int((q_code != c).sum()) for c in db_codes]
    order = sorted(range(len(dist)), key=lambda j: (dist[j], j))[:k]
    return order, [dist[j] for j in order]


def test_deduplicate_by_index_keeps_first_occurrence_sorted():
    index = torch.tensor([4, 0, 2, 4, 1, 0, 3])
    codes = torch.tensor([[40.], [0.], [20.], [41.], [10.], [1.], [30.]])
    idx, kept = deduplicate_by_index(index, codes)
    assert idx.tolist() == [0, 1, 2, 3, 4]
    assert kept[:, 0].tolist() == [0.0, 10.0, 20.0, 30.0, 40.0]  # first occurrence of 0 and 4 kept


def test_logged_metrics_equal_independent_computation():
    torch.manual_seed(0)
    model, data = ToyHash(bits=8), ToyData(top_k=10)
    callback = RetrievalEvaluation(top_k=[10, "all"])
    trainer = _trainer(max_epochs=1, callbacks=[callback], num_sanity_val_steps=0)
    trainer.fit(model, data)
    q_codes, q_scores = _encode_all(model, data.query_set)
    db_codes, db_scores = _encode_all(model, data.database_set)
    got = trainer.callback_metrics
    for k in (10, None):
        name = "all" if k is None else str(k)
        expected = rm.mean_average_precision(q_codes, data.query_set.labels, db_codes, data.database_set.labels, k)
        assert got[f"val/mAP@{name}"].item() == pytest.approx(expected, abs=1e-6)
    assert got["val/mAP"].item() == got["val/mAP@10"].item()  # the headline is the first cut-off
    ball = rm.hamming_radius_metrics(q_codes, data.query_set.labels, db_codes, data.database_set.labels, 2,
                                     q_scores, db_scores)
    assert got["val/mAP@H<=2"].item() == pytest.approx(ball["map"], abs=1e-6)
    assert not any("tie_avg" in key for key in got)  # off by default
    assert callback.last_results["num_database"] == 33 and callback.last_results["num_query"] == 11


def test_scored_codes_are_what_encode_returns_not_the_sign_of_the_scores():
    torch.manual_seed(1)
    model, data = FlippedBitHash(bits=8), ToyData()
    trainer = _trainer(callbacks=[RetrievalEvaluation(top_k=[5, "all"])])
    trainer.validate(model, data)
    q_codes, q_scores = _encode_all(model, data.query_set)
    db_codes, db_scores = _encode_all(model, data.database_set)
    ql, dl = data.query_set.labels, data.database_set.labels
    assert not torch.equal(q_codes, rm.to_signed_codes(q_scores))  # encode is not sign(scores) here
    got = trainer.callback_metrics
    for k, name in ((5, "5"), (None, "all")):
        scored = rm.mean_average_precision(q_codes, ql, db_codes, dl, k)
        signed = rm.mean_average_precision(q_scores, ql, db_scores, dl, k)
        assert scored != signed  # so the test can tell them apart
        assert got[f"val/mAP@{name}"].item() == pytest.approx(scored, abs=1e-7)
    # the ball is the encode() codes' ball, re-ranked by the continuous hash_scores
    ball = rm.hamming_radius_metrics(q_codes, ql, db_codes, dl, 2, q_scores, db_scores)
    assert got["val/P@H<=2"].item() == pytest.approx(ball["precision"], abs=1e-7)
    assert got["val/mAP@H<=2"].item() == pytest.approx(ball["map"], abs=1e-7)


def test_codes_and_scores_is_one_pass_and_scores_are_asked_only_for_the_radius_metrics():
    data = ToyData(batch_size=4)
    batches = math.ceil(11 / 4) + math.ceil(33 / 4)
    model = OnePassHash(bits=8)
    _trainer(callbacks=[RetrievalEvaluation(top_k=[5])]).validate(model, data)
    assert model.calls == {"encode": 0, "hash_scores": 0, "codes_and_scores": batches}
    model = OnePassHash(bits=8)
    _trainer(callbacks=[RetrievalEvaluation(top_k=[5], radius=None)]).validate(model, data)
    assert model.calls["codes_and_scores"] == 0 and model.calls["encode"] == batches


def test_scores_method_names_another_method_or_none():
    torch.manual_seed(2)
    model, data = ToyHash(bits=8), ToyData()
    with pytest.raises(ValueError, match="RetrievalEvaluation.scores_method"):
        _trainer(callbacks=[RetrievalEvaluation(scores_method="no_such_method")]).validate(model, data)
    trainer = _trainer(callbacks=[RetrievalEvaluation(top_k=[5], scores_method=None)])
    trainer.validate(model, data)
    q_codes, _ = _encode_all(model, data.query_set)
    db_codes, _ = _encode_all(model, data.database_set)
    ball = rm.hamming_radius_metrics(q_codes, data.query_set.labels, db_codes, data.database_set.labels, 2)
    assert trainer.callback_metrics["val/mAP@H<=2"].item() == pytest.approx(ball["map"], abs=1e-7)


def test_encode_that_is_not_plus_minus_one_is_a_clear_error():
    class ZeroOneCodes(ToyHash):
        def encode(self, images):
            return (super().encode(images) > 0).float()  # {0, 1} floats: 0 would silently read as +1
    with pytest.raises(ValueError, match=r"ZeroOneCodes.encode returned 0.0; codes must be exactly -1 or \+1"):
        _trainer(callbacks=[RetrievalEvaluation(top_k=[5])]).validate(ZeroOneCodes(bits=8), ToyData())


@pytest.mark.parametrize("bad", [0, -2, "ten", 1.5, True, [], [5, 0], [5, 5], ["all", None], ["all", -1]])
def test_top_k_is_validated_at_construction(bad):
    with pytest.raises(ValueError, match="RetrievalEvaluation.top_k"):
        RetrievalEvaluation(top_k=bad)


def test_other_options_are_validated_at_construction():
    with pytest.raises(ValueError, match="RetrievalEvaluation.radius"):
        RetrievalEvaluation(radius=-1)
    with pytest.raises(ValueError, match="RetrievalEvaluation.examples"):
        RetrievalEvaluation(examples=-2)
    with pytest.raises(ValueError, match="RetrievalEvaluation.scores_method"):
        RetrievalEvaluation(scores_method="not a name")


@pytest.mark.parametrize("kwargs, default_top_k", [({"top_k": [10, "all"]}, 7), ({}, 7), ({}, None),
                                                    ({"tie_averaged": True, "radius": None}, 7)])
def test_metric_keys_are_exactly_the_logged_keys(kwargs, default_top_k):
    callback = RetrievalEvaluation(**kwargs)
    trainer = _trainer(callbacks=[callback])
    trainer.validate(ToyHash(bits=8), ToyData(top_k=default_top_k))
    keys = callback.metric_keys("val", default_top_k)
    assert len(keys) == len(set(keys)) and set(keys) == set(trainer.callback_metrics)
    assert keys[0] == "val/mAP"
    if kwargs.get("tie_averaged"):
        assert "val/mAP@7_tie_avg" in keys and not any("H<=" in k for k in keys)


def test_protocol_default_top_k_comes_from_the_datamodule():
    trainer = _trainer(max_epochs=1, callbacks=[RetrievalEvaluation()], num_sanity_val_steps=0)
    trainer.validate(ToyHash(bits=8), ToyData(top_k=7))
    assert "val/mAP@7" in trainer.callback_metrics
    assert trainer.callback_metrics["val/mAP"] == trainer.callback_metrics["val/mAP@7"]


def test_partial_evaluation_warns_that_numbers_are_not_the_protocols(tmp_path):
    trainer = _trainer(callbacks=[RetrievalEvaluation(top_k=[5], save_dir=str(tmp_path))], limit_val_batches=1)
    with pytest.warns(UserWarning, match="of 33 database items"):
        trainer.validate(ToyHash(bits=8), ToyData())
    assert json.loads((tmp_path / "val_last.json").read_text())["complete"] is False


def test_single_loader_is_a_clear_error():
    class OneLoader(ToyData):
        def val_dataloader(self):
            return self.query_dataloader()
    with pytest.raises(ValueError, match=r"\[query_loader, database_loader\]"):
        _trainer(callbacks=[RetrievalEvaluation()]).validate(ToyHash(bits=8), OneLoader())


def test_results_are_printed_once_after_validate_and_test_but_not_during_fit(capsys):
    model, data = ToyHash(bits=8), ToyData()
    _trainer(max_epochs=2, callbacks=[RetrievalEvaluation(top_k=[5])], num_sanity_val_steps=0).fit(model, data)
    assert "RetrievalEvaluation" not in capsys.readouterr().out
    trainer = _trainer(callbacks=[RetrievalEvaluation(top_k=[5, "all"])])
    trainer.test(model, data)
    out = capsys.readouterr().out
    assert out.count("RetrievalEvaluation test") == 1 and "11 queries x 33 database items" in out
    assert f"mAP@all {trainer.callback_metrics['test/mAP@all'].item():.4f}" in out
    _trainer(callbacks=[RetrievalEvaluation(top_k=[5], print_results=False)]).validate(model, data)
    assert "RetrievalEvaluation" not in capsys.readouterr().out


def test_results_json_holds_what_a_report_needs(tmp_path):
    torch.manual_seed(4)
    model, data = ToyHash(bits=8), ToyData()
    callback = RetrievalEvaluation(top_k=[5, "all"], save_dir=str(tmp_path), examples=4)
    trainer = _trainer(callbacks=[callback])
    trainer.test(model, data)
    saved = json.loads((tmp_path / "test_last.json").read_text())
    assert saved == json.loads(json.dumps(callback.last_results))
    assert (tmp_path / "test_epoch0000.json").is_file()
    logged = {k.split("/", 1)[1]: v.item() for k, v in trainer.callback_metrics.items()}  # float32 there
    assert saved["metrics"] == pytest.approx(logged, rel=1e-6, abs=1e-7)
    assert (saved["num_query"], saved["num_database"], saved["epoch"], saved["bits"]) == (11, 33, 0, 8)
    assert saved["top_k"] == ["5", "all"] and saved["radius"] == 2 and saved["complete"] is True
    q_codes, _ = _encode_all(model, data.query_set)
    db_codes, _ = _encode_all(model, data.database_set)
    ql, dl = data.query_set.labels, data.database_set.labels
    curves = rm.retrieval_curves(q_codes, ql, db_codes, dl)
    for key, value in curves.items():
        assert saved["curves"][key.replace("pr_", "").replace("/", "_")] == pytest.approx(value.tolist(), abs=1e-12)
    assert saved["bit_plus_rate"] == pytest.approx(((db_codes > 0).double().mean(0)).tolist())
    # examples: evenly spaced queries, their top 10 by (distance, index), relevance and distance
    assert [e["query"] for e in saved["examples"]] == [0, 3, 7, 10]
    for example in saved["examples"]:
        qi = example["query"]
        order, dist = _brute_topk(q_codes[qi], db_codes, 10)
        assert example["retrieved"] == order and example["distance"] == dist
        assert example["relevant"] == [bool((ql[qi] * dl[j]).sum() > 0) for j in order]
    text = format_results(saved)
    assert text.startswith("RetrievalEvaluation test (epoch 0)") and "mAP@5" in text


def _validate(devices: int, state: dict, folder) -> dict:
    model = ToyHash(bits=8)
    model.load_state_dict(state)
    strategy = "ddp_spawn" if devices > 1 else "auto"
    callbacks = [RetrievalEvaluation(top_k=[5, "all"], tie_averaged=True, save_dir=str(folder)),
                 RankMetricsRecorder(str(folder))]
    trainer = _trainer(devices=devices, strategy=strategy, callbacks=callbacks)
    return trainer.validate(model, ToyData(n_query=11, n_database=33, batch_size=4))[0]


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_ddp_two_processes_give_exactly_the_single_process_metrics(tmp_path):
    torch.manual_seed(3)
    state = ToyHash(bits=8).state_dict()
    single, ddp = _validate(1, state, tmp_path / "single"), _validate(2, state, tmp_path / "ddp")
    assert set(single) == set(ddp) and "val/mAP@5" in single and "val/mAP@5_tie_avg" in single
    assert ddp == single  # bit-for-bit, every logged value
    one, two = (json.loads((tmp_path / run / "val_last.json").read_text()) for run in ("single", "ddp"))
    for key in ("metrics", "curves", "bit_plus_rate", "num_query", "num_database"):
        assert two[key] == one[key], key
    ranks = [json.loads((tmp_path / "ddp" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["metrics"] == ranks[1]["metrics"] == {k: v for k, v in single.items()}  # every rank
    assert [r["query_shard"] for r in ranks] == [[0, 6], [6, 11]]  # each rank scored its share only
    assert json.loads((tmp_path / "single" / "rank0.json").read_text())["query_shard"] == [0, 11]
