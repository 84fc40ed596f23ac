"""IDE fidelity: how much each official-code choice changes one training step, on real data.

Each record compares two :class:`lightning_snn.methods.IDE` models with identical weights on the identical
batch, one training step each, in float64 (dropout off so both draw no masks), and reports how far apart the
gradients of the backbone (input layer, feedback, BatchNorm; the readout excluded) are:
``rel_l2 = ‖g_a - g_b‖ / ‖g_b‖`` over all of them, the largest per-tensor relative difference (tensors whose
gradient is round-off, such as a conv bias before BatchNorm, left out), the norm ratio
``‖g_a‖ / ‖g_b‖`` and the cosine. ``b`` is always the official computation.

* N-MNIST (the shared real recordings, T = 30, 64C5s (F64C5) with the code's padding 1): the library's
  event statistics (biased variance, eps 1e-5) against the code's (unbiased, 1e-8), for IF and for LIF with
  and without the code's in-place overwrite of the last frame; and Broyden against the code's 'iter' solver.
* Fashion-MNIST normalisation: the config normalises with Fashion-MNIST's statistics (0.2860, 0.3530), the code
  with MNIST's (0.1307, 0.3081). Measured on the shared real MNIST digits as stand-in images (no
  Fashion-MNIST here), 400 (F400), T = 5.

Run::

    uv run python benchmarks/ide_fidelity.py          # batch 32, seeds 0-2 -> benchmarks/results/ide_fidelity.json
    uv run python benchmarks/ide_fidelity.py --quick  # batch 8, seed 0, about 3 minutes on one CPU thread
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `lightning_snn` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lightning_snn.bench.harness import write_results  # noqa: E402
from lightning_snn.data import MNISTDataModule, NMNISTDataModule  # noqa: E402
from lightning_snn.methods import IDE  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("LIGHTNING_SNN_SHARED_DATA", ROOT.parent / "shared" / "data"))
IF = {"type": "if", "v_threshold": 2.0, "v_reset": None}
LIF = {"type": "lif", "decay": 0.95, "v_threshold": 2.0, "v_reset": None}
OFFICIAL_EVENTS = {"solver": "iter", "event_bn_stats": "official", "lif_event_overwrite": True}


def backbone_grads(model: IDE, x: torch.Tensor, y: torch.Tensor) -> tuple[dict[str, torch.Tensor], float]:
    model.train()
    model.zero_grad()
    loss = F.cross_entropy(model(x)[-1], y)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if "classifier" not in n and p.grad is not None}
    return grads, float(loss.detach())


def compare(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> dict[str, float]:
    va, vb = torch.cat([a[n].flatten() for n in b]), torch.cat([b[n].flatten() for n in b])
    # tensors whose gradient is round-off (a conv bias before BatchNorm gets none) are left out of the per-tensor figure
    per_tensor = {n: float((a[n] - b[n]).norm() / b[n].norm()) for n in b if float(b[n].norm()) > 1e-6 * float(vb.norm())}
    return {
        "rel_l2": float((va - vb).norm() / vb.norm()),
        "max_tensor_rel": max(per_tensor.values()),
        "max_tensor": max(per_tensor, key=per_tensor.get),
        "norm_ratio": float(va.norm() / vb.norm()),
        "cosine": float(F.cosine_similarity(va, vb, dim=0)),
    }


def pair(base: dict[str, Any], lib: dict[str, Any], off: dict[str, Any], x: torch.Tensor, y: torch.Tensor, seed: int) -> dict[str, Any]:
    """One step of the library variant ``lib`` and of the official ``off`` on the same weights and batch."""
    torch.manual_seed(seed)
    official = IDE(**base, **off).double()
    library = IDE(**base, **lib).double()
    library.load_state_dict(copy.deepcopy(official.state_dict()))
    g_off, loss_off = backbone_grads(official, x, y)
    g_lib, loss_lib = backbone_grads(library, x, y)
    return {**compare(g_lib, g_off), "loss_official": loss_off, "loss_library": loss_lib,
            "solver_steps_official": official.solver_results[-1].steps if official.solver_results else None}


def nmnist_batch(batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    with tempfile.TemporaryDirectory() as cache:
        dm = NMNISTDataModule(root=str(SHARED), T=30, split_by="time", batch_size=batch, cache_dir=cache)
        dm.setup("fit")
        x, y = next(iter(dm.train_dataloader()))
    return x.double(), y


def mnist_batch(batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    dm = MNISTDataModule(root=str(SHARED), batch_size=batch, augment=False)
    dm.setup("fit")
    x, y = next(iter(dm.train_dataloader()))
    return x.double(), y


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--quick", action="store_true", help="batch 8, seed 0")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "ide_fidelity.json"))
    args = parser.parse_args()
    if args.quick:
        args.batch, args.seeds = 8, [0]
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    if not (SHARED / "NMNIST").is_dir() or not (SHARED / "MNIST").is_dir():
        raise SystemExit(f"ide_fidelity: needs the shared real data (MNIST, NMNIST) under {SHARED}")
    records: list[dict[str, Any]] = []
    x, y = nmnist_batch(args.batch)
    nmnist = dict(backbone="ide_conv", num_classes=10, input_shape=(2, 34, 34), T=30,
                  backbone_kwargs={"padding": 1, "dropout": 0.0}, simulation_bn_update=True)
    cases = {
        "nmnist_if/event_bn_stats": (IF, {"solver": "iter", "event_bn_stats": "batchnorm"}),
        "nmnist_lif/event_bn_stats+lif_event_overwrite": (LIF, {"solver": "iter", "event_bn_stats": "batchnorm", "lif_event_overwrite": False}),
        "nmnist_lif/lif_event_overwrite": (LIF, {"solver": "iter", "event_bn_stats": "official", "lif_event_overwrite": False}),
        "nmnist_if/solver": (IF, {**OFFICIAL_EVENTS, "solver": "broyden"}),
        "nmnist_lif/solver": (LIF, {**OFFICIAL_EVENTS, "solver": "broyden"}),
    }
    for name, (neuron, lib) in cases.items():
        for seed in args.seeds:
            rec = pair({**nmnist, "neuron": neuron}, lib, OFFICIAL_EVENTS, x, y, seed)
            records.append({"case": name, "data": "shared N-MNIST (train, first batch)", "batch": args.batch, "seed": seed, **rec})
            print(f"{name:48s} seed {seed}: rel_l2 {rec['rel_l2']:.4f} norm ratio {rec['norm_ratio']:.4f} cos {rec['cosine']:.4f}")
    xm, ym = mnist_batch(args.batch)
    raw = xm * 0.3081 + 0.1307  # undo the DataModule's MNIST normalisation
    official_in, fashion_in = (raw - 0.1307) / 0.3081, (raw - 0.2860) / 0.3530
    fc = dict(backbone="ide_fc", num_classes=10, input_shape=(1, 28, 28), T=5, backbone_kwargs={"dropout": 0.0},
              simulation_bn_update=True)
    for neuron, tag in ((IF, "if"), (LIF, "lif")):
        for seed in args.seeds:
            torch.manual_seed(seed)
            official = IDE(**fc, neuron=neuron).double()
            library = copy.deepcopy(official)
            g_off, loss_off = backbone_grads(official, official_in, ym)
            g_lib, loss_lib = backbone_grads(library, fashion_in, ym)
            rec = {**compare(g_lib, g_off), "loss_official": loss_off, "loss_library": loss_lib}
            records.append({"case": f"fashionmnist_{tag}/normalisation", "data": "shared MNIST digits as stand-in images",
                            "batch": args.batch, "seed": seed, **rec})
            print(f"fashionmnist_{tag}/normalisation seed {seed}: rel_l2 {rec['rel_l2']:.2e} loss {loss_off:.6f} vs {loss_lib:.6f}")
    path = write_results(records, torch.device("cpu"), args.output, benchmark="ide_fidelity")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
