"""Warning and log filters are installed by the command that wants them, for as long as it runs, not on import."""
from __future__ import annotations

import logging
import subprocess
import sys
import warnings

from hashbench.lightning_cli import framework_noise_filtered

EVAL_MODE = "Found 3 module(s) in eval mode at the start of training"


def test_importing_the_cli_installs_no_warning_filter():
    code = ("import warnings, logging; import hashbench.lightning_cli; "
            "ours = [f for f in warnings.filters if f[1] is not None and 'eval mode' in f[1].pattern]; "
            "tips = logging.getLogger('lightning.pytorch.utilities.rank_zero').filters; "
            "print(len(ours), len(tips))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["0", "0"], f"importing hashbench.lightning_cli installed filters (warnings, logging): {out}"


def test_the_command_scope_silences_lightning_noise_and_restores_it():
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with framework_noise_filtered():
            warnings.warn(EVAL_MODE, UserWarning)
            assert any(not f.filter(logging.makeLogRecord({"msg": "Tip: try Lightning Cloud"}))
                       for f in rank_zero.filters)
        assert not caught, "the eval-mode warning was not silenced inside the command"
        warnings.warn(EVAL_MODE, UserWarning)
        assert len(caught) == 1, "the filter outlived the command"
    assert not rank_zero.filters or all(f.filter(logging.makeLogRecord({"msg": "Tip: x"})) for f in rank_zero.filters)


def test_checkpoint_and_pytree_chatter_is_silenced_only_inside_the_command():
    """Lightning logs "`weights_only` was not set" at every checkpoint save and warns about its own pytree use."""
    connector = logging.getLogger("lightning.pytorch.trainer.connectors.checkpoint_connector")
    saved = logging.makeLogRecord({"msg": "`weights_only` was not set, defaulting to `False`."})
    other = logging.makeLogRecord({"msg": "Restoring states from the checkpoint path at last.ckpt"})
    pytree = "`isinstance(treespec, LeafSpec)` is deprecated, use `isinstance(treespec, TreeSpec)` instead."
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with framework_noise_filtered():
            assert not connector.filter(saved) and connector.filter(other)
            warnings.warn(pytree, FutureWarning)
        assert not caught, "the pytree deprecation was not silenced inside the command"
        assert connector.filter(saved), "the log filter outlived the command"
        warnings.warn(pytree, FutureWarning)
        assert len(caught) == 1, "the warning filter outlived the command"
