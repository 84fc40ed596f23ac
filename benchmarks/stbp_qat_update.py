"""STBP QAT on real MNIST: the README-era update against the float-shadow update, same network, data and seeds.

The STBP repository's README-era code (``ZLkanyo009/STBP-train-and-compression@1de278bf``, ``main.py``)
quantizes every Conv2d / Linear weight and bias in place after each Adam step (``quantize_layers``), with no
float copy: the next step starts from the rounded values, so every update smaller than half a quantization
step is rounded away. Its HEAD (``8769231b``) and :class:`~lightning_snn.callbacks.QuantizationAwareTraining`
keep float weights, train them with the straight-through estimator and quantize them in the forward pass.
This benchmark trains MNISTNet (T = 2, the STBP LIF, spiking output, Adam lr 1e-3 constant, batch 64,
RandomHorizontalFlip + Normalize: configs/stbp/mnist_mnistnet_q4.yaml) both ways on the shared real MNIST
digits (:func:`lightning_snn.bench.accuracy.train_and_test`) and reports the test accuracy per seed and the
share of quantized weights that ever left their initial level. The number quoted in the recipe cards'
``qat_update`` deviation comes from here.

Run::

    uv run python benchmarks/stbp_qat_update.py --quick     # seed 1, 40 steps -> results/stbp_qat_update_quick.json
    uv run python benchmarks/stbp_qat_update.py             # 3 epochs, seeds 1-5 -> results/stbp_qat_update.json
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `lightning_snn` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lightning_snn.bench.accuracy import (  # noqa: E402
    add_accuracy_args, mean_std, require_shared_data, result_path, shared_data_dir, train_and_test,
)
from lightning_snn.bench.harness import describe_device, positive_int, resolve_device, setup_torch, write_results  # noqa: E402
from lightning_snn.callbacks import QuantizationAwareTraining  # noqa: E402
from lightning_snn.data import MNISTDataModule  # noqa: E402
from lightning_snn.methods import BPTT  # noqa: E402
from lightning_snn.quantization import QuantSpec, quantize_symmetric  # noqa: E402

BENCHMARK = "stbp_qat_update"
STBP_LIF = {"type": "lif", "decay": 0.25, "v_threshold": 0.2, "v_reset": 0.0, "surrogate": {"name": "rectangular", "width": 1.0}}
QUICK_STEPS = 40


def _layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.backbone.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def requantize_in_place(model: nn.Module, spec: QuantSpec) -> None:
    """``quantize_layers`` of the README-era main.py: weights and biases rounded in place, per-tensor max-abs."""
    bias_spec = QuantSpec(spec.bits, per_channel=False)
    with torch.no_grad():
        for m in _layers(model):
            for p, s in ((m.weight, spec), (m.bias, bias_spec)):
                if p is not None:
                    codes, scale = quantize_symmetric(p, s)
                    p.copy_(codes.to(p.dtype) / scale.to(p.dtype))


def _quantized_weights(model: nn.Module, spec: QuantSpec) -> list[torch.Tensor]:
    # the weights the forward pass uses (parametrized or rounded in place), as integer codes of their own scale
    out = []
    for m in _layers(model):
        w = m.weight.detach()
        out.append(torch.round(w * (spec.qmax / w.abs().max())))
    return out


def run(variant: str, seed: int, epochs: int, bits: int, root: str, limit: int | None) -> dict[str, Any]:
    """Train one variant (``inplace``: the README-era update, ``shadow``: float weights + QAT) for one seed."""
    torch.manual_seed(seed)
    model = BPTT(backbone="mnistnet", num_classes=10, input_shape=(1, 28, 28), T=2, neuron=STBP_LIF,
                 backbone_kwargs={"spiking_output": True})
    spec = QuantSpec(bits)
    if variant == "shadow":
        QuantizationAwareTraining(bits=bits, quantize_bias=True).apply(model)
    else:
        requantize_in_place(model, spec)
    start = _quantized_weights(model, spec)
    result = train_and_test(model, MNISTDataModule(root=root, batch_size=64, augment=True),
                            torch.optim.Adam(model.parameters(), lr=1e-3), epochs=epochs, max_batches=limit,
                            after_step=(lambda: requantize_in_place(model, spec)) if variant == "inplace" else None)
    moved = sum(int((a != b).sum()) for a, b in zip(start, _quantized_weights(model, spec)))
    return {"method": f"stbp_qat_{variant}", "backbone": "mnistnet", "T": 2, "batch_size": 64, "bits": bits, "seed": seed,
            "epochs": epochs, "steps": result.steps, "accuracy": result.accuracy,
            "weights_moved": moved / sum(a.numel() for a in start), "train_time_s": result.train_s + result.test_s}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_accuracy_args(p, BENCHMARK, seeds=[1, 2, 3, 4, 5], quick_help=f"the first seed, {QUICK_STEPS} training steps")
    p.add_argument("--epochs", type=positive_int, default=None, help="training epochs (default 3, 1 with --quick)")
    p.add_argument("--bits", type=positive_int, default=4, help="weight bits (default 4)")
    args = p.parse_args(argv)
    root = require_shared_data(BENCHMARK, args.data or shared_data_dir(), "MNIST")
    device = resolve_device("cpu")
    setup_torch(device, args.threads)
    seeds, limit = (args.seeds[:1], QUICK_STEPS) if args.quick else (args.seeds, None)
    epochs = args.epochs or (1 if args.quick else 3)
    records = [run(v, s, epochs, args.bits, str(root), limit) for s in seeds for v in ("inplace", "shadow")]
    for r in records:
        print(f"{r['method']:<18} seed {r['seed']}  acc {100 * r['accuracy']:.2f}%  weights moved {100 * r['weights_moved']:.2f}%"
              f"  ({r['train_time_s']:.0f} s)")
    summary = {}
    for v in ("inplace", "shadow"):
        mean, std = mean_std(r["accuracy"] for r in records if r["method"] == f"stbp_qat_{v}")
        summary[v] = {"mean": mean, "std": std}
        print(f"{v}: {100 * mean:.2f} +- {'-' if std is None else f'{100 * std:.2f}'}%")
    if not args.no_write:
        path = write_results(records, device, result_path(args, BENCHMARK), summary=summary, quick=args.quick,
                             data="shared MNIST: 6,401 train / 1,599 test real digits")
        print(f"wrote {path} ({describe_device(device)})")


if __name__ == "__main__":
    main()
