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


class OursTimer:
    """One of our trainers at a given setting; :meth:`step` times one update on a random batch."""

    def __init__(self, kind: str, size: str, precision: str, gradient: str, seed: int = 0):
        from robot_training.reinforcement_learning.train_dreamer import DreamerTrainer

        cfg = Config().replace(world_model={"size": size, "batch_size": BATCH, "sequence_length": LENGTH,
                                            "precision": precision},
                               dreamer={"actor_gradient": gradient}, training={"device": "cpu"})
        self.kind = kind
        self.trainer = DreamerTrainer((3,) if kind == "vector" else (64, 64, 3), 1, cfg)
        self.rng = np.random.default_rng(seed)

    def step(self) -> float:
        batch = random_batch(self.kind, self.rng)
        start = time.perf_counter()
        self.trainer.update(batch)
        return time.perf_counter() - start


# ---------------------------------------------------------------------- the reference


def reference_worker(repo: str, kind: str) -> None:
    """Child process: time the reference's world-model + behaviour update; print JSON."""
    import types

    import gymnasium as gym
    import yaml

    sys.path.insert(0, repo)
    import models  # the reference's modules (its repository is on sys.path)
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
    print("REFERENCE_READY", flush=True)
    for line in sys.stdin:  # one update per request line, so the parent can interleave
        if line.strip() != "update":
            break
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
        print("REFERENCE_SECONDS " + json.dumps(time.perf_counter() - start), flush=True)


class ReferenceTimer:
    """The reference in a child process, one timed update per :meth:`step`."""

    def __init__(self, repo: str, kind: str):
        self.process = subprocess.Popen([sys.executable, __file__, "--reference-worker", repo, kind],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                        stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONWARNINGS": "ignore"})
        self._read("REFERENCE_READY")

    def _read(self, prefix: str) -> str:
        for line in self.process.stdout:
            if line.startswith(prefix):
                return line[len(prefix):].strip()
        raise RuntimeError(f"reference worker ended early (exit status {self.process.wait()})")

    def step(self) -> float:
        self.process.stdin.write("update\n")
        self.process.stdin.flush()
        return float(json.loads(self._read("REFERENCE_SECONDS")))

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


def interleaved_timing(kind: str, reference: str, rounds: int) -> list:
    """Round-robin one update of every setting per round (load drift hits all alike); the
    first round is warm-up. Rows hold the median seconds of the remaining rounds."""
    settings = [("ours", kind, "dreamerv3_s", "float32", "dynamics"),
                ("ours", kind, "dreamerv3_s", "float32", "reinforce"),
                ("ours", kind, "dreamerv3_s", "bfloat16", "dynamics"),
                ("ours", kind, "dreamerv3_s", "bfloat16", "reinforce"),
                ("ours", kind, "small", "float32", "dynamics")]
    timers = {}
    if reference:
        timers[f"reference NM512 {kind} dmc_{'proprio' if kind == 'vector' else 'vision'} float32"] = ReferenceTimer(reference, kind)
    for _, k, size, precision, gradient in settings:
        label = f"ours {k} {size}{' (CPU default)' if size == 'small' else ''} {precision} {gradient}"
        timers[label] = OursTimer(k, size, precision, gradient)
    times = {label: [] for label in timers}
    for round_index in range(rounds + 1):
        for label, timer in timers.items():
            seconds = timer.step()
            if round_index:
                times[label].append(seconds)
            print(f"  round {round_index}: {label}: {seconds:.2f} s", flush=True)
    for timer in timers.values():
        if isinstance(timer, ReferenceTimer):
            timer.close()
    return [{"config": label, "updates": len(t), "ms_per_update": 1000 * float(np.median(t))}
            for label, t in times.items()]


# ---------------------------------------------------------------------- learning runs


def learning_config(env: str, seed: int, args) -> Config:
    """The small CPU preset at batch 16 × 32, bfloat16 autocast, faster learning rates than
    DreamerV3's (small models on short budgets), backpropagation through the dynamics."""
    wm = {"size": "small", "batch_size": 16, "sequence_length": 32, "learning_rate": 6e-4,
          "precision": args.precision}
    ratio = args.pixel_train_ratio if env.startswith("pixels:") else args.train_ratio
    dreamer = {"actor_gradient": "dynamics", "train_ratio": ratio, "prefill_steps": 1000,
               "eval_every": args.eval_every, "actor_lr": 2e-4, "critic_lr": 2e-4}
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
    from robot_training.envs.factories import make_env_factory
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
        reference_worker(sys.argv[2], sys.argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timing", action="store_true", help="update cost at batch 16 × sequence 64")
    parser.add_argument("--timing-updates", type=int, default=3, help="timed rounds after one warm-up round")
    parser.add_argument("--reference", help="checkout of NM512/dreamerv3-torch to time side by side")
    parser.add_argument("--pendulum", action="store_true", help="online Pendulum-v1 from vectors")
    parser.add_argument("--pixels", action="store_true", help="online InvertedPendulum-v5 from 64×64 frames")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--pendulum-steps", type=int, default=20_000)
    parser.add_argument("--pixel-steps", type=int, default=10_000)
    parser.add_argument("--train-ratio", type=float, default=64.0, help="Pendulum: replayed steps per env step")
    parser.add_argument("--pixel-train-ratio", type=float, default=128.0)
    parser.add_argument("--precision", default="bfloat16")
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
            kind_rows = interleaved_timing(kind, args.reference, args.timing_updates)
            print_table(kind_rows)
            reference_ms = kind_rows[0]["ms_per_update"] if args.reference else None
            if reference_ms:
                for row in kind_rows[1:]:
                    print(f"  {row['config']}: {row['ms_per_update'] / reference_ms:.2f} × the reference's time")
            rows += kind_rows
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
