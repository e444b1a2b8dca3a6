"""Time to a good policy: this suite's SAC and PPO against Stable-Baselines3, each with its defaults.

    PYTHONPATH=/tmp/sb3pkg:$PYTHONPATH python bench/bench_time_to_threshold.py          # 3 tasks x 3 seeds
    python bench/bench_time_to_threshold.py --tasks sac-pendulum --seeds 0 --jobs 1

What a user of either library feels: the wall clock from ``learn`` until the policy first scores
the task's threshold, with the settings each library ships (``Config()`` here; SB3 2.9.2's
constructor defaults, ``"MlpPolicy"``, one env unless its defaults vector it). Tasks (issue "Scale
out and speed up"): SAC Pendulum-v1 to -200, PPO CartPole-v1 to 475, PPO InvertedPendulum-v5 to
950. Every ``eval_every`` env steps (SAC 500; PPO 2048, one SB3 rollout and two of this suite's,
so both are judged right after an update) the policy is scored by the mean deterministic return
of ``--eval-episodes`` episodes on fixed unseen seeds, the same seeds for both libraries; the time
spent evaluating is taken off the clock, on both sides. A run that does
not reach the threshold within the task's budget shows ``>`` its budget.

One torch thread per run. ``--jobs 2`` (the default, the benchmark VM's cores) runs this suite's
and SB3's run of one task and seed side by side, so their clocks tick under the same load; the
table's ratio is the median of this suite's times over SB3's (target: at most 1/3, floor 1/2).

Stable-Baselines3 is a benchmark dependency only: ``pip install stable-baselines3==2.9.2``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Dict, List, Optional


@dataclass(frozen=True)
class Task:
    algorithm: str
    env_id: str
    threshold: float
    budget: int
    eval_every: int


TASKS: Dict[str, Task] = {
    "sac-pendulum": Task("sac", "Pendulum-v1", -200.0, 40_000, 500),
    "ppo-cartpole": Task("ppo", "CartPole-v1", 475.0, 300_000, 2_048),
    "ppo-invpend": Task("ppo", "InvertedPendulum-v5", 950.0, 500_000, 2_048),
}
EVAL_SEED = 10_000


class Probe:
    """Scores the policy every ``eval_every`` env steps and keeps the training clock, which
    stops while it evaluates. ``__call__`` returns True once the threshold is reached."""

    def __init__(self, task: Task, episodes: int):
        self.task, self.episodes = task, episodes
        self.next_eval = task.eval_every
        self.eval_s = 0.0
        self.start = time.perf_counter()
        self.solved_at: Optional[tuple] = None  # (train seconds, env steps, return)
        self.history: List[tuple] = []

    def train_seconds(self) -> float:
        return time.perf_counter() - self.start - self.eval_s

    def __call__(self, policy, env_steps: int) -> bool:
        if self.solved_at is not None:
            return True
        if env_steps < self.next_eval:
            return False
        from robot_training.envs.collection import evaluate_policy

        trained = self.train_seconds()
        t = time.perf_counter()
        score = evaluate_policy(policy, self.task.env_id, self.episodes, EVAL_SEED)
        self.eval_s += time.perf_counter() - t
        self.history.append((trained, env_steps, score))
        while self.next_eval <= env_steps:
            self.next_eval += self.task.eval_every
        if score >= self.task.threshold:
            self.solved_at = (trained, env_steps, score)
            return True
        return False


def run_ours(task: Task, seed: int, episodes: int, sac_precision: str) -> Probe:
    import gymnasium as gym
    import torch

    from robot_training.config import Config
    from robot_training.policies.ppo import PPO
    from robot_training.policies.sac import SAC

    cfg = Config()
    if task.algorithm == "sac":
        cfg = cfg.replace(sac=dict(precision=sac_precision))
    torch.manual_seed(seed)
    env = gym.make(task.env_id)
    cls = SAC if task.algorithm == "sac" else PPO
    algo = cls(env.observation_space, env.action_space, cfg, env=task.env_id, seed=seed)
    env.close()
    probe = Probe(task, episodes)
    algo.learn(task.budget, callback=lambda a: not probe(a, a.num_timesteps))
    return probe


def run_sb3(task: Task, seed: int, episodes: int) -> Probe:
    from stable_baselines3 import PPO as SB3PPO
    from stable_baselines3 import SAC as SB3SAC
    from stable_baselines3.common.callbacks import BaseCallback

    class Callback(BaseCallback):
        # Off-policy: after every env step. On-policy: at a rollout's start, i.e. right after
        # the previous rollout's update (SB3 calls on_rollout_end before it trains).
        def _on_rollout_start(self) -> None:
            if task.algorithm == "ppo":
                probe(self.model, self.num_timesteps)

        def _on_step(self) -> bool:
            if task.algorithm == "sac":
                return not probe(self.model, self.num_timesteps)
            return probe.solved_at is None

    cls = SB3SAC if task.algorithm == "sac" else SB3PPO
    model = cls("MlpPolicy", task.env_id, seed=seed, device="cpu")
    probe = Probe(task, episodes)  # its clock starts here, after the model is built
    model.learn(task.budget, callback=Callback())
    return probe


def job(name: str, library: str, seed: int, episodes: int, sac_precision: str) -> dict:
    """One run, in a worker process."""
    import torch

    torch.set_num_threads(1)
    task = TASKS[name]
    t = time.perf_counter()
    probe = run_sb3(task, seed, episodes) if library == "sb3" else run_ours(task, seed, episodes, sac_precision)
    wall = time.perf_counter() - t
    solved = probe.solved_at
    row = dict(task=name, library=library, seed=seed, solved=solved is not None,
               train_s=solved[0] if solved else probe.train_seconds(),
               steps=solved[1] if solved else task.budget,
               score=solved[2] if solved else (probe.history[-1][2] if probe.history else float("nan")),
               wall_s=wall, evals=len(probe.history))
    mark = "" if row["solved"] else ">"
    print(f"[{library}] {name} seed {seed}: {mark}{row['train_s']:.1f} s, {mark}{row['steps']} env steps, "
          f"score {row['score']:.1f} ({row['evals']} evaluations, {wall:.0f} s with them)", flush=True)
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", nargs="+", choices=sorted(TASKS), default=list(TASKS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--sac-precision", choices=["auto", "float32", "bfloat16"], default="auto",
                   help="this suite's sac.precision (default: the package default, auto)")
    p.add_argument("--jobs", type=int, default=2, help="runs at once (default 2: ours and SB3 side by side)")
    p.add_argument("--skip-sb3", action="store_true")
    args = p.parse_args(argv)
    libraries = ["robot_training"] if args.skip_sb3 else ["robot_training", "sb3"]
    if not args.skip_sb3:
        try:
            import stable_baselines3  # noqa: F401
        except ImportError:
            print("stable-baselines3 is not installed (benchmark only): pip install stable-baselines3==2.9.2 "
                  "-- or pass --skip-sb3", file=sys.stderr)
            return 2
    if args.jobs < 1:
        p.error("--jobs must be at least 1")
    specs = [(name, lib, seed) for name in args.tasks for seed in args.seeds for lib in libraries]
    with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
        rows = list(pool.map(job, *zip(*[(n, lib, s, args.eval_episodes, args.sac_precision) for n, lib, s in specs])))

    from robot_training.utils.precision import resolve_precision

    print(f"\ntorch threads 1 per run, {args.jobs} run(s) at once; robot_training sac.precision "
          f"{args.sac_precision} ({resolve_precision(args.sac_precision, 'cpu')} on this CPU); "
          f"{args.eval_episodes} evaluation episodes, evaluation time off the clock")
    print(f"{'task':<34}{'library':<16}{'seconds to threshold':>24}{'env steps':>26}{'median s':>10}"
          f"{'ours / SB3':>12}")
    for name in args.tasks:
        task = TASKS[name]
        medians = {}
        for lib in libraries:
            mine = [r for r in rows if r["task"] == name and r["library"] == lib]
            medians[lib] = statistics.median(r["train_s"] for r in mine)
            times = " ".join(("" if r["solved"] else ">") + f"{r['train_s']:.0f}" for r in mine)
            steps = " ".join(("" if r["solved"] else ">") + f"{r['steps'] // 1000}k" for r in mine)
            ratio = (f"{medians['robot_training'] / medians['sb3']:.2f}"
                     if lib == "sb3" and medians.get("sb3") else "")
            label = f"{task.algorithm.upper()} {task.env_id} to {task.threshold:g}"
            print(f"{label:<34}{lib:<16}{times:>24}{steps:>26}{medians[lib]:>10.1f}{ratio:>12}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
