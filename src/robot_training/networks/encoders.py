"""Observation encoders and decoders: a CNN for images, an MLP for vectors, both for dicts.

Observation layouts:

* a vector ``(D,)`` float32 → symlog, then an MLP;
* an image ``(H, W, C)`` uint8 (``H == W``, a power of two ≥ 8) → ``x / 255 - 0.5``, then
  strided 4×4 convolutions halving the resolution down to 4×4 with ``cnn_depth × 2^i`` channels;
* a dict of those → every image key through its own CNN, every vector key concatenated into one
  MLP, the embeddings concatenated.

Decoders mirror the encoders and return predictions in the *target space*: symlog for vectors
and ``x / 255 - 0.5`` for images, so their loss is a plain squared error (see
:meth:`MultiDecoder.loss`).
"""

from __future__ import annotations

import math
from typing import Dict, Mapping, Tuple, Union

import torch
from torch import nn

from robot_training.networks.heads import dense_block, symlog

Shape = Tuple[int, ...]
ObservationShape = Union[Shape, Mapping[str, Shape]]


class ObservationShapeError(ValueError):
    """An observation shape the encoders cannot take."""


def split_observation_shape(observation_shape: ObservationShape) -> Tuple[Dict[str, Shape], Dict[str, Shape]]:
    """``(image_shapes, vector_shapes)`` keyed by name (``"obs"`` for a plain array)."""
    shapes = dict(observation_shape) if isinstance(observation_shape, Mapping) else {"obs": observation_shape}
    images, vectors = {}, {}
    for key, shape in shapes.items():
        shape = tuple(int(s) for s in shape)
        if len(shape) == 1 and shape[0] > 0:
            vectors[key] = shape
        elif len(shape) == 3:
            height, width, channels = shape
            if height != width or height < 8 or height & (height - 1):
                raise ObservationShapeError(
                    f"observation {key!r}: image shape {shape} not supported; expected (H, W, C) "
                    "with H == W a power of two >= 8, e.g. (64, 64, 3)")
            if channels not in (1, 3, 4) and channels > 16:
                raise ObservationShapeError(
                    f"observation {key!r}: shape {shape} looks channels-first; images are (H, W, C)")
            images[key] = shape
        else:
            raise ObservationShapeError(
                f"observation {key!r}: shape {shape} not supported; use a vector (D,) or an "
                "image (H, W, C)")
    if not images and not vectors:
        raise ObservationShapeError(f"observation shape {observation_shape!r} has no usable entries")
    return images, vectors


def _channel_norm(channels: int) -> nn.Module:
    return nn.GroupNorm(1, channels)  # LayerNorm over channels and pixels; batch independent


class ConvEncoder(nn.Module):
    def __init__(self, shape: Shape, depth: int):
        super().__init__()
        size, _, channels = shape
        stages = int(math.log2(size // 4))
        layers: list[nn.Module] = []
        for i in range(stages):
            out = depth * 2 ** i
            layers += [nn.Conv2d(channels, out, 4, stride=2, padding=1, bias=False),
                       _channel_norm(out), nn.SiLU()]
            channels = out
        self.net = nn.Sequential(*layers)
        self.out_dim = channels * 4 * 4

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``(N, H, W, C)`` uint8 → ``(N, out_dim)``."""
        x = image.permute(0, 3, 1, 2).float() / 255.0 - 0.5
        return self.net(x).flatten(1)


class ConvDecoder(nn.Module):
    def __init__(self, in_dim: int, shape: Shape, depth: int):
        super().__init__()
        size, _, channels = shape
        stages = int(math.log2(size // 4))
        self.start_channels = depth * 2 ** (stages - 1)
        self.inp = nn.Linear(in_dim, self.start_channels * 16)
        layers: list[nn.Module] = []
        width = self.start_channels
        for i in reversed(range(stages)):
            last = i == 0
            out = channels if last else depth * 2 ** (i - 1)
            layers.append(nn.ConvTranspose2d(width, out, 4, stride=2, padding=1, bias=last))
            if not last:
                layers += [_channel_norm(out), nn.SiLU()]
            width = out
        self.net = nn.Sequential(*layers)

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        """``(N, in_dim)`` → ``(N, H, W, C)`` in ``[-0.5, 0.5]`` pixel space (unbounded)."""
        x = self.inp(feature).view(-1, self.start_channels, 4, 4)
        return self.net(x).permute(0, 2, 3, 1)


class MultiEncoder(nn.Module):
    """Any supported observation → one embedding vector ``(..., out_dim)``."""

    def __init__(self, observation_shape: ObservationShape, cnn_depth: int, hidden_dim: int, num_layers: int):
        super().__init__()
        self.image_shapes, self.vector_shapes = split_observation_shape(observation_shape)
        self.is_dict = isinstance(observation_shape, Mapping)
        self.cnns = nn.ModuleDict({k: ConvEncoder(s, cnn_depth) for k, s in self.image_shapes.items()})
        vector_dim = sum(s[0] for s in self.vector_shapes.values())
        self.mlp = dense_block(vector_dim, hidden_dim, num_layers) if vector_dim else None
        self.out_dim = sum(c.out_dim for c in self.cnns.values()) + (hidden_dim if vector_dim else 0)

    def forward(self, observation) -> torch.Tensor:
        obs = observation if self.is_dict else {"obs": observation}
        parts = []
        for key, cnn in self.cnns.items():
            image = obs[key]
            lead = image.shape[:-3]
            parts.append(cnn(image.reshape(-1, *image.shape[-3:])).reshape(*lead, -1))
        if self.mlp is not None:
            vector = torch.cat([obs[k].float() for k in self.vector_shapes], -1)
            parts.append(self.mlp(symlog(vector)))
        return torch.cat(parts, -1) if len(parts) > 1 else parts[0]


class MultiDecoder(nn.Module):
    """Feature → a reconstruction of every observation key (in target space)."""

    def __init__(self, in_dim: int, observation_shape: ObservationShape, cnn_depth: int,
                 hidden_dim: int, num_layers: int):
        super().__init__()
        self.image_shapes, self.vector_shapes = split_observation_shape(observation_shape)
        self.is_dict = isinstance(observation_shape, Mapping)
        self.cnns = nn.ModuleDict({k: ConvDecoder(in_dim, s, cnn_depth) for k, s in self.image_shapes.items()})
        self.vector_dims = {k: s[0] for k, s in self.vector_shapes.items()}
        if self.vector_dims:
            self.mlp = nn.Sequential(dense_block(in_dim, hidden_dim, num_layers),
                                     nn.Linear(hidden_dim if num_layers else in_dim, sum(self.vector_dims.values())))
        else:
            self.mlp = None

    def forward(self, feature: torch.Tensor) -> Dict[str, torch.Tensor]:
        lead = feature.shape[:-1]
        out = {}
        flat = feature.reshape(-1, feature.shape[-1])
        for key, cnn in self.cnns.items():
            out[key] = cnn(flat).reshape(*lead, *self.image_shapes[key])
        if self.mlp is not None:
            vectors = self.mlp(feature).split(list(self.vector_dims.values()), -1)
            out.update(zip(self.vector_dims, vectors))
        return out

    def targets(self, observation) -> Dict[str, torch.Tensor]:
        obs = observation if self.is_dict else {"obs": observation}
        out = {k: obs[k].float() / 255.0 - 0.5 for k in self.image_shapes}
        out.update({k: symlog(obs[k].float()) for k in self.vector_shapes})
        return out

    def loss(self, prediction: Dict[str, torch.Tensor], observation) -> torch.Tensor:
        """Squared error summed over each observation's elements and over keys: ``(...)``."""
        total = 0.0
        for key, target in self.targets(observation).items():
            dims = tuple(range(-len(self.image_shapes.get(key, self.vector_shapes.get(key))), 0))
            total = total + (prediction[key] - target).square().sum(dims)
        return total

    def to_observation(self, prediction: Dict[str, torch.Tensor]):
        """Predictions back in observation space (uint8 images, plain vectors)."""
        from robot_training.networks.heads import symexp

        out = {k: ((prediction[k] + 0.5).clamp(0, 1) * 255).to(torch.uint8) for k in self.image_shapes}
        out.update({k: symexp(prediction[k]) for k in self.vector_shapes})
        return out if self.is_dict else out["obs"]
