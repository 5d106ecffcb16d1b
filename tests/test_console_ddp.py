"""Multi-process runs through the console as users type them: `lightning fit|test`, `hashbench encode|compare` with
`--trainer.devices 2 --trainer.strategy ddp` (Lightning re-runs the command for rank 1) and `ddp_spawn`, a `torchrun`
launch, and launches that cannot work, which must stop within seconds with one message instead of hanging.
Two CPU processes with gloo, a miniature CIFAR-10, a tiny CNN, a few steps."""
import csv
import json

import pytest

from hashbench.codes import load_codes
from tests.console_fixtures import EXP, TINY, TWO_CPU, console
from tests.data_fixtures import write_cifar

CONFIGS = ["--config", str(EXP / "methods" / "bihalf.yaml"), "--config", str(EXP / "data" / "cifar.yaml")]
JOINED = "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2"  # rank 1 reached the process group


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar_ddp")
    write_cifar(str(root), train_per_class=15, test_per_class=12)
    return ["--data.root", str(root), *TINY, "--model.bits", "8", "--seed_everything", "0"]


def _no_traceback(ran) -> None:
    assert "Traceback" not in ran.stderr and "usage: hashbench" not in ran.stdout, ran.tail()


@pytest.mark.parametrize("strategy", ["ddp", "ddp_spawn"])
def test_fit_test_and_encode_run_on_two_processes(strategy, cifar, tmp_path):
    """One run folder through the three commands (shared: each launch costs two interpreter starts)."""
    run = [*CONFIGS, *cifar, *TWO_CPU, "--trainer.strategy", strategy, "--run_name", "r"]
    fit = console("lightning", "fit", *run, cwd=tmp_path, timeout=300)
    assert fit.returncode == 0, fit.tail()
    assert JOINED in fit.stderr, fit.tail()
    assert (tmp_path / "runs" / "r" / "checkpoints" / "last.ckpt").is_file()
    _no_traceback(fit)

    test = console("lightning", "test", *run, "--ckpt_path", "last", cwd=tmp_path, timeout=300)
    assert test.returncode == 0, test.tail()
    assert JOINED in test.stderr and test.stdout.count("RetrievalEvaluation test") == 1, test.tail()  # rank 0 only
    _no_traceback(test)

    encode = console("hashbench", "encode", *run, "--ckpt_path", "last", "--split", "query", "--out", "codes/query",
                     cwd=tmp_path, timeout=300)
    assert encode.returncode == 0, encode.tail()
    assert JOINED in encode.stderr and encode.stdout.count("hashbench encode:") == 1, encode.tail()  # rank 0 only
    codes = load_codes(tmp_path / "codes" / "query")
    assert len(codes) > 0 and len(set(codes.index.tolist())) == len(codes) and codes.meta["world_size"] == 2
    _no_traceback(encode)


@pytest.mark.parametrize("strategy", ["ddp", "ddp_spawn"])
def test_compare_on_two_processes_trains_each_run_once_and_only_rank_0_prints_and_writes(strategy, cifar, tmp_path):
    """Under ddp, rank 1 re-runs `hashbench compare …`: it follows rank 0 through the same runs (the trainers' collectives
    keep them in step; a rank that never joined would stop the launch), reads the config files rank 0 wrote before
    launching it, and prints and writes nothing (compare silences Lightning's per-rank lines unless --verbose)."""
    # two runs under ddp: rank 1 must follow rank 0 from one run to the next; ddp_spawn starts fresh workers per run
    methods = ["bihalf", "greedy"] if strategy == "ddp" else ["bihalf"]
    ran = console("hashbench", "compare", "--config", str(EXP / "data" / "cifar.yaml"), "--methods", ",".join(methods),
                  "--baselines", "", "--bits", "8", "--seeds", "1", "--name", "d", "--out", "results", "--examples", "0",
                  *cifar, *TWO_CPU, "--trainer.strategy", strategy, cwd=tmp_path, timeout=400)
    assert ran.returncode == 0, ran.tail()
    assert ran.stdout.count("hashbench compare:") == 1 and ran.stdout.count("results: ") == 1, ran.tail()
    for i, method in enumerate(methods, 1):
        assert ran.stdout.count(f"[{i}/{len(methods)}] {method} ") == 1, ran.tail()
    rows = list(csv.DictReader(open(tmp_path / "results" / "d" / "runs.csv")))
    assert sorted(r["method"] for r in rows) == methods and {r["status"] for r in rows} == {"ok"}
    results = sorted((tmp_path / "results" / "d" / "runs").glob("*/result.json"))
    assert len(results) == len(methods) and all(json.loads(p.read_text())["status"] == "ok" for p in results)
    _no_traceback(ran)


def test_torchrun_launch(cifar, tmp_path):
    ran = console("torchrun", "--standalone", "--nproc_per_node", "2", "-m", "hashbench", "fit", *CONFIGS, *cifar,
                  *TWO_CPU, "--trainer.strategy", "ddp", "--run_name", "t", cwd=tmp_path, timeout=300)
    assert ran.returncode == 0, ran.tail()
    assert JOINED in ran.stderr and (tmp_path / "runs" / "t" / "checkpoints" / "last.ckpt").is_file(), ran.tail()
    _no_traceback(ran)


# ---- launches that cannot work: one message, within seconds, never a hang ------------------------------------------
def test_a_rank_that_fails_before_joining_stops_the_launch_with_one_error(cifar, tmp_path):
    ran = console("lightning", "fit", *CONFIGS, *cifar, *TWO_CPU, "--trainer.strategy", "ddp",
                  "--trainer.callbacks+=tests.console_fixtures.FailOnRank", cwd=tmp_path, timeout=120)
    assert ran.returncode == 2, ran.tail()
    assert ran.stderr.count("hashbench: error:") == 1 and "FailOnRank: rank 1 cannot build" in ran.stderr, ran.tail()
    assert "rank 1 exited with code 2" in ran.stderr and "Traceback" not in ran.stderr, ran.tail()


def test_a_process_group_that_never_forms_stops_after_the_join_timeout(cifar, tmp_path):
    """--trainer.num_nodes 2 with no second node: rank 0 would wait for torch's 30-minute timeout."""
    ran = console("lightning", "fit", *CONFIGS, *cifar, *TWO_CPU, "--trainer.strategy", "ddp", "--trainer.num_nodes",
                  "2", cwd=tmp_path, timeout=120, HASHBENCH_DDP_JOIN_TIMEOUT="3")
    assert ran.returncode == 2, ran.tail()
    assert ran.stderr.count("hashbench: error:") == 1, ran.tail()
    assert "did not all start within 3 s" in ran.stderr and "--trainer.num_nodes 2" in ran.stderr, ran.tail()
    assert "Traceback" not in ran.stderr


def test_a_rank_started_without_its_command_is_an_error_not_the_help(tmp_path):
    """What rank 1 was given before the fix (a bare `hashbench`): printing the help and exiting 0 left rank 0 waiting."""
    ran = console("hashbench", cwd=tmp_path, timeout=60, LOCAL_RANK="1", WORLD_SIZE="2")
    assert ran.returncode == 2 and "usage:" not in ran.stdout, ran.tail()
    assert ran.stderr.count("hashbench: error:") == 1 and "DDP rank 1" in ran.stderr, ran.tail()
