"""docs/ADDING.md's walkthroughs work as written: its example method registers itself and trains with no other file
edited; its example dataset YAML builds an ImageList on list files in the real format."""
import re
import sys
import textwrap
import types

import lightning as L
import pytest
import yaml

import lightning_modules
from hashcore import registry
from tests.data_fixtures import write_list_dataset
from tests.test_cli import REPO
from tests.toy import ToyData

DOC = (REPO / "docs" / "ADDING.md").read_text()


def _block(lang: str, index: int = 0) -> str:
    return textwrap.dedent(re.findall(rf"```{lang}\n(.*?)```", DOC, flags=re.S)[index])


@pytest.fixture()
def example_method():
    name = "lightning_modules._adding_doc_example"
    module = types.ModuleType(name)
    module.__package__ = "lightning_modules"
    exec(compile(_block("python"), "docs/ADDING.md", "exec"), module.__dict__)  # as if it were a new file
    sys.modules[name] = module
    yield module
    registry._METHODS.pop("mymethod", None)
    for alias in [a for a, k in registry._ALIASES.items() if k == "mymethod"]:
        registry._ALIASES.pop(alias)
    sys.modules.pop(name, None)


def test_the_example_method_registers_itself_and_trains(example_method):
    cls = lightning_modules.get_method("MyMethodNet")
    assert cls is example_method.MyMethod and "mymethod" in lightning_modules.method_names()
    model = cls(bits=8, backbone="tiny_cnn", pretrained=False, freeze=False, lr=1e-2)
    model.check_batch_size(8)
    trainer = L.Trainer(fast_dev_run=2, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.fit(model, ToyData())
    assert "train/loss" in trainer.callback_metrics


def test_the_example_dataset_yaml_builds_an_image_list(tmp_path):
    import datamodules
    args = yaml.safe_load(_block("yaml"))["data"]["init_args"]
    write_list_dataset(str(tmp_path), args["num_classes"], n_query=6, n_train=8, n_database=20, train_in_database=False)
    dm = datamodules.ImageList(**{**args, "root": str(tmp_path), "image_size": 32, "num_workers": 0, "batch_size": 4})
    dm.setup("fit")
    assert (len(dm.dataset("query")), len(dm.dataset("database")), len(dm.dataset("train"))) == (6, 20, 8)
    assert dm.top_k is None and dm.num_classes == 38
