"""Command line: ``python -m robot_training.train`` (console script ``train``).

::

    train --mode policy --algorithm sac --env InvertedPendulum-v5 --total-timesteps 20000
    train --mode supervised --data data/demonstrations.pkl.gz
    train --mode all                       # every component in turn, small budgets
    train --mode policy --algorithm ppo --resume          # newest checkpoint of the run
    train --mode online --algorithm dreamer --data loop/dataset   # the learner of the robot's loop
    train --preset dreamerv3 --mode dreamer                # DreamerV3's published settings

One pass turns the options into what a run is (:func:`prepare_run`): its :class:`Config`
(defaults, ``--preset``, ``--config``, then the options given, each applied once) and its
:class:`RunRequest` (mode, algorithm, data, resume). The trainer node builds both from its ROS
parameters through the same function. Modes are plain functions ``(cfg, request) -> [summary
rows]`` in the :data:`MODES` registry; no argparse Namespace reaches them. Bad input
(unknown env, bad config key, missing checkpoint) prints one ``train: error:`` line and exits
with status 2.

Ctrl-C or SIGTERM stops an offline run cooperatively (:func:`stop_between_updates`): at the
next scalar the learner logs between two updates it raises :class:`TrainingStopped`, the
trainer saves a checkpoint there (``policy_<algo>_step<N>.pt``, ``world_model_<N>.pt``,
``dreamer_<N>.pt``, ``bc_epoch<N>.pt``; ``--resume`` continues from it), and the command
prints one line naming what it saved and exits 0. Further signals within :data:`REPEAT_SIGNAL_S` (``ros2 launch`` and a terminal both forward Ctrl-C) are
ignored; a later Ctrl-C interrupts at once.

Under ``torchrun`` (:data:`DISTRIBUTED_MODES`) every process trains its share of each global
batch with DistributedDataParallel (:mod:`robot_training.utils.distributed`); rank 0 alone
writes checkpoints, TensorBoard, progress and the summary table, and a stop is agreed by all
ranks at the same update::

    torchrun --standalone --nproc-per-node 2 -m robot_training.train --mode world_model --data bags/
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Tuple, Union

from robot_training.utils import distributed
from robot_training.utils.stopping import TrainingStopped, save_on_stop  # noqa: F401 - re-exported

if TYPE_CHECKING:
    from robot_training.config import Config

EXIT_USAGE = 2


class UsageError(Exception):
    """Bad input from the user: reported as one line, exit status 2."""


#: scalars logged while experience is collected, not between two updates
_MID_ROLLOUT_TAGS = ("charts/episodic_", "charts/eval")

#: seconds after a stop signal during which further SIGINTs are ignored (the CLI)
REPEAT_SIGNAL_S = 2.0


@contextlib.contextmanager
def stop_between_updates(stop: threading.Event):
    """While active, once ``stop`` is set, the next scalar this thread logs between two updates
    (any tag but episode returns and evaluations) raises :class:`TrainingStopped`, once."""
    from robot_training.utils.logging import RunLogger

    thread = threading.current_thread()
    raised = []
    agreed_at = []

    def listener(tag: str, _value: float, step: int) -> None:
        if raised or threading.current_thread() is not thread or tag.startswith(_MID_ROLLOUT_TAGS):
            return
        stopping = stop.is_set()
        if distributed.active():  # every rank logs the same scalars: agree once per logged step
            if agreed_at == [step]:
                return
            agreed_at[:] = [step]
            stopping = distributed.any_rank(stopping)
        if stopping:
            raised.append(tag)
            raise TrainingStopped()

    RunLogger.add_listener(listener)
    try:
        yield
    finally:
        RunLogger.remove_listener(listener)


def describe_stop(stopped: TrainingStopped, checkpoint_root: Path, since: float) -> str:
    """One line: what a stopped run saved, or the newest checkpoint it had written."""
    if stopped.saved is not None:
        return f"stopped at step {stopped.step}: saved checkpoint {stopped.saved}"
    newest = newest_checkpoint(checkpoint_root, since)
    if newest is not None:
        return f"stopped: this mode saves no checkpoint at a stop; the run's newest checkpoint is {newest}"
    return "stopped: this mode saves no checkpoint at a stop and the run had written none yet"


def newest_checkpoint(checkpoint_root, since: float) -> Optional[Path]:
    """The newest ``*.pt`` under ``checkpoint_root`` written after ``since`` (unix time)."""
    root = Path(checkpoint_root)
    written = [p for p in root.rglob("*.pt") if p.is_file() and p.stat().st_mtime >= since - 1] if root.is_dir() else []
    return max(written, key=lambda p: p.stat().st_mtime_ns) if written else None


class Row(NamedTuple):
    component: str
    checkpoint: str
    metric: str


def algorithm_choices() -> List[str]:
    """``--algorithm``'s values: the policy-family algorithms, then the Dreamer family."""
    from robot_training.algorithms import names

    return names(family="policy") + names(family="dreamer")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="train", description="Train robot_training components.")
    p.add_argument("--mode", choices=sorted(MODES), default="all", help="component(s) to train (default: all)")
    from robot_training.algorithms import names

    policy_algorithms = names(family="policy")
    p.add_argument("--algorithm", choices=algorithm_choices(), default=None,
                   help=f"policy mode: {' or '.join(policy_algorithms)} (default ppo); online mode: dreamer "
                        "(default: online.algorithm) or an off-policy one")
    p.add_argument("--config", default=None, help="YAML file overriding config/default_config.yaml")
    p.add_argument("--preset", default=None, metavar="NAME",
                   help=f"named configuration from config/presets/ applied before --config ({_preset_help()})")
    p.add_argument("--env", default=None, help="Gymnasium id (default: training.env)")
    p.add_argument("--total-timesteps", type=int, default=None, help="environment-step budget")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N")
    p.add_argument("--resume", nargs="?", const=True, default=False, metavar="CHECKPOINT",
                   help="continue from CHECKPOINT, or from the newest checkpoint of the run")
    p.add_argument("--data", default=None,
                   help="trajectory file, or rosbag2 bag / folder of bags, for supervised / world_model / dreamer; "
                        "online: the dataset folder the recorder writes")
    p.add_argument("--interface", default=None, metavar="YAML",
                   help="interface description for --data bags (default: the one stored with the bags)")
    p.add_argument("--checkpoint-dir", default=None, help="root of the checkpoint layout (training.checkpoint_dir)")
    p.add_argument("--log-dir", default=None, help="TensorBoard folder (training.log_dir)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--strict", action="store_true",
                   help="--data bags: refuse the dataset when one bag cannot be used (default: skip it, say why)")
    return p


@dataclass(frozen=True)
class RunRequest:
    """What one run is asked to do besides its :class:`Config`: the mode and what it reads.

    ``algorithm`` None: the mode's default; ``resume`` True: the run's newest checkpoint, a
    string: that checkpoint. A mode or algorithm that does not exist raises :class:`UsageError`
    naming it (the command line's argparse refuses them first)."""

    mode: str = "all"
    algorithm: Optional[str] = None
    resume: Union[bool, str] = False
    data: Optional[str] = None
    interface: Optional[str] = None
    strict: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise UsageError(f"mode must be one of {sorted(MODES)}, got {self.mode!r}")
        if self.algorithm is not None and self.algorithm not in algorithm_choices():
            raise UsageError(f"algorithm must be one of {algorithm_choices()}, got {self.algorithm!r}")


#: options that set keys of the config's ``training`` section (the same names there)
TRAINING_OPTIONS = ("env", "total_timesteps", "seed", "device", "checkpoint_dir", "log_dir")
#: every option :func:`prepare_run` reads (argparse's dest names)
OPTIONS = ("config", "preset", *TRAINING_OPTIONS, "no_progress", *(f.name for f in fields(RunRequest)))


def prepare_run(options: Mapping[str, Any]) -> Tuple["Config", RunRequest]:
    """The one pass from the options of a run (:data:`OPTIONS`, argparse's dest names; None or
    absent: not given) to its :class:`RunRequest` and its :class:`Config`: the defaults, the
    ``preset``, the ``config`` YAML file, then the options given, each applied once.

    The command line passes ``vars(args)``; the trainer node its parameters' values."""
    from robot_training.config import load_config

    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise TypeError(f"not options of a run: {', '.join(unknown)}")
    request = RunRequest(**{f.name: options[f.name] for f in fields(RunRequest) if options.get(f.name) is not None})
    training = {key: options[key] for key in TRAINING_OPTIONS if options.get(key) is not None}
    if options.get("no_progress"):
        training["progress_bar"] = False
    cfg = load_config(options.get("config"), {"training": training} if training else None,
                      preset=options.get("preset"))
    return cfg, request


def check_writable(folder, what: str) -> None:
    """Raise :class:`UsageError` naming ``folder`` when no file can be created in it, before a
    run spends its time (a permission, a read-only disk, a file in the way)."""
    import tempfile

    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write_check_"):
            pass
    except OSError as exc:
        raise UsageError(f"{what} {path} is not writable ({exc.strerror or exc})") from None


def check_output_folders(cfg) -> None:
    """The checkpoint folder, and the TensorBoard folder when it is on, can be written."""
    check_writable(cfg.training.checkpoint_dir, "checkpoint folder")
    if cfg.training.tensorboard:
        check_writable(cfg.training.log_dir, "log folder")


def _preset_help() -> str:
    from robot_training.config import preset_names

    names = preset_names()
    return ", ".join(names) if names else "none shipped"


# --------------------------------------------------------------------------- data


def load_data(path: str, interface: Optional[str] = None, strict: bool = False):
    """Trajectories from a file written by save_trajectories, or from rosbag2 bags.

    Bags are turned into trajectories through ``interface`` (a YAML path), or through the
    description the recorder stored with them. A bag that cannot be used (unfinished,
    unreadable, missing a topic) is reported in one line and skipped; ``strict`` refuses the
    dataset instead.
    """
    from robot_training.data.bag_dataset import is_bag_path, load_bag_dataset
    from robot_training.data.trajectory import load_trajectories

    p = Path(path)
    if not p.exists():
        raise UsageError(f"--data {path}: no such file or folder")
    if is_bag_path(p):
        skipped = []
        trajectories = list(load_bag_dataset(p, interface, strict=strict, skipped=skipped))
        for _bag, reason in skipped if distributed.is_main() else ():
            print(f"train: skipped {reason}", file=sys.stderr)
        return trajectories
    if p.is_dir():
        raise UsageError(f"--data {path}: a folder with no rosbag2 bags in it")
    if interface is not None:
        raise UsageError(f"--interface applies to bags; --data {path} is a trajectory file")
    return load_trajectories(p)


def default_demonstrations_path(cfg) -> Path:
    return Path(cfg.training.checkpoint_dir) / "data" / "demonstrations.pkl.gz"


def request_data(request: RunRequest):
    """The trajectories of ``request.data`` (None when it names none)."""
    if request.data is None:
        return None
    return load_data(request.data, request.interface, strict=request.strict)


def _data_or_default(cfg, request: RunRequest, mode: str):
    if request.data is not None:
        return request_data(request)
    default = default_demonstrations_path(cfg)
    if default.is_file():
        return load_data(str(default))
    raise UsageError(f"--mode {mode} needs --data PATH (a trajectory file or bag folder); "
                     f"no default data at {default} (--mode all writes it)")


# --------------------------------------------------------------------------- modes


def evaluate_policy(policy, env_id: str, episodes: int, seed: int = 10_000) -> float:
    """Mean return of ``episodes`` deterministic episodes."""
    from robot_training.envs.collection import evaluate_policy as evaluate

    return evaluate(policy, env_id, episodes, seed)


def run_policy(cfg, request: RunRequest, algorithm: Optional[str] = None) -> List[Row]:
    return _train_policy(cfg, request, algorithm)[0]


def _train_policy(cfg, request: RunRequest, algorithm: Optional[str] = None):
    """``(rows, trainer)`` of a policy run (``--mode all`` collects demonstrations with it)."""
    from robot_training.algorithms import names
    from robot_training.envs.make import check_env_id
    from robot_training.policies.train_policy import PolicyTrainer, resolve_budget

    algorithm = algorithm or request.algorithm or "ppo"
    if algorithm not in names(family="policy"):
        raise UsageError(f"--mode policy trains {' or '.join(names(family='policy'))}, not {algorithm} "
                         "(use --mode dreamer)")
    env_id = cfg.training.env
    check_env_id(env_id)
    budget = resolve_budget(cfg)
    trainer = PolicyTrainer(algorithm, env_id, config=cfg, env_name=env_id)
    if not cfg.training.tensorboard:  # scalars in memory only: listeners (progress, a stop) still see them
        from robot_training.utils.logging import RunLogger

        trainer.logger = RunLogger(None)
    try:
        if request.resume:
            path = trainer.resume(None if request.resume is True else request.resume)
            trainer.config = trainer.config.replace(training={"progress_bar": cfg.training.progress_bar,
                                                              "checkpoint_dir": cfg.training.checkpoint_dir})
            print(f"resumed {algorithm} from {path} at step {trainer.num_timesteps}", flush=True)
        trainer.learn(budget)
        metric = evaluate_policy(trainer, env_id, cfg.training.eval_episodes)
        if trainer.logger is not None:
            trainer.logger.scalar("eval/mean_return", metric, trainer.num_timesteps)
    except TrainingStopped as stopped:  # between two updates: the state is whole, keep it
        if trainer.algo is not None:
            stopped.step = trainer.num_timesteps
            stopped.saved = trainer.save(trainer.checkpoint_dir / f"policy_{algorithm}_step{stopped.step:09d}.pt")
        raise
    finally:
        trainer.close()
    return [Row(f"policy ({algorithm}, {env_id}, {trainer.num_timesteps} steps)", str(trainer.final_checkpoint),
                f"eval return {metric:.1f}")], trainer


def run_supervised(cfg, request: RunRequest, trajectories=None) -> List[Row]:
    from robot_training.supervised_learning.train_supervised import train_behavioral_cloning

    demos = trajectories if trajectories is not None else _data_or_default(cfg, request, "supervised")
    trainer = train_behavioral_cloning(demos, config=cfg,
                                       resume=request.resume if request.mode == "supervised" else False)
    return [Row(f"supervised (bc, {len(demos)} episodes)", str(trainer.final_checkpoint),
                f"validation loss {trainer.validation_loss:.4f}")]


def _result_rows(result, component: str) -> List[Row]:
    result = result or {}
    metric = result.get("metric", result.get("final_metric", ""))
    if isinstance(metric, float):
        metric = f"{metric:.4g}"
    return [Row(result.get("component", component), str(result.get("checkpoint", "")), str(metric))]


def run_world_model(cfg, request: RunRequest, trajectories=None) -> List[Row]:
    from robot_training.world_models.train_world_model import run_cli

    if trajectories is None:
        trajectories = request_data(request)
    return _result_rows(run_cli(cfg, trajectories, resume=request.resume), "world_model")


def run_dreamer(cfg, request: RunRequest, trajectories=None) -> List[Row]:
    from robot_training.reinforcement_learning.train_dreamer import run_cli

    if trajectories is None:
        trajectories = request_data(request)
    return _result_rows(run_cli(cfg, trajectories, resume=request.resume), "dreamer")


def run_online(cfg, request: RunRequest, stop=None, on_checkpoint=None, on_learner=None) -> List[Row]:
    """The learner of the robot's loop: follow the dataset folder ``--data`` (the recorder's),
    train ``--algorithm`` (dreamer or sac) on every finished episode, checkpoint as it goes.

    Resumes from the newest loop checkpoint under ``--checkpoint-dir`` when there is one (a
    restarted learner continues its run). Runs until ``stop`` is set, Ctrl-C / SIGTERM, or
    ``--total-timesteps`` recorded env steps.
    """
    import signal
    import threading

    from robot_training.interface.description import load_interface
    from robot_training.online.learner import OnlineError, OnlineLearner, check_algorithm
    from robot_training.recording.episode_meta import INTERFACE_FILE
    from robot_training.utils.logging import RunLogger, run_name
    from robot_training.utils.seeding import set_seed

    algorithm = request.algorithm or cfg.online.algorithm
    try:
        check_algorithm(algorithm)
    except OnlineError as exc:
        raise UsageError(str(exc)) from None
    if not request.data:
        raise UsageError("--mode online needs --data DATASET_DIR: the folder the recorder writes episodes into")
    dataset = Path(request.data)
    interface_path = request.interface or dataset / INTERFACE_FILE
    if not Path(interface_path).is_file():
        raise UsageError(f"--mode online: no --interface given and no {dataset / INTERFACE_FILE} "
                         "(the recorder writes it with its first episode)")
    interface = load_interface(interface_path)
    set_seed(cfg.training.seed, cfg.training.torch_threads)  # the learner's first weights (a resume loads its own)
    stop = stop or threading.Event()
    handlers = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            handlers[sig] = signal.signal(sig, lambda *_: stop.set())
    log_dir = Path(cfg.training.log_dir) / run_name(interface.name or "robot", f"online_{algorithm}",
                                                    cfg.training.seed)
    try:
        with RunLogger(log_dir, enabled=cfg.training.tensorboard) as logger:
            learner = OnlineLearner(algorithm, interface, dataset, config=cfg, logger=logger,
                                    on_checkpoint=on_checkpoint)
            try:
                resumed = learner.resume(request.resume if isinstance(request.resume, str) else None)
            except Exception as exc:  # noqa: BLE001 - a torn or foreign newest checkpoint
                raise UsageError(f"cannot resume the loop: {exc}") from None
            if resumed is not None:
                print(f"learner: resumed {algorithm} from {resumed} at update {learner.updates}", flush=True)
            if on_learner is not None:
                on_learner(learner)
            figures = learner.run(stop, max_env_steps=cfg.training.total_timesteps)
    finally:
        for sig, old in handlers.items():
            signal.signal(sig, old)
    return [Row(f"online ({algorithm}, {figures['episodes']} episodes, {figures['env_steps']} env steps, "
                f"{figures['updates']} updates)", str(learner.last_checkpoint or "-"),
                f"last return {figures['last_return']:.1f}, best {figures['best_return']:.1f}")]


def mode_budget(cfg, request: RunRequest) -> int:
    """The step budget a mode runs for (0: open-ended), for progress reports."""
    mode = request.mode
    if mode == "policy":
        from robot_training.policies.train_policy import resolve_budget

        return resolve_budget(cfg)
    steps = cfg.training.total_timesteps
    if mode == "dreamer":
        if request.data:
            return int(steps or cfg.dreamer.offline_updates)
        return int(steps or DREAMER_ONLINE_STEPS)
    return int(steps or 0)  # online: 0 runs until stopped


#: env steps of --mode dreamer online when no budget is given
DREAMER_ONLINE_STEPS = 100_000

#: budgets of --mode all on the embedded default (a few minutes on 2 CPU cores)
ALL_POLICY_STEPS = 60_000  # PPO reaches the 1000 maximum of InvertedPendulum-v5 in ~40k
ALL_DEMONSTRATIONS = 20
ALL_BC_EPOCHS = 30


def run_all(cfg, request: RunRequest) -> List[Row]:
    """policy → demonstrations from it → BC → world model → Dreamer, small budgets."""
    from robot_training.envs.collection import DataCollector

    rows: List[Row] = []
    policy_cfg = cfg
    if cfg.training.total_timesteps is None:
        policy_cfg = cfg.replace(training={"total_timesteps": ALL_POLICY_STEPS},
                                 sac={"learning_starts": min(cfg.sac.learning_starts, 1000)})
    policy_rows, expert = _train_policy(policy_cfg, request, algorithm=request.algorithm or "ppo")
    rows += policy_rows
    collector = DataCollector(cfg.training.env, seed=cfg.training.seed + 1)
    demos = collector.collect_episodes(ALL_DEMONSTRATIONS, policy=expert)
    collector.close()
    data_path = default_demonstrations_path(cfg)
    collector.save_trajectories(data_path)
    mean_ret = sum(t.episode_return for t in demos) / len(demos)
    rows.append(Row(f"demonstrations ({len(demos)} episodes)", str(data_path), f"mean return {mean_ret:.1f}"))
    bc_cfg = cfg.replace(bc={"num_epochs": min(cfg.bc.num_epochs, ALL_BC_EPOCHS)})
    rows += run_supervised(bc_cfg, request, trajectories=demos)
    bc_row = rows[-1]
    from robot_training.supervised_learning.bc import BehavioralCloning

    bc = BehavioralCloning().load(bc_row.checkpoint)
    rows[-1] = bc_row._replace(metric=bc_row.metric + f", eval return {evaluate_policy(bc, cfg.training.env, cfg.training.eval_episodes):.1f}")
    for name, fn in (("world_model", run_world_model), ("dreamer", run_dreamer)):
        rows += fn(cfg, request, trajectories=demos)
        if name == "dreamer":  # trained offline on the demonstrations: how does it act?
            from robot_training.reinforcement_learning.dreamer import DreamerAgent

            agent = DreamerAgent.from_checkpoint(rows[-1].checkpoint)
            ret = evaluate_policy(agent, cfg.training.env, cfg.training.eval_episodes)
            rows[-1] = rows[-1]._replace(metric=rows[-1].metric + f", eval return {ret:.1f}")
    return rows


#: modes that train data-parallel under torchrun (dreamer: offline, with --data)
DISTRIBUTED_MODES = ("supervised", "world_model", "dreamer")


def start_distributed(cfg, request: RunRequest):
    """Under torchrun: check the mode, join the process group; ``cfg`` with this rank's device."""
    if request.mode not in DISTRIBUTED_MODES or (request.mode == "dreamer" and not request.data):
        online = " without --data" if request.mode == "dreamer" else ""
        raise UsageError(f"--mode {request.mode}{online} does not run under torchrun "
                         "(distributed: --mode supervised, world_model, or dreamer with --data)")
    from robot_training.config import resolve_device

    device = distributed.init(resolve_device(cfg.training.device))
    return cfg.replace(training={"device": device})


#: mode → function (an explicit registry)
MODES: Dict[str, Callable] = {
    "all": run_all,
    "policy": run_policy,
    "supervised": run_supervised,
    "world_model": run_world_model,
    "dreamer": run_dreamer,
    "online": run_online,
}


def print_table(rows: List[Row]) -> None:
    headers = Row("component", "checkpoint", "final metric")
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(3)]
    line = "  ".join("-" * w for w in widths)
    print(line)
    for r in [headers, *rows]:
        print("  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip())
        if r is headers:
            print(line)
    print(line, flush=True)


def _user_errors():
    import gymnasium

    from robot_training.checkpoint import CheckpointError
    from robot_training.config import ConfigError
    from robot_training.data.bag_dataset import BagError
    from robot_training.interface.description import InterfaceError
    from robot_training.data.trajectory import TrajectoryError
    from robot_training.envs.make import EnvError

    return (UsageError, ConfigError, CheckpointError, TrajectoryError, BagError, InterfaceError, EnvError,
            distributed.DistributedError, gymnasium.error.Error)


@contextlib.contextmanager
def _signals_stop(stop: threading.Event):
    """SIGINT / SIGTERM set ``stop``; a SIGINT more than REPEAT_SIGNAL_S later interrupts."""
    import signal

    first = []

    def on_signal(signum, _frame):
        if not first:
            first.append(time.monotonic())
            stop.set()
            if distributed.is_main():
                print("train: stopping at the next update, then saving a checkpoint", file=sys.stderr, flush=True)
        elif signum == signal.SIGINT and time.monotonic() - first[0] > REPEAT_SIGNAL_S:
            raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            # once stopping, the rest of the Ctrl-Cs a terminal or ros2 launch sends must not
            # interrupt the interpreter's exit
            signal.signal(sig, signal.SIG_IGN if first else handler)


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    errors = _user_errors()
    started = time.time()
    try:
        cfg, request = prepare_run(vars(args))
        from robot_training.config import resolve_device

        resolve_device(cfg.training.device)
        if cfg.training.torch_threads > 0:
            import torch

            torch.set_num_threads(cfg.training.torch_threads)
        if request.resume and request.mode == "all":
            raise UsageError("--resume works with a single --mode (policy or supervised)")
        if distributed.launched():
            cfg = start_distributed(cfg, request)
        if distributed.is_main():
            check_output_folders(cfg)
        if request.mode == "online":  # the loop stops itself on signals
            rows = MODES[request.mode](cfg, request)
        else:
            stop = threading.Event()
            with _signals_stop(stop), stop_between_updates(stop):
                rows = MODES[request.mode](cfg, request)
    except TrainingStopped as stopped:
        if distributed.is_main():
            print(f"train: {describe_stop(stopped, cfg.training.checkpoint_dir, started)}", file=sys.stderr, flush=True)
        return 0
    except errors as exc:
        print(f"train: error: {_rank_tag()}{exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # a disk that fills or a folder that goes away during the run
        where = exc.filename or (f"writing under {cfg.training.checkpoint_dir}" if "cfg" in locals() else "train")
        print(f"train: error: {_rank_tag()}{where}: {exc.strerror or exc} (checkpoints written before it are kept)",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("train: interrupted", file=sys.stderr)
        return 130
    finally:
        distributed.cleanup()
    if distributed.is_main():
        print_table(rows)
    return 0


def _rank_tag() -> str:
    """``rank N: `` on torchrun's ranks other than 0 (each rank reports its own error)."""
    return "" if distributed.is_main() else f"rank {distributed.rank()}: "


if __name__ == "__main__":
    sys.exit(main())
