"""``lightning-snn bench``: which training method fits the budget, on your backbone and data shape.

    lightning-snn bench --config configs/rate_bp/cifar10_resnet18_rate_m.yaml --methods bptt,rate_bp,dsr --T 2,4
    lightning-snn bench --backbone vggsnn --input-shape 2,48,48 --num-classes 11 --T 2,4,8 --batch-size 4
    lightning-snn bench --config C --accuracy-steps 50 --fake-data     # + loss / accuracy after 50 steps

The config (any fit config) is resolved by the same CLI machinery as ``lightning-snn fit`` without training:
its model gives the backbone, ``backbone_kwargs``, neuron, ``num_classes``, ``input_shape`` and T; its
DataModule gives the data for ``--accuracy-steps`` (``--fake-data``: a synthetic, learnable data set of the
same shape instead). Every method of :mod:`lightning_snn.bench.methods` then trains that backbone on one
fixed batch; see :mod:`lightning_snn.bench.run` for what is measured. Output: a table, a JSON (ARCHITECTURE.md
"Benchmark results", one record per method and T, failures and skips with their reason) and a PNG.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from .harness import (
    add_common_args,
    describe_device,
    device_tag,
    load_average,
    resolve_device,
    setup_torch,
    write_results,
)
from .methods import ALIASES, BenchSetting, MethodEntry, method_table, resolve_method_names
from .run import TimingOptions, accuracy_after, plot_bench, render_table, run_bench, validate_results

__all__ = ["PRECISIONS", "bench_main", "build_parser", "comma_list", "flat", "resolve_setting"]

#: --precision -> autocast dtype name (None: float32)
PRECISIONS: dict[str, str | None] = {"32": None, "32-true": None, "bf16": "bf16", "bf16-mixed": "bf16",
                                     "16": "fp16", "16-mixed": "fp16", "fp16": "fp16"}


def comma_list(kind: type) -> Any:
    """argparse ``type``: ``"2,4,8"`` -> ``[2, 4, 8]`` (integers must be >= 1)."""

    def parse(text: str) -> list[Any]:
        items = [t.strip() for t in text.split(",") if t.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
        try:
            values = [kind(t) for t in items]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind.__name__}s separated by commas, got {text!r}") from None
        if kind is int and any(v < 1 for v in values):
            raise argparse.ArgumentTypeError(f"values must be >= 1, got {text!r}")
        return values

    return parse


def flat(lists: Sequence[Sequence[Any]] | None) -> list[Any] | None:
    return None if lists is None else list(dict.fromkeys(v for lst in lists for v in lst))


def _json_arg(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON ({err}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def build_parser(table: dict[str, MethodEntry] | None = None, *, source: bool = True, prog: str = "lightning-snn bench",
                 description: str | None = None) -> argparse.ArgumentParser:
    """The one argument parser of ``lightning-snn bench``. ``source=False`` leaves out what chooses the model
    and data (``--config`` / ``--backbone`` ..., ``--accuracy-steps``): a ``benchmarks/`` script with its own
    network extends the parser with its own options."""
    names = sorted([*(table or method_table()), *ALIASES])
    p = argparse.ArgumentParser(prog=prog, description=description or __doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    if source:
        src = p.add_mutually_exclusive_group(required=True)
        src.add_argument("--config", type=Path, help="a fit config: its backbone, neuron, data shape, T and data")
        src.add_argument("--backbone", help="a registered backbone name (lightning_snn.backbones.list_backbones())")
        p.add_argument("--backbone-kwargs", type=_json_arg, default=None, help="JSON object of backbone arguments")
        p.add_argument("--neuron", type=_json_arg, default=None, help="JSON neuron spec of the BPTT-family methods")
        p.add_argument("--num-classes", type=int, default=None, help="classes (--backbone; default 10)")
        p.add_argument("--input-shape", type=comma_list(int), default=None, help="C,H,W (--backbone; default 3,32,32)")
        p.add_argument("--label", default=None, help="backbone name in the records, table and file name")
        p.add_argument("--accuracy-steps", type=int, default=0, metavar="N",
                       help="also train each method N steps on the config's data and report loss and accuracy")
        p.add_argument("--eval-batches", type=int, default=4, help="batches the accuracy is measured on (default 4)")
        p.add_argument("--fake-data", action="store_true",
                       help="--accuracy-steps on a synthetic learnable data set of the config's shape (no files needed)")
    p.add_argument("--methods", type=comma_list(str), nargs="+", default=None,
                   help=f"subset of {', '.join(names)}, comma- or space-separated (default: every default method; "
                   "ann always runs)")
    p.add_argument("--T", type=comma_list(int), nargs="+", default=None,
                   help="time steps, e.g. 2,4,8 (default: the config's T; --backbone: 2,4,8)")
    p.add_argument("--precision", "--amp", choices=sorted(PRECISIONS), default=None if source else "32",
                   help="autocast precision (default: the config's trainer.precision with --config, else 32; "
                   "bf16 also on CPU)" if source else "autocast precision (default 32; bf16 also on CPU)")
    p.add_argument("--lr", type=float, default=0.01,
                   help="learning rate of the --accuracy-steps training (SGD, momentum 0.9, as every timed step; default 0.01)")
    p.add_argument("--plot", type=Path, default=None, help="PNG path (default: the JSON's with .png)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_common_args(p, "bench", quick_help="batch 4, 2 timed steps", out_help="result JSON (default: "
                    "bench-<backbone>[-<gpu>].json in the working directory)" if source else None)
    return p


# --------------------------------------------------------------------------------------- the setting
def resolve_config(config: Path) -> tuple[dict[str, Any], Any]:
    """The model fields a fit config resolves to (through the CLI parser, no training) and its DataModule."""
    from ..cli import build_cli
    from ..recipe import _configured_precision

    if not config.is_file():
        raise SystemExit(f"lightning-snn bench: --config {config}: no such file")
    loggers = [logging.getLogger(n) for n in ("lightning.pytorch", "lightning.fabric", "lightning_fabric")]
    levels = [lg.level for lg in loggers]
    try:  # the trainer is built but never run: its start-up notices (seed, accelerator, tips) are noise here
        for lg in loggers:
            lg.setLevel(logging.WARNING)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cli = build_cli(["--config", str(config), "--trainer.logger", "false"], run=False)
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
    hp = dict(cli.model.hparams)
    backbone = hp.get("backbone")
    if not isinstance(backbone, str):
        raise SystemExit(f"lightning-snn bench: --config {config}: model.backbone must be a registered backbone name")
    fields = {"backbone": backbone, "backbone_kwargs": dict(hp.get("backbone_kwargs") or {}),
              "neuron": hp.get("neuron"), "num_classes": int(cli.model.num_classes),
              "input_shape": tuple(cli.model.input_shape), "T": int(cli.model.T),
              "batch_size": int(getattr(cli.datamodule, "batch_size", 0) or 0),
              "method": type(cli.model).__name__, "precision": _configured_precision(cli.config, cli.trainer)}
    return fields, cli.datamodule


def resolve_precision(args: argparse.Namespace, fields: dict[str, Any]) -> tuple[str, str]:
    """``(precision, where it came from)``: ``--precision`` when given, else the config's ``trainer.precision``
    (in Lightning's unified names, as ``fit`` would be asked for it), else 32."""
    if args.precision is not None:
        return args.precision, "--precision"
    configured = fields.get("precision")
    if configured is None:
        return "32", "default"
    if configured not in PRECISIONS:
        raise SystemExit(f"lightning-snn bench: --config {args.config}: trainer.precision {configured!r} has no autocast "
                         f"equivalent here; give --precision (one of {', '.join(sorted(PRECISIONS))})")
    return configured, "config trainer.precision"


def resolve_setting(args: argparse.Namespace, device: torch.device) -> tuple[BenchSetting, list[int], Any, dict[str, Any]]:
    """(setting at the first T, all T, DataModule or None, config fields) from the arguments."""
    gpu = device.type == "cuda"
    if args.config is not None:
        fields, dm = resolve_config(args.config)
        default_T = [fields["T"]]
        default_batch = fields["batch_size"] if gpu else min(fields["batch_size"] or 8, 8)
    else:
        shape = tuple(args.input_shape or (3, 32, 32))
        if len(shape) != 3:
            raise SystemExit(f"--input-shape must be C,H,W, got {args.input_shape}")
        fields, dm = {"backbone": args.backbone, "backbone_kwargs": {}, "neuron": None,
                      "num_classes": args.num_classes or 10, "input_shape": shape}, None
        default_T, default_batch = [2, 4, 8], 32 if gpu else 8
    if args.backbone_kwargs:
        fields["backbone_kwargs"] = {**fields["backbone_kwargs"], **args.backbone_kwargs}
    if args.neuron is not None:
        fields["neuron"] = args.neuron
    fields["precision"], fields["precision_source"] = resolve_precision(args, fields)
    Ts = flat(args.T) or default_T
    batch = args.batch_size or (4 if args.quick else default_batch)
    setting = BenchSetting(
        backbone=fields["backbone"], num_classes=fields["num_classes"], input_shape=fields["input_shape"],
        T=Ts[0], batch=batch, device=device, backbone_kwargs=fields["backbone_kwargs"],
        neuron=dict(fields["neuron"]) if fields["neuron"] else None, amp=PRECISIONS[fields["precision"]], label=args.label,
    )
    return setting, Ts, dm, fields


# ---------------------------------------------------------------------------------------- the data
def fake_loaders(s: BenchSetting, n_train: int = 256, n_eval: int = 64, seed: int = 0) -> tuple[Any, Any]:
    """A learnable synthetic data set of shape ``s.input_shape``: a fixed random template per class plus
    noise (so that accuracy moves within a few steps), as train / eval loaders of batch ``s.batch``."""
    from torch.utils.data import DataLoader, TensorDataset

    g = torch.Generator().manual_seed(seed)
    templates = torch.randn(s.num_classes, *s.input_shape, generator=g)

    def split(n: int) -> DataLoader:
        y = torch.randint(0, s.num_classes, (n,), generator=g)
        x = templates[y] + 0.8 * torch.randn(n, *s.input_shape, generator=g)
        return DataLoader(TensorDataset(x, y), batch_size=s.batch, shuffle=False)

    return split(n_train), split(n_eval)


def _first(loader: Iterable[Any], n: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for i, (x, y) in enumerate(loader):
        if i >= n:
            return
        yield x, y


def data_loaders(args: argparse.Namespace, s: BenchSetting, dm: Any) -> tuple[Any, Any, str]:
    """(train loader, eval loader, description) for ``--accuracy-steps``."""
    if args.fake_data or dm is None:
        train, val = fake_loaders(s)
        return train, val, "synthetic: a random template per class + noise"
    dm.batch_size = s.batch
    dm.setup("fit")
    val = dm.val_dataloader() if getattr(dm, "val_set", None) is not None else None
    if val is None:
        dm.setup("test")
        val = dm.test_dataloader()
    return dm.train_dataloader(), val, f"{type(dm).__name__} (the config's DataModule)"


# -------------------------------------------------------------------------------------------- main
def default_out(s: BenchSetting, device: torch.device) -> Path:
    tag = device_tag(device)
    return Path(f"bench-{s.backbone_label}" + (f"-{tag}" if tag else "") + ".json")


def bench_main(argv: Sequence[str] | None = None, *, table: dict[str, MethodEntry] | None = None,
               extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run ``lightning-snn bench`` with ``argv``; ``table`` replaces the method table (a preset's own
    entries), ``extra`` goes into the JSON. Returns the written payload."""
    table = table or method_table()
    parser = build_parser(table)
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    device = resolve_device(args.device)
    threads = setup_torch(device, args.threads)
    try:
        names = resolve_method_names(flat(args.methods), table)
    except ValueError as err:
        parser.error(str(err))
    setting, Ts, dm, fields = resolve_setting(args, device)
    gpu = device.type == "cuda"
    timing = TimingOptions(steps=args.steps or (2 if args.quick else 10 if gpu else 3),
                           warmup=args.warmup if args.warmup is not None else (3 if gpu else 1),
                           wait_idle_s=args.wait_idle, retries=args.retries, max_foreign_share=args.max_foreign)
    print(f"bench: {setting.backbone_label} {list(setting.input_shape)} -> {setting.num_classes} classes on "
          f"{describe_device(device)} ({threads} threads), batch {setting.batch}, T {Ts}, precision {fields['precision']} "
          f"({fields['precision_source']}), "
          f"{timing.warmup} warm-up + 1 memory + {timing.steps} timed steps; methods {', '.join(names)}", flush=True)
    from tqdm.auto import tqdm

    total = len(Ts) * len(names) * (2 if args.accuracy_steps else 1)
    bar = tqdm(total=total, desc="bench", unit="run", file=sys.stderr, disable=True if args.no_progress else None)

    def tick(label: str) -> None:
        bar.set_postfix_str(label)
        bar.update(1)

    data_info = None
    if args.accuracy_steps > 0:  # before any timing: missing data files fail at once
        train, val, data_info = data_loaders(args, setting, dm)
    load_start, t0 = load_average(), time.perf_counter()
    settings = [replace(setting, T=T) for T in Ts]
    records = run_bench(settings, names, timing, table=table, progress=tick)
    if args.accuracy_steps > 0:
        for r in records:
            if r["status"] == "ok":
                s = replace(setting, T=r["T"])
                try:
                    r.update(accuracy_after(r["method"], s, args.accuracy_steps, lambda: iter(train),
                                            lambda: _first(val, args.eval_batches), args.lr, table))
                except Exception as err:  # noqa: BLE001 - recorded, the run goes on
                    r["accuracy_error"] = f"{type(err).__name__}: {err}"
            tick(f"accuracy {r['method']} T={r['T']}")
    bar.close()
    print()
    print(render_table(records))
    payload_extra = {
        "benchmark": "bench", "config": str(args.config) if args.config else None, "config_method": fields.get("method"),
        "backbone": setting.backbone, "backbone_kwargs": setting.backbone_kwargs, "neuron": setting.neuron,
        "input_shape": list(setting.input_shape), "num_classes": setting.num_classes, "Ts": Ts,
        "precision": fields["precision"], "precision_source": fields["precision_source"], "timing": vars(timing), "optimizer": f"SGD(momentum=0.9), lr 0.01 timed, {args.lr} for the accuracy steps",
        "accuracy_data": data_info, "elapsed_s": round(time.perf_counter() - t0, 1),
        "loadavg_start": load_start, "loadavg_end": load_average(), **(extra or {}),
    }
    payload = {"device": describe_device(device), "torch": torch.__version__, "records": records, **payload_extra}
    if not args.no_write:
        path = write_results(records, device, args.out or default_out(setting, device), **payload_extra)
        payload = json.loads(path.read_text())
        validate_results(payload)
        png = plot_bench(records, args.plot or path.with_suffix(".png"),
                         title=f"{setting.backbone_label}, batch {setting.batch}, {describe_device(device)}")
        print(f"\nwrote {path} and {png}")
    return payload


def main(argv: Sequence[str] | None = None) -> int:
    bench_main(argv)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
