"""utils/optim.adam: fused on the CPU, and the same update as the multi-tensor Adam."""

import copy

import torch

from robot_training.utils.optim import adam


def test_adam_is_fused_on_the_cpu_and_updates_as_foreach_adam():
    torch.manual_seed(0)
    one = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))
    two, initial = copy.deepcopy(one), copy.deepcopy(one)
    fused = adam(one.parameters(), lr=1e-2, eps=1e-5, weight_decay=0.01)
    reference = torch.optim.Adam(two.parameters(), lr=1e-2, eps=1e-5, weight_decay=0.01, foreach=True)
    assert fused.param_groups[0]["fused"] is True
    for _ in range(20):
        x = torch.randn(32, 5)
        for model, opt in ((one, fused), (two, reference)):
            opt.zero_grad()
            model(x).pow(2).mean().backward()
            opt.step()
    with torch.no_grad():
        apart = max(float((a - b).abs().max()) for a, b in zip(one.parameters(), two.parameters()))
        moved = min(float((a - b).abs().max()) for a, b in zip(one.parameters(), initial.parameters()))
    assert apart < 1e-5 and moved > 1e-3, (apart, moved)


def test_a_parameter_the_fused_kernel_cannot_take_falls_back_to_foreach():
    meta = torch.nn.Parameter(torch.empty(3, device="meta"))
    opt = adam([meta], lr=1e-3)
    assert opt.param_groups[0]["foreach"] is True and not opt.param_groups[0].get("fused")
