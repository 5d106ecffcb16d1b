"""W&B extras for the retrieval callback: PR curves and per-bit balance as native W&B plots."""
from __future__ import annotations


def log_retrieval_plots(run, stage: str, results: dict, step: int) -> None:
    """Log the PR curve (by Hamming radius), precision@N and the per-bit +1 rate of ``results``."""
    import wandb

    curves = results["curves"]
    payload = {}
    if "radius_radius" in curves:
        rows = list(zip(curves["radius_radius"], curves["radius_precision"], curves["radius_recall"]))
        table = wandb.Table(data=rows, columns=["radius", "precision", "recall"])
        payload[f"{stage}/pr_curve"] = wandb.plot.line(table, "recall", "precision",
                                                       title=f"{stage} precision-recall (Hamming radius)")
    if "rank_rank" in curves:
        rows = list(zip(curves["rank_rank"], curves["rank_precision"]))
        table = wandb.Table(data=rows, columns=["N", "precision"])
        payload[f"{stage}/precision_at_N"] = wandb.plot.line(table, "N", "precision", title=f"{stage} precision@N")
    rate = results["bit_plus_rate"]
    table = wandb.Table(data=[[i, r] for i, r in enumerate(rate)], columns=["bit", "plus_rate"])
    payload[f"{stage}/bit_balance"] = wandb.plot.bar(table, "bit", "plus_rate", title=f"{stage} per-bit +1 rate")
    for key in results["metrics"]:
        if key.startswith("mAP"):
            run.define_metric(f"{stage}/{key}", summary="max")
    run.log(payload, step=step)
