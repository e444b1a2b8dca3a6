"""The episodes a recorder has finished, each handed to the learner exactly once.

::

    feed = EpisodeFeed("data/loop", interface)
    for episode in feed.poll():          # new finished episodes, in recording order
        learner.add(episode.trajectories)

A recorder (:mod:`robot_training.recording`) writes one ``episode_NNNNNN/`` bag per episode
and marks it finished by writing ``metadata.yaml`` and then ``episode.yaml`` with
``status: complete`` (or ``repaired`` after ``bags repair`` / ``repair_on_start``). The feed
takes a folder once both say so; a bag still being written is left for a later poll, so no
episode is read half-written, none twice and none missed. Bags are read with
:func:`robot_training.data.bag_dataset.load_bag_dataset`, the dataset builder's own code,
through the interface description.

A fleet's recorders (:mod:`robot_training.online.fleet`) write into one subfolder each
(``<dataset>/robot1/episode_NNNNNN``); the feed reads the dataset folder and every such
subfolder, each recorder's episodes in index order, keyed by their path below the dataset.

A bag that cannot be used (``status: failed``, unreadable, foreign fingerprint, missing
topics) is reported once in :attr:`EpisodeFeed.problems` with the reason and skipped; it is
read again if its files change (e.g. after a repair). A bag left unfinished by a killed
recorder is reported once, with the command that repairs it, when a newer episode exists.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Union

import numpy as np

from robot_training.data.bag_dataset import BagError, bag_content_key, load_bag_dataset
from robot_training.interface.description import InterfaceError
from robot_training.data.trajectory import Trajectory
from robot_training.recording.recorder import list_episode_dirs, read_sidecar

log = logging.getLogger("robot_training.online")

FINISHED = ("complete", "repaired")


@dataclass
class FeedEpisode:
    """One finished episode bag and what the dataset builder made of it."""

    name: str
    path: Path
    trajectories: List[Trajectory]
    record: dict = field(default_factory=dict)
    """The recorder's ``episode.yaml`` (EpisodeEvent return, length, reason, ...)."""

    @property
    def steps(self) -> int:
        return sum(len(t) for t in self.trajectories)

    @property
    def episode_return(self) -> float:
        """The return the robot reported (EpisodeEvent), else the sum of the aligned rewards."""
        reported = self.record.get("episode_return")
        if reported is not None:
            return float(reported)
        return float(sum(float(np.sum(t.rewards)) for t in self.trajectories))

    @property
    def length(self) -> int:
        reported = self.record.get("length")
        return int(reported) if reported is not None else self.steps


class EpisodeFeed:
    def __init__(self, dataset_dir: Union[str, os.PathLike], interface, *, cache: bool = True,
                 min_steps: int = 1):
        self.dataset = Path(dataset_dir)
        self.interface = interface
        self.cache = cache
        self.min_steps = int(min_steps)
        self.taken: Dict[str, int] = {}
        """Episodes handed out so far: bag folder (``episode_000001``, ``robot1/episode_000001``) → steps."""
        self.problems: Dict[str, str] = {}
        """Bags skipped, with the reason (reported once each)."""
        self._problem_keys: Dict[str, dict] = {}

    def _problem(self, name: str, key: dict, text: str) -> None:
        if self._problem_keys.get(name) == key:
            return
        self._problem_keys[name] = key
        self.problems[name] = text
        log.warning("episode %s skipped: %s", name, text)

    def recorder_dirs(self) -> List[Path]:
        """The dataset folder and each subfolder a fleet's recorder writes (``robot1/``, ...)."""
        if not self.dataset.is_dir():
            return []
        subs = sorted(p for p in self.dataset.iterdir() if p.is_dir() and list_episode_dirs(p))
        return [self.dataset, *subs]

    def poll(self) -> List[FeedEpisode]:
        """The finished episodes not handed out before, each recorder's in index order."""
        out: List[FeedEpisode] = []
        for directory in self.recorder_dirs():
            out += self._poll_recorder(list_episode_dirs(directory))
        return out

    def _poll_recorder(self, folders: List[Path]) -> List[FeedEpisode]:
        out: List[FeedEpisode] = []
        for i, folder in enumerate(folders):
            name = folder.relative_to(self.dataset).as_posix()
            if name in self.taken:
                continue
            record = read_sidecar(folder)
            status = record.get("status")
            has_metadata = (folder / "metadata.yaml").is_file()
            newest = i == len(folders) - 1
            if status == "failed":
                self._problem(name, bag_content_key(folder), f"the recorder failed while writing it "
                                                         f"({record.get('error', 'no detail')}); run `bags repair {folder}`")
                continue
            if not has_metadata or (record and status not in FINISHED):
                if not newest and not has_metadata:
                    self._problem(name, bag_content_key(folder), f"unfinished (its recorder was stopped or killed); "
                                                             f"run `bags repair {folder}` to recover it")
                continue  # still being written, or waiting for a repair
            key = bag_content_key(folder)
            if name in self._problem_keys and self._problem_keys[name] == key:
                continue  # refused before and unchanged since (a repair changes the key): not read again
            try:
                trajectories = load_bag_dataset(folder, self.interface, cache=self.cache, min_steps=self.min_steps)
            except (BagError, InterfaceError, OSError) as exc:
                self._problem(name, key, str(exc))
                continue
            self.problems.pop(name, None)
            episode = FeedEpisode(name, folder, trajectories, record)
            self.taken[name] = episode.steps
            out.append(episode)
        return out

    @property
    def steps(self) -> int:
        return sum(self.taken.values())

    def __len__(self) -> int:
        return len(self.taken)
