"""Whether an error is the user's (one line, exit 2) or a bug (traceback) depends on where its command stood; that
phase belongs to one command and ends with it, so two commands in one process (tests, a sweep) never share it."""
import pytest

from hashbench import errors
from hashbench.lightning_cli import _WorkStarted


def _config_mistake() -> ValueError:
    """A configuration mistake raised by our code (the data.top_k check)."""
    from datamodules.base import resolve_top_k
    try:
        resolve_top_k("zero", None)
    except ValueError as err:
        return err
    raise AssertionError("resolve_top_k accepted 'zero'")


def test_a_command_whose_training_started_leaves_no_phase_behind():
    """Before: a finished fit left the process-wide phase at 'work started', so every later configuration mistake
    reported outside that command was taken for a bug."""
    assert errors.user_error(_config_mistake()) is not None  # nothing ran yet: the user's to fix
    with errors.reported():
        _WorkStarted()._started()  # what the first training batch calls
        assert errors.user_error(_config_mistake()) is None  # inside the command, after work began: a bug
    found = errors.user_error(_config_mistake())
    assert found is not None and "data.top_k" in found[0] and found[1] == 2


def test_a_run_inside_a_command_restores_the_outer_phase():
    with errors.command_phase("compare") as sweep:
        with errors.command_phase("fit") as run:
            errors.work_started()
            assert errors.current_phase() is run and not run.configuring
        assert errors.current_phase() is sweep and sweep.configuring
    assert errors.current_phase().configuring and errors.current_phase() is not sweep


def test_the_phase_is_restored_when_the_command_fails(capsys):
    with pytest.raises(SystemExit) as info:
        with errors.reported("evaluate"):
            errors.work_started()
            raise errors.ConfigError("the codes folder x is empty")
    assert info.value.code == 2 and "hashbench: error: the codes folder x is empty" in capsys.readouterr().err
    assert errors.current_phase().configuring and errors.current_phase().command == "fit"


def test_the_option_help_names_the_command_that_ran(capsys):
    import argparse
    with pytest.raises(SystemExit):
        with errors.reported("test"):
            raise argparse.ArgumentError(None, "bad value")
    assert "`hashbench test --help`" in capsys.readouterr().err


def test_in_one_process_a_bug_in_training_then_a_config_mistake(tmp_path, monkeypatch, capsys):
    """Through the console's main(): the first fit's error after training started keeps its traceback (a bug);
    the next command's bad option is still one `hashbench: error:` line."""
    from hashbench.cli import main
    from tests.data_fixtures import write_cifar
    from tests.test_cli import EXP, FAST

    root = tmp_path / "cifar"
    write_cifar(str(root), train_per_class=15, test_per_class=12)  # test_errors.py's miniature
    monkeypatch.chdir(tmp_path)
    fit = ["fit", "--config", str(EXP / "cifar_bihalf.yaml"), "--data.root", str(root), *FAST,
           "--trainer.max_epochs", "1", "--data.val_queries", "10", "--trainer.limit_train_batches", "2"]
    with pytest.raises(ValueError, match="data.top_k"):
        main([*fit, "--trainer.callbacks+=tests.fit_markers.ConfigCheckFailsInTraining"])
    assert errors.current_phase().configuring
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main([*fit, "--data.top_k", "zero"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("hashbench: error:") == 1 and "data.top_k" in err, err
