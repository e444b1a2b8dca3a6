"""Where one SAC update's time goes on this CPU, and what the optimiser implementation costs.

    python bench/bench_updates.py            # about 1 minute, one torch thread

Three tables:
1. The CPU's matrix-multiply rate (GFLOP/s) at SAC's layer shape (twin 256-wide layers, batch 256),
   in float32 and bfloat16: the ceiling every library's SAC update runs into.
2. SAC ``train_step`` (this suite's defaults: 256 x 2 layers, batch 256, actor every 2nd update)
   in float32 and bfloat16, with Adam's ``foreach`` and ``fused`` implementations: ms per update,
   the matrix FLOPs of one update (``torch.utils.flop_counter``), the floor those FLOPs set at the
   measured rate, and the profiler's split of the time into matrix products, the optimiser
   steps and the rest (element-wise ops, autograd, Python).
3. One Adam step over SAC's twin Q networks and over PPO's default actor-critic, per implementation.

All numbers come from the same process, measured one after another: compare them within a run.
"""

from __future__ import annotations

import argparse
import sys
import time

import gymnasium as gym
import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from robot_training.policies.ppo import PPO
from robot_training.policies.sac import SAC

MATMUL_OPS = ("aten::bmm", "aten::baddbmm", "aten::addmm", "aten::mm")


def timed(fn, repeats: int, warmup: int = 20) -> float:
    """Mean seconds per call, after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t) / repeats


def matmul_rate(dtype: torch.dtype, repeats: int) -> float:
    a, b = torch.randn(2, 256, 256, dtype=dtype), torch.randn(2, 256, 256, dtype=dtype)
    return 2 * 2 * 256 ** 3 / timed(lambda: torch.bmm(a, b), repeats) / 1e9


def sac_learner(precision: str, optimizer: str) -> SAC:
    env = gym.make("Pendulum-v1")
    torch.manual_seed(0)
    sac = SAC(env.observation_space, env.action_space, seed=0)
    sac.cfg.precision = precision
    kind = {"fused": True} if optimizer == "fused" else {"foreach": True}
    sac.q_optimizer = torch.optim.Adam(sac.qf.parameters(), lr=sac.cfg.q_lr, **kind)
    sac.actor_optimizer = torch.optim.Adam(sac.actor.parameters(), lr=sac.cfg.policy_lr, **kind)
    sac.alpha_optimizer = torch.optim.Adam([sac.log_alpha], lr=sac.cfg.q_lr, **kind)
    for _ in range(2 * sac.cfg.batch_size):
        o, a = env.observation_space.sample(), env.action_space.sample()
        sac.replay.add(o, a, 0.0, env.observation_space.sample(), False)
    return sac


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--updates", type=int, default=300, help="SAC updates timed per variant")
    args = p.parse_args(argv)
    torch.set_num_threads(1)

    rates = {"float32": matmul_rate(torch.float32, 300), "bfloat16": matmul_rate(torch.bfloat16, 300)}
    print("1. bmm (2 x 256 x 256) @ (2 x 256 x 256), one thread")
    for name, rate in rates.items():
        print(f"   {name:<10}{rate:8.0f} GFLOP/s")

    print("\n2. SAC train_step (Pendulum-v1 shapes, this suite's defaults), one thread")
    print(f"   {'precision':<10}{'Adam':<9}{'ms/update':>10}{'MFLOP':>8}{'floor ms':>10}"
          f"{'matmul':>8}{'Adam':>7}{'rest':>7}")
    for precision in ("float32", "bfloat16"):
        for optimizer in ("foreach", "fused"):
            sac = sac_learner(precision, optimizer)
            batch = sac.replay.sample(sac.cfg.batch_size)
            seconds = timed(lambda: sac.train_step(batch), args.updates)
            counter = FlopCounterMode(display=False)
            with counter:
                sac.train_step(batch)
                sac.train_step(batch)  # one with and one without the (every 2nd) actor update
            mflop = counter.get_total_flops() / 2 / 1e6
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(50):
                    sac.train_step(batch)
            events = prof.key_averages()
            total = sum(e.self_cpu_time_total for e in events)
            matmul = sum(e.self_cpu_time_total for e in events if e.key in MATMUL_OPS)
            adam = sum(e.cpu_time_total for e in events if e.key.startswith("Optimizer.step"))
            adam_self = sum(e.self_cpu_time_total for e in events if e.key.startswith("Optimizer.step"))
            # the optimiser's time is its op's total; its kernels' self time is not counted twice
            adam_kernels = adam - adam_self
            rest = total - matmul - adam_kernels
            floor_ms = mflop / rates[precision]  # MFLOP / (GFLOP/s) = ms
            print(f"   {precision:<10}{optimizer:<9}{seconds * 1e3:>10.2f}{mflop:>8.0f}{floor_ms:>10.2f}"
                  f"{matmul / total:>8.0%}{adam_kernels / total:>7.0%}{rest / total:>7.0%}")

    print("\n3. One Adam step, one thread (gradients present)")
    env = gym.make("Pendulum-v1")
    sac = SAC(env.observation_space, env.action_space, seed=0)
    cartpole = gym.make("CartPole-v1")
    ppo = PPO(cartpole.observation_space, cartpole.action_space, seed=0)
    print(f"   {'parameters':<44}{'loop µs':>9}{'foreach µs':>12}{'fused µs':>10}")
    for name, module in (("SAC twin Q (256 x 2)", sac.qf), ("PPO actor-critic (default)", ppo.model)):
        params = [q for q in module.parameters() if q.requires_grad]
        for q in params:
            q.grad = torch.randn_like(q)
        cells = []
        for kind in ({"foreach": False}, {"foreach": True}, {"fused": True}):
            opt = torch.optim.Adam(params, lr=1e-4, **kind)
            cells.append(timed(opt.step, 500) * 1e6)
        n = sum(q.numel() for q in params)
        print(f"   {name + f' ({n:,} weights)':<44}{cells[0]:>9.0f}{cells[1]:>12.0f}{cells[2]:>10.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
