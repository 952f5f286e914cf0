"""The speed-only settings compute what the plain modules compute."""

import pytest
import torch
import torch.nn.functional as F

from benchmark.config import build_config
from benchmark.engine import fastpaths
from benchmark.engine.fastpaths import OneDNNLinearFunction, apply_fast_paths, onednn_linear_supported
from methods import METHODS

needs_onednn = pytest.mark.skipif(not onednn_linear_supported(), reason="oneDNN linear needs an AVX-512 CPU")


@needs_onednn
def test_onednn_linear_matches_linear_forward_and_backward():
    torch.manual_seed(0)
    inputs = torch.randn(4, 9, 16, requires_grad=True)
    weight = torch.randn(8, 16, requires_grad=True)
    bias = torch.randn(8, requires_grad=True)
    grad_output = torch.randn(4, 9, 8)

    def output_and_grads(linear):
        output = linear(inputs, weight, bias)
        return (output, *torch.autograd.grad(output, (inputs, weight, bias), grad_output))

    for ours, plain in zip(output_and_grads(OneDNNLinearFunction.apply), output_and_grads(F.linear)):
        torch.testing.assert_close(ours, plain, rtol=1e-5, atol=1e-5)


@needs_onednn
@pytest.mark.parametrize("method_name", ["rgmim", "byol"])
def test_fast_paths_keep_the_loss_and_the_state_dict(method_name, monkeypatch):
    monkeypatch.setattr(fastpaths, "mkl_lacks_avx512", lambda: True)  # as on AMD, whatever this CPU is
    config, _ = build_config("smoke")
    torch.manual_seed(0)
    plain = METHODS[method_name].build_pretrainer(config)
    fast = METHODS[method_name].build_pretrainer(config)
    fast.load_state_dict(plain.state_dict())
    apply_fast_paths(fast, torch.device("cpu"), config)
    assert plain.state_dict().keys() == fast.state_dict().keys()

    views = [torch.randn(8, 3, 32, 32) for _ in plain.view_specs]
    masks = (torch.rand(8, 1, 32, 32) > 0.5).float()
    losses = []
    for model in (plain, fast):
        torch.manual_seed(1)  # the same masking noise for both
        losses.append(model(views, masks)[0])
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=1e-6)


def test_onednn_linear_is_left_off_where_mkl_has_avx512_kernels(monkeypatch):
    config, _ = build_config("smoke")
    model = torch.nn.Sequential(torch.nn.Linear(4, 4))
    monkeypatch.setattr(fastpaths, "mkl_lacks_avx512", lambda: False)  # an Intel CPU
    apply_fast_paths(model, torch.device("cpu"), config)
    assert "forward" not in vars(model[0])
    monkeypatch.setattr(fastpaths, "mkl_lacks_avx512", lambda: True)
    apply_fast_paths(model, torch.device("cpu"), config)
    assert ("forward" in vars(model[0])) == onednn_linear_supported()
