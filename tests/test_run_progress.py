"""Live progress of a run inside a sweep: progress.json in the run folder every epoch (what --status reads) and one
line per running run that gives way to the result line."""
import io
import json

from callbacks.run_progress import LiveLine, ProgressBoard, progress_text
from hashbench import compare
from tests.data_fixtures import write_cifar
from tests.test_cli import EXP
from tests.test_compare import TINY


def test_a_two_epoch_run_in_a_sweep_writes_progress_json_and_a_line_per_epoch(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_cifar(str(tmp_path / "cifar"), train_per_class=15, test_per_class=12)
    compare.main(["--config", str(EXP / "data" / "cifar.yaml"), "--methods", "bihalf", "--baselines", "", "--bits", "8",
                  "--seeds", "1", "--name", "p", "--out", str(tmp_path / "results"), "--examples", "0",
                  "--data.root", str(tmp_path / "cifar"), *TINY, "--trainer.max_epochs", "2"])
    (progress_file,) = (tmp_path / "results" / "p" / "runs").glob("bihalf_8b_seed0-*/progress.json")
    p = json.loads(progress_file.read_text())
    assert (p["method"], p["bits"], p["seed"], p["epoch"], p["max_epochs"]) == ("bihalf", 8, 0, 2, 2)
    assert p["state"] == "finished" and isinstance(p["loss"], float) and p["elapsed_s"] > 0 and p["eta_s"] == 0
    printed = capsys.readouterr().out.splitlines()
    live = [ln for ln in printed if "bihalf 8 bits seed 0: epoch" in ln]
    # not a TTY: at most one line per epoch, and no more often than once a minute (this run takes seconds)
    assert len(live) == 1 and "epoch 1/2, loss " in live[0] and "ETA" in live[0], printed
    assert any(ln.startswith("[1/1] bihalf") and "mAP@" in ln for ln in printed)


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_in_a_tty_the_line_is_rewritten_in_place_and_cleared_for_the_result_line():
    term = _Terminal()
    line = LiveLine(term)
    line.update("epoch 1/3")
    line.update("epoch 2/3")
    line.clear()
    assert term.getvalue() == "\r\x1b[Kepoch 1/3\r\x1b[Kepoch 2/3\r\x1b[K"  # one line, no newline left behind


def test_in_a_log_the_line_is_printed_at_most_every_interval():
    log = io.StringIO()
    line = LiveLine(log, log_interval_s=3600)
    line.update("epoch 1/3")
    line.update("epoch 2/3")
    line.clear()
    assert log.getvalue() == "epoch 1/3\n"


def test_progress_text_says_epoch_loss_elapsed_and_eta():
    text = progress_text({"epoch": 3, "max_epochs": 50, "loss": 0.43214, "elapsed_s": 62, "eta_s": 910})
    assert text == "epoch 3/50, loss 0.4321, 1m02s, ETA 15m10s"


def _p(seed, epoch):
    return {"method": "dch", "bits": 16, "seed": seed, "epoch": epoch, "max_epochs": 4, "loss": 0.5, "elapsed_s": 10,
            "eta_s": 30}


def test_the_board_of_parallel_runs_redraws_one_line_per_run_and_collapses_a_finished_one_into_its_result():
    term = _Terminal()
    board = ProgressBoard(term)
    board.update("a", _p(0, 1))
    board.update("b", _p(1, 1))
    board.finish("a", "[1/2] dch 16 bits seed 0: mAP@1000 0.5000")
    a, b = f"  dch 16 bits seed 0: {progress_text(_p(0, 1))}\n", f"  dch 16 bits seed 1: {progress_text(_p(1, 1))}\n"
    # draw a; go up 1 line, clear, draw a and b; go up 2, clear, the result line stays, b is redrawn below it
    assert term.getvalue() == (a + "\x1b[1F\x1b[J" + a + b + "\x1b[2F\x1b[J" + "[1/2] dch 16 bits seed 0: mAP@1000 0.5000\n"
                               + b)


def test_the_board_in_a_log_prints_a_run_once_per_epoch_at_most_then_its_result():
    log = io.StringIO()
    board = ProgressBoard(log, log_interval_s=0)
    board.update("a", _p(0, 1))
    board.update("a", _p(0, 1))  # the same epoch again (polled twice): not printed again
    board.update("a", _p(0, 2))
    board.finish("a", "result a")
    assert log.getvalue().splitlines() == [f"  dch 16 bits seed 0: {progress_text(_p(0, 1))}",
                                           f"  dch 16 bits seed 0: {progress_text(_p(0, 2))}", "result a"]
