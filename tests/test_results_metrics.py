"""One function builds a results file's metrics and curves, for the training-time evaluation and `hashbench evaluate`."""
import torch

from hashcore import retrieval_metrics as rm


def test_headline_is_the_first_cut_off_and_curves_are_json_lists():
    g = torch.Generator().manual_seed(0)
    query = torch.randint(0, 2, (6, 8), generator=g).float() * 2 - 1
    database = torch.randint(0, 2, (20, 8), generator=g).float() * 2 - 1
    q_labels, db_labels = torch.randint(0, 3, (6,), generator=g), torch.randint(0, 3, (20,), generator=g)
    per_query = rm.per_query_metrics(query, q_labels, database, db_labels, top_ks=[5, None], radius=2, curves=True)
    metrics, curves = rm.results_metrics_and_curves(per_query)
    assert metrics["mAP"] == metrics["mAP@5"] != metrics["mAP@all"]
    assert list(metrics)[1:] == list(rm.summarize(per_query))
    assert curves and all(k.startswith(("radius_", "rank_")) and "/" not in k for k in curves)
    assert all(isinstance(v, list) for v in curves.values())
