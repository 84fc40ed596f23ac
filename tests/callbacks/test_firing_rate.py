"""FiringRateMonitor: per-layer spike rates over a validation epoch equal a direct count."""
import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from lightning_snn.callbacks import FiringRateMonitor
from lightning_snn.methods import BPTT
from lightning_snn.neurons import BaseNode


def test_rates_match_a_direct_count(tmp_path):
    torch.manual_seed(0)
    model = BPTT(backbone="mnistnet", num_classes=10, input_shape=(1, 8, 8), T=3,
                 backbone_kwargs={"channels": [4, 8], "hidden": 16})
    x = torch.randn(10, 1, 8, 8) * 2
    y = torch.randint(0, 10, (10,))
    loader = DataLoader(TensorDataset(x, y), batch_size=4)  # 3 batches, the last one partial

    # direct count with forward hooks
    totals: dict[str, list[float]] = {}
    hooks = [m.register_forward_hook(lambda mod, i, o, n=n: totals.setdefault(n, []).append((o.sum().item(), o.numel())))
             for n, m in model.named_modules() if isinstance(m, BaseNode)]
    model.eval()
    with torch.no_grad():
        for xb, _ in loader:
            model(xb)
    for h in hooks:
        h.remove()
    expected = {n: sum(s for s, _ in v) / sum(c for _, c in v) for n, v in totals.items()}

    monitor = FiringRateMonitor()
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        callbacks=[monitor], default_root_dir=tmp_path)
    trainer.validate(model, loader)
    assert monitor.last_rates.keys() == expected.keys() and len(expected) == 6
    for name, rate in expected.items():
        assert abs(monitor.last_rates[name] - rate) < 1e-6
        assert abs(float(trainer.callback_metrics[f"val/firing_rate/{name}"]) - rate) < 1e-6
    mean = sum(expected.values()) / len(expected)
    assert abs(float(trainer.callback_metrics["val/firing_rate"]) - mean) < 1e-6
    assert not any(m.record_rate for m in model.modules() if isinstance(m, BaseNode))  # off outside eval
