"""Benchmark Dreamer: update cost (ours vs. a reference DreamerV3 implementation) and learning.

Prints one row per configuration: environment steps, gradient updates, wall-clock, ms per
training update (world model + actor + critic), evaluation return.

    # update cost at batch 16 × sequence 64 (ours at several settings; the reference if given)
    MUJOCO_GL=egl python bench/bench_dreamer.py --timing --reference /tmp/nm512
    # online Pendulum-v1 from vectors, 3 seeds, 20k env steps
    python bench/bench_dreamer.py --pendulum --seeds 0 1 2
    # online InvertedPendulum-v5 from 64×64 rendered frames
    MUJOCO_GL=egl python bench/bench_dreamer.py --pixels --pixel-steps 10000

``--reference`` points at a checkout of NM512/dreamerv3-torch (outside this repository). Its
modules are imported in a child process and timed on random batches at its own
``dmc_proprio`` / ``dmc_vision`` configuration (compile off, CPU); nothing of it is copied here.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("MUJOCO_GL", "egl")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from robot_training.config import Config  # noqa: E402

BATCH, LENGTH = 16, 64


def random_batch(kind: str, rng: np.random.Generator, obs_dim: int = 3, action_dim: int = 1) -> dict:
    if kind == "vector":
        observation = rng.normal(size=(BATCH, LENGTH, obs_dim)).astype(np.float32)
    else:
        observation = rng.integers(0, 255, (BATCH, LENGTH, 64, 64, 3), dtype=np.uint8)
    batch = {"observation": observation,
             "action": rng.uniform(-1, 1, (BATCH, LENGTH, action_dim)).astype(np.float32),
             "reward": rng.normal(size=(BATCH, LENGTH)).astype(np.float32),
             "is_first": np.zeros((BATCH, LENGTH), bool), "is_terminal": np.zeros((BATCH, LENGTH), bool)}
    batch["is_first"][:, 0] = True
    return batch


def time_ours(kind: str, size: str, precision: str, gradient: str, updates: int) -> float:
    """Median seconds per update (the first, warm-up update excluded)."""
    from robot_training.reinforcement_learning.train_dreamer import DreamerTrainer

    cfg = Config().replace(world_model={"size": size, "batch_size": BATCH, "sequence_length": LENGTH,
                                        "precision": precision},
                           dreamer={"actor_gradient": gradient}, training={"device": "cpu"})
    trainer = DreamerTrainer((3,) if kind == "vector" else (64, 64, 3), 1, cfg)
    rng = np.random.default_rng(0)
    times = []
    for _ in range(updates + 1):
        batch = random_batch(kind, rng)
        start = time.perf_counter()
        trainer.update(batch)
        times.append(time.perf_counter() - start)
    return float(np.median(times[1:]))


# ---------------------------------------------------------------------- the reference


def reference_worker(repo: str, kind: str, updates: int) -> None:
    """Child process: time the reference's world-model + behaviour update; print JSON."""
    import types

    import gymnasium as gym
    import yaml

    sys.path.insert(0, repo)
    import models  # noqa: the reference's modules
    import networks

    original_init = networks.MLP.__init__

    def cpu_init(self, *args, **kwargs):  # its actor MLP defaults to device="cuda"
        kwargs["device"] = "cpu"
        original_init(self, *args, **kwargs)

    networks.MLP.__init__ = cpu_init

    def numbers(value):
        if isinstance(value, dict):
            return {k: numbers(v) for k, v in value.items()}
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                return value
        return value

    configs = numbers(yaml.safe_load(Path(repo, "configs.yaml").read_text()))
    settings = dict(configs["defaults"])
    for key, value in configs["dmc_proprio" if kind == "vector" else "dmc_vision"].items():
        if isinstance(value, dict):
            settings[key] = {**settings[key], **value}
        else:
            settings[key] = value
    settings.update(device="cpu", compile=False, num_actions=1, batch_size=BATCH, batch_length=LENGTH)
    config = types.SimpleNamespace(**settings)
    spaces = {"image": gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)}
    if kind == "vector":
        spaces["state"] = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
    world_model = models.WorldModel(gym.spaces.Dict(spaces), gym.spaces.Box(-1, 1, (1,), np.float32), 0, config)
    behavior = models.ImagBehavior(config, world_model)
    rng = np.random.default_rng(0)
    times = []
    for _ in range(updates + 1):
        ours = random_batch(kind, rng)
        data = {"image": (ours["observation"] if kind == "image"
                          else np.zeros((BATCH, LENGTH, 64, 64, 3), np.uint8)).astype(np.float32),
                "action": ours["action"], "reward": ours["reward"],
                "is_first": ours["is_first"].astype(np.float32), "is_terminal": ours["is_terminal"].astype(np.float32)}
        if kind == "vector":
            data["state"] = ours["observation"]
        start = time.perf_counter()
        posterior, _, _ = world_model._train(data)
        reward = lambda feat, state, action: world_model.heads["reward"](world_model.dynamics.get_feat(state)).mode()
        behavior._train(posterior, reward)
        times.append(time.perf_counter() - start)
    print("REFERENCE_RESULT " + json.dumps({"seconds": float(np.median(times[1:]))}), flush=True)


def time_reference(repo: str, kind: str, updates: int) -> float:
    out = subprocess.run([sys.executable, __file__, "--reference-worker", repo, kind, str(updates)],
                         capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    for line in out.stdout.splitlines():
        if line.startswith("REFERENCE_RESULT "):
            return json.loads(line.split(" ", 1)[1])["seconds"]
    raise RuntimeError(f"reference run failed:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}")


# ---------------------------------------------------------------------- learning runs


def learning_config(env: str, seed: int, args) -> Config:
    if env.startswith("pixels:"):
        wm = {"size": "small", "batch_size": 16, "sequence_length": 32, "learning_rate": 3e-4,
              "precision": args.precision}
        dreamer = {"actor_gradient": "dynamics", "train_ratio": args.train_ratio, "prefill_steps": 1000,
                   "eval_every": args.eval_every, "actor_lr": 1e-4, "critic_lr": 1e-4}
    else:
        wm = {"size": "small", "batch_size": 16, "sequence_length": 32, "learning_rate": 3e-4,
              "precision": args.precision}
        dreamer = {"actor_gradient": "dynamics", "train_ratio": args.train_ratio, "prefill_steps": 1000,
                   "eval_every": args.eval_every, "actor_lr": 1e-4, "critic_lr": 1e-4}
    return Config().replace(world_model=wm, dreamer=dreamer,
                            training={"device": "cpu", "seed": seed, "eval_episodes": 3, "tensorboard": False})


class _PrintLogger:
    def __init__(self, label: str):
        self.label, self.start = label, time.time()

    def scalar(self, tag, value, step):
        if tag == "charts/eval_return":
            print(f"  [{self.label}] step {step}: eval return {value:.1f} ({time.time() - self.start:.0f} s)", flush=True)

    def scalars(self, values, step, prefix=""):
        pass


def run_learning(env: str, seed: int, steps: int, args) -> dict:
    from robot_training.reinforcement_learning.environments import make_env_factory
    from robot_training.reinforcement_learning.train_dreamer import train_dreamer

    start = time.time()
    trainer = train_dreamer(env_factory=env, num_steps=steps, config=learning_config(env, seed, args),
                            logger=_PrintLogger(f"{env} seed {seed}"), show_progress=False)
    wall = time.time() - start
    eval_return = trainer.evaluate(args.eval_episodes)
    factory = make_env_factory(env)
    random_return = random_policy_return(factory, args.eval_episodes)
    return {"config": f"{env} seed {seed}", "env_steps": trainer.env_steps, "updates": trainer.updates,
            "wall_s": wall, "ms_per_update": 1000 * trainer.update_seconds / max(1, trainer.updates),
            "eval_return": eval_return, "random_return": random_return}


def random_policy_return(factory, episodes: int, seed: int = 10_000) -> float:
    env = factory()
    env.action_space.seed(seed)
    returns = []
    for episode in range(episodes):
        env.reset(seed=seed + episode)
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return float(np.mean(returns))


def print_table(rows) -> None:
    print(f"\n{'configuration':58s} {'env steps':>9s} {'updates':>8s} {'wall s':>8s} {'ms/update':>10s} "
          f"{'eval return':>12s} {'random':>8s}")
    for r in rows:
        fmt = lambda key, spec: (format(r[key], spec) if r.get(key) is not None else "-")
        print(f"{r['config']:58s} {fmt('env_steps', '9d')} {fmt('updates', '8d')} {fmt('wall_s', '8.0f')} "
              f"{fmt('ms_per_update', '10.0f')} {fmt('eval_return', '12.1f')} {fmt('random_return', '8.1f')}")
    sys.stdout.flush()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--reference-worker":
        torch.set_num_threads(int(os.environ.get("BENCH_THREADS", torch.get_num_threads())))
        reference_worker(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timing", action="store_true", help="update cost at batch 16 × sequence 64")
    parser.add_argument("--timing-updates", type=int, default=3)
    parser.add_argument("--reference", help="checkout of NM512/dreamerv3-torch to time side by side")
    parser.add_argument("--pendulum", action="store_true", help="online Pendulum-v1 from vectors")
    parser.add_argument("--pixels", action="store_true", help="online InvertedPendulum-v5 from 64×64 frames")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--pendulum-steps", type=int, default=20_000)
    parser.add_argument("--pixel-steps", type=int, default=10_000)
    parser.add_argument("--train-ratio", type=float, default=128.0)
    parser.add_argument("--precision", default="float32")
    parser.add_argument("--eval-every", type=int, default=2000)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
        os.environ["BENCH_THREADS"] = str(args.threads)
    rows = []
    if args.timing:
        for kind in ("vector", "image"):
            if args.reference:
                seconds = time_reference(args.reference, kind, args.timing_updates)
                rows.append({"config": f"reference NM512 {kind} dmc_{'proprio' if kind == 'vector' else 'vision'} (fp32)",
                             "updates": args.timing_updates, "ms_per_update": 1000 * seconds})
                print_table(rows[-1:])
            for precision, gradient in (("float32", "dynamics"), ("float32", "reinforce"),
                                        ("bfloat16", "dynamics"), ("bfloat16", "reinforce")):
                seconds = time_ours(kind, "dreamerv3_s", precision, gradient, args.timing_updates)
                rows.append({"config": f"ours {kind} dreamerv3_s {precision} {gradient}",
                             "updates": args.timing_updates, "ms_per_update": 1000 * seconds})
                print_table(rows[-1:])
            seconds = time_ours(kind, "small", "float32", "dynamics", args.timing_updates)
            rows.append({"config": f"ours {kind} small (CPU default) float32 dynamics",
                         "updates": args.timing_updates, "ms_per_update": 1000 * seconds})
            print_table(rows[-1:])
    if args.pendulum:
        results = []
        for seed in args.seeds:
            results.append(run_learning("Pendulum-v1", seed, args.pendulum_steps, args))
            print_table(results[-1:])
        rows += results
        returns = [r["eval_return"] for r in results]
        print(f"Pendulum-v1: median over {len(returns)} seed(s) of mean deterministic eval return: "
              f"{np.median(returns):.1f} (per seed {', '.join(f'{x:.1f}' for x in returns)})")
    if args.pixels:
        for seed in args.seeds[:1]:
            rows.append(run_learning("pixels:InvertedPendulum-v5", seed, args.pixel_steps, args))
            print_table(rows[-1:])
    print_table(rows)


if __name__ == "__main__":
    main()
