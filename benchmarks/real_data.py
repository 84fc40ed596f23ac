"""Real-data parity: the mirroring configs trained on the shared real MNIST / N-MNIST subsets, next to
what the official code reaches on the same data, schedule and seeds.

Each recipe is run through the library's own CLI path (:func:`lightning_snn.bench.accuracy.fit_config`:
:func:`lightning_snn.cli.build_cli` on the config file, with command-line overrides), so the benchmark trains
exactly what ``lightning-snn fit --config ...`` trains. The overrides only point the run at the shared data and
shorten it (:func:`lightning_snn.bench.accuracy.config_overrides` and this recipe's own); each is in the JSON:

* ``--data.init_args.root <shared data>``, ``--trainer.max_epochs E``, ``--seed_everything S``;
* ``--data.init_args.seed S`` as well: the DataModule's shuffling sampler has its own seed (default 0),
  while the official scripts shuffle with the global seed, so without it every seed would see the same
  data order;
* no logger, no checkpointing (the config's ``ModelCheckpoint`` is dropped, its other callbacks kept),
  no sanity-check batches, no progress bar, ``num_workers 0`` (the DataModule then runs in this process);
* recipes whose official script never steps its scheduler (STBP) get ``--lr_scheduler null`` when the
  config still names one, so the learning rate is constant as in the official run (said in the record).

Validation runs on the test split after every epoch (the DataModules' ``val_split: 0``, as the papers), so
``test_acc`` per epoch is the accuracy on all the test samples. ``train_acc`` is the running accuracy
over the epoch in training mode, which is what the official scripts print as training accuracy.

The row ``stbp_mnist_mnistnet_official_order`` is a diagnostic: the same config with the official script's
random stream for the data order and the flips (:class:`OfficialOrder`), which tells the luck of the data
order apart from a difference in the computation.

Reference numbers: ``shared/reference/official_runs.md`` (the official STBP code at ``1de278bf`` and IDE code
at ``7da59074`` on ``shared/data/MNIST``, CPU, one thread). Mean ± std over seeds uses the sample standard
deviation (n - 1), as the reference table does.

Run (shared machine: one thread, in the background; the full run takes about an hour on a busy 2-core machine;
recipes or seeds can run in separate processes and be merged with ``--combine``)::

    uv run python benchmarks/real_data.py --threads 1 > real_data.log 2>&1 &
    uv run python benchmarks/real_data.py --quick      # a few batches per recipe -> results/real_data_quick.json
    uv run python benchmarks/real_data.py --only stbp_mnist_mnistnet --seeds 1 2 --out part1.json
    uv run python benchmarks/real_data.py --combine part1.json part2.json     # -> results/real_data.json

The shared data folder is ``--data``, else ``$LIGHTNING_SNN_SHARED_DATA``, else ``../shared/data`` next to the
repository. The runs use one torch thread unless ``--threads`` says otherwise.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `lightning_snn` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import lightning as L  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from lightning_snn.bench.accuracy import (  # noqa: E402
    add_accuracy_args, config_overrides, fit_config, mean_std, measure_fit_memory, per_epoch_summary,
    require_shared_data, result_path, rounded, shared_data_dir,
)
from lightning_snn.bench.harness import format_table, load_average, median, positive_int, resolve_device, setup_torch, write_results  # noqa: E402

BENCHMARK = "real_data"
REPO = Path(__file__).resolve().parent.parent
REFERENCE_FILE = "shared/reference/official_runs.md"


@dataclasses.dataclass(frozen=True)
class Official:
    """What the official code printed on the same data (``shared/reference/official_runs.md``)."""

    source: str
    command: str
    test_acc: dict[int, tuple[float, ...]]  # seed -> test accuracy (%) after each epoch
    train_acc: dict[int, tuple[float, ...]] = dataclasses.field(default_factory=dict)
    notes: str = ""


@dataclasses.dataclass(frozen=True)
class Recipe:
    """One benchmark row: a config trained for ``epochs`` on each of ``seeds``, and the official figures."""

    name: str
    config: str  # relative to the repository
    epochs: int
    seeds: tuple[int, ...]
    dataset: str  # folder under the shared data that must exist
    constant_lr: bool = False  # the official script never steps its scheduler
    official: Official | None = None
    notes: str = ""
    official_order: bool = False  # draw the data order and augmentation as the official script (diagnostic)


STBP_OFFICIAL = Official(
    source="ZLkanyo009/STBP-train-and-compression@1de278bf (README-era code), " + REFERENCE_FILE,
    command="python main.py MNISTNet --dataset MNIST --epochs 3 --seed S",
    test_acc={
        1: (53.47, 56.35, 57.10),
        2: (72.23, 78.24, 79.49),
        3: (38.15, 47.34, 48.09),
        4: (36.34, 71.73, 71.42),
        5: (72.36, 75.11, 74.17),
    },
    notes="Adam lr 1e-3 constant (the script never steps its scheduler), batch 64, T = 2, flip + normalise",
)
IDE_MNIST_OFFICIAL = Official(
    source="pkuxmq/IDE-FSNN@7da59074, " + REFERENCE_FILE,
    command="python mnist_conv.py --path <shared data> --epochs 1 --time_step 30 --leaky 1.0 --vth 2 --manualSeed 1",
    test_acc={1: (65.48,)},
    train_acc={1: (83.88,)},
    notes="test loss 1.981; one epoch took 2 min 43 s on one thread",
)

RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe("stbp_mnist_mnistnet", "configs/stbp/mnist_mnistnet.yaml", 3, (1, 2, 3, 4, 5), "MNIST",
               constant_lr=True, official=STBP_OFFICIAL),
        Recipe("stbp_mnist_mnistnet_official_order", "configs/stbp/mnist_mnistnet.yaml", 3, (1, 2, 3, 4, 5), "MNIST",
               constant_lr=True, official=STBP_OFFICIAL, official_order=True,
               notes="diagnostic: the same recipe with the official script's random-number stream (see OfficialOrder)"),
        Recipe("ide_mnist_conv_if", "configs/ide/mnist_conv_if.yaml", 1, (1,), "MNIST", official=IDE_MNIST_OFFICIAL),
        Recipe("bptt_nmnist_mnistnet", "configs/bptt/nmnist_mnistnet.yaml", 3, (1, 2, 3), "NMNIST", constant_lr=True,
               notes="no official run on N-MNIST; the recipe is STBP's MNIST recipe on event frames, so its lr is "
                     "constant as STBP's; 900 train / 70 test recordings (one test sample = 1.43%)"),
        Recipe("ide_nmnist_conv_if", "configs/ide/nmnist_conv_if.yaml", 2, (1, 2), "NMNIST",
               notes="no official run on this data; 900 train / 70 test recordings (one test sample = 1.43%)"),
    )
}
QUICK_BATCHES = {"limit_train_batches": 4, "limit_val_batches": 2}


# ----------------------------------------------------------------------------------------- helpers
def git_commit() -> dict[str, Any]:
    """HEAD of the repository and whether the measured code differs from it (None outside git)."""
    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None

    head = git("rev-parse", "HEAD")
    # what the measurement depends on: the package, the configs and the benchmarks (not the docs)
    status = git("status", "--porcelain", "--untracked-files=no", "--", "lightning_snn", "configs", "benchmarks", "pyproject.toml", "uv.lock")
    return {"commit": head, "dirty": None if status is None else bool(status), "branch": git("rev-parse", "--abbrev-ref", "HEAD")}


class OfficialOrder(L.Callback):
    """Draw the data order and augmentation from the global random stream as the official STBP script does.

    The library's DataModules shuffle with their own ``EpochSeededSampler`` (seeded by ``data.seed`` and the
    epoch; resumable) and validate without shuffling. The official ``main.py`` uses
    ``DataLoader(shuffle=True)`` for training *and* testing, so per epoch the global generator gives, in
    order: the training iterator's base seed and sampler seed, one ``torch.rand(1)`` per sample for the
    flip, then the test iterator's base seed and sampler seed. With the same seed the initial weights are
    already identical (the backbone creates its layers in the official order), so installing torch's
    ``RandomSampler`` for training and spending the test loader's one extra draw per evaluation makes the
    whole random stream of a run the official one. This is a diagnostic of the benchmark only: it tells
    data-order luck apart from a difference in the computation.
    """

    def __init__(self, datamodule: L.LightningDataModule) -> None:
        from torch.utils.data import DataLoader

        def train_dataloader() -> DataLoader:
            if datamodule.train_set is None:
                datamodule.setup("fit")
            return DataLoader(datamodule.train_set, batch_size=datamodule.batch_size, shuffle=True, num_workers=0)

        datamodule.train_dataloader = train_dataloader  # type: ignore[method-assign]

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        torch.empty((), dtype=torch.int64).random_()  # the shuffled test loader's sampler seed


def cli_overrides(recipe: Recipe, seed: int, data_root: Path, work_dir: Path, quick: bool) -> tuple[list[str], list[str]]:
    """Command-line overrides for one run (:func:`lightning_snn.bench.accuracy.config_overrides` and the
    recipe's own), and the notes on the schedule that the JSON states."""
    config = REPO / recipe.config
    args = config_overrides(config, seed=seed, epochs=recipe.epochs, data_root=data_root, work_dir=work_dir,
                            limits=QUICK_BATCHES if quick else None)
    if recipe.dataset == "NMNIST":  # the shared folder is read-only: bin into a cache of our own
        args += ["--data.init_args.cache_dir", str(work_dir / "cache")]
    notes = []
    sched = yaml.safe_load(config.read_text()).get("lr_scheduler")
    if recipe.constant_lr and sched:
        args += ["--lr_scheduler", "null"]
        notes.append(f"config's lr_scheduler {sched.get('class_path')} {sched.get('init_args', {})} removed "
                     "(--lr_scheduler null): the official script never steps its scheduler, so its lr is constant")
    elif recipe.constant_lr:
        notes.append("constant lr: the config has no lr_scheduler, as the official run")
    return args, notes


def run_one(recipe: Recipe, seed: int, data_root: Path, work_dir: Path, quick: bool, with_memory: bool) -> dict[str, Any]:
    """Train one seed of a recipe through the CLI (:func:`lightning_snn.bench.accuracy.fit_config`); returns
    its per-epoch figures."""
    args, notes = cli_overrides(recipe, seed, data_root, work_dir, quick)
    cli, run = fit_config(args, callbacks=lambda cli: [OfficialOrder(cli.datamodule)] if recipe.official_order else [])
    out = {"seed": seed, **run, "schedule_notes": notes, "cli_args": [_portable(a, data_root, work_dir) for a in args]}
    if with_memory:
        out["memory"] = measure_fit_memory(cli)
    return out


def build_record(recipe: Recipe, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One JSON record per recipe: the runs, mean ± std per epoch, and the official figures beside them."""
    meta = runs[0]["meta"]
    per_epoch = per_epoch_summary(runs)
    epochs = len(per_epoch)
    memory = next((r["memory"] for r in runs if "memory" in r), {})
    final = per_epoch[-1] if per_epoch else {}
    record: dict[str, Any] = {
        "recipe": recipe.name,
        "config": recipe.config,
        "method": meta["method"],
        "backbone": meta["backbone"],
        "T": meta["T"],
        "batch_size": meta["batch_size"],
        "step_time_s": median([r["step_time_s"] for r in runs]),
        "peak_mem_bytes": memory.get("peak_mem_bytes"),
        "mem_source": memory.get("mem_source"),
        "saved_tensor_bytes": memory.get("saved_tensor_bytes"),
        "parameters": meta["parameters"],
        "optimizer": meta["optimizer"],
        "lr_schedulers": meta["lr_schedulers"],
        "train_samples": meta["train_samples"],
        "test_samples": meta["test_samples"],
        "epochs": epochs,
        "seeds": [r["seed"] for r in runs],
        "schedule_notes": runs[0]["schedule_notes"],
        "official_order": recipe.official_order,
        "notes": recipe.notes,
        "accuracy": final.get("test_acc_mean"),
        "accuracy_std": final.get("test_acc_std"),
        "train_acc_final": final.get("train_acc_mean"),
        "per_epoch": per_epoch,
        "runs": [{k: v for k, v in r.items() if k not in ("meta", "memory", "schedule_notes")} for r in runs],
    }
    if recipe.official is not None:
        record["official"] = compare_official(recipe.official, runs, epochs)
    return record


def compare_official(official: Official, runs: list[dict[str, Any]], epochs: int) -> dict[str, Any]:
    """The official figures at the same epoch and seeds, and the gap to ours in standard deviations."""
    seeds = [r["seed"] for r in runs]
    common = [s for s in seeds if s in official.test_acc and len(official.test_acc[s]) >= epochs]
    out: dict[str, Any] = {"source": official.source, "command": official.command, "notes": official.notes,
                           "seeds": common}
    if not common or epochs == 0:
        out["comparable"] = False
        return out
    ref = [official.test_acc[s][epochs - 1] for s in common]
    ours = [r["test_acc"][epochs - 1] for r in runs if r["seed"] in common]
    om, osd = mean_std(ref)
    m, sd = mean_std(ours)
    out.update(
        comparable=True,
        epoch=epochs,
        test_acc_per_seed={str(s): official.test_acc[s][epochs - 1] for s in common},
        test_acc_mean=rounded(om), test_acc_std=rounded(osd),
        delta_mean=rounded(m - om),
    )
    spread = [v for v in (osd, sd) if v is not None]
    if spread:  # gap in units of the larger of the two seed spreads
        out["delta_in_std"] = rounded((m - om) / max(spread))
    if official.train_acc:
        tr = [official.train_acc[s][epochs - 1] for s in common if s in official.train_acc]
        ours_tr = [r["train_acc"][epochs - 1] for r in runs if r["seed"] in common and len(r["train_acc"]) >= epochs]
        if tr and ours_tr:
            out["train_acc_mean"] = rounded(mean_std(tr)[0])
            out["train_delta_mean"] = rounded(mean_std(ours_tr)[0] - mean_std(tr)[0])
    return out


def _portable(arg: str, data_root: Path, work_dir: Path) -> str:
    """A CLI argument without this machine's paths (shared data, temporary folder, repository)."""
    for path, name in ((work_dir, "<tmp>"), (data_root, "<shared data>"), (REPO, ".")):
        arg = arg.replace(str(path), name)
    return arg


def _fmt(v: Any) -> str:
    return "-" if v is None else (f"{v:.2f}" if isinstance(v, float) else str(v))


def summary_table(records: list[dict[str, Any]]) -> str:
    rows = []
    for r in records:
        off = r.get("official") or {}
        rows.append({
            "recipe": r["recipe"], "epochs": r["epochs"], "seeds": len(r["seeds"]),
            "ours": f"{_fmt(r['accuracy'])} ± {_fmt(r['accuracy_std'])}",
            "official": f"{_fmt(off.get('test_acc_mean'))} ± {_fmt(off.get('test_acc_std'))}" if off.get("comparable") else "-",
            "delta": off.get("delta_in_std"), "step": r["step_time_s"],
        })
    cols = [("recipe", "recipe", str), ("epochs", "epochs", str), ("seeds", "seeds", str),
            ("ours", "test acc % (ours)", str), ("official", "official", str),
            ("delta", "gap / std", _fmt), ("step", "step s", lambda v: f"{v:.3f}")]
    return format_table(rows, cols)


def markdown_table(records: list[dict[str, Any]]) -> str:
    """The README's table: test accuracy per recipe (mean ± std over seeds) next to the official runs."""
    lines = ["| recipe (config) | schedule | seeds | test acc, ours | official | gap |", "|---|---|---|---|---|---|"]
    for r in records:
        off = r.get("official") or {}
        ours = f"{_fmt(r['accuracy'])}" + (f" ± {_fmt(r['accuracy_std'])}" if r["accuracy_std"] is not None else "")
        if r.get("train_acc_final") is not None:
            ours += f" (train {_fmt(r['train_acc_final'])})"
        if off.get("comparable"):
            ref = f"{_fmt(off['test_acc_mean'])}" + (f" ± {_fmt(off['test_acc_std'])}" if off.get("test_acc_std") else "")
            if off.get("train_acc_mean") is not None:
                ref += f" (train {_fmt(off['train_acc_mean'])})"
            gap = f"{off['delta_mean']:+.2f}" + (f" ({off['delta_in_std']:+.1f} std)" if off.get("delta_in_std") is not None else "")
        else:
            ref, gap = "none on this data", "-"
        seeds = ",".join(str(s) for s in r["seeds"])
        name = r["recipe"] + (" (official random stream)" if r.get("official_order") else "")
        lines.append(f"| {name} (`{r['config']}`) | {r['epochs']} ep., {r['train_samples']}/{r['test_samples']} | {seeds} "
                     f"| {ours} | {ref} | {gap} |")
    return "\n".join(lines)


# -------------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    add_accuracy_args(p, BENCHMARK, seeds=None, seeds_help="override every recipe's seeds",
                      quick_help=f"one seed, one epoch, {QUICK_BATCHES['limit_train_batches']} training and "
                                 f"{QUICK_BATCHES['limit_val_batches']} test batches per recipe (about a minute)")
    p.add_argument("--only", action="append", choices=sorted(RECIPES), default=None, help="run only this recipe (repeatable)")
    p.add_argument("--epochs", type=positive_int, default=None, help="override every recipe's epochs")
    p.add_argument("--markdown", type=Path, default=None, metavar="JSON",
                   help="train nothing: print the README table of a result file")
    p.add_argument("--combine", type=Path, nargs="+", default=None, metavar="JSON",
                   help="train nothing: merge the records of these result files (parts of one benchmark run on the "
                        "same commit, e.g. recipes run in parallel with --only) into --out")
    return p.parse_args(argv)


_META_KEYS = ("method", "backbone", "T", "batch_size", "parameters", "optimizer", "lr_schedulers", "train_samples", "test_samples")


def _merge_records(records: list[dict[str, Any]]) -> dict[str, Any]:
    """One record from records of the same recipe run on disjoint seeds (e.g. seeds split over processes)."""
    if len(records) == 1:
        return records[0]
    name = records[0]["recipe"]
    seeds = [s for r in records for s in r["seeds"]]
    if len(seeds) != len(set(seeds)):
        raise SystemExit(f"real_data --combine: recipe {name} has seed(s) in more than one file: {sorted(seeds)}")
    if len({r["epochs"] for r in records}) > 1:
        raise SystemExit(f"real_data --combine: recipe {name} was run for different numbers of epochs")
    runs = sorted(({**run, "meta": {k: rec[k] for k in _META_KEYS}, "schedule_notes": rec["schedule_notes"]}
                   for rec in records for run in rec["runs"]), key=lambda r: r["seed"])
    measured = next((rec for rec in records if rec.get("peak_mem_bytes") is not None), None)
    if measured is not None:  # build_record takes the memory figures from the first run that has them
        runs[0]["memory"] = {k: measured.get(k) for k in ("peak_mem_bytes", "mem_source", "saved_tensor_bytes")}
    recipe = dataclasses.replace(RECIPES[name], epochs=records[0]["epochs"], seeds=tuple(r["seed"] for r in runs))
    return build_record(recipe, runs)


def combine(paths: Sequence[Path], out_path: Path) -> Path:
    """Merge the records of several result files of this benchmark (same commit, same mode) into one file."""
    parts = [json.loads(Path(p).read_text()) for p in paths]
    for key in ("commit", "dirty"):
        values = {json.dumps(part.get("git", {}).get(key)) for part in parts}
        if len(values) > 1:
            raise SystemExit(f"real_data --combine: the files {[str(p) for p in paths]} come from different git states "
                             f"({key}: {sorted(values)}); rerun them on one commit")
    if len({part.get("quick") for part in parts}) > 1:
        raise SystemExit("real_data --combine: cannot mix --quick and full runs")
    by_recipe: dict[str, list[dict[str, Any]]] = {}
    for part in parts:
        for rec in part["records"]:
            by_recipe.setdefault(rec["recipe"], []).append(rec)
    order = {name: i for i, name in enumerate(RECIPES)}
    records = [_merge_records(recs) for _, recs in sorted(by_recipe.items(), key=lambda kv: order.get(kv[0], len(order)))]
    first = parts[0]
    extra = {k: v for k, v in first.items() if k not in ("device", "torch", "created", "python", "threads", "records")}
    extra["load_average_end"] = parts[-1].get("load_average_end")
    extra["parts"] = [{"created": part["created"], "recipes": [r["recipe"] for r in part["records"]],
                       "threads": part.get("threads")} for part in parts]
    out_path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"device": first["device"], "torch": first["torch"], "created": max(part["created"] for part in parts),
               "python": first.get("python"), "threads": first.get("threads"), **extra, "records": records}
    out_path.write_text(json.dumps(payload, indent=2) + "\n")
    print(summary_table(records))
    return out_path


def selected_recipes(args: argparse.Namespace) -> list[Recipe]:
    out = []
    for name in args.only or list(RECIPES):
        r = RECIPES[name]
        seeds = tuple(args.seeds) if args.seeds else (r.seeds[:1] if args.quick else r.seeds)
        epochs = args.epochs or (1 if args.quick else r.epochs)
        out.append(dataclasses.replace(r, seeds=seeds, epochs=epochs))
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.markdown:
        print(markdown_table(json.loads(args.markdown.read_text())["records"]))
        return {}
    if args.combine:
        path = combine(args.combine, result_path(args, BENCHMARK))
        print(f"wrote {path}")
        return {"path": str(path)}
    recipes = selected_recipes(args)
    data_root = require_shared_data(BENCHMARK, args.data or shared_data_dir(), *sorted({r.dataset for r in recipes}))
    device = resolve_device("cpu")
    threads = setup_torch(device, args.threads)
    out_path = result_path(args, BENCHMARK, device)
    extra = {
        "benchmark": BENCHMARK, "quick": bool(args.quick), "git": git_commit(), "load_average_start": load_average(),
        "data": "the shared real-data folder ($LIGHTNING_SNN_SHARED_DATA or ../shared/data)",
        "reference": REFERENCE_FILE,
    }
    records: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="real_data_") as tmp:
        for recipe in recipes:
            runs = []
            for i, seed in enumerate(recipe.seeds):
                run = run_one(recipe, seed, data_root, Path(tmp) / recipe.name / str(seed), args.quick, with_memory=i == 0)
                print(f"[{time.strftime('%H:%M:%S')}] {recipe.name} seed {seed}: test acc {run['test_acc']} "
                      f"train acc {run['train_acc']} ({run['wall_s']} s, step {run['step_time_s']:.3f} s)", flush=True)
                runs.append(run)
            records.append(build_record(recipe, runs))
            if not args.no_write:  # after every recipe, so a long run leaves what it finished
                write_results(records, device, out_path, **extra, load_average_end=load_average())
    print(summary_table(records))
    result = {"records": records, "threads": threads}
    if not args.no_write:
        result["path"] = str(out_path)
        print(f"wrote {out_path}")
    return result


if __name__ == "__main__":
    main()
