"""The one trajectory structure every trainer and the bag reader use.

A :class:`Trajectory` holds ``T`` steps of one episode (or one recorded segment):

============================  ==========================  ===================================
field                         shape                       meaning
============================  ==========================  ===================================
``observations``              ``(T, *obs_shape)``         observation ``o_t`` seen before acting;
                              or ``{key: (T, ...)}``      a dict for multi-stream observations
``actions``                   ``(T, action_dim)``         action ``a_t`` taken at ``o_t``
``rewards``                   ``(T,)``                    reward ``r_t`` received after ``a_t``
``terminals``                 ``(T,)`` bool               the episode ended (terminated) after ``a_t``
``truncations``               ``(T,)`` bool               it was cut (time limit, end of recording)
``final_observation``         ``obs_shape`` or dict       ``o_T``, after the last action (optional)
``timestamps_ns``             ``(T,)`` int64 nanoseconds  time of ``o_t`` (optional); ``timestamps``
                                                          is the same in float64 seconds
``episode_id``                str                         where it came from
``info``                      ``{key: (T, ...)}``         any other per-step arrays
``interface_fingerprint``     str or None                 the interface description the steps
                                                          were computed with (bags), else None
============================  ==========================  ===================================

Times are kept in int64 nanoseconds (a float64 second of 2023 is ~240 ns coarse);
``Trajectory(timestamps=seconds)`` still works and converts. Vector observations are float32;
images are uint8 ``(T, H, W, C)``. The next observation of
step ``t`` is ``observations[t + 1]``, or ``final_observation`` at the last step.

Files: :func:`save_trajectories` writes a gzip-compressed NumPy archive (whatever the suffix,
so the seed's ``trajectories.pkl.gz`` name works) and :func:`load_trajectories` reads it with
``allow_pickle=False``: loading a file can never execute code.
"""

from __future__ import annotations

import gzip
import io
import json
import os
from dataclasses import InitVar, dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Union

import numpy as np

from robot_training.utils.files import atomic_write

Observation = Union[np.ndarray, Dict[str, np.ndarray]]

FILE_FORMAT = "robot_training.trajectories"
FILE_FORMAT_VERSION = 2  # 2: timestamps as int64 ns ("timestamps_ns"); version 1 files (float s) still load


class TrajectoryError(ValueError):
    """A trajectory or trajectory file that is not what it should be."""


@dataclass
class Trajectory:
    observations: Observation
    actions: np.ndarray
    rewards: np.ndarray
    terminals: np.ndarray
    truncations: np.ndarray
    final_observation: Optional[Observation] = None
    timestamps_ns: Optional[np.ndarray] = None
    episode_id: str = ""
    info: Dict[str, np.ndarray] = field(default_factory=dict)
    interface_fingerprint: Optional[str] = None
    timestamps: InitVar[Optional[np.ndarray]] = None  # float seconds, converted (the property reads them back)

    def __post_init__(self, timestamps: Optional[np.ndarray] = None) -> None:
        self.actions = np.asarray(self.actions, dtype=np.float32)
        if self.actions.ndim == 1:
            self.actions = self.actions[:, None]
        self.rewards = np.asarray(self.rewards, dtype=np.float32).reshape(-1)
        self.terminals = np.asarray(self.terminals, dtype=bool).reshape(-1)
        self.truncations = np.asarray(self.truncations, dtype=bool).reshape(-1)
        self.observations = _as_obs(self.observations)
        if self.final_observation is not None:
            self.final_observation = _as_obs(self.final_observation)
        if self.timestamps_ns is None and timestamps is not None and not isinstance(timestamps, property):
            self.timestamps_ns = np.round(np.asarray(timestamps, dtype=np.float64) * 1e9)
        if self.timestamps_ns is not None:
            ns = np.asarray(self.timestamps_ns).reshape(-1)
            self.timestamps_ns = ns if ns.dtype == np.int64 else ns.astype(np.int64)
        self.info = {k: np.asarray(v) for k, v in self.info.items()}
        self.validate()

    # ------------------------------------------------------------------ shape helpers
    def __len__(self) -> int:
        return int(self.actions.shape[0])

    @property
    def observation_shape(self):
        """``obs_shape`` for arrays, ``{key: shape}`` for dict observations."""
        if isinstance(self.observations, dict):
            return {k: tuple(v.shape[1:]) for k, v in self.observations.items()}
        return tuple(self.observations.shape[1:])

    @property
    def action_dim(self) -> int:
        return int(self.actions.shape[1])

    @property
    def episode_return(self) -> float:
        return float(self.rewards.sum())

    @property
    def dones(self) -> np.ndarray:
        return self.terminals | self.truncations

    def next_observations(self) -> Observation:
        """``o_{t+1}`` for every step (the last one is ``final_observation``, or ``o_{T-1}``)."""

        def shift(obs: np.ndarray, final: Optional[np.ndarray]) -> np.ndarray:
            last = obs[-1:] if final is None else final[None]
            return np.concatenate([obs[1:], last], axis=0)

        if isinstance(self.observations, dict):
            fin = self.final_observation or {}
            return {k: shift(v, fin.get(k)) for k, v in self.observations.items()}
        return shift(self.observations, self.final_observation)

    def validate(self) -> None:
        n = len(self)
        lengths = {"rewards": len(self.rewards), "terminals": len(self.terminals),
                   "truncations": len(self.truncations)}
        if isinstance(self.observations, dict):
            if not self.observations:
                raise TrajectoryError(f"trajectory {self.episode_id!r}: observations dict is empty")
            lengths.update({f"observations[{k}]": len(v) for k, v in self.observations.items()})
        else:
            lengths["observations"] = len(self.observations)
        if self.timestamps_ns is not None:
            lengths["timestamps"] = len(self.timestamps_ns)
        lengths.update({f"info[{k}]": len(v) for k, v in self.info.items()})
        bad = {k: v for k, v in lengths.items() if v != n}
        if bad:
            raise TrajectoryError(
                f"trajectory {self.episode_id!r}: {n} actions but "
                + ", ".join(f"{k} has {v}" for k, v in bad.items())
            )

    def slice(self, start: int, stop: int) -> "Trajectory":
        """Steps ``[start, stop)``; the observation after the slice becomes ``final_observation``."""
        nxt = None
        if stop < len(self):
            nxt = _index_obs(self.observations, stop)
        elif self.final_observation is not None:
            nxt = self.final_observation
        return Trajectory(
            observations=_slice_obs(self.observations, start, stop),
            actions=self.actions[start:stop],
            rewards=self.rewards[start:stop],
            terminals=self.terminals[start:stop],
            truncations=self.truncations[start:stop],
            final_observation=nxt,
            timestamps_ns=None if self.timestamps_ns is None else self.timestamps_ns[start:stop],
            episode_id=self.episode_id,
            info={k: v[start:stop] for k, v in self.info.items()},
            interface_fingerprint=self.interface_fingerprint,
        )


def _seconds(self: Trajectory) -> Optional[np.ndarray]:
    """``timestamps_ns`` in float64 seconds (derived; None without timestamps)."""
    return None if self.timestamps_ns is None else self.timestamps_ns / 1e9


Trajectory.timestamps = property(_seconds)  # the InitVar's name, read back as seconds


def common_interface_fingerprint(trajectories: Iterable[Trajectory]) -> Optional[str]:
    """The one interface fingerprint of a dataset (``None`` when no trajectory has one).

    A model trained on it stores this fingerprint, so that deployment can check it sees its
    inputs through the same description. Mixing descriptions in one dataset is refused.
    """
    found = {t.interface_fingerprint for t in trajectories}
    if len(found) > 1:
        shown = ", ".join(sorted(str(f)[:12] for f in found))
        raise TrajectoryError(
            f"the trajectories come from {len(found)} different interface descriptions ({shown}); "
            "train on data recorded through one description")
    return next(iter(found), None)


def _as_obs(obs) -> Observation:
    if isinstance(obs, Mapping):
        return {str(k): _as_array(v) for k, v in obs.items()}
    return _as_array(obs)


def _as_array(x) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype == np.uint8:
        return arr
    return arr.astype(np.float32, copy=False)


def _index_obs(obs: Observation, i: int) -> Observation:
    if isinstance(obs, dict):
        return {k: v[i] for k, v in obs.items()}
    return obs[i]


def _slice_obs(obs: Observation, start: int, stop: int) -> Observation:
    if isinstance(obs, dict):
        return {k: v[start:stop] for k, v in obs.items()}
    return obs[start:stop]


# ------------------------------------------------------------------------- files


def save_trajectories(path: Union[str, os.PathLike], trajectories: Iterable[Trajectory]) -> Path:
    """Write trajectories to one file, atomically (gzip-compressed ``.npz`` inside)."""
    path = Path(path)
    arrays: Dict[str, np.ndarray] = {}
    index: List[dict] = []
    for i, traj in enumerate(trajectories):
        p = f"{i}/"
        entry = {"episode_id": traj.episode_id, "dict_obs": isinstance(traj.observations, dict),
                 "has_final": traj.final_observation is not None,
                 "has_timestamps": traj.timestamps_ns is not None, "info": sorted(traj.info),
                 "interface_fingerprint": traj.interface_fingerprint}
        for key, value in _flatten_obs("observations", traj.observations).items():
            arrays[p + key] = value
        if traj.final_observation is not None:
            for key, value in _flatten_obs("final_observation", traj.final_observation).items():
                arrays[p + key] = value
        arrays[p + "actions"] = traj.actions
        arrays[p + "rewards"] = traj.rewards
        arrays[p + "terminals"] = traj.terminals
        arrays[p + "truncations"] = traj.truncations
        if traj.timestamps_ns is not None:
            arrays[p + "timestamps_ns"] = traj.timestamps_ns
        for k, v in traj.info.items():
            arrays[p + "info/" + k] = v
        if entry["dict_obs"]:
            entry["obs_keys"] = sorted(traj.observations)
        index.append(entry)
    header = {"format": FILE_FORMAT, "version": FILE_FORMAT_VERSION, "trajectories": index}
    arrays["__header__"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    with atomic_write(path) as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=3) as gz:
        gz.write(buf.getbuffer())
    return path


def load_trajectories(path: Union[str, os.PathLike]) -> List[Trajectory]:
    """Read a file written by :func:`save_trajectories`. Never unpickles anything."""
    path = Path(path)
    if not path.is_file():
        raise TrajectoryError(f"{path}: no such trajectory file")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise TrajectoryError(f"{path}: truncated or corrupt gzip data ({exc})") from None
    if raw[:1] == b"\x80":
        raise TrajectoryError(
            f"{path}: this is a Python pickle; robot_training refuses to unpickle files "
            "(it could execute code). Re-save the data with save_trajectories()."
        )
    try:
        archive = np.load(io.BytesIO(raw), allow_pickle=False)
        header = json.loads(bytes(archive["__header__"]).decode())
    except Exception as exc:  # noqa: BLE001 - any parse failure means "not ours"
        raise TrajectoryError(f"{path}: not a robot_training trajectory file ({exc})") from None
    if header.get("format") != FILE_FORMAT:
        raise TrajectoryError(f"{path}: not a robot_training trajectory file")
    if header.get("version", 0) > FILE_FORMAT_VERSION:
        raise TrajectoryError(f"{path}: written by a newer robot_training (format {header['version']})")
    out = []
    for i, entry in enumerate(header["trajectories"]):
        p = f"{i}/"
        if entry["dict_obs"]:
            obs = {k: archive[p + "observations/" + k] for k in entry["obs_keys"]}
            final = ({k: archive[p + "final_observation/" + k] for k in entry["obs_keys"]}
                     if entry["has_final"] else None)
        else:
            obs = archive[p + "observations"]
            final = archive[p + "final_observation"] if entry["has_final"] else None
        out.append(Trajectory(
            observations=obs,
            actions=archive[p + "actions"],
            rewards=archive[p + "rewards"],
            terminals=archive[p + "terminals"],
            truncations=archive[p + "truncations"],
            final_observation=final,
            timestamps_ns=archive[p + "timestamps_ns"] if entry["has_timestamps"] and header.get("version", 1) >= 2 else None,
            timestamps=archive[p + "timestamps"] if entry["has_timestamps"] and header.get("version", 1) < 2 else None,
            episode_id=entry["episode_id"],
            info={k: archive[p + "info/" + k] for k in entry["info"]},
            interface_fingerprint=entry.get("interface_fingerprint"),
        ))
    return out


def _flatten_obs(prefix: str, obs: Observation) -> Dict[str, np.ndarray]:
    if isinstance(obs, dict):
        return {f"{prefix}/{k}": v for k, v in obs.items()}
    return {prefix: obs}
