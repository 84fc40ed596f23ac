"""Every check that needs a GPU, in one run of about 8 minutes on one H100 / H200, in order of priority.

1. the CUDA tests: neuron backends (``triton``, ``inductor`` on CUDA) against the ``torch`` reference,
   and the saved-spike compression on CUDA tensors;
2. the method comparison in fp32 and under bf16 autocast (``results/compare-<gpu>.json``,
   ``results/compare_bf16-<gpu>.json``);
3. spiking ResNet-19 at T=4, batch 128: images/s (``results/compare_resnet19-cifar10-<gpu>.json``);
4. IDE against its BPTT twin at full CIFARNet-F width (``results/ide-<gpu>.json``, the ``ide`` preset).

Every part measures through ``lightning_snn.bench`` (``compare.py`` and ``presets.py`` are presets over it).

Every part runs in its own process under its own time limit, so a slow part cannot eat the others' time;
the suite carries on after a failure and exits non-zero if any part failed. With ``--out DIR`` (or the
``OUT`` environment variable) the result files of this GPU and the log are copied to DIR. ``--dry-run``
checks every part's arguments against its benchmark's parser without running anything (the tests do this
on CPU, so a typo cannot waste GPU time). Run from the repository root::

    uv run python -m benchmarks.gpu_suite
    python3 -m benchmarks.gpu_suite --out "$OUT"     # on a machine whose python3 has the stack

Wheels of pure-Python packages missing on the GPU machine (``spikingjelly``, ``loguru``) can be put in
``./.whl`` and installed first with
``python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site``.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

#: the sweep of both comparison runs: the CPU figures' T values and depths, 10 timed steps
_COMPARE = ["--device", "cuda", "--T", "2", "4", "8", "--depths", "1", "2", "--steps", "10"]


@dataclass(frozen=True)
class Part:
    label: str
    limit_s: int
    module: str  # "pytest" or a benchmark module
    args: tuple[str, ...]


def parts(tag: str) -> list[Part]:
    """The suite for a GPU whose result-file tag is ``tag`` (``lightning_snn.bench.harness.device_tag``)."""
    return [
        Part("CUDA tests", 120, "pytest",
             ("-q", "-p", "no:cacheprovider", "tests/neurons/test_backends.py", "tests/neurons/test_compression.py")),
        Part("compare fp32", 150, "benchmarks.compare", (*_COMPARE, "--out", f"benchmarks/results/compare-{tag}.json")),
        Part("compare bf16", 150, "benchmarks.compare",
             (*_COMPARE, "--amp", "bf16", "--out", f"benchmarks/results/compare_bf16-{tag}.json")),
        Part("ResNet-19, T=4, batch 128", 60, "benchmarks.compare",
             ("--device", "cuda", "--preset", "resnet19-cifar10",
              "--methods", "bptt", "bptt_bits", "bptt_inductor", "bptt_triton", "spikingjelly")),
        Part("IDE, CIFARNet-F", 60, "benchmarks.presets", ("ide", "--device", "cuda")),
    ]


def check(part: Part) -> None:
    """Parse the part's arguments with its benchmark's own parser (``SystemExit`` on a bad argument)."""
    if part.module == "pytest":
        for arg in part.args:
            if arg.startswith("tests/") and not (ROOT / arg).exists():
                raise SystemExit(f"{part.label}: {arg} does not exist")
        return
    import importlib

    importlib.import_module(part.module).parse_args(list(part.args))


def run_part(part: Part, python: str, log) -> bool:
    cmd = [python, "-m", part.module, *part.args]
    header = f"=== {part.label} (limit {part.limit_s} s): {' '.join(cmd)}"
    print(header, flush=True)
    log.write(header + "\n")
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=part.limit_s, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        output, rc = proc.stdout, proc.returncode
    except subprocess.TimeoutExpired as err:
        output = err.stdout if isinstance(err.stdout, str) else (err.stdout or b"").decode(errors="replace")
        rc = "timeout"
    footer = f"=== {part.label}: exit {rc} after {time.monotonic() - start:.0f} s"
    print(output + footer, flush=True)
    log.write(output + footer + "\n")
    log.flush()
    return rc == 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dry-run", action="store_true", help="check every part's arguments; run nothing")
    p.add_argument("--only", nargs="+", default=None, help="labels (or label prefixes) of the parts to run")
    p.add_argument("--out", type=Path, default=os.environ.get("OUT") or None,
                   help="copy this GPU's result files and the log here (default: $OUT when set)")
    p.add_argument("--python", default=sys.executable, help="interpreter for the parts (default: this one)")
    args = p.parse_args(argv)

    import torch

    from lightning_snn.bench.harness import device_tag

    if args.dry_run:
        for part in parts("gpu"):
            check(part)
            print(f"ok: {part.label}")
        return 0
    if not torch.cuda.is_available():
        print("gpu_suite: no CUDA device visible to torch; nothing to run", file=sys.stderr)
        return 2
    tag = device_tag(torch.device("cuda")) or "gpu"
    print(f"gpu_suite on {torch.cuda.get_device_name()} (torch {torch.__version__}), result tag {tag!r}", flush=True)
    chosen = [q for q in parts(tag) if not args.only or any(q.label.startswith(o) for o in args.only)]
    log_path = (args.out or ROOT / "benchmarks" / "results") / f"gpu_suite-{tag}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    failed = []
    started = time.time()
    with open(log_path, "w") as log:
        for part in chosen:
            if not run_part(part, args.python, log):
                failed.append(part.label)
    if args.out:
        for f in sorted((ROOT / "benchmarks" / "results").glob(f"*-{tag}.*")):  # this run's results only
            if f.suffix in (".json", ".png") and f.stat().st_mtime >= started:
                shutil.copy2(f, args.out / f.name)
    print(f"gpu_suite: {len(chosen) - len(failed)} of {len(chosen)} parts passed" + (f"; failed: {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
