"""STBP QAT on real MNIST: the README-era update against the float-shadow update, same network, data and seeds.

The STBP repository's README-era code (``ZLkanyo009/STBP-train-and-compression@1de278bf``, ``main.py``)
quantizes every Conv2d / Linear weight and bias in place after each Adam step (``quantize_layers``), with no
float copy: the next step starts from the rounded values, so every update smaller than half a quantization
step is rounded away. Its HEAD (``8769231b``) and :class:`~lightning_snn.callbacks.QuantizationAwareTraining`
keep float weights, train them with the straight-through estimator and quantize them in the forward pass.
This benchmark trains MNISTNet (T = 2, the STBP LIF, spiking output, Adam lr 1e-3 constant, batch 64,
RandomHorizontalFlip + Normalize: configs/stbp/mnist_mnistnet_q4.yaml) both ways on the shared real MNIST
digits and reports the test accuracy per seed and the share of quantized weights that ever left their
initial level. The number quoted in the recipe cards' ``qat_update`` deviation comes from here.

Run::

    uv run python benchmarks/stbp_qat_update.py --quick     # seed 1, 40 steps -> results/stbp_qat_update_quick.json
    uv run python benchmarks/stbp_qat_update.py             # 1 epoch, seeds 1-3 -> results/stbp_qat_update.json
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `lightning_snn` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lightning_snn.bench.harness import RESULTS_DIR, describe_device, write_results  # noqa: E402
from lightning_snn.callbacks import QuantizationAwareTraining  # noqa: E402
from lightning_snn.data import MNISTDataModule  # noqa: E402
from lightning_snn.methods import BPTT  # noqa: E402
from lightning_snn.quantization import QuantSpec, quantize_symmetric  # noqa: E402

STBP_LIF = {"type": "lif", "decay": 0.25, "v_threshold": 0.2, "v_reset": 0.0, "surrogate": {"name": "rectangular", "width": 1.0}}
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


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
    torch.manual_seed(seed)
    model = BPTT(backbone="mnistnet", num_classes=10, input_shape=(1, 28, 28), T=2, neuron=STBP_LIF,
                 backbone_kwargs={"spiking_output": True})
    spec = QuantSpec(bits)
    if variant == "shadow":
        QuantizationAwareTraining(bits=bits, quantize_bias=True).apply(model)
    else:
        requantize_in_place(model, spec)
    start = _quantized_weights(model, spec)
    dm = MNISTDataModule(root=root, batch_size=64, augment=True)
    dm.setup("fit")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    t0 = time.perf_counter()
    model.train()
    steps = 0
    for _ in range(epochs):
        for i, (x, y) in enumerate(dm.train_dataloader()):
            if limit is not None and i >= limit:
                break
            loss = F.cross_entropy(model.readout(model(x)), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if variant == "inplace":
                requantize_in_place(model, spec)
            steps += 1
    moved = sum(int((a != b).sum()) for a, b in zip(start, _quantized_weights(model, spec)))
    total = sum(a.numel() for a in start)
    model.eval()
    correct = n = 0
    with torch.no_grad():
        for x, y in dm.val_dataloader():
            correct += int((model.readout(model(x)).argmax(-1) == y).sum())
            n += len(y)
    return {"method": f"stbp_qat_{variant}", "backbone": "mnistnet", "T": 2, "batch_size": 64, "bits": bits, "seed": seed,
            "epochs": epochs, "steps": steps, "accuracy": correct / n, "weights_moved": moved / total,
            "train_time_s": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=os.environ.get("LIGHTNING_SNN_SHARED_DATA", str(DEFAULT_DATA)))
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--bits", type=int, default=4)
    p.add_argument("--quick", action="store_true", help="one seed, 40 training steps")
    p.add_argument("--out", default=str(RESULTS_DIR / "stbp_qat_update.json"))
    args = p.parse_args(argv)
    if not (Path(args.data) / "MNIST" / "raw").is_dir():
        raise SystemExit(f"stbp_qat_update: no MNIST under {args.data} (set --data or LIGHTNING_SNN_SHARED_DATA)")
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    seeds, limit = (args.seeds[:1], 40) if args.quick else (args.seeds, None)
    records = [run(v, s, args.epochs, args.bits, args.data, limit) for s in seeds for v in ("inplace", "shadow")]
    for r in records:
        print(f"{r['method']:<18} seed {r['seed']}  acc {100 * r['accuracy']:.2f}%  weights moved {100 * r['weights_moved']:.2f}%"
              f"  ({r['train_time_s']:.0f} s)")
    summary = {}
    for v in ("inplace", "shadow"):
        acc = [r["accuracy"] for r in records if r["method"] == f"stbp_qat_{v}"]
        summary[v] = {"mean": statistics.mean(acc), "std": statistics.stdev(acc) if len(acc) > 1 else 0.0}
        print(f"{v}: {100 * summary[v]['mean']:.2f} +- {100 * summary[v]['std']:.2f}%")
    out = Path(args.out)
    if args.quick:
        out = out.with_name(out.stem + "_quick" + out.suffix)
    path = write_results(records, torch.device("cpu"), out, summary=summary, quick=args.quick,
                         data="shared MNIST: 6,401 train / 1,599 test real digits")
    print(f"wrote {path} ({describe_device(torch.device('cpu'))})")


if __name__ == "__main__":
    main()
