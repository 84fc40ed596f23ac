"""The measurement loop of ``lightning-snn bench``: build every method at each setting, measure one step's
memory, time the steps interleaved, derive the ratios; accuracy after a short run; table, PNG, schema check.

Per setting (one T): every method is built and warmed up (optimiser state exists, compilation done), one
untimed step gives its memory (:func:`~lightning_snn.bench.harness.measure_step_memory`: CUDA max allocated,
or on CPU the profiler's allocation events plus the bytes alive at the step start, and the bytes autograd
saved for backward), then all methods' steps are timed round-robin
(:func:`~lightning_snn.bench.harness.interleaved_timing`) so that their ratios are measured under the same
load. A method that raises is recorded with its error and the others go on; a method that cannot run the
backbone is recorded as skipped with the reason.

Derived per record: ``ratio_vs_ann_x_T = step_time / (T x ANN step time)`` (the ANN is the same backbone with
ReLU, run once), ``ratio_vs_bptt`` and ``mem_ratio_vs_bptt`` (same T), and ``mem_growth_in_T`` (peak memory
over the same method's peak at the smallest T measured).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..neurons import reset_states
from .harness import format_bytes, format_table, interleaved_timing, make_batch, measure_step_memory, median
from .methods import BenchSetting, MethodEntry, Trainee, Unsupported, build_method, method_table

__all__ = [
    "REQUIRED_RECORD_KEYS",
    "TimingOptions",
    "accuracy_after",
    "derive",
    "plot_bench",
    "render_table",
    "run_bench",
    "validate_results",
]

#: keys every record has, whatever its status (ARCHITECTURE.md "Benchmark results" plus the status)
REQUIRED_RECORD_KEYS = ("method", "backbone", "T", "batch_size", "status", "step_time_s", "peak_mem_bytes", "mem_source")
_OK_NUMBERS = ("step_time_s", "images_per_s", "peak_mem_bytes", "saved_bytes")


@dataclass(frozen=True)
class TimingOptions:
    """How to time: timed steps, warm-up steps, and the shared-machine options of ``interleaved_timing``."""

    steps: int = 3
    warmup: int = 1
    wait_idle_s: float = 0.0
    retries: int = 0
    max_foreign_share: float = 0.15


def _base(name: str, s: BenchSetting, run_T: int | None = None) -> dict[str, Any]:
    return {"method": name, "backbone": s.backbone_label, "bench_backbone": s.backbone_label, "T": s.T,
            "run_T": run_T or s.T, "batch_size": s.batch, "step_time_s": None, "peak_mem_bytes": None, "mem_source": None}


def _failed(name: str, s: BenchSetting, err: BaseException) -> dict[str, Any]:
    if isinstance(err, Unsupported):
        return {**_base(name, s), "status": "skipped", "reason": str(err)}
    return {**_base(name, s), "status": "error", "error": f"{type(err).__name__}: {err}"}


def _free(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


class _Guarded:
    """A step that records its first exception and is a no-op afterwards (one method failing mid-timing must
    not stop the others' timing)."""

    def __init__(self, step: Callable[[], Any]) -> None:
        self.step, self.error = step, None

    def __call__(self) -> None:
        if self.error is None:
            try:
                self.step()
            except Exception as err:  # noqa: BLE001 - recorded in the JSON
                self.error = err


def run_bench(
    settings: Sequence[BenchSetting],
    names: Sequence[str],
    timing: TimingOptions,
    *,
    table: Mapping[str, MethodEntry] | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Measure every method of ``names`` (entries of ``table``, default the registry) at every setting; one
    record per (method, setting), failures included, in the order of ``names``. ``progress(label)`` is
    called after each method is measured (e.g. a tqdm update)."""
    table = table or method_table()
    records: list[dict[str, Any]] = []
    for s in settings:
        done: list[dict[str, Any]] = []
        x, y = make_batch(s.batch, s.input_shape, s.num_classes, s.device)
        built: dict[str, tuple[Trainee, dict[str, Any]]] = {}
        for name in names:
            try:
                tr = build_method(name, s, table)
                step = tr.step_on(x, y)
                for _ in range(max(timing.warmup, 1)):
                    step()
                reset_states(tr.module)
                mem = dict(measure_step_memory(step, tr.module, tr.optimizer, [x, y], s.device))
                built[name] = (tr, mem)
            except Exception as err:  # noqa: BLE001 - recorded, the run goes on
                done.append(_failed(name, s, err))
                _free(s.device)
            if progress is not None:
                progress(f"{name} T={s.T}")
        guarded = {n: _Guarded(tr.step_on(x, y)) for n, (tr, _) in built.items()}
        times, contention = interleaved_timing(
            guarded, timing.steps, s.device, wait_idle_s=timing.wait_idle_s, retries=timing.retries,
            max_foreign_share=timing.max_foreign_share,
        )
        for name, (tr, mem) in built.items():
            if guarded[name].error is not None:
                done.append(_failed(name, s, guarded[name].error))
                continue
            t_med = median(times[name])
            done.append({
                **_base(name, s, tr.T), "backbone": tr.backbone, "status": "ok", "step_time_s": t_med, "step_time_min_s": min(times[name]),
                "images_per_s": s.batch / t_med, **mem, "saved_bytes": mem["saved_tensor_bytes"],
                "params": sum(p.numel() for p in tr.module.parameters()), "amp": s.amp,
                "description": table[name].description, **contention, "step_times_s": times[name],
            })
        records += sorted(done, key=lambda r: list(names).index(r["method"]))
        del built, guarded
        _free(s.device)
    return derive(records)


def _key(r: dict[str, Any], *extra: str) -> tuple[Any, ...]:
    """Records of one measurement group: same setting backbone (a method may train a stand-in, e.g. RevSNN's
    reversible twin of it), batch and any ``extra`` keys (e.g. ``depth``)."""
    return (r.get("bench_backbone", r["backbone"]), r["batch_size"], *(r.get(k) for k in extra))


def derive(records: list[dict[str, Any]], group: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Add ``ratio_vs_ann_x_T``, ``ratio_vs_bptt``, ``mem_ratio_vs_bptt`` (same T and group) and
    ``mem_growth_in_T`` (peak over the same method's peak at its smallest T) to the ``ok`` records."""
    ok = [r for r in records if r["status"] == "ok"]
    at = {(*_key(r, *group), r["T"], r["method"]): r for r in ok}
    first_T: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in sorted(ok, key=lambda r: r["T"]):
        first_T.setdefault((*_key(r, *group), r["method"]), r)
    for r in records:
        k = (*_key(r, *group), r["T"])
        ann, bptt = at.get((*k, "ann")), at.get((*k, "bptt"))
        ok_r = r["status"] == "ok"
        r["ratio_vs_ann_x_T"] = (r["step_time_s"] / (r["T"] * ann["step_time_s"])
                                 if ok_r and ann is not None and r["method"] != "ann" else None)
        r["ratio_vs_bptt"] = r["step_time_s"] / bptt["step_time_s"] if ok_r and bptt is not None else None
        r["mem_ratio_vs_bptt"] = r["peak_mem_bytes"] / bptt["peak_mem_bytes"] if ok_r and bptt is not None else None
        base = first_T.get((*_key(r, *group), r["method"]))
        r["mem_growth_in_T"] = r["peak_mem_bytes"] / base["peak_mem_bytes"] if ok_r and base is not None else None
        r["mem_growth_base_T"] = base["T"] if ok_r and base is not None else None
    return records


# ---------------------------------------------------------------------------------------- accuracy
def _readout(module: torch.nn.Module, outputs: torch.Tensor) -> torch.Tensor:
    readout = getattr(module, "readout", None)
    return readout(outputs) if readout is not None else outputs.mean(0)


@torch.no_grad()
def _evaluate(tr: Trainee, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], device: torch.device) -> tuple[float, float]:
    module = tr.module
    module.eval()
    loss_sum, correct, seen = 0.0, 0, 0
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        out = module(x)
        loss_sum += float(module.compute_loss(out, y)) * len(y)
        correct += int((_readout(module, out).argmax(-1) == y).sum())
        seen += len(y)
        reset_states(module)
    module.train()
    if not seen:
        return math.nan, math.nan
    return loss_sum / seen, correct / seen


def accuracy_after(
    name: str,
    s: BenchSetting,
    steps: int,
    train_batches: Callable[[], Iterator[tuple[torch.Tensor, torch.Tensor]]],
    eval_batches: Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]],
    lr: float,
    table: Mapping[str, MethodEntry] | None = None,
) -> dict[str, Any]:
    """Train a fresh ``name`` for ``steps`` steps on ``train_batches()`` (cycled) and report the training loss
    of the last step(s) and the loss / accuracy on ``eval_batches()`` (before and after)."""
    tr = build_method(name, s, table)
    for group in tr.optimizer.param_groups:
        group["lr"] = lr
    before_loss, before_acc = _evaluate(tr, eval_batches(), s.device)
    losses: list[float] = []
    it = train_batches()
    for _ in range(steps):
        try:
            x, y = next(it)
        except StopIteration:
            it = train_batches()
            x, y = next(it)
        losses.append(float(tr.train(x.to(s.device), y.to(s.device))))
    loss, acc = _evaluate(tr, eval_batches(), s.device)
    tail = losses[-max(1, min(10, len(losses))):]
    return {"accuracy_steps": steps, "train_loss_last": sum(tail) / len(tail), "eval_loss_before": before_loss,
            "eval_acc_before": before_acc, "eval_loss": loss, "accuracy": acc, "accuracy_lr": lr}


# ------------------------------------------------------------------------------------------ output
def _f2(v: Any) -> str:
    return "-" if v is None else f"{v:.2f}"


def render_table(records: list[dict[str, Any]], extra: Sequence[tuple[str, str, Callable[[Any], str]]] = ()) -> str:
    """The printed table: one row per record; skipped / failed rows say why in the last column."""
    rows = [{**r, "note": r.get("reason") or r.get("error") or ""} for r in records]
    for r in rows:
        if len(r["note"]) > 60:
            r["note"] = r["note"][:57] + "..."
    cols: list[tuple[str, str, Callable[[Any], str]]] = [
        ("T", "T", str), *extra, ("method", "method", str), ("status", "status", str),
        ("step_time_s", "step ms", lambda v: "-" if v is None else f"{v * 1e3:.1f}"),
        ("images_per_s", "img/s", lambda v: "-" if v is None else f"{v:.1f}"),
        ("ratio_vs_ann_x_T", "t/(T*ann)", _f2), ("ratio_vs_bptt", "t/bptt", _f2),
        ("peak_mem_bytes", "peak mem", format_bytes), ("mem_growth_in_T", "mem/mem(T0)", _f2),
        ("saved_bytes", "saved for bwd", format_bytes),
    ]
    if any("accuracy" in r for r in records):
        cols += [("train_loss_last", "loss", lambda v: "-" if v is None else f"{v:.3f}"),
                 ("accuracy", "acc", lambda v: "-" if v is None else f"{100 * v:.1f}%")]
    cols.append(("note", "note", str))
    return format_table(rows, cols)


def plot_bench(records: list[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Three panels against T, one line per method: step time (with T x ANN), ratio to T x ANN, peak memory."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    several = len({r["backbone"] for r in records}) > 1
    ok = [{**r, "method": f"{r['backbone']}:{r['method']}" if several else r["method"]}
          for r in records if r["status"] == "ok"]
    names = list(dict.fromkeys(r["method"] for r in ok))
    Ts = sorted({r["T"] for r in ok})
    palette = plt.get_cmap("tab20").colors
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    panels = (("step_time_s", "step time (ms)", 1e3), ("ratio_vs_ann_x_T", "step time / (T x ANN step)", 1.0),
              ("peak_mem_bytes", "peak memory (MiB)", 2.0 ** -20))
    for ax, (key, ylabel, scale) in zip(axes, panels):
        for i, m in enumerate(names):
            pts = sorted((r["T"], r[key] * scale) for r in ok if r["method"] == m and r.get(key) is not None)
            if m.endswith("ann") and m.split(":")[-1] == "ann" and key == "step_time_s":
                ax.plot(Ts, [T * pts[0][1] for T in Ts], "k--", label="T x ANN step")
                continue
            if pts:
                ax.plot([a for a, _ in pts], [b for _, b in pts], marker="o", label=m, color=palette[i % len(palette)])
        if key == "ratio_vs_ann_x_T":
            ax.axhline(1.0, color="k", lw=0.8, ls=":")
        ax.set_xticks(Ts)
        ax.set_xlabel("T (time steps)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, ncol=2)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------------ schema
def validate_results(payload: dict[str, Any]) -> None:
    """Check a result JSON against ARCHITECTURE.md "Benchmark results" and the bench record fields; raises
    ``ValueError`` naming the record and field at fault."""
    for key, kind in (("device", str), ("torch", str), ("created", str), ("records", list)):
        if not isinstance(payload.get(key), kind):
            raise ValueError(f"result JSON: top-level {key!r} must be a {kind.__name__}, got {payload.get(key)!r}")
    for i, r in enumerate(payload["records"]):
        where = f"records[{i}] ({r.get('method')!r}, T={r.get('T')})"
        missing = [k for k in REQUIRED_RECORD_KEYS if k not in r]
        if missing:
            raise ValueError(f"result JSON: {where} lacks {missing}")
        if not isinstance(r["method"], str) or not isinstance(r["backbone"], str):
            raise ValueError(f"result JSON: {where}: method and backbone must be strings")
        if not (isinstance(r["T"], int) and r["T"] >= 1 and isinstance(r["batch_size"], int) and r["batch_size"] >= 1):
            raise ValueError(f"result JSON: {where}: T and batch_size must be positive integers")
        status = r["status"]
        if status == "ok":
            for k in _OK_NUMBERS:
                v = r.get(k)
                if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v < 0:
                    raise ValueError(f"result JSON: {where}: {k} must be a finite number >= 0, got {v!r}")
            if not isinstance(r["mem_source"], str) or not r["mem_source"]:
                raise ValueError(f"result JSON: {where}: mem_source must name where peak_mem_bytes comes from")
            ratio = r.get("ratio_vs_ann_x_T")
            if r["method"] != "ann" and ratio is not None and not (isinstance(ratio, float) and ratio > 0):
                raise ValueError(f"result JSON: {where}: ratio_vs_ann_x_T must be a positive number or null")
        elif status in ("error", "skipped"):
            text = r.get("error" if status == "error" else "reason")
            if not isinstance(text, str) or not text:
                raise ValueError(f"result JSON: {where}: a {status} record must say why "
                                 f"({'error' if status == 'error' else 'reason'})")
        else:
            raise ValueError(f"result JSON: {where}: status must be ok, error or skipped, got {status!r}")
