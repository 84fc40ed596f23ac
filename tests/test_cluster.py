"""Multi-node recipes in configs/cluster/: the config loads, the launch scripts agree with it, and DDP over
2 CPU processes trains to the same validation accuracy as 1 process on the same global batch."""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lightning_snn.cli import build_cli

ROOT = Path(__file__).parents[1]
CLUSTER = ROOT / "configs" / "cluster"
CONFIG = CLUSTER / "cifar10_resnet18_2x4gpu.yaml"
SBATCH = CLUSTER / "slurm_2x4gpu.sbatch"
TORCHRUN = CLUSTER / "torchrun.sh"


def _sbatch_options(path: Path) -> dict[str, str]:
    """``#SBATCH --key=value`` lines of a batch script (before the first command, as sbatch reads them)."""
    opts: dict[str, str] = {}
    for line in path.read_text().splitlines():
        m = re.match(r"#SBATCH\s+--([\w-]+)(?:[=\s]+(\S+))?", line)
        if m:
            opts[m.group(1)] = m.group(2) or ""
        elif line.strip() and not line.startswith("#"):
            break
    return opts


def _shell_var(path: Path, name: str) -> str:
    m = re.search(rf"^{name}=\$?\{{?(?:{name}:-)?([^}}\s]+)\}}?\s*$", path.read_text(), flags=re.M)
    assert m, f"{path}: no assignment {name}=... found"
    return m.group(1)


@pytest.fixture
def restore_seed_env(monkeypatch):
    """The CLI's seed_everything writes PL_GLOBAL_SEED / PL_SEED_WORKERS into os.environ: undo it afterwards."""
    for name in ("PL_GLOBAL_SEED", "PL_SEED_WORKERS"):
        monkeypatch.delenv(name, raising=False)


def test_multi_node_config_loads_with_its_trainer_layout(tmp_path, restore_seed_env):
    """The config instantiates (model, data, an 8-process DDP trainer) once the accelerator is CPU."""
    from tests.fakes import write_fake_cifar

    write_fake_cifar(tmp_path, n_train=10, n_test=10)
    cli = build_cli(["--config", str(CONFIG), "--trainer.accelerator", "cpu", "--trainer.logger", "false",
                     "--trainer.default_root_dir", str(tmp_path / "run"), "--data.init_args.root", str(tmp_path)], run=False)
    from lightning.pytorch.strategies import DDPStrategy

    assert cli.trainer.num_nodes == 2
    assert cli.trainer.num_devices == 4
    assert isinstance(cli.trainer.strategy, DDPStrategy)
    assert cli.trainer.world_size == 8
    assert cli.model.num_classes == 10 and cli.model.input_shape == (3, 32, 32) and cli.model.T == 2
    assert cli.datamodule.batch_size * cli.trainer.world_size == 64  # the published recipe's global batch
    # sync_batchnorm: the model installs the plugin that keeps tdBN's time folding and threshold scale
    from lightning_snn.callbacks import SpikingSyncBatchNorm

    cli.model.trainer = cli.trainer
    cli.model.configure_model()
    assert isinstance(cli.trainer.strategy._layer_sync, SpikingSyncBatchNorm)


def test_launch_scripts_agree_with_the_config():
    trainer = yaml.safe_load(CONFIG.read_text())["trainer"]
    assert trainer["strategy"] == "ddp" and trainer["accelerator"] == "gpu"
    assert trainer.get("sync_batchnorm") is True  # global BN statistics, synchronised by SpikingSyncBatchNorm

    opts = _sbatch_options(SBATCH)
    assert int(opts["nodes"]) == trainer["num_nodes"], f"{SBATCH}: --nodes differs from {CONFIG.name} trainer.num_nodes"
    assert int(opts["ntasks-per-node"]) == trainer["devices"], f"{SBATCH}: --ntasks-per-node differs from trainer.devices"
    assert int(opts["gpus-per-node"]) == trainer["devices"], f"{SBATCH}: --gpus-per-node differs from trainer.devices"
    text = SBATCH.read_text()
    assert re.search(r"^srun .*lightning-snn fit", text, flags=re.M), f"{SBATCH}: no `srun ... lightning-snn fit` line"
    assert f"CONFIG={CONFIG.relative_to(ROOT)}" in text

    assert int(_shell_var(TORCHRUN, "NNODES")) == trainer["num_nodes"]
    assert int(_shell_var(TORCHRUN, "NPROC_PER_NODE")) == trainer["devices"]
    assert _shell_var(TORCHRUN, "CONFIG") == str(CONFIG.relative_to(ROOT))
    assert "-m lightning_snn.cli fit" in TORCHRUN.read_text()
    for script in (SBATCH, TORCHRUN):
        assert os.access(script, os.X_OK), f"{script} is not executable"
        assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0, f"{script}: syntax error"


def _args(tmp: Path, devices: int, batch_size: int) -> list[str]:
    """A small quickstart model, 2 epochs of 15 steps, on `devices` CPU processes."""
    return ["fit", "--config", str(ROOT / "configs/quickstart.yaml"),
            "--trainer.accelerator", "cpu", "--trainer.devices", str(devices),
            "--trainer.max_epochs", "2", "--trainer.limit_train_batches", "15", "--trainer.num_sanity_val_steps", "0",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_checkpointing", "false",
            "--trainer.enable_model_summary", "false", "--trainer.default_root_dir", str(tmp),
            "--model.init_args.T", "2", "--model.init_args.backbone_kwargs.channels", "[4, 8]",
            "--model.init_args.backbone_kwargs.hidden", "32", "--data.init_args.batch_size", str(batch_size),
            "--optimizer.init_args.lr", "0.01", "--test_after_fit", "false"]


def _fit_ddp(tmp: Path, devices: int, batch_size: int) -> dict[str, float]:
    """`lightning-snn fit` with `strategy=ddp` on `devices` CPU processes (gloo), in a subprocess."""
    tmp.mkdir(parents=True, exist_ok=True)
    exe = Path(sys.executable).with_name("lightning-snn")
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1", "LIGHTNING_SNN_SUMMARY": "0"}
    cmd = [str(exe), *_args(tmp, devices, batch_size), "--trainer.strategy", "ddp",
           "--trainer.logger.init_args.save_dir", str(tmp)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"Starting with {devices} processes" in out.stderr + out.stdout
    rows = [r for r in csv.DictReader(open(next(tmp.rglob("metrics.csv")))) if r.get("val/acc")]
    assert len(rows) == 2  # one validation per epoch
    return {"acc": float(rows[-1]["val/acc"]), "loss": float(rows[-1]["val/loss"])}


def _fit_single(tmp: Path, batch_size: int, monkeypatch) -> dict[str, float]:
    """The same run in this process on one device, no DDP (the unsharded order of the same sampler)."""
    monkeypatch.setenv("LIGHTNING_SNN_SUMMARY", "0")
    args = _args(tmp, 1, batch_size) + ["--trainer.logger", "false"]
    cli = build_cli(args)
    metrics = cli.trainer.callback_metrics
    return {"acc": float(metrics["val/acc"]), "loss": float(metrics["val/loss"])}


def test_two_processes_match_one_process_on_the_same_global_batch(tmp_path, monkeypatch, restore_seed_env):
    """1 process x batch 64 (no DDP) vs 2 DDP processes x batch 32 (same seed, 2 epochs of 15 steps).

    Why they agree: under DDP the DataModule's EpochSeededSampler shards the one (seed, epoch) permutation a
    single process draws: with 2 replicas rank r takes every other index of it, so each step's 2 x 32 samples are
    exactly the 64 samples of the single process's step, and DDP's mean of the two shard gradients equals the
    gradient of the 64-sample mean loss. 15 steps per epoch leave out the last partial batch, where the
    2-process sampler pads the odd-sized training split with a repeated sample. The
    backbone (mnistnet) has no BatchNorm: with BN, statistics are per process (over 32 samples, not 64) and
    the runs would differ by more. What remains is floating-point summation order (the all-reduce), which can
    flip a spike at a threshold, hence the tolerance. Validation metrics are synced over both processes.
    """
    one = _fit_single(tmp_path / "one", 64, monkeypatch)
    two = _fit_ddp(tmp_path / "two", devices=2, batch_size=32)
    print(f"val/acc 1 process {one['acc']:.4f}, 2 processes {two['acc']:.4f}; val/loss {one['loss']:.4f} / {two['loss']:.4f}")
    assert one["acc"] > 0.3  # well above chance (0.1): the comparison is not between two untrained models
    assert one["acc"] == pytest.approx(two["acc"], abs=0.02)
    assert one["loss"] == pytest.approx(two["loss"], rel=0.05)


# ------------------------------------------------------------------ two "nodes" on loopback (issue 19, item 9)
def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _small(tmp: Path, batch_size: int, probe: Path) -> list[str]:
    """One epoch of 10 steps of the small quickstart model, checkpoints only through the probe."""
    return ["--trainer.accelerator", "cpu", "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "10",
            "--trainer.limit_val_batches", "0", "--trainer.num_sanity_val_steps", "0", "--trainer.logger", "false",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_checkpointing", "false",
            "--trainer.enable_model_summary", "false", "--trainer.default_root_dir", str(tmp),
            "--model.init_args.T", "2", "--model.init_args.backbone_kwargs.channels", "[4, 8]",
            "--model.init_args.backbone_kwargs.hidden", "16", "--data.init_args.batch_size", str(batch_size),
            "--optimizer.init_args.lr", "0.01", "--test_after_fit", "false",
            "--trainer.callbacks+=tests.cluster_probe.Probe"]


def _env(probe: Path, **extra: str) -> dict[str, str]:
    probe.mkdir(parents=True, exist_ok=True)
    return {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1", "LIGHTNING_SNN_SUMMARY": "0",
            "PYTHONPATH": str(ROOT), "PROBE_DIR": str(probe), **extra}


def _two_nodes(tmp: Path, extra: list[str], **env: str) -> Path:
    """configs/cluster/torchrun.sh on two "nodes" of one process each, on loopback with gloo (CPU)."""
    probe, port = tmp / "probe", str(_free_port())
    base = _env(probe, NNODES="2", NPROC_PER_NODE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=port,
                CONFIG="configs/quickstart.yaml", **env)
    args = _small(tmp, 32, probe) + ["--trainer.num_nodes", "2", "--trainer.devices", "1", "--trainer.strategy", "ddp", *extra]
    nodes = [subprocess.Popen(["bash", str(TORCHRUN), *args], cwd=ROOT, env={**base, "NODE_RANK": str(r)},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for r in (0, 1)]
    try:
        outs = [n.communicate(timeout=300)[0] for n in nodes]
    finally:
        for n in nodes:
            n.kill()
    for rank, (node, out) in enumerate(zip(nodes, outs)):
        assert node.returncode == 0, f"node {rank}:\n{out[-3000:]}"
    return probe


def _one_process(tmp: Path, extra: list[str], **env: str) -> Path:
    probe = tmp / "probe"
    exe = Path(sys.executable).with_name("lightning-snn")
    cmd = [str(exe), "fit", "--config", str(ROOT / "configs/quickstart.yaml"), *_small(tmp, 64, probe),
           "--trainer.devices", "1", *extra]
    out = subprocess.run(cmd, cwd=ROOT, env=_env(probe, **env), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return probe


def _weights(probe: Path, rank: int = 0) -> dict:
    import torch

    return torch.load(probe / f"weights_rank{rank}.pt", weights_only=True)


def _close(a: dict, b: dict, what: str) -> None:
    import torch

    worst = max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].is_floating_point())
    print(f"{what}: largest weight difference {worst:.2e}")
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-5), f"{what}: {k} differs"


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("uv") is None, reason="configs/cluster/torchrun.sh runs `uv run`; uv is not on PATH")
def test_torchrun_two_nodes_on_loopback_shard_and_match_one_process(tmp_path):
    """Two nodes x one process: rank layout, disjoint shards covering the epoch, the weights of one process with the
    same global batch; then a mid-epoch checkpoint of 2 processes resumes in 1 process and one of 1 process in 2."""
    two = _two_nodes(tmp_path / "two", [], PROBE_SAVE_AT="4")
    ranks = [json.loads((two / f"rank{r}.json").read_text()) for r in (0, 1)]
    for r, rec in enumerate(ranks):
        assert (rec["global_rank"], rec["node_rank"], rec["local_rank"], rec["world_size"]) == (r, r, 0, 2)
        assert rec["env_node_rank"] == str(r) and rec["sampler"] == "EpochSeededSampler"
    shard0, shard1 = ranks[0]["epochs"]["0"], ranks[1]["epochs"]["0"]
    n = 1293  # the digits training split
    assert len(shard0) == len(shard1) == (n + 1) // 2
    assert set(shard0) | set(shard1) == set(range(n))
    assert len(set(shard0) & set(shard1)) == 2 * len(shard0) - n  # only the padding to a multiple of 2 repeats
    one = _one_process(tmp_path / "one", [], PROBE_SAVE_AT="4")
    assert json.loads((one / "rank0.json").read_text())["epochs"]["0"][::2] == shard0
    _close(_weights(one), _weights(two, 0), "2 nodes x batch 32 vs 1 process x batch 64")
    assert all((_weights(two, 0)[k] == _weights(two, 1)[k]).all() for k in _weights(two, 0))

    # 2 -> 1: the 2-process checkpoint after 4 steps (4 x 32 per rank) continues in 1 process at batch 4 of 64
    two_to_one = _one_process(tmp_path / "2to1", ["--ckpt_path", str(two / "step4.ckpt")])
    _close(_weights(one), _weights(two_to_one), "2-process checkpoint resumed in 1 process")
    # 1 -> 2: the 1-process checkpoint after 4 steps (4 x 64) continues in 2 processes at batch 4 of 32 each
    one_to_two = _two_nodes(tmp_path / "1to2", ["--ckpt_path", str(one / "step4.ckpt")])
    _close(_weights(one), _weights(one_to_two), "1-process checkpoint resumed in 2 processes")


# ------------------------------------------------------------------ SLURM requeue, emulated (issue 19, item 8)
@pytest.mark.slow
def test_emulated_slurm_sigusr1_requeue_and_relaunch_match_the_uninterrupted_run(tmp_path):
    """`lightning-snn fit --config ... --config configs/cluster/slurm_requeue.yaml` under SLURM's variables, with a
    stand-in `scontrol` on PATH; SIGUSR1 is sent from outside once step 3 is done; the relaunched command resumes
    from hpc_ckpt_1.ckpt and ends with the weights of an uninterrupted run, bit for bit."""
    import signal
    import time

    import torch

    bin_dir, record = tmp_path / "bin", tmp_path / "scontrol.args"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {record}\n')
    (bin_dir / "scontrol").chmod(0o755)
    slurm = {"SLURM_NTASKS": "1", "SLURM_JOB_NAME": "requeue-test", "SLURM_JOB_ID": "4242", "SLURM_PROCID": "0",
             "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_NODELIST": "localhost", "SLURM_NTASKS_PER_NODE": "1",
             "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    full = _one_process(tmp_path / "full", [])

    job, probe = tmp_path / "job", tmp_path / "job" / "probe"
    exe = Path(sys.executable).with_name("lightning-snn")
    cmd = [str(exe), "fit", "--config", str(ROOT / "configs/quickstart.yaml"), *_small(job, 64, probe),
           "--trainer.devices", "1", "--config", str(CLUSTER / "slurm_requeue.yaml")]
    env = _env(probe, **slurm)
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**env, "PROBE_STEP_DELAY": "0.5"}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 240
        while not ((probe / "step").is_file() and int((probe / "step").read_text() or 0) >= 3):
            assert proc.poll() is None and time.monotonic() < deadline, "training did not reach step 3"
            time.sleep(0.05)
        proc.send_signal(signal.SIGUSR1)
        out = proc.communicate(timeout=240)[0]
    finally:
        proc.kill()
    assert proc.returncode == 0, out[-3000:]
    assert record.read_text().split() == ["requeue", "4242"]
    saved_at = torch.load(job / "hpc_ckpt_1.ckpt", weights_only=True)["global_step"]
    assert 3 <= saved_at < 10, f"saved at step {saved_at}: not in the middle of the 10-step epoch"
    assert not (probe / "weights_rank0.pt").exists()  # it stopped: training did not run to its end

    relaunch = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert relaunch.returncode == 0, relaunch.stderr[-3000:]
    assert "Restoring states from the checkpoint path at" in relaunch.stderr + relaunch.stdout
    a, b = _weights(full), _weights(probe)
    assert all(torch.equal(a[k], b[k]) for k in a), "the requeued run's weights differ from the uninterrupted run's"
