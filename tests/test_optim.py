"""Weight-decay exemptions and the timm cosine schedule with warm-up and cool-down, alone and through the CLI."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from lightning_snn.cli import build_cli
from lightning_snn.optim import TimmCosineLR, param_kind, weight_decay_groups

ROOT = Path(__file__).parents[1]
QUICKSTART = ROOT / "configs" / "quickstart.yaml"


def revsformer_lr(t: int, lr: float = 5e-4, floor: float = 1e-5, warmup: int = 20, cosine: int = 300) -> float:
    """RevSFormer's CIFAR schedule written out: linear warm-up from 1e-5 over 20 epochs, timm's cosine over
    300 epochs (counted from epoch 0) to 1e-5, then the cool-down epochs at 1e-5."""
    if t < warmup:
        return floor + t * (lr - floor) / warmup
    if t >= cosine:
        return floor
    return floor + 0.5 * (lr - floor) * (1 + math.cos(math.pi * t / cosine))


def _sgd(lr: float = 5e-4) -> torch.optim.Optimizer:
    return torch.optim.SGD([nn.Parameter(torch.zeros(2))], lr=lr)


def test_cosine_with_warmup_and_cooldown_equals_the_table_and_timm():
    from timm.scheduler import CosineLRScheduler

    opt = _sgd()
    sched = TimmCosineLR(opt, t_initial=300, lr_min=1e-5, warmup_t=20, warmup_lr_init=1e-5)
    ref_opt = _sgd()
    ref = CosineLRScheduler(ref_opt, t_initial=300, lr_min=1e-5, warmup_t=20, warmup_lr_init=1e-5)
    for epoch in range(310):  # 300 cosine epochs + 10 cool-down epochs
        ref.step(epoch)
        lr = opt.param_groups[0]["lr"]
        assert lr == pytest.approx(revsformer_lr(epoch), rel=1e-12), epoch
        assert lr == pytest.approx(ref_opt.param_groups[0]["lr"], rel=1e-12), epoch
        opt.step()
        sched.step()


def test_schedule_state_round_trips():
    opt = _sgd()
    sched = TimmCosineLR(opt, t_initial=10, lr_min=1e-5, warmup_t=2, warmup_lr_init=1e-5)
    for _ in range(4):
        opt.step()
        sched.step()
    state = sched.state_dict()
    assert "timm" not in state and "optimizer" not in state
    opt2 = _sgd()
    sched2 = TimmCosineLR(opt2, t_initial=10, lr_min=1e-5, warmup_t=2, warmup_lr_init=1e-5)
    sched2.load_state_dict(state)
    opt2.step()
    sched2.step()
    opt.step()
    sched.step()
    assert sched2.get_last_lr() == pytest.approx(sched.get_last_lr(), rel=1e-12)


def test_schedule_argument_errors():
    with pytest.raises(ValueError, match="t_initial must be >= 1"):
        TimmCosineLR(_sgd(), t_initial=0)
    with pytest.raises(ValueError, match="interval must be 'epoch' or 'step'"):
        TimmCosineLR(_sgd(), t_initial=3, interval="batch")


def test_logged_lr_follows_the_schedule_per_epoch_and_per_step(tmp_path):
    """The lr that Lightning applies, epoch by epoch (and step by step with interval: step), from a config."""
    base = ["--config", str(QUICKSTART), "--trainer.logger", "false", "--trainer.enable_checkpointing", "false",
            "--trainer.enable_progress_bar", "false", "--trainer.limit_val_batches", "0", "--trainer.max_epochs", "6",
            "--trainer.limit_train_batches", "2", "--trainer.default_root_dir", str(tmp_path),
            "--lr_scheduler.class_path", "lightning_snn.optim.TimmCosineLR", "--lr_scheduler.init_args.t_initial", "4",
            "--lr_scheduler.init_args.lr_min", "1e-5", "--lr_scheduler.init_args.warmup_t", "2",
            "--lr_scheduler.init_args.warmup_lr_init", "1e-5"]
    for interval, per_epoch in (("epoch", True), ("step", False)):
        seen: list[float] = []


        cli = build_cli([*base, "--lr_scheduler.init_args.interval", interval], run=False)
        import lightning as L

        class LrTap(L.Callback):
            def on_train_batch_start(self, trainer, *args):
                seen.append(trainer.optimizers[0].param_groups[0]["lr"])

        cli.trainer.callbacks.append(LrTap())
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        # 6 epochs x 2 batches; per-epoch schedules change every 2 batches, per-step ones every batch
        expected = [revsformer_lr(i // 2 if per_epoch else i, lr=1e-3, warmup=2, cosine=4) for i in range(12)]
        assert seen == pytest.approx(expected, rel=1e-12), interval


def test_param_kinds():
    bn, conv = nn.BatchNorm2d(3), nn.Conv2d(3, 4, 3)
    assert param_kind("bn.weight", bn, bn.weight) == "norm" and param_kind("bn.bias", bn, bn.bias) == "norm"
    assert param_kind("conv.bias", conv, conv.bias) == "bias" and param_kind("conv.weight", conv, conv.weight) == "weight"
    tau = nn.Parameter(torch.zeros(()))
    assert param_kind("node.w", nn.Module(), tau) == "1d"


def test_weight_decay_groups_and_bad_kinds():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    decay, no_decay = weight_decay_groups(model, ["bias", "norm"])
    assert {id(p) for p in decay["params"]} == {id(model[0].weight), id(model[3].weight)}
    assert no_decay["weight_decay"] == 0.0 and len(no_decay["params"]) == 4
    with pytest.raises(ValueError, match=r"no_weight_decay: unknown parameter kinds \['bn'\]"):
        weight_decay_groups(model, ["bn"])


def test_no_weight_decay_reaches_the_cli_optimizer():
    args = ["--config", str(QUICKSTART), "--trainer.logger", "false", "--optimizer.class_path", "torch.optim.SGD",
            "--optimizer.init_args.lr", "0.1", "--optimizer.init_args.weight_decay", "5e-4", "--model.init_args.no_weight_decay", "[bias, norm]"]
    cli = build_cli(args, run=False)
    opt = cli.model.configure_optimizers()[0][0]
    assert [g["weight_decay"] for g in opt.param_groups] == [5e-4, 0.0]
    decayed = {id(p) for p in opt.param_groups[0]["params"]}
    for name, p in cli.model.named_parameters():
        assert (id(p) in decayed) == (p.ndim > 1), name  # mnistnet: conv/linear weights decay, biases do not
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(cli.model.parameters()))
    plain = build_cli(args[:-2], run=False).model.configure_optimizers()[0][0]
    assert len(plain.param_groups) == 1 and plain.param_groups[0]["weight_decay"] == 5e-4
