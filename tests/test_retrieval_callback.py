"""RetrievalEvaluation: logged values equal an independent computation; DDP (2 gloo processes) equals 1 process."""
import lightning as L
import pytest
import torch

from callbacks import retrieval_metrics as rm
from callbacks.retrieval import RetrievalEvaluation, deduplicate_by_index
from tests.toy import ToyData, ToyHash


def _trainer(**kw):
    kw.setdefault("accelerator", "cpu")
    kw.setdefault("devices", 1)
    return L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, **kw)


def _encode_all(model, dataset):
    model.eval()
    with torch.no_grad():
        x = torch.stack([dataset[i][0] for i in range(len(dataset))])
        return model.encode(x), model.encode(x, continuous=True)


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
    ball = rm.hamming_radius_metrics(q_codes, data.query_set.labels, db_codes, data.database_set.labels, 2,
                                     q_scores, db_scores)
    assert got["val/mAP@H<=2"].item() == pytest.approx(ball["map"], abs=1e-6)
    assert callback.last_results["num_database"] == 33 and callback.last_results["num_query"] == 11


def test_protocol_default_top_k_comes_from_the_datamodule():
    trainer = _trainer(max_epochs=1, callbacks=[RetrievalEvaluation()], num_sanity_val_steps=0)
    trainer.validate(ToyHash(bits=8), ToyData(top_k=7))
    assert "val/mAP@7" in trainer.callback_metrics


def test_partial_evaluation_warns_that_numbers_are_not_the_protocols():
    trainer = _trainer(callbacks=[RetrievalEvaluation(top_k=[5])], limit_val_batches=1)
    with pytest.warns(UserWarning, match="of 33 database items"):
        trainer.validate(ToyHash(bits=8), ToyData())


def test_single_loader_is_a_clear_error():
    class OneLoader(ToyData):
        def val_dataloader(self):
            return self.query_dataloader()
    with pytest.raises(ValueError, match=r"\[query_loader, database_loader\]"):
        _trainer(callbacks=[RetrievalEvaluation()]).validate(ToyHash(bits=8), OneLoader())


def _validate(devices: int, state: dict) -> dict:
    model = ToyHash(bits=8)
    model.load_state_dict(state)
    strategy = "ddp_spawn" if devices > 1 else "auto"
    trainer = _trainer(devices=devices, strategy=strategy, callbacks=[RetrievalEvaluation(top_k=[5, "all"])])
    return trainer.validate(model, ToyData(n_query=11, n_database=33, batch_size=4))[0]


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_ddp_two_processes_give_exactly_the_single_process_metrics():
    torch.manual_seed(3)
    state = ToyHash(bits=8).state_dict()
    single, ddp = _validate(1, state), _validate(2, state)
    assert set(single) == set(ddp) and "val/mAP@5" in single
    for key, value in single.items():
        assert ddp[key] == pytest.approx(value, abs=1e-7), key
