"""Does SAC learn as well in bfloat16 as in float32? Both, side by side, on several envs and seeds.

    python bench/bench_precision.py                                  # 3 envs x 3 seeds x 2 precisions
    python bench/bench_precision.py --envs Pendulum-v1 --seeds 0 --jobs 1

Every run is SAC with this suite's default settings (``Config().sac``) except ``sac.precision``,
one torch thread, scored by the mean deterministic return of ``--eval-episodes`` episodes on
unseen seeds at the end. ``--jobs`` runs that many at once (default 2, the benchmark VM's cores):
jobs are queued so that the float32 and bfloat16 runs of one env and seed run side by side, and
their steps/s compare under the same load.

The table has, per env and precision: each seed's return, the mean, the spread across seeds
(sample standard deviation), steps per second, and for bfloat16 its mean minus float32's with the
larger spread beside it. Where the difference is within that spread, bfloat16 "learns as well".
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import numpy as np

DEFAULT_STEPS = {"Pendulum-v1": 15_000, "InvertedPendulum-v5": 20_000, "HalfCheetah-v5": 50_000}


def run(env_id: str, steps: int, seed: int, precision: str, eval_episodes: int) -> dict:
    """One SAC run (in a worker process): final evaluation return and training steps/s."""
    import gymnasium as gym
    import torch

    from robot_training.config import Config
    from robot_training.policies.sac import SAC
    from robot_training.utils.data_collection import evaluate_policy

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    cfg = Config().replace(sac=dict(precision=precision, buffer_size=max(steps, 1)))
    env = gym.make(env_id)
    algo = SAC(env.observation_space, env.action_space, cfg, env=env_id, seed=seed)
    t = time.perf_counter()
    algo.learn(steps)
    sps = steps / (time.perf_counter() - t)
    ret = evaluate_policy(algo, env_id, eval_episodes, 10_000 + seed)
    return {"env": env_id, "seed": seed, "precision": precision, "return": float(ret), "sps": float(sps)}


def spread(values) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--envs", nargs="+", default=list(DEFAULT_STEPS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=None,
                   help="env steps of every run (default per env: "
                        + ", ".join(f"{k} {v}" for k, v in DEFAULT_STEPS.items()) + ")")
    p.add_argument("--precisions", nargs="+", default=["float32", "bfloat16"],
                   choices=["float32", "bfloat16", "auto"])
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--jobs", type=int, default=2, help="runs at once, one torch thread each")
    args = p.parse_args(argv)
    if args.jobs < 1:
        p.error("--jobs must be at least 1")
    from robot_training.utils.precision import cpu_has_native_bfloat16

    jobs = [(env_id, args.steps or DEFAULT_STEPS.get(env_id, 20_000), seed, prec)
            for env_id in args.envs for seed in args.seeds for prec in args.precisions]
    print(f"{len(jobs)} runs, {args.jobs} at a time; CPU computes bfloat16 natively: {cpu_has_native_bfloat16()}",
          flush=True)
    results = []
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(run, *job, args.eval_episodes) for job in jobs]
        for fut in futures:
            r = fut.result()
            results.append(r)
            print(f"[{time.perf_counter() - t0:7.0f} s] {r['env']} seed {r['seed']} {r['precision']}: "
                  f"return {r['return']:.1f}, {r['sps']:.0f} steps/s", flush=True)

    print()
    print(f"{'env':<22}{'steps':>8}  {'precision':<10}{'returns by seed':>28}{'mean':>10}{'spread':>9}"
          f"{'steps/s':>9}  bf16 - f32")
    for env_id in args.envs:
        steps = args.steps or DEFAULT_STEPS.get(env_id, 20_000)
        by_prec = {prec: [r for r in results if r["env"] == env_id and r["precision"] == prec] for prec in args.precisions}
        base = by_prec.get("float32")
        for prec, rows in by_prec.items():
            rets = [r["return"] for r in rows]
            mean = float(np.mean(rets))
            note = ""
            if base and prec != "float32":
                base_rets = [r["return"] for r in base]
                diff = mean - float(np.mean(base_rets))
                noise = max(spread(rets), spread(base_rets))
                note = f"{diff:+.1f} (spread {noise:.1f}: {'within' if abs(diff) <= noise else 'OUTSIDE'})"
            print(f"{env_id:<22}{steps:>8}  {prec:<10}{' '.join(f'{x:.0f}' for x in rets):>28}{mean:>10.1f}"
                  f"{spread(rets):>9.1f}{statistics.median(r['sps'] for r in rows):>9.0f}  {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
