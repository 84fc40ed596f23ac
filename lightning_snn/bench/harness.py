"""The benchmark harness: device description, thread setup, timing, peak memory, JSON output.

One timing loop (:func:`interleaved_timing`), one memory accounting (:func:`measure_step_memory`), one JSON
writer (:func:`write_results`) and one set of shared options (:func:`add_common_args`) for
``lightning-snn bench`` and the scripts under ``benchmarks/``. Every benchmark writes ``benchmarks/results/<name>.json`` (``<name>-<gpu>.json`` on a GPU, so that CPU
runs never overwrite GPU results) as described in ARCHITECTURE.md, "Benchmark results"::

    {"device": "cpu: 2 cores", "torch": "2.x", "created": "2025-01-01T12:00:00+00:00",
     "records": [{"method": ..., "backbone": ..., "T": ..., "batch_size": ..., "step_time_s": ...,
                  "peak_mem_bytes": ..., "mem_source": ..., ...}, ...]}

Peak memory of one step (:func:`measure_step_memory`):

* CUDA: ``torch.cuda.max_memory_allocated`` over the step (everything alive: parameters, gradients,
  optimiser state, input, activations, temporaries).
* CPU: there is no allocator statistic, so the step runs once under ``torch.profiler`` with
  ``profile_memory=True``; the signed allocation/free events are replayed in time order and their
  running sum gives the peak *increase* over the start of the step. The bytes of the tensors known
  to be alive at the start (parameters, buffers, gradients, optimiser state, inputs) are added so the
  figure means the same as on CUDA. As a second, method-level figure the same step tallies the unique
  bytes that autograd saved for backward (``torch.autograd.graph.saved_tensors_hooks``, parameters
  excluded) -- the activation memory that BPTT, Rate-BP, RevSNN, ... differ in.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import math
import os
import platform
import re
import statistics
import weakref
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "AMP_DTYPES",
    "RESULTS_DIR",
    "add_common_args",
    "amp_context",
    "backbone_train_step",
    "make_batch",
    "CpuContention",
    "StepMemory",
    "cpu_cores",
    "default_result_path",
    "describe_device",
    "device_tag",
    "format_bytes",
    "format_table",
    "interleaved_timing",
    "load_average",
    "measure_step_memory",
    "median",
    "positive_int",
    "quiet_profile",
    "resolve_device",
    "setup_torch",
    "synchronize",
    "tensor_bytes",
    "time_call",
    "wait_for_idle_cpu",
    "write_results",
]

def _results_dir() -> Path:
    """``benchmarks/results`` of the source checkout this package is imported from; from an installed
    package (no checkout around it) ``benchmarks/results`` under the working directory."""
    checkout = Path(__file__).resolve().parents[2] / "benchmarks"
    if (checkout / "results").is_dir():
        return checkout / "results"
    return Path.cwd() / "benchmarks" / "results"


RESULTS_DIR = _results_dir()

_MEM_SOURCE_CUDA = "torch.cuda.max_memory_allocated"
_MEM_SOURCE_CPU = (
    "torch.profiler memory events (peak running sum of CPU allocations during one step) "
    "+ bytes of tensors alive at step start (params, buffers, grads, optimizer state, inputs)"
)


# --------------------------------------------------------------------------------------------- device
def cpu_cores() -> int:
    """CPU cores this process may run on (respects affinity / cgroup cpusets where the OS exposes them)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def load_average() -> list[float] | None:
    """1/5/15-minute load averages (where the OS has them): other work on a shared machine skews timings."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def resolve_device(name: str) -> torch.device:
    """``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"auto"`` (CUDA when available) -> a device; fails clearly
    when CUDA is asked for but absent."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: CUDA is not available on this machine")
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
    elif device.type != "cpu":
        raise SystemExit(f"--device: only 'cpu' and 'cuda' are supported, got {name!r}")
    return device


def setup_torch(device: torch.device, threads: int | None = None) -> int:
    """Use one intra-op thread per core (``threads`` overrides); cuDNN autotuning on GPU. Returns threads."""
    n = threads or cpu_cores()
    torch.set_num_threads(n)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    return n


def describe_device(device: torch.device) -> str:
    """``"cpu: 2 cores"`` or the GPU's name, e.g. ``"NVIDIA H100 80GB HBM3"``."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu: {cpu_cores()} cores"


_VENDOR_WORDS = {"nvidia", "geforce", "tesla", "quadro", "amd", "radeon", "instinct"}


def device_tag(device: torch.device) -> str | None:
    """Short GPU name for result file names (``"NVIDIA H100 80GB HBM3"`` -> ``"h100"``); None on CPU."""
    if device.type != "cuda":
        return None
    tokens = [t for t in re.split(r"[\s\-_/]+", torch.cuda.get_device_name(device).lower()) if t]
    tokens = [t for t in tokens if t not in _VENDOR_WORDS]
    kept: list[str] = []
    for tok in tokens:  # e.g. ["rtx", "4090"] -> "rtx4090", ["h100", "80gb", "hbm3"] -> "h100"
        kept.append(tok)
        if any(c.isdigit() for c in tok):
            break
    tag = re.sub(r"[^a-z0-9]+", "", "".join(kept))
    return tag or "gpu"


def default_result_path(benchmark: str, device: torch.device) -> Path:
    """``results/<benchmark>.json`` on CPU, ``results/<benchmark>-<gpu>.json`` on a GPU."""
    tag = device_tag(device)
    return RESULTS_DIR / (f"{benchmark}.json" if tag is None else f"{benchmark}-{tag}.json")


# ----------------------------------------------------------------------------------------- contention
def _proc_stat_cpu() -> tuple[int, int, int] | None:
    """(busy, steal, total) jiffies of all CPUs from /proc/stat (Linux), None elsewhere."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return user + nice + system + irq + softirq, steal, user + nice + system + idle + iowait + irq + softirq + steal


class CpuContention:
    """Context manager measuring how much of the machine others took while the block ran (Linux).

    ``foreign_cpu_share``: CPU time used by other processes / all CPU time of the machine;
    ``steal_share``: time the hypervisor gave to other guests. Both are 0 on an idle machine; on a
    shared one they tell how far the timings inside the block can be trusted. None where unavailable.
    """

    def __init__(self) -> None:
        self.foreign_cpu_share: float | None = None
        self.steal_share: float | None = None

    def __enter__(self) -> "CpuContention":
        self._stat = _proc_stat_cpu()
        self._own = sum(os.times()[:2])
        return self

    def __exit__(self, *exc: object) -> None:
        end = _proc_stat_cpu()
        if self._stat is None or end is None:
            return
        hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        busy, steal, total = (b - a for a, b in zip(self._stat, end))
        if total <= 0:
            return
        own = (sum(os.times()[:2]) - self._own) * hz
        self.foreign_cpu_share = round(min(max((busy - own) / total, 0.0), 1.0), 3)
        self.steal_share = round(steal / total, 3)

    def as_dict(self) -> dict[str, float | None]:
        return {"foreign_cpu_share": self.foreign_cpu_share, "steal_share": self.steal_share}


def wait_for_idle_cpu(max_wait_s: float, min_idle: float = 0.85, window_s: float = 5.0) -> bool:
    """Block until the machine is at least ``min_idle`` idle over ``window_s`` (at most ``max_wait_s``).

    Returns whether it got idle. A no-op returning True where /proc/stat is unavailable or max_wait_s <= 0.
    """
    if max_wait_s <= 0 or _proc_stat_cpu() is None:
        return True
    deadline = time.monotonic() + max_wait_s
    while True:
        a = _proc_stat_cpu()
        time.sleep(window_s)
        b = _proc_stat_cpu()
        busy, steal, total = (y - x for x, y in zip(a, b))  # type: ignore[arg-type]
        if total > 0 and 1.0 - (busy + steal) / total >= min_idle:
            return True
        if time.monotonic() >= deadline:
            return False


# --------------------------------------------------------------------------------------------- timing
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], Any], device: torch.device) -> float:
    """Wall-clock seconds of ``fn()``, with the GPU synchronised before and after."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def median(values: Sequence[float]) -> float:
    if not values:
        return math.nan
    return float(statistics.median(values))


def interleaved_timing(
    fns: dict[str, Callable[[], Any]],
    steps: int,
    device: torch.device,
    *,
    wait_idle_s: float = 0.0,
    retries: int = 0,
    max_foreign_share: float = 0.15,
) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Time ``steps`` calls of every function in ``fns``, interleaved (round-robin, order rotated each
    round) so that all see the same machine load; ratios between them are then measured in one window.

    On a shared machine: wait up to ``wait_idle_s`` for an idle CPU first, and when other processes took
    more than ``max_foreign_share`` of the CPU during the timing, repeat it (up to ``retries`` more
    times), keeping the least disturbed attempt. Returns ``({name: [seconds, ...]}, info)`` where
    ``info`` has ``foreign_cpu_share``, ``steal_share`` and ``attempts``.
    """
    names = list(fns)
    best: tuple[dict[str, list[float]], dict[str, Any]] | None = None
    for attempt in range(1, retries + 2):
        if wait_idle_s > 0:
            wait_for_idle_cpu(wait_idle_s)
        times: dict[str, list[float]] = {n: [] for n in names}
        with CpuContention() as contention:
            for i in range(steps):
                k = i % len(names)
                for name in names[k:] + names[:k]:
                    times[name].append(time_call(fns[name], device))
        info = {**contention.as_dict(), "attempts": attempt}
        share = contention.foreign_cpu_share
        if best is None or (share is not None and share < (best[1]["foreign_cpu_share"] or 0.0)):
            best = (times, info)
        if share is None or share <= max_foreign_share:
            break
    assert best is not None
    best[1]["attempts"] = attempt
    return best


# --------------------------------------------------------------------------------------------- memory
def tensor_bytes(tensors: Iterable[Any]) -> int:
    """Bytes of the distinct storages behind ``tensors`` (non-tensors and None are skipped)."""
    seen: set[tuple[str, int]] = set()
    total = 0
    for t in tensors:
        if not isinstance(t, torch.Tensor):
            continue
        storage = t.untyped_storage()
        key = (str(t.device), storage.data_ptr())
        if key in seen or storage.data_ptr() == 0:
            continue
        seen.add(key)
        total += storage.nbytes()
    return total


def _optimizer_tensors(optimizer: torch.optim.Optimizer | None) -> list[torch.Tensor]:
    if optimizer is None:
        return []
    return [v for state in optimizer.state.values() for v in state.values() if isinstance(v, torch.Tensor)]


def _alive_bytes(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None, inputs: Sequence[Any]) -> int:
    params = list(model.parameters())
    return tensor_bytes(
        [*params, *model.buffers(), *(p.grad for p in params), *_optimizer_tensors(optimizer), *inputs]
    )


class StepMemory(dict):
    """Result of :func:`measure_step_memory` (a dict, so it drops straight into a JSON record).

    Keys: ``peak_mem_bytes`` (everything alive at the peak), ``step_peak_mem_bytes`` (peak increase over
    the start of the step), ``saved_tensor_bytes`` (unique bytes saved for backward, parameters
    excluded), ``saved_tensor_peak_bytes`` (the most of them alive at once) and ``mem_source``.
    """


class _SavedTensorTally:
    """``saved_tensors_hooks`` that count the distinct storages autograd keeps for backward."""

    def __init__(self, exclude: Iterable[torch.Tensor]) -> None:
        self._exclude = {t.untyped_storage().data_ptr() for t in exclude}
        # storage address -> the saved tensor that brought it in; a dead entry means that storage was freed,
        # so a new tensor at the same address (the allocator reuses addresses) is a new storage
        self._seen: dict[int, weakref.ref[torch.Tensor]] = {}
        self.bytes = 0
        # saved tensors alive at once: per storage, how many saved tensors still refer to it (a step-by-step
        # method frees each step's graph in its own backward, so its peak stays flat while ``bytes`` adds up)
        self._live: dict[int, int] = {}
        self.alive = 0
        self.peak = 0

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr and ptr not in self._exclude:
            ref = self._seen.get(ptr)
            if ref is None or ref() is None:
                self.bytes += storage.nbytes()
            self._seen[ptr] = weakref.ref(t)
            if self._live.get(ptr, 0) == 0:
                self.alive += storage.nbytes()
                self.peak = max(self.peak, self.alive)
            self._live[ptr] = self._live.get(ptr, 0) + 1
            weakref.finalize(t, self._release, ptr, storage.nbytes())
        return t

    def _release(self, ptr: int, nbytes: int) -> None:
        self._live[ptr] -= 1
        if self._live[ptr] == 0:
            del self._live[ptr]
            self.alive -= nbytes

    @staticmethod
    def unpack(t: torch.Tensor) -> torch.Tensor:
        return t

    def hooks(self) -> torch.autograd.graph.saved_tensors_hooks:
        return torch.autograd.graph.saved_tensors_hooks(self.pack, self.unpack)


@contextlib.contextmanager
def _stderr_fd_silenced() -> Any:
    """Point file descriptor 2 at /dev/null (C++ log lines bypass ``sys.stderr``)."""
    try:
        saved = os.dup(2)
    except OSError:  # no usable fd 2: nothing to silence
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@contextlib.contextmanager
def quiet_profile(**kwargs: Any) -> Any:
    """``torch.profiler.profile(**kwargs)`` without the profiler's own start / stop log lines.

    Kineto prints ``profiler_start`` / ``profiler_stop`` (and, in a CUDA build on a machine without a
    GPU, a ``gpuGetDeviceCount failed`` error) to the process's stderr; they would clutter benchmark
    output and notebooks. Only the profiler's start and stop are silenced, never the profiled code.
    """
    prof = torch.profiler.profile(**kwargs)
    with _stderr_fd_silenced():
        prof.__enter__()
    try:
        yield prof
    finally:
        with _stderr_fd_silenced():
            prof.__exit__(None, None, None)


def _profiler_peak_increase(prof: torch.profiler.profile) -> int:
    """Peak of the running sum of CPU allocation (+) / free (-) events recorded by ``prof``."""
    events = [
        (e.start_ns(), e.nbytes())
        for e in prof.profiler.kineto_results.events()
        if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU
    ]
    events.sort(key=lambda ev: ev[0])
    running = peak = 0
    for _, nbytes in events:
        running += nbytes
        peak = max(peak, running)
    return peak


def measure_step_memory(
    step: Callable[[], Any],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    inputs: Sequence[Any],
    device: torch.device,
) -> StepMemory:
    """Run ``step()`` once (untimed) and measure its peak memory (see the module docstring).

    Gradients are set to None first, so they count as memory the step allocates (``step`` should itself
    zero them with ``set_to_none=True``). Run at least one warm-up step first so optimiser state exists;
    reset any model state (neurons) beforehand so that its release is not part of the step.
    """
    if optimizer is not None:
        # free the previous step's gradients *before* the measurement: on CPU their deallocation inside
        # the profiled region would be invisible (allocated before profiling started) and double-count
        optimizer.zero_grad(set_to_none=True)
    tally = _SavedTensorTally(model.parameters())
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
        with tally.hooks():
            step()
        synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
        return StepMemory(
            peak_mem_bytes=int(peak),
            step_peak_mem_bytes=int(peak - start),
            saved_tensor_bytes=int(tally.bytes),
            saved_tensor_peak_bytes=int(tally.peak),
            mem_source=_MEM_SOURCE_CUDA,
        )
    start = _alive_bytes(model, optimizer, inputs)
    from torch.profiler import ProfilerActivity

    with quiet_profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof, tally.hooks():
        step()
    increase = _profiler_peak_increase(prof)
    return StepMemory(
        peak_mem_bytes=int(start + increase),
        step_peak_mem_bytes=int(increase),
        saved_tensor_bytes=int(tally.bytes),
        saved_tensor_peak_bytes=int(tally.peak),
        mem_source=_MEM_SOURCE_CPU,
    )


# ------------------------------------------------------------------------------------ CLI and steps
AMP_DTYPES: dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16}


def positive_int(text: str) -> int:
    """argparse ``type`` for counts that must be at least 1 (time steps, depths)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def add_common_args(
    p: argparse.ArgumentParser,
    benchmark: str,
    *,
    default_device: str = "cpu",
    quick_help: str = "CPU run of about a minute",
    amp: bool = False,
    out_help: str | None = None,
) -> argparse.ArgumentParser:
    """The options every benchmark shares: device, --quick, batch/steps/warm-up, threads, output, and the
    shared-machine options (--wait-idle, --retries, --max-foreign); ``amp`` adds ``--amp {bf16,fp16}``."""
    p.add_argument("--device", default=default_device, help=f"cpu, cuda[:i] or auto (default: {default_device})")
    p.add_argument("--quick", action="store_true", help=quick_help)
    p.add_argument("--batch-size", type=int, default=None, help="batch size (default: per benchmark and device)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per configuration (default: per benchmark)")
    p.add_argument("--warmup", type=int, default=None, help="untimed warm-up steps (default: 3 GPU, 1 CPU)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: number of cores)")
    p.add_argument("--out", type=Path, default=None,
                   help=out_help or f"result JSON (default: benchmarks/results/{benchmark}[-<gpu>].json)")
    p.add_argument("--no-write", action="store_true", help="print the table only")
    p.add_argument(
        "--wait-idle", type=float, default=0.0, metavar="SECONDS",
        help="before timing, wait up to SECONDS for the machine to be >= 85%% idle (default 0)",
    )
    p.add_argument(
        "--retries", type=int, default=0,
        help="re-time (up to this many more times) when other processes took more than --max-foreign of the "
        "CPU during the timed steps; the least disturbed attempt is kept (default 0)",
    )
    p.add_argument("--max-foreign", type=float, default=0.15, help="see --retries (default 0.15)")
    if amp:
        p.add_argument("--amp", choices=sorted(AMP_DTYPES), default=None,
                       help="autocast forward and loss to this dtype (CUDA; bf16 also on CPU)")
    return p


def amp_context(device: torch.device, amp: str | None) -> contextlib.AbstractContextManager[Any]:
    """``torch.autocast`` for ``amp`` in :data:`AMP_DTYPES` (None: no autocast)."""
    if amp is None:
        return contextlib.nullcontext()
    if amp not in AMP_DTYPES:
        raise ValueError(f"--amp must be one of {sorted(AMP_DTYPES)}, got {amp!r}")
    return torch.autocast(device_type=device.type, dtype=AMP_DTYPES[amp])


def make_batch(
    batch: int, shape: Sequence[int], num_classes: int, device: torch.device, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed random batch ``x: [B, *shape]``, ``y: [B]`` (same values on every device)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, *shape, generator=g).to(device)
    y = torch.randint(0, num_classes, (batch,), generator=g).to(device)
    return x, y


def backbone_train_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    T: int,
    *,
    reset: Callable[[torch.nn.Module], None] | None = None,
    amp: str | None = None,
) -> Callable[[], None]:
    """One BPTT training step of a bare backbone as the methods run it: state reset, direct encoding
    ``x.unsqueeze(0).expand(T, ...)``, cross-entropy on the mean output over T, backward, optimiser step.

    ``reset`` clears the network's state (default: ``lightning_snn.neurons.reset_states``).
    """
    if reset is None:
        from lightning_snn.neurons import reset_states as reset
    device = x.device

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        reset(model)
        with amp_context(device, amp):
            out = model(x.unsqueeze(0).expand(T, *x.shape))
            loss = torch.nn.functional.cross_entropy(out.float().mean(0), y)
        loss.backward()
        optimizer.step()

    return step


# --------------------------------------------------------------------------------------------- output
def write_results(
    records: list[dict[str, Any]],
    device: torch.device,
    path: str | os.PathLike[str],
    **extra: Any,
) -> Path:
    """Write the benchmark JSON (``device``, ``torch``, ``created``, ``records`` + ``extra`` keys)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload: dict[str, Any] = {
        "device": describe_device(device),
        "torch": torch.__version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        **extra,
        "records": records,
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, allow_nan=True) + "\n")
    tmp.replace(path)
    return path


def format_bytes(n: float | None) -> str:
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def format_table(rows: list[dict[str, Any]], columns: list[tuple[str, str, Callable[[Any], str]]]) -> str:
    """Plain-text table: ``columns`` is ``(key, header, formatter)``."""
    cells = [[fmt(row.get(key)) for key, _, fmt in columns] for row in rows]
    headers = [h for _, h, _ in columns]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.rjust(w) for h, w in zip(headers, widths))
    sep = "  ".join("-" * w for w in widths)
    body = ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
    return "\n".join([line, sep, *body])
