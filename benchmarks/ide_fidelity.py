"""IDE fidelity: how much each official-code choice changes one training step, on real data.

Each record compares two :class:`lightning_snn.methods.IDE` models with identical weights on the identical
batch, one training step each, in float64 (dropout off so both draw no masks), and reports how far apart the
gradients of the backbone (input layer, feedback, BatchNorm; the readout excluded) are
(:func:`lightning_snn.bench.fidelity.gradient_difference`): ``rel_l2 = ‖g_a - g_b‖ / ‖g_b‖`` over all of them,
the largest per-tensor relative difference (tensors whose gradient is round-off, such as a conv bias before
BatchNorm, left out), the norm ratio ``‖g_a‖ / ‖g_b‖`` and the cosine. ``b`` is always the official computation.

* N-MNIST (the shared real recordings, T = 30, 64C5s (F64C5) with the code's padding 1): the library's
  event statistics (biased variance, eps 1e-5) against the code's (unbiased, 1e-8), for IF and for LIF with
  and without the code's in-place overwrite of the last frame; and Broyden against the code's 'iter' solver.
* Fashion-MNIST normalisation: the config normalises with Fashion-MNIST's statistics (0.2860, 0.3530), the code
  with MNIST's (0.1307, 0.3081). Measured on the shared real MNIST digits as stand-in images (no
  Fashion-MNIST here), 400 (F400), T = 5.

Run::

    uv run python benchmarks/ide_fidelity.py          # batch 32, seeds 0-2 -> benchmarks/results/ide_fidelity.json
    uv run python benchmarks/ide_fidelity.py --quick  # batch 8, seed 0 -> results/ide_fidelity_quick.json (~3 min, one thread)
"""
from __future__ import annotations

import argparse
import copy
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `lightning_snn` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lightning_snn.bench.accuracy import add_accuracy_args, first_batch, require_shared_data, result_path, shared_data_dir  # noqa: E402
from lightning_snn.bench.fidelity import gradient_difference, step_gradients  # noqa: E402
from lightning_snn.bench.harness import resolve_device, setup_torch, write_results  # noqa: E402
from lightning_snn.data import MNISTDataModule, NMNISTDataModule  # noqa: E402
from lightning_snn.methods import IDE  # noqa: E402

BENCHMARK = "ide_fidelity"
IF = {"type": "if", "v_threshold": 2.0, "v_reset": None}
LIF = {"type": "lif", "decay": 0.95, "v_threshold": 2.0, "v_reset": None}
OFFICIAL_EVENTS = {"solver": "iter", "event_bn_stats": "official", "lif_event_overwrite": True}
NMNIST_CASES = {  # case -> (neuron, the library variant compared with OFFICIAL_EVENTS)
    "nmnist_if/event_bn_stats": (IF, {"solver": "iter", "event_bn_stats": "batchnorm"}),
    "nmnist_lif/event_bn_stats+lif_event_overwrite": (LIF, {"solver": "iter", "event_bn_stats": "batchnorm", "lif_event_overwrite": False}),
    "nmnist_lif/lif_event_overwrite": (LIF, {"solver": "iter", "event_bn_stats": "official", "lif_event_overwrite": False}),
    "nmnist_if/solver": (IF, {**OFFICIAL_EVENTS, "solver": "broyden"}),
    "nmnist_lif/solver": (LIF, {**OFFICIAL_EVENTS, "solver": "broyden"}),
}


def one_step(model: IDE, x: torch.Tensor, y: torch.Tensor) -> tuple[dict[str, torch.Tensor], float]:
    """Backbone gradients (readout excluded) and loss of one training step on the last time step's output."""
    step = step_gradients(model, x, y, readout=lambda out: out[-1], include=lambda name: "classifier" not in name)
    return step.grads, float(step.loss)


def compare_models(library: IDE, official: IDE, x_lib: torch.Tensor, x_off: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    """One step of each (``library`` on ``x_lib``, ``official`` on ``x_off``): the gradient difference and losses."""
    g_off, loss_off = one_step(official, x_off, y)
    g_lib, loss_lib = one_step(library, x_lib, y)
    diff = gradient_difference(g_lib, g_off, min_rel_norm=1e-6)
    return {**{k: diff[k] for k in ("rel_l2", "max_tensor_rel", "max_tensor", "norm_ratio", "cosine")},
            "loss_official": loss_off, "loss_library": loss_lib}


def pair(base: dict[str, Any], lib: dict[str, Any], off: dict[str, Any], x: torch.Tensor, y: torch.Tensor, seed: int) -> dict[str, Any]:
    """One step of the library variant ``lib`` and of the official ``off`` on the same weights and batch."""
    torch.manual_seed(seed)
    official = IDE(**base, **off).double()
    library = IDE(**base, **lib).double()
    library.load_state_dict(copy.deepcopy(official.state_dict()))
    rec = compare_models(library, official, x, x, y)
    return {**rec, "solver_steps_official": official.solver_results[-1].steps if official.solver_results else None}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_accuracy_args(parser, BENCHMARK, seeds=[0, 1, 2], quick_help="batch 8, seed 0")
    parser.add_argument("--batch-size", type=int, default=None, help="default: 32 (8 with --quick)")
    args = parser.parse_args(argv)
    batch, seeds = args.batch_size or (8 if args.quick else 32), args.seeds[:1] if args.quick else args.seeds
    device = resolve_device("cpu")
    setup_torch(device, args.threads)
    root = require_shared_data(BENCHMARK, args.data or shared_data_dir(), "MNIST", "NMNIST")
    records: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as cache:  # the shared folder is read-only: bin the events elsewhere
        x, y = first_batch(NMNISTDataModule(root=str(root), T=30, split_by="time", batch_size=batch, cache_dir=cache), torch.float64)
    nmnist = dict(backbone="ide_conv", num_classes=10, input_shape=(2, 34, 34), T=30,
                  backbone_kwargs={"padding": 1, "dropout": 0.0}, simulation_bn_update=True)
    for name, (neuron, lib) in NMNIST_CASES.items():
        for seed in seeds:
            rec = pair({**nmnist, "neuron": neuron}, lib, OFFICIAL_EVENTS, x, y, seed)
            records.append({"case": name, "data": "shared N-MNIST (train, first batch)", "batch": batch, "seed": seed, **rec})
            print(f"{name:48s} seed {seed}: rel_l2 {rec['rel_l2']:.4f} norm ratio {rec['norm_ratio']:.4f} cos {rec['cosine']:.4f}")
    xm, ym = first_batch(MNISTDataModule(root=str(root), batch_size=batch, augment=False), torch.float64)
    raw = xm * 0.3081 + 0.1307  # undo the DataModule's MNIST normalisation
    official_in, fashion_in = (raw - 0.1307) / 0.3081, (raw - 0.2860) / 0.3530
    fc = dict(backbone="ide_fc", num_classes=10, input_shape=(1, 28, 28), T=5, backbone_kwargs={"dropout": 0.0},
              simulation_bn_update=True)
    for neuron, tag in ((IF, "if"), (LIF, "lif")):
        for seed in seeds:
            torch.manual_seed(seed)
            official = IDE(**fc, neuron=neuron).double()
            rec = compare_models(copy.deepcopy(official), official, fashion_in, official_in, ym)
            records.append({"case": f"fashionmnist_{tag}/normalisation", "data": "shared MNIST digits as stand-in images",
                            "batch": batch, "seed": seed, **rec})
            print(f"fashionmnist_{tag}/normalisation seed {seed}: rel_l2 {rec['rel_l2']:.2e} "
                  f"loss {rec['loss_official']:.6f} vs {rec['loss_library']:.6f}")
    if not args.no_write:
        print(f"wrote {write_results(records, device, result_path(args, BENCHMARK), benchmark=BENCHMARK)}")


if __name__ == "__main__":
    main()
