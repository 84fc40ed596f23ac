"""tdBN and BN through time against a direct computation of the tdBN equations."""
import math

import pytest
import torch

from lightning_snn.neurons import BatchNormThroughTime, ThresholdDependentBatchNorm


def test_tdbn_train_mode_matches_direct_computation():
    torch.manual_seed(0)
    T, B, C, H, W = 3, 4, 5, 6, 6
    x = torch.randn(T, B, C, H, W, dtype=torch.float64) * 2 + 1
    bn = ThresholdDependentBatchNorm(C, alpha=1 / math.sqrt(2), v_threshold=0.2).double()
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
    y = bn(x)

    mean = x.mean(dim=(0, 1, 3, 4), keepdim=True)  # over T, B, H, W
    var = x.var(dim=(0, 1, 3, 4), unbiased=False, keepdim=True)
    lam = bn.weight.view(1, 1, C, 1, 1)
    beta = bn.bias.view(1, 1, C, 1, 1)
    expected = lam * (1 / math.sqrt(2)) * 0.2 * (x - mean) / torch.sqrt(var + bn.eps) + beta
    torch.testing.assert_close(y, expected)

    n = T * B * H * W
    torch.testing.assert_close(bn.running_mean, 0.1 * mean.flatten())
    torch.testing.assert_close(bn.running_var, 0.9 + 0.1 * var.flatten() * n / (n - 1))


def test_tdbn_eval_mode_uses_running_statistics():
    bn = ThresholdDependentBatchNorm(3, alpha=1.0, v_threshold=0.5).double().eval()
    bn.running_mean.copy_(torch.tensor([1.0, 2.0, 3.0]))
    bn.running_var.copy_(torch.tensor([4.0, 1.0, 0.25]))
    x = torch.randn(2, 2, 3, dtype=torch.float64)  # [T, B, C] after a linear layer
    y = bn(x)
    expected = 0.5 * (x - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps)
    torch.testing.assert_close(y, expected)


def test_tdbn_gradient_of_weight_includes_alpha_vth():
    x = torch.randn(2, 3, 4, 5, 5, dtype=torch.float64)
    bn = ThresholdDependentBatchNorm(4, alpha=0.5, v_threshold=2.0).double()
    bn(x).sum().backward()
    plain = torch.nn.BatchNorm2d(4).double()
    plain(x.flatten(0, 1)).sum().backward()
    torch.testing.assert_close(bn.weight.grad, plain.weight.grad * 1.0)  # alpha*Vth = 1 here
    bn2 = ThresholdDependentBatchNorm(4, alpha=1.0, v_threshold=0.2).double()
    y = bn2(x)
    (y * y).sum().backward()
    plain.zero_grad()
    yp = plain(x.flatten(0, 1)) * 0.2
    (yp * yp).sum().backward()
    torch.testing.assert_close(bn2.weight.grad, plain.weight.grad)


def test_bn_through_time_single_step_and_errors():
    bn = BatchNormThroughTime(3, step_mode="s").double()
    x = torch.randn(8, 3, 2, 2, dtype=torch.float64)
    torch.testing.assert_close(bn(x), torch.nn.functional.batch_norm(x, None, None, bn.weight, bn.bias, True))
    with pytest.raises(ValueError, match="expected 3 channels"):
        BatchNormThroughTime(3)(torch.randn(2, 2, 4, 5, 5))
