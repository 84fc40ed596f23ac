"""The notebooks in notebooks/ run top to bottom (nbclient, a kernel on this interpreter) in fast mode, and
are stored without outputs."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
KERNEL = "lightning-snn-tests"


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory) -> Path:
    """A kernelspec that starts ipykernel on the interpreter running the tests (not whatever `python` is)."""
    base = tmp_path_factory.mktemp("jupyter")
    spec = base / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "lightning-snn tests",
        "language": "python",
    }))
    return base


def test_there_are_notebooks():
    assert {p.name for p in NOTEBOOKS} >= {"01_quickstart.ipynb", "02_methods_compared.ipynb", "03_neuromorphic_data.ipynb"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_clean(path: Path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{path.name}: cell {i} has stored outputs; clear them"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path: Path, kernel_env: Path, monkeypatch, tmp_path):
    from nbclient import NotebookClient

    monkeypatch.setenv("JUPYTER_PATH", str(kernel_env))
    monkeypatch.setenv("LIGHTNING_SNN_NOTEBOOK_FAST", "1")  # the notebooks cut their epochs
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("PYTHONWARNINGS", "ignore")
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # everything the notebooks write lands here

    def written() -> set[Path]:
        """Files a notebook could leave in the repository by mistake (logs, figures, data)."""
        found = set()
        for folder in (ROOT, ROOT / "notebooks"):
            for pattern in ("lightning_logs", "runs", "*.png", "*.csv", "NMNIST", "synthetic"):
                found.update(folder.glob(pattern))
        return found

    before = written()
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, kernel_name=KERNEL, timeout=300, resources={"metadata": {"path": str(ROOT)}})
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    assert written() <= before, f"{path.name} wrote into the repository: {sorted(written() - before)}"
