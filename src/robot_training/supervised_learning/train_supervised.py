"""The seed's supervised-learning entry point: :func:`train_behavioral_cloning`.

::

    from robot_training.supervised_learning.train_supervised import train_behavioral_cloning

    trainer = train_behavioral_cloning(demonstrations=demo_list, use_sequences=True)
    action = trainer.predict(observation)
    trainer.save("bc.pt");  trainer.load("bc.pt")

``demonstrations``: a list of :class:`~robot_training.data.trajectory.Trajectory`, or a path
to a file written by ``save_trajectories``. The final checkpoint goes to
``<checkpoint_dir>/supervised_learning/checkpoints/bc/bc_final.pt`` (the seed's layout).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence, Union


from robot_training.checkpoint import CheckpointError, checkpoint_directory
from robot_training.config import Config, resolve_device
from robot_training.data.trajectory import Trajectory, load_trajectories
from robot_training.policies.common import latest_checkpoint
from robot_training.supervised_learning.bc import BehavioralCloning
from robot_training.utils import distributed
from robot_training.utils.logging import RunLogger, run_name
from robot_training.utils.seeding import set_seed
from robot_training.utils.stopping import save_on_stop

#: supervised algorithm name → class
ALGORITHMS = {"bc": BehavioralCloning}


def bc_checkpoint_directory(root: Union[str, os.PathLike]) -> Path:
    return checkpoint_directory(root, "supervised", "bc")


def train_behavioral_cloning(
    demonstrations: Union[Sequence[Trajectory], str, os.PathLike],
    use_sequences: Optional[bool] = None,
    config: Optional[Config] = None,
    num_epochs: Optional[int] = None,
    seed: Optional[int] = None,
    device: Optional[str] = None,
    checkpoint_dir: Union[str, os.PathLike, None] = None,
    save: bool = True,
    progress_bar: Optional[bool] = None,
    resume: Union[bool, str, os.PathLike] = False,
    log_dir: Union[str, os.PathLike, None] = None,
) -> BehavioralCloning:
    """Train behavioral cloning on expert demonstrations and return the trainer.

    ``use_sequences`` (default ``bc.use_sequences``) trains an LSTM over episode windows;
    ``num_epochs`` defaults to ``bc.num_epochs``. With ``save`` the final checkpoint is
    written under ``checkpoint_dir`` (default ``training.checkpoint_dir``); ``resume``
    (True or a path) continues from the newest (or given) checkpoint.
    """
    config = config or Config()
    t = config.training
    if isinstance(demonstrations, (str, os.PathLike)):
        demonstrations = load_trajectories(demonstrations)
    seed = t.seed if seed is None else int(seed)
    set_seed(seed, t.torch_threads)
    # without TensorBoard the scalars stay in memory: listeners (progress, a stop) still see them
    logger = RunLogger(log_dir or Path(t.log_dir) / run_name("demonstrations", "bc", seed), enabled=t.tensorboard)
    trainer = BehavioralCloning(config, use_sequences=use_sequences, seed=seed,
                                device=resolve_device(device or t.device), logger=logger)
    directory = bc_checkpoint_directory(t.checkpoint_dir if checkpoint_dir is None else checkpoint_dir)
    if num_epochs is None:  # the budget is this run's, also when a checkpoint (with its own config) is resumed
        num_epochs = config.bc.num_epochs
    if resume:
        # every rank resumes from the file rank 0 chose
        path = distributed.from_main(latest_checkpoint(directory, "bc") if resume is True else Path(resume))
        if path is None:
            raise CheckpointError(f"{directory}: no checkpoint to resume from")
        trainer.load(path)
        trainer.logger = logger
    try:
        # a stop between two epochs: the state is whole; --resume continues from this file
        with save_on_stop(lambda: (trainer.save(directory / f"bc_epoch{trainer.epoch:06d}.pt"), trainer.epoch)):
            trainer.learn(demonstrations, num_epochs=num_epochs,
                          progress_bar=t.progress_bar if progress_bar is None else progress_bar)
    finally:
        logger.close()
        trainer.logger = None
    if save:
        trainer.final_checkpoint = trainer.save(directory / "bc_final.pt")
    return trainer


__all__ = ["ALGORITHMS", "BehavioralCloning", "train_behavioral_cloning", "bc_checkpoint_directory"]
