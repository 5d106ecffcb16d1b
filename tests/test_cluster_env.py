"""What a scheduler tells a process (docs/cluster.md): with the environment variables ``srun`` and ``torchrun`` set for
2 nodes × 2 devices, Lightning's cluster environment and the suite agree on world size, ranks and the global batch.
Public Lightning APIs only (``Trainer.world_size``/``global_rank``/``node_rank``/``local_rank``,
``strategy.cluster_environment``); nothing is launched (CPU stands in for the GPUs)."""
import lightning as L
import pytest
from lightning.fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment

from datamodules.sampling import EpochShuffleSampler
from hashbench.runs import is_global_zero
from tests.conftest import LAUNCHER_VARIABLES

NODES, PER_NODE = 2, 2
WORLD = NODES * PER_NODE
CLEAN = LAUNCHER_VARIABLES  # removed for each test: the tests set their own


@pytest.fixture(autouse=True)
def no_scheduler(monkeypatch):
    import os
    for key in list(os.environ):
        if key.startswith(CLEAN):
            monkeypatch.delenv(key)


def srun_variables(rank: int) -> dict:
    """``sbatch --nodes 2 --ntasks-per-node 2`` + ``srun``: what SLURM sets in task ``rank``."""
    return {key: str(value) for key, value in {
        "SLURM_JOB_ID": "77", "SLURM_JOB_NAME": "hashbench", "SLURM_NTASKS": WORLD, "SLURM_NTASKS_PER_NODE": PER_NODE,
        "SLURM_JOB_NUM_NODES": NODES, "SLURM_NODELIST": "gpu[07-08]", "SLURM_PROCID": rank,
        "SLURM_LOCALID": rank % PER_NODE, "SLURM_NODEID": rank // PER_NODE}.items()}


def srun_task(monkeypatch, rank: int) -> None:
    for key, value in srun_variables(rank).items():
        monkeypatch.setenv(key, value)


def torchrun_worker(monkeypatch, rank: int) -> None:
    """``torchrun --nnodes 2 --nproc_per_node 2 --rdzv_endpoint gpu07:29500``: what it sets in worker ``rank``."""
    for key, value in {"RANK": rank, "LOCAL_RANK": rank % PER_NODE, "GROUP_RANK": rank // PER_NODE,
                       "WORLD_SIZE": WORLD, "LOCAL_WORLD_SIZE": PER_NODE, "MASTER_ADDR": "gpu07",
                       "MASTER_PORT": "29500", "TORCHELASTIC_RUN_ID": "hashbench"}.items():
        monkeypatch.setenv(key, str(value))


def _trainer() -> L.Trainer:
    return L.Trainer(accelerator="cpu", devices=PER_NODE, num_nodes=NODES, strategy="ddp", logger=False,
                     enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)


@pytest.mark.parametrize("launch, environment", [(srun_task, SLURMEnvironment), (torchrun_worker,
                                                                                   TorchElasticEnvironment)],
                         ids=["srun", "torchrun"])
@pytest.mark.parametrize("rank", [0, 3])
def test_ranks_and_world_size_from_the_scheduler(monkeypatch, launch, environment, rank):
    launch(monkeypatch, rank)
    assert environment.detect()
    trainer = _trainer()
    assert isinstance(trainer.strategy.cluster_environment, environment)
    assert trainer.world_size == WORLD and trainer.num_nodes == NODES and trainer.num_devices == PER_NODE
    assert (trainer.global_rank, trainer.node_rank, trainer.local_rank) == (rank, rank // PER_NODE, rank % PER_NODE)
    if environment is SLURMEnvironment:
        assert trainer.strategy.cluster_environment.main_address == "gpu07"  # the first node of the allocation
    else:
        assert trainer.strategy.cluster_environment.main_address == "gpu07"
    # the suite: only global rank 0 writes run folders, W&B ids and summaries
    assert is_global_zero() == (rank == 0)
    # per-device batch: data.batch_size is per process; one step trains on batch × world size images
    sampler = EpochShuffleSampler(list(range(256)), seed=0, num_replicas=trainer.world_size,
                                  rank=trainer.global_rank, batch_size=16)
    assert sampler.global_batch_size == 64 and len(sampler) == 256 // 64 * 16


def test_the_cli_names_the_global_batch_of_nodes_times_devices(monkeypatch, tmp_path, capsys):
    """64 images per step (CIBHash's paper batch) on 2 nodes × 2 devices: --data.batch_size 16, and the CLI says so."""
    from hashbench.lightning_cli import run_cli
    from tests.data_fixtures import write_cifar
    from tests.test_cli import EXP, FAST
    write_cifar(str(tmp_path / "cifar"), train_per_class=15, test_per_class=12)
    srun_task(monkeypatch, 0)
    monkeypatch.chdir(tmp_path)
    cli = run_cli(["--config", str(EXP / "cifar_cib.yaml"), *FAST, "--data.root", str(tmp_path / "cifar"),
                   "--trainer.devices", str(PER_NODE), "--trainer.num_nodes", str(NODES), "--trainer.strategy", "ddp",
                   "--trainer.default_root_dir", str(tmp_path / "runs"), "--data.batch_size", "16"], run=False)
    assert cli.trainer.world_size == WORLD
    assert "4 devices × data.batch_size 16 = global batch 64 (the paper's: 64)" in capsys.readouterr().err


BUILT_NOT_RUN = """
import sys, time
from hashbench.lightning_cli import run_cli
run_cli(sys.argv[1:], run=False)
time.sleep(3)  # six join timeouts: the watcher of a Trainer that never runs must not end this process
print("still here")
"""


def test_a_ddp_trainer_built_but_never_run_does_not_stop_its_process(tmp_path):
    """The launch watcher once timed the rendezvous from the moment the Trainer was built: a process that only built
    one (``run=False``, as the test above does in pytest's own process) was ended with exit code 2 by the watcher
    ``join timeout`` seconds later, whatever it was doing by then."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from tests.data_fixtures import write_cifar
    from tests.test_cli import EXP, FAST
    write_cifar(str(tmp_path / "cifar"), train_per_class=15, test_per_class=12)
    env = {k: v for k, v in os.environ.items() if not k.startswith(CLEAN)}
    env.update({"PYTHONPATH": str(Path(__file__).resolve().parents[1]), "HASHBENCH_DDP_JOIN_TIMEOUT": "0.5",
                **srun_variables(0)})
    out = subprocess.run(
        [sys.executable, "-c", BUILT_NOT_RUN, "--config", str(EXP / "cifar_cib.yaml"), *FAST,
         "--data.root", str(tmp_path / "cifar"), "--trainer.devices", str(PER_NODE), "--trainer.num_nodes", str(NODES),
         "--trainer.strategy", "ddp", "--trainer.default_root_dir", str(tmp_path / "runs")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "still here" in out.stdout, out.stderr[-2000:]


LEAKING_PAIR = '''
from lightning.fabric.plugins.environments import SLURMEnvironment
import os

def test_a_builds_a_slurm_environment(monkeypatch):
    monkeypatch.setenv("SLURM_NODELIST", "gpu[07-08]")
    assert SLURMEnvironment().main_address == "gpu07"  # Lightning also writes it into os.environ

def test_b_a_later_test_sees_no_master_address():
    assert "MASTER_ADDR" not in os.environ, os.environ["MASTER_ADDR"]
'''


def test_no_launcher_variable_outlives_its_test(tmp_path):
    """A test that only built a SLURM Trainer left MASTER_ADDR=gpu07 in pytest's environment; the next DDP test's
    subprocess inherited it and waited for a rendezvous on that node (CI hung). The suite's conftest restores the
    launcher variables after every test; checked on a pair of tests run with it."""
    import os
    import subprocess
    import sys
    from pathlib import Path
    (tmp_path / "test_pair.py").write_text(LEAKING_PAIR)
    repo = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(CLEAN)}
    env["PYTHONPATH"] = str(repo)
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "tests.conftest", "-p", "no:cacheprovider",
                          str(tmp_path / "test_pair.py")], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0 and "2 passed" in out.stdout, out.stdout[-2000:]
