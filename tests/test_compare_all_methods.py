"""`hashbench compare --methods all` as a user types it: every registered method that reads images (learned and closed
form) trains and is scored on a miniature CIFAR-10; the autoencoder study's methods (flat binarised pixels) are not."""
import csv

from hashbench.sweep_args import all_image_methods
from lightning_modules import get_method, method_names
from tests.console_fixtures import EXP, TINY, console
from tests.data_fixtures import write_cifar


def test_methods_all_runs_every_image_method_once(tmp_path):
    write_cifar(str(tmp_path / "cifar"), train_per_class=15, test_per_class=12)
    ran = console("hashbench", "compare", "--config", str(EXP / "data" / "cifar.yaml"), "--methods", "all",
                  "--bits", "8", "--seeds", "1", "--name", "all", "--out", "results", "--examples", "0",
                  "--data.root", str(tmp_path / "cifar"), *TINY, "--trainer.limit_train_batches", "2",
                  cwd=tmp_path, timeout=900)
    assert ran.returncode == 0, ran.tail()
    rows = list(csv.DictReader(open(tmp_path / "results" / "all" / "runs.csv")))
    expected = {n for n in method_names() if get_method(n).image_input}
    assert {"adsh", "dpsh", "lsh", "itq", "pcah"} <= expected and not {"ae_sign", "ae_bihalf"} & expected
    assert sorted(r["method"] for r in rows) == sorted(expected) == sorted(all_image_methods())
    assert {r["status"] for r in rows} == {"ok"}, [(r["method"], r["status"]) for r in rows]
