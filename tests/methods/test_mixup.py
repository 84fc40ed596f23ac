"""Mixup / CutMix: images and event frames, one λ over T, soft-target losses, the switch-off epoch."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lightning_snn.methods import BPTT, tet_loss
from lightning_snn.methods.mixup import SpikingMixup


def test_mixup_blends_images_and_targets_with_one_lambda():
    torch.manual_seed(0)
    mix = SpikingMixup(num_classes=4, mixup_alpha=0.5, prob=1.0, label_smoothing=0.0)
    x, y = torch.rand(4, 1, 5, 5), torch.tensor([0, 1, 2, 3])
    mixed, soft = mix(x, y, epoch=0)
    lam = soft[0, 0].item()  # sample 0 (label 0) is paired with its mirror, sample 3 (label 3)
    torch.testing.assert_close(mixed, lam * x + (1 - lam) * x.flip(0))
    torch.testing.assert_close(soft, lam * F.one_hot(y, 4).float() + (1 - lam) * F.one_hot(y.flip(0), 4).float())
    assert mixed.data_ptr() != x.data_ptr() and not torch.equal(mixed, x)  # the batch itself is left alone


def test_cutmix_on_event_frames_uses_the_same_box_in_every_step():
    torch.manual_seed(1)
    mix = SpikingMixup(num_classes=3, mixup_alpha=0.0, cutmix_alpha=1.0, prob=1.0, label_smoothing=0.0)
    x = torch.rand(2, 5, 2, 16, 16)  # [B, T, C, H, W]
    mixed, soft = mix(x, torch.tensor([0, 1]), epoch=0)
    pasted = (mixed != x)[0]  # where sample 0 took sample 1's pixels
    box = pasted[0, 0]
    assert box.any()
    assert all(torch.equal(pasted[t, c], box) for t in range(5) for c in range(2))
    lam = soft[0, 0].item()
    assert lam == pytest.approx(1 - box.float().mean().item())  # λ is the kept area


def test_odd_batch_keeps_the_last_sample_and_off_epoch_stops_mixing():
    mix = SpikingMixup(num_classes=3, mixup_alpha=1.0, label_smoothing=0.1, off_epoch=5)
    x, y = torch.rand(3, 1, 4, 4), torch.tensor([0, 1, 2])
    mixed, soft = mix(x, y, epoch=4)
    assert torch.equal(mixed[2], x[2])
    torch.testing.assert_close(soft[2], torch.tensor([0.1 / 3, 0.1 / 3, 0.9 + 0.1 / 3]))
    same, hard = mix(x, y, epoch=5)
    assert same is x and hard is y
    with pytest.raises(ValueError, match=r"mixup: invalid arguments"):
        SpikingMixup.from_spec({"alpha": 1.0}, 3)


def test_soft_target_losses_equal_their_formulas():
    torch.manual_seed(0)
    out = torch.randn(3, 4, 5)  # [T, B, K]
    p = torch.softmax(torch.randn(4, 5), -1)
    lam = 0.05
    expected = sum((1 - lam) * -(p * out[t].log_softmax(-1)).sum(-1).mean() + lam * F.mse_loss(out[t], torch.ones_like(out[t])) for t in range(3)) / 3
    torch.testing.assert_close(tet_loss(out, p, lamb=lam), expected)
    model = BPTT(backbone="mnistnet", num_classes=5, input_shape=(1, 8, 8), T=3, label_smoothing=0.1,
                 backbone_kwargs={"channels": [4, 8], "hidden": 16})
    # soft targets arrive smoothed: the method's own label smoothing is not applied a second time
    torch.testing.assert_close(model.compute_loss(out, p), -(p * out.mean(0).log_softmax(-1)).sum(-1).mean())


def test_training_step_mixes_and_scores_against_the_dominant_label():
    torch.manual_seed(0)
    model = BPTT(backbone="mnistnet", num_classes=4, input_shape=(1, 8, 8), T=2,
                 backbone_kwargs={"channels": [4, 8], "hidden": 16}, mixup={"mixup_alpha": 0.5, "label_smoothing": 0.0})
    seen = {}
    model.train_acc.update = lambda preds, target: seen.setdefault("target", target)  # type: ignore[method-assign]
    x, y = torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    loss = model.training_step((x, y), 0)
    loss.backward()
    assert seen["target"].dtype == torch.long and set(seen["target"].tolist()) <= {0, 1, 2, 3}
    assert torch.isfinite(loss)


SHARED_DATA = Path(os.environ.get("LIGHTNING_SNN_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))


@pytest.mark.slow
def test_mixup_and_warmup_train_as_well_on_real_mnist(tmp_path):
    """Sanity check on the real MNIST digits of ../shared/data: 3 epochs with Mixup (α 0.2, p 0.5) and a
    50-step warm-up (per-step cosine) reach test accuracy within 1 point of the same run without them (not a
    claim that they help on so short a schedule)."""
    if not (SHARED_DATA / "MNIST" / "raw").is_dir():
        pytest.skip(f"real MNIST not found under {SHARED_DATA} (set LIGHTNING_SNN_SHARED_DATA); a user's clone has none")
    from lightning_snn.cli import build_cli

    base = ["--config", str(Path(__file__).parents[2] / "configs" / "stbp" / "mnist_mnistnet.yaml"),
            "--data.init_args.root", str(SHARED_DATA), "--trainer.max_epochs", "3", "--trainer.logger", "false",
            "--trainer.callbacks", "[]", "--trainer.enable_checkpointing", "false", "--trainer.enable_progress_bar", "false",
            "--trainer.default_root_dir", str(tmp_path), "--model.init_args.backbone_kwargs", "{spiking_output: false}",
            "--model.init_args.T", "2", "--seed_everything", "1", "--test_after_fit", "false",
            "--lr_scheduler.class_path", "lightning_snn.optim.TimmCosineLR", "--lr_scheduler.init_args.t_initial", "303",
            "--lr_scheduler.init_args.interval", "step"]  # 3 epochs x 101 batches
    accs = {}
    for name, extra in (("plain", []), ("mixup+warmup", ["--model.init_args.mixup", "{mixup_alpha: 0.2, prob: 0.5, label_smoothing: 0.0}",
                                                      "--lr_scheduler.init_args.warmup_t", "50", "--lr_scheduler.init_args.warmup_lr_init", "1e-5"])):
        cli = build_cli([*base, *extra], run=False)
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        accs[name] = cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)[0]["test/acc"]
    print(accs)
    assert accs["mixup+warmup"] >= accs["plain"] - 0.01, accs
