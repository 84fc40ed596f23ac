"""Mixup / CutMix for static images and event frames, with soft targets (timm's ``Mixup``).

Mixup (Zhang et al., "mixup: beyond empirical risk minimization", ICLR 2018) blends each sample with
another, ``x̃ = λ x_i + (1 - λ) x_j``, ``ỹ = λ y_i + (1 - λ) y_j`` with ``λ ~ Beta(α, α)``; CutMix (Yun
et al., ICCV 2019) pastes a box of ``x_j`` into ``x_i`` and sets λ to the kept area. timm's
``timm.data.Mixup`` does both (pairing each sample with its mirror in the batch, ``x.flip(0)``) and is the
implementation RevSFormer and most spiking-transformer code train with; this module only adapts it:

* **Event frames** ``[B, T, C, H, W]`` are viewed as ``[B, T·C, H, W]`` for timm, so one λ and one CutMix
  box serve every time step of a sample (the same spatial box in all T frames), as in the RevSNN code.
* **Switch-off epoch.** From ``off_epoch`` on (RevSFormer CIFAR: 200; RevSNN DVS: 75) batches pass
  unmixed with hard labels, as timm's ``train.py`` does with ``--mixup-off-epoch``.
* **Odd batches.** timm mixes pairs and needs an even batch; of an odd batch the last sample is kept
  unmixed (its target is the smoothed one-hot of its label), so no sample is dropped.

Targets become class probabilities ``[B, K]``; the methods' cross-entropy and TET losses take them
directly (``F.cross_entropy`` with probability targets). Training accuracy is then measured against the
dominant label of each soft target, ``ỹ.argmax(-1)`` (the label with the larger share λ or 1 - λ).
"""
from __future__ import annotations

from typing import Any, Optional

import torch

__all__ = ["SpikingMixup"]


class SpikingMixup:
    """timm's ``Mixup`` for ``[B, C, H, W]`` images and ``[B, T, C, H, W]`` event frames.

    Args:
        num_classes: number of classes of the soft targets.
        mixup_alpha: α of Mixup's Beta distribution; 0 disables Mixup.
        cutmix_alpha: α of CutMix's Beta distribution; 0 disables CutMix.
        cutmix_minmax: CutMix box size as a (min, max) fraction of the image, instead of ``cutmix_alpha``.
        prob: probability of mixing a batch (or an element, with ``mode: elem``).
        switch_prob: probability of CutMix instead of Mixup when both are on.
        mode: ``batch`` (one λ per batch), ``pair`` or ``elem`` (timm's modes).
        label_smoothing: smoothing of the soft targets (timm's default 0.1).
        off_epoch: the epoch from which batches pass unmixed; None keeps Mixup on throughout.
    """

    def __init__(
        self,
        num_classes: int,
        mixup_alpha: float = 1.0,
        cutmix_alpha: float = 0.0,
        cutmix_minmax: Optional[tuple[float, float]] = None,
        prob: float = 1.0,
        switch_prob: float = 0.5,
        mode: str = "batch",
        label_smoothing: float = 0.1,
        off_epoch: Optional[int] = None,
    ) -> None:
        from timm.data import Mixup

        if mixup_alpha < 0 or cutmix_alpha < 0:
            raise ValueError(f"mixup: mixup_alpha and cutmix_alpha must be >= 0, got {mixup_alpha}, {cutmix_alpha}")
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"mixup: prob must be in [0, 1], got {prob}")
        if mode not in ("batch", "pair", "elem"):
            raise ValueError(f"mixup: mode must be 'batch', 'pair' or 'elem', got {mode!r}")
        if off_epoch is not None and off_epoch < 0:
            raise ValueError(f"mixup: off_epoch must be >= 0 or null, got {off_epoch}")
        self.num_classes = int(num_classes)
        self.label_smoothing = float(label_smoothing)
        self.off_epoch = off_epoch
        self.timm = Mixup(
            mixup_alpha=mixup_alpha,
            cutmix_alpha=cutmix_alpha,
            cutmix_minmax=cutmix_minmax,
            prob=prob,
            switch_prob=switch_prob,
            mode=mode,
            label_smoothing=label_smoothing,
            num_classes=self.num_classes,
        )

    def active(self, epoch: int) -> bool:
        """Whether batches of ``epoch`` are mixed."""
        return self.off_epoch is None or epoch < self.off_epoch

    def soft_targets(self, target: torch.Tensor) -> torch.Tensor:
        """The smoothed one-hot targets of unmixed samples (timm's ``mixup_target`` with λ = 1)."""
        off = self.label_smoothing / self.num_classes
        out = torch.full((target.shape[0], self.num_classes), off, device=target.device)
        return out.scatter_(1, target.long().view(-1, 1), 1.0 - self.label_smoothing + off)

    def __call__(self, x: torch.Tensor, target: torch.Tensor, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Mix a batch: ``x`` ``[B, C, H, W]`` or ``[B, T, C, H, W]`` and integer ``target`` ``[B]``;
        returns the mixed batch (same shape) and ``[B, num_classes]`` soft targets. Past ``off_epoch`` the
        batch and hard labels are returned as they are."""
        if not self.active(epoch):
            return x, target
        if x.dim() not in (4, 5):
            raise ValueError(f"mixup: expected a [B, C, H, W] or [B, T, C, H, W] batch, got shape {tuple(x.shape)}")
        if target.dim() != 1:
            raise ValueError(f"mixup: expected integer class labels [B], got shape {tuple(target.shape)}")
        shape = x.shape
        flat = x.reshape(shape[0], -1, *shape[-2:]).clone()  # one λ and one box for every T
        even = shape[0] - shape[0] % 2
        soft = self.soft_targets(target)
        if even >= 2:
            mixed, mixed_target = self.timm(flat[:even], target[:even])
            flat[:even] = mixed
            soft[:even] = mixed_target.to(soft.dtype)
        return flat.reshape(shape), soft

    def __repr__(self) -> str:
        t = self.timm
        return (f"SpikingMixup(mixup_alpha={t.mixup_alpha}, cutmix_alpha={t.cutmix_alpha}, prob={t.mix_prob}, "
                f"mode={t.mode!r}, label_smoothing={self.label_smoothing}, off_epoch={self.off_epoch})")

    @classmethod
    def from_spec(cls, spec: Optional[dict[str, Any]], num_classes: int) -> Optional["SpikingMixup"]:
        """Build from a method's ``mixup:`` dict (None: no mixing), naming unknown keys."""
        if spec is None:
            return None
        try:
            return cls(num_classes=num_classes, **dict(spec))
        except TypeError as err:
            raise ValueError(f"mixup: invalid arguments {dict(spec)}: {err}") from None
