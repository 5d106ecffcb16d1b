"""A sweep's run may turn W&B offline (WANDB_MODE) when no API key is set; compare restores the variable after each
run, so the next run and the sweep's summary do not inherit it silently."""
import os

import pytest

from hashbench.env_scope import restored_env


def test_a_variable_set_inside_is_removed_after(monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    with restored_env("WANDB_MODE"):
        os.environ["WANDB_MODE"] = "offline"
    assert "WANDB_MODE" not in os.environ


def test_a_changed_or_removed_variable_gets_its_value_back_also_after_an_error(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    with pytest.raises(RuntimeError), restored_env("WANDB_MODE"):
        os.environ["WANDB_MODE"] = "offline"
        raise RuntimeError("run failed")
    assert os.environ["WANDB_MODE"] == "disabled"
    with restored_env("WANDB_MODE"):
        del os.environ["WANDB_MODE"]
    assert os.environ["WANDB_MODE"] == "disabled"

