"""Benchmark robot_training's SAC, PPO and BC against Stable-Baselines3, side by side.

    python bench/bench_policies.py                       # SAC Pendulum-v1 20k, PPO CartPole-v1 100k, 3 seeds
    python bench/bench_policies.py --seeds 0 --sac-steps 5000 --algos sac

Both libraries get the same env, step budget, network sizes, batch sizes, update counts
and one CPU thread. Reported: final deterministic evaluation return, env steps per second
of training (env stepping + updates), and the ratio to SB3. BC is trained on 20 episodes
of the (median-seed) SAC Pendulum expert and scored against it.

Stable-Baselines3 is only a benchmark dependency, never a runtime one:
    pip install stable-baselines3==2.9.2
(``--skip-sb3`` runs this suite alone.)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import gymnasium as gym
import numpy as np
import torch

from robot_training.config import Config
from robot_training.policies.ppo import PPO
from robot_training.policies.sac import SAC
from robot_training.supervised_learning.bc import BehavioralCloning
from robot_training.utils.data_collection import DataCollector, evaluate_policy
from robot_training.utils.precision import resolve_precision

SAC_ENV, PPO_ENV = "Pendulum-v1", "CartPole-v1"
# shared hyperparameters (SB3 rl-zoo's CartPole PPO settings; CleanRL-like SAC)
SAC_HP = dict(hidden=256, batch=256, learning_starts=1000, gamma=0.99, tau=0.005, lr=3e-4)
PPO_HP = dict(hidden=64, n_envs=8, n_steps=32, batch=256, epochs=20, gamma=0.98, gae_lambda=0.8, lr=1e-3,
              clip=0.2, ent=0.0)


def evaluate(policy, env_id: str, episodes: int, seed: int = 10_000) -> float:
    """Mean deterministic return; ``policy`` has ``predict`` (both libraries) or is callable."""
    return evaluate_policy(policy, env_id, episodes, seed)


# ------------------------------------------------------------------ this suite
def ours_sac(steps: int, seed: int, precision: str = "float32"):
    cfg = Config().replace(sac=dict(hidden_dim=SAC_HP["hidden"], batch_size=SAC_HP["batch"], precision=precision,
                                    learning_starts=SAC_HP["learning_starts"], gamma=SAC_HP["gamma"],
                                    tau=SAC_HP["tau"], policy_lr=SAC_HP["lr"], q_lr=SAC_HP["lr"],
                                    buffer_size=steps))
    torch.manual_seed(seed)
    env = gym.make(SAC_ENV)
    algo = SAC(env.observation_space, env.action_space, cfg, env=SAC_ENV, seed=seed)
    t = time.perf_counter()
    algo.learn(steps)
    return algo, steps / (time.perf_counter() - t)


def ours_ppo(steps: int, seed: int):
    h = PPO_HP
    cfg = Config().replace(policy=dict(hidden_dim=h["hidden"], num_envs=h["n_envs"], num_steps=h["n_steps"],
                                       num_minibatches=h["n_envs"] * h["n_steps"] // h["batch"],
                                       update_epochs=h["epochs"], gamma=h["gamma"], gae_lambda=h["gae_lambda"],
                                       learning_rate=h["lr"], ppo_clip=h["clip"], ent_coef=h["ent"],
                                       norm_obs=False, anneal_lr=True))
    torch.manual_seed(seed)
    env = gym.make(PPO_ENV)
    algo = PPO(env.observation_space, env.action_space, cfg, env=PPO_ENV, seed=seed)
    t = time.perf_counter()
    algo.learn(steps)
    return algo, algo.num_timesteps / (time.perf_counter() - t)


# ------------------------------------------------------------------ Stable-Baselines3
def sb3_sac(steps: int, seed: int):
    from stable_baselines3 import SAC as SB3SAC

    model = SB3SAC("MlpPolicy", SAC_ENV, learning_rate=SAC_HP["lr"], buffer_size=steps,
                   learning_starts=SAC_HP["learning_starts"], batch_size=SAC_HP["batch"], tau=SAC_HP["tau"],
                   gamma=SAC_HP["gamma"], train_freq=1, gradient_steps=1,
                   policy_kwargs=dict(net_arch=[SAC_HP["hidden"]] * 2), seed=seed, device="cpu")
    t = time.perf_counter()
    model.learn(steps)
    return model, steps / (time.perf_counter() - t)


def sb3_ppo(steps: int, seed: int):
    from stable_baselines3 import PPO as SB3PPO
    from stable_baselines3.common.env_util import make_vec_env

    h = PPO_HP
    env = make_vec_env(PPO_ENV, n_envs=h["n_envs"], seed=seed)
    model = SB3PPO("MlpPolicy", env, learning_rate=lambda f: f * h["lr"], n_steps=h["n_steps"],
                   batch_size=h["batch"], n_epochs=h["epochs"], gamma=h["gamma"], gae_lambda=h["gae_lambda"],
                   clip_range=h["clip"], ent_coef=h["ent"],
                   policy_kwargs=dict(net_arch=dict(pi=[h["hidden"]] * 2, vf=[h["hidden"]] * 2)),
                   seed=seed, device="cpu")
    t = time.perf_counter()
    model.learn(steps)
    return model, steps / (time.perf_counter() - t)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--sac-steps", type=int, default=20_000)
    p.add_argument("--ppo-steps", type=int, default=100_000)
    p.add_argument("--algos", default="sac,ppo,bc", help="comma-separated subset of sac,ppo,bc")
    p.add_argument("--sb3-seeds", type=int, default=None, help="run SB3 on only the first N seeds (time)")
    p.add_argument("--skip-sb3", action="store_true")
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--bc-episodes", type=int, default=20)
    p.add_argument("--sac-precision", nargs="+", choices=["float32", "bfloat16", "auto"], default=["float32", "auto"],
                   help="compute precision(s) of this suite's SAC updates (sac.precision), a row each; "
                        "SB3 runs once")
    p.add_argument("--sb3-threads", type=int, default=1,
                   help="torch threads while SB3 trains: 1 (same as this suite, the default) or 0 for "
                        "PyTorch's default, which is what an SB3 user gets")
    args = p.parse_args(argv)
    default_threads = torch.get_num_threads()
    sb3_threads = args.sb3_threads or default_threads
    torch.set_num_threads(1)
    algos = [a.strip() for a in args.algos.split(",") if a.strip()]
    use_sb3 = not args.skip_sb3
    if use_sb3:
        try:
            import stable_baselines3  # noqa: F401
        except ImportError:
            print("stable-baselines3 is not installed (benchmark only): pip install stable-baselines3==2.9.2 "
                  "-- or pass --skip-sb3", file=sys.stderr)
            return 2
    sb3_seeds = args.seeds[: args.sb3_seeds] if args.sb3_seeds else args.seeds
    results = {}  # (library, algo) -> list of (seed, return, sps)
    experts = {}
    jobs = []
    if "sac" in algos or "bc" in algos:
        for i, precision in enumerate(args.sac_precision):
            jobs.append(("sac" if i == 0 else f"sac {precision}", SAC_ENV, args.sac_steps,
                         lambda steps, seed, precision=precision: ours_sac(steps, seed, precision),
                         sb3_sac if i == 0 else None, False))
    if "ppo" in algos:
        jobs.append(("ppo", PPO_ENV, args.ppo_steps, ours_ppo, sb3_ppo, True))
    for name, env_id, steps, ours, theirs, discrete in jobs:
        for seed in args.seeds:
            algo, sps = ours(steps, seed)
            ret = evaluate(algo, env_id, args.eval_episodes)
            results.setdefault(("robot_training", name), []).append((seed, ret, sps))
            experts.setdefault(name, []).append((ret, algo))
            print(f"[robot_training] {name} seed {seed}: return {ret:.1f}, {sps:.0f} steps/s", flush=True)
            if use_sb3 and theirs is not None and seed in sb3_seeds:
                torch.set_num_threads(sb3_threads)
                try:
                    model, sps = theirs(steps, seed)
                finally:
                    torch.set_num_threads(1)
                ret = evaluate(model, env_id, args.eval_episodes)
                results.setdefault(("sb3", name), []).append((seed, ret, sps))
                print(f"[sb3]            {name} seed {seed}: return {ret:.1f}, {sps:.0f} steps/s", flush=True)
    bc_row = None
    if "bc" in algos:
        ranked = sorted(experts["sac"], key=lambda x: x[0])
        expert_ret, expert = ranked[len(ranked) // 2]  # the median seed's policy
        collector = DataCollector(SAC_ENV, seed=123)
        demos = collector.collect_episodes(args.bc_episodes, policy=expert)
        demo_ret = float(np.mean([d.episode_return for d in demos]))
        bc = BehavioralCloning(Config().replace(bc=dict(num_epochs=100)), seed=0)
        t = time.perf_counter()
        bc.learn(demos)
        bc_time = time.perf_counter() - t
        bc_ret = evaluate(bc, SAC_ENV, args.eval_episodes)
        random_ret = evaluate(lambda o: np.random.uniform(-2, 2, size=1).astype(np.float32), SAC_ENV,
                              args.eval_episodes)
        score = (bc_ret - random_ret) / (demo_ret - random_ret)
        bc_row = (demo_ret, bc_ret, random_ret, score, bc_time)

    print()
    print(f"torch threads: robot_training 1, SB3 {sb3_threads}; robot_training SAC precision "
          f"{', '.join(args.sac_precision)} (auto is {resolve_precision('auto', 'cpu')} on this CPU)")
    print(f"{'algorithm':<30}{'library':<16}{'seeds':<10}{'return (median)':>16}{'returns':>28}"
          f"{'steps/s':>10}{'ratio vs SB3':>14}")
    for name, env_id, steps, _ours, theirs, _discrete in jobs:
        mine = results.get(("robot_training", name), [])
        base = results.get(("sb3", name.split()[0]), [])  # "sac bfloat16" compares with SB3's "sac"
        base_sps = statistics.median([r[2] for r in base]) if base else None
        for lib, rows in (("robot_training", mine), ("sb3", base if theirs is not None else [])):
            if not rows:
                continue
            med_ret = statistics.median([r[1] for r in rows])
            med_sps = statistics.median([r[2] for r in rows])
            ratio = f"{med_sps / base_sps:.2f}x" if base_sps and lib == "robot_training" else ""
            rets = " ".join(f"{r[1]:.0f}" for r in rows)
            print(f"{name + ' ' + env_id + ' ' + str(steps // 1000) + 'k':<30}{lib:<16}"
                  f"{','.join(str(r[0]) for r in rows):<10}{med_ret:>16.1f}{rets:>28}{med_sps:>10.0f}{ratio:>14}")
    if bc_row is not None:
        demo_ret, bc_ret, random_ret, score, bc_time = bc_row
        print(f"\nBC on {args.bc_episodes} episodes of the median SAC expert ({SAC_ENV}): expert {demo_ret:.1f}, "
              f"BC {bc_ret:.1f}, random {random_ret:.1f}; normalised score (BC-random)/(expert-random) = "
              f"{score:.1%}; raw ratio expert/BC = {demo_ret / bc_ret:.1%}; {bc_time:.0f}s training")
    return 0


if __name__ == "__main__":
    sys.exit(main())
