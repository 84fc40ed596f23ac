"""Test-session settings shared by every test module.

The default run is split over the machine's cores by pytest-xdist (``-n auto`` in pyproject.toml). Each
worker then gets an equal share of the cores for torch's intra-op pool (and so do the processes a test
starts, through OMP_NUM_THREADS), instead of every worker spawning one thread per core and the workers
fighting over them. ``pytest -n 0`` runs everything in one process with torch's default pool.
"""
from __future__ import annotations

import os

import torch


def _share_cores() -> None:
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)
    if workers < 2:
        return
    threads = max(1, (os.cpu_count() or 1) // workers)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)


_share_cores()
