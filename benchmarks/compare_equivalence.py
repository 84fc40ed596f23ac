"""Equivalence of ``benchmarks/compare.py`` on the bench harness with the script it replaced (commit 2781fb5).

Both versions run the same comparison (same network, methods, T, batch, steps) in alternating order for a few
rounds (``OMP_NUM_THREADS=1``, one thread each); per (method, T) the ratio of their ``ratio_vs_ann_x_T`` (new /
old, median over rounds) should be 1.0 within run noise, and the memory figures, computed by the same
accounting, equal. Writes ``benchmarks/results/compare_equivalence.json``::

    uv run python benchmarks/compare_equivalence.py --rounds 3
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from lightning_snn.bench.harness import RESULTS_DIR, write_results  # noqa: E402

BASE = "2781fb5"
ARGS = ["--device", "cpu", "--threads", "1", "--width", "0.25", "--batch-size", "8", "--steps", "3", "--depths", "1",
        "--T", "2", "4", "--methods", "ann", "bptt", "bptt_bits", "dsr", "rate_bp_m", "rate_bp_s", "revsnn",
        "revsnn_twin", "sltt", "spikingjelly"]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="compare_equiv_"))
    old_pkg = tmp / "old" / "benchmarks"
    old_pkg.mkdir(parents=True)
    for name in ("__init__.py", "common.py", "compare.py"):
        text = subprocess.run(["git", "show", f"{BASE}:benchmarks/{name}"], cwd=ROOT, check=True,
                              capture_output=True, text=True).stdout
        (old_pkg / name).write_text(text)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs: dict[str, list[dict]] = {"old": [], "new": []}
    for r in range(args.rounds):
        for which in (("old", "new") if r % 2 == 0 else ("new", "old")):
            out = tmp / f"{which}{r}.json"
            cwd = old_pkg.parent if which == "old" else ROOT
            run_env = {**env, "PYTHONPATH": str(old_pkg.parent)} if which == "old" else env
            subprocess.run([sys.executable, "-m", "benchmarks.compare", *ARGS, "--out", str(out)], cwd=cwd,
                           env=run_env, check=True, stdout=subprocess.DEVNULL)
            runs[which].append({(x["method"], x["T"]): x for x in json.loads(out.read_text())["records"]})
            print(f"round {r}: {which} done", flush=True)
    records = []
    for key in sorted(runs["new"][0]):
        method, T = key
        if method == "ann":
            continue
        pair = [(n[key], o[key]) for n, o in zip(runs["new"], runs["old"]) if key in n and key in o]
        rr = [n["ratio_vs_ann_x_T"] / o["ratio_vs_ann_x_T"] for n, o in pair]
        new, old = pair[0]
        records.append({
            "method": method, "backbone": new["backbone"], "T": T, "batch_size": new["batch_size"],
            "step_time_s": statistics.median(n["step_time_s"] for n, _ in pair),
            "peak_mem_bytes": new["peak_mem_bytes"], "mem_source": new["mem_source"],
            "ratio_of_ratios_vs_ann_x_T": statistics.median(rr), "ratio_of_ratios_per_round": rr,
            "new_ratio_vs_ann_x_T": [n["ratio_vs_ann_x_T"] for n, _ in pair],
            "old_ratio_vs_ann_x_T": [o["ratio_vs_ann_x_T"] for _, o in pair],
            "peak_mem_new_over_old": new["peak_mem_bytes"] / old["peak_mem_bytes"],
            "saved_bytes_new_over_old": new["saved_tensor_bytes"] / old["saved_tensor_bytes"],
        })
        print(f"{method:13s} T={T}: ratio of ratios {statistics.median(rr):.3f} ({', '.join(f'{v:.2f}' for v in rr)}), "
              f"peak mem new/old {records[-1]['peak_mem_new_over_old']:.4f}")
    import torch

    write_results(records, torch.device("cpu"), RESULTS_DIR / "compare_equivalence.json", benchmark="compare_equivalence",
                  base=BASE, args=ARGS, rounds=args.rounds,
                  overall_median_ratio_of_ratios=statistics.median(r["ratio_of_ratios_vs_ann_x_T"] for r in records))


if __name__ == "__main__":
    main()
