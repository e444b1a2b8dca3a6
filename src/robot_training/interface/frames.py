"""A small tree of coordinate frames: the pose of one frame in another from tf-style edges.

An edge ``parent → child`` says where ``child`` is in ``parent``: a point ``p`` in the
child frame is ``R(q) p + t`` in the parent frame (``t`` the translation, ``q`` the rotation
as a unit quaternion ``x, y, z, w``), which is what a ``geometry_msgs/TransformStamped``
with ``header.frame_id = parent`` and ``child_frame_id = child`` carries.

As in a tf tree every frame has at most one parent: the edge of a child is replaced by a
newer one (a later or equal stamp; an older stamp is ignored), whichever its parent.
:meth:`FrameTree.lookup` walks up from both frames to their closest common ancestor and
composes the edges on the way, inverting those it walks against, so either frame may sit
above the other or on another branch. Everything is float64; each composed quaternion is
normalized.
"""

from __future__ import annotations

from typing import Dict, NamedTuple, Tuple

import numpy as np


class FrameError(LookupError):
    """No chain of edges between two frames (or a bad edge); the message names the frames."""


def quat_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The Hamilton product ``a ⊗ b`` of two ``x, y, z, w`` quaternions (rotate by b, then a)."""
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return np.array([aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw,
                     aw * bw - ax * bx - ay * by - az * bz])


def quat_rotate(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``v`` rotated by the unit quaternion ``q``: ``v + 2 w (u × v) + 2 u × (u × v)``."""
    u, w = q[:3], q[3]
    c = np.cross(u, v)
    return v + 2.0 * (w * c + np.cross(u, c))


class Transform(NamedTuple):
    """``translation`` (3) and unit ``rotation`` (4, x y z w): a child frame's pose in its parent."""

    translation: np.ndarray
    rotation: np.ndarray

    @staticmethod
    def identity() -> "Transform":
        return Transform(np.zeros(3), np.array([0.0, 0.0, 0.0, 1.0]))

    def then(self, inner: "Transform") -> "Transform":
        """``self ∘ inner``: ``inner`` maps c → b, ``self`` maps b → a; the result maps c → a."""
        q = quat_multiply(self.rotation, inner.rotation)
        return Transform(self.translation + quat_rotate(self.rotation, inner.translation), q / np.linalg.norm(q))

    def inverse(self) -> "Transform":
        conj = self.rotation * np.array([-1.0, -1.0, -1.0, 1.0])
        return Transform(-quat_rotate(conj, self.translation), conj)


def make_transform(translation, rotation, frame: str = "") -> Transform:
    """A :class:`Transform` from numbers; a zero-length or non-finite quaternion is a :class:`FrameError`."""
    t = np.asarray(translation, dtype=np.float64).reshape(3)
    q = np.asarray(rotation, dtype=np.float64).reshape(4)
    norm = float(np.linalg.norm(q))
    if not (np.all(np.isfinite(t)) and np.isfinite(norm)) or norm < 1e-9:
        raise FrameError(f"transform of frame '{frame}' is not finite or has a zero quaternion "
                         f"(translation {t.tolist()}, rotation {q.tolist()})")
    return Transform(t, q / norm)


class FrameTree:
    """Edges ``parent → child`` (one parent per child, the newest stamp wins) and lookups."""

    def __init__(self) -> None:
        self.edges: Dict[str, Tuple[str, int, Transform]] = {}  # child -> (parent, stamp ns, transform)

    def __len__(self) -> int:
        return len(self.edges)

    def set(self, parent: str, child: str, stamp_ns: int, transform: Transform) -> bool:
        """Add or replace ``child``'s edge; False (nothing changed) when the stored one is newer."""
        if parent == child:
            raise FrameError(f"transform from frame '{parent}' to itself")
        old = self.edges.get(child)
        if old is not None and old[1] > stamp_ns:
            return False
        self.edges[child] = (parent, int(stamp_ns), transform)
        return True

    def _up(self, frame: str) -> Dict[str, Transform]:
        """``{ancestor: pose of frame in ancestor}`` from ``frame`` itself to its root, in order."""
        out = {frame: Transform.identity()}
        pose = out[frame]
        edge = self.edges.get(frame)
        while edge is not None:
            parent, _, t = edge
            if parent in out:
                raise FrameError(f"the transforms form a loop through frame '{parent}'")
            pose = t.then(pose)
            out[parent] = pose
            edge = self.edges.get(parent)
        return out

    def frames(self) -> set:
        return set(self.edges) | {p for p, _, _ in self.edges.values()}

    def connected(self, frame: str) -> set:
        """Every frame joined to ``frame`` by edges, either way (for error messages)."""
        links: Dict[str, set] = {}
        for child, (parent, _, _) in self.edges.items():
            links.setdefault(child, set()).add(parent)
            links.setdefault(parent, set()).add(child)
        seen, todo = {frame}, [frame]
        while todo:
            for f in links.get(todo.pop(), ()):
                if f not in seen:
                    seen.add(f)
                    todo.append(f)
        return seen

    def lookup(self, parent: str, child: str) -> Transform:
        """The pose of ``child`` in ``parent`` (maps child coordinates to parent coordinates)."""
        from_child, from_parent = self._up(child), self._up(parent)
        for ancestor, child_in_ancestor in from_child.items():  # closest common ancestor first
            if ancestor in from_parent:
                return from_parent[ancestor].inverse().then(child_in_ancestor)
        known = self.frames()
        for frame in (parent, child):
            if frame not in known:
                raise FrameError(f"no transform names frame '{frame}' (frames seen: "
                                 f"{', '.join(sorted(known)) or 'none'})")
        raise FrameError(f"no chain {parent} → {child}: an edge is missing between the frames of '{parent}' "
                         f"[{', '.join(sorted(self.connected(parent)))}] and those of '{child}' "
                         f"[{', '.join(sorted(self.connected(child)))}]")
