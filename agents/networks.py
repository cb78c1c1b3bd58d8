"""Policy networks shared by every algorithm (same architecture and initialisation for a fair
comparison). Build them by name with ``make_network``."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["NETWORKS", "NORMS", "SPATIAL_NETWORKS", "UNETS", "CNNEncoder", "CNNPolicy",
           "MLPPolicy", "UNet", "UNetGroupNorm", "make_network"]


class MLPPolicy(nn.Module):
    """Fully connected policy ``obs (B, obs_dim) → action (B, act_dim)`` with ReLU hidden layers.

    The last layer is initialised ×0.1 so that an untrained policy applies small forces.

    Args:
        obs_dim: Observation size.
        act_dim: Action size.
        hidden: Widths of the hidden layers.
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int] = (256, 256)) -> None:
        super().__init__()
        if obs_dim < 1 or act_dim < 1 or any(h < 1 for h in hidden):
            raise ValueError(f"obs_dim, act_dim and hidden widths must be ≥ 1, got {obs_dim}, "
                             f"{act_dim}, {tuple(hidden)}.")
        layers: list[nn.Module] = []
        width = obs_dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        out = nn.Linear(width, act_dim)
        with torch.no_grad():
            out.weight.mul_(0.1)
            out.bias.zero_()
        layers.append(out)
        self.net = nn.Sequential(*layers)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """``(B, obs_dim) → (B, act_dim)``."""
        return self.net(obs)


NORMS = ("batch", "group")
"""Normalisation layers of the U-Net: ``batch`` (BatchNorm, the published networks) or ``group``
(GroupNorm: statistics of each sample alone, so a policy acts the same on one episode as on a
batch, in training and in evaluation)."""


def _norm(kind: str, dims: int, channels: int) -> nn.Module:
    if kind == "group":  # (groups of 2 channels, or fewer groups for odd widths)
        return nn.GroupNorm(math.gcd(channels, max(1, channels // 2)), channels)
    return (nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d)(channels)


class _DoubleConv(nn.Sequential):
    """(conv 3 → norm → ReLU) × 2 with circular (periodic) padding."""

    def __init__(self, dims: int, c_in: int, c_out: int, norm: str = "batch") -> None:
        conv = nn.Conv1d if dims == 1 else nn.Conv2d
        super().__init__(
            conv(c_in, c_out, 3, padding=1, padding_mode="circular"), _norm(norm, dims, c_out),
            nn.ReLU(),
            conv(c_out, c_out, 3, padding=1, padding_mode="circular"), _norm(norm, dims, c_out),
            nn.ReLU())


def _periodic_upsample(x: torch.Tensor, mode: str) -> torch.Tensor:
    """×2 (bi)linear upsampling that wraps around the edges like the circular convolutions.

    Pads one cell circularly, interpolates, and crops the two padded cells per side, so the
    network stays equivariant to periodic shifts (plain interpolation clamps at the edges).
    """
    dims = x.ndim - 2
    padded = F.pad(x, (1, 1) * dims, mode="circular")
    up = F.interpolate(padded, scale_factor=2, mode=mode, align_corners=False)
    return up[..., 2:-2] if dims == 1 else up[..., 2:-2, 2:-2]


class UNet(nn.Module):
    """U-Net with circular padding for periodic fields, 1-D or 2-D.

    Encoder: a double convolution per level with max-pooling between levels; decoder: upsampling
    (linear / bilinear), concatenation with the skip connection and a double convolution; a final
    1×1 convolution. ``hidden=(16, 16, 16, 16)`` (4 levels of 16 filters, the SIP paper's heat
    network) has 37 k parameters for one input and one output channel.

    The network works on fields but keeps the flat interface of every policy here:

    * ``spatial=None`` (1-D, for the control envs): the flat observation ``(B, obs_dim)`` is read
      as ``obs_dim // act_dim`` field channels of ``act_dim`` cells (e.g. state and target) plus
      one constant channel per leftover scalar (e.g. the time ``t/T``); the output is
      ``(B, act_dim)``.
    * ``spatial=(H, W)`` (2-D): ``act_dim = C_out·H·W``; a flat ``(B, obs_dim)`` input is read
      the same way (fields, then scalars broadcast as channels); inputs may also be ``(B, H, W)``
      (one channel) or ``(B, C, H, W)``, and the output has the input's layout.

    Args:
        obs_dim: Flat input size (see above).
        act_dim: Flat output size (see above).
        hidden: Filters per level (its length is the number of levels).
        spatial: Grid ``(H, W)`` for a 2-D network; ``None`` for 1-D.
        norm: ``"batch"`` (BatchNorm; ``--network unet``) or ``"group"`` (GroupNorm;
            ``--network unet-gn``). BatchNorm normalises by the statistics of the batch in
            training and by running averages in evaluation: right for the single-step inverse
            problems (the published networks use it), wrong for a control policy, whose inputs
            change their statistics along the episode (the running averages mix all steps: a
            DP policy for a small ShapeTransition task evaluated at 0.76 relative error with
            BatchNorm, 0.19 with GroupNorm after the same training;
            ``docs/results/shape_transition/norm``). GroupNorm uses each sample's own
            statistics.

    Raises:
        ValueError: If the sizes do not fit (the message says what would), or for an unknown
            ``norm``.
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int] = (16, 16, 16, 16), *,
                 spatial: Sequence[int] | None = None, norm: str = "batch") -> None:
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}.")
        if not hidden or any(h < 1 for h in hidden):
            raise ValueError(f"hidden (filters per level) must be non-empty and ≥ 1, got "
                             f"{tuple(hidden)}.")
        if spatial is None:
            if obs_dim < act_dim or act_dim < 1:
                raise ValueError(f"A 1-D UNet reads obs_dim // act_dim channels of act_dim cells; "
                                 f"obs_dim={obs_dim} must be ≥ act_dim={act_dim} ≥ 1.")
            self.grid: tuple[int, ...] = (act_dim,)
        else:
            self.grid = tuple(int(v) for v in spatial)
            if len(self.grid) != 2 or min(self.grid) < 1:
                raise ValueError(f"spatial must be (H, W), got {tuple(spatial)}.")
        cells = math.prod(self.grid)
        if obs_dim < cells or act_dim % cells:
            raise ValueError(f"obs_dim={obs_dim} must be ≥ and act_dim={act_dim} a multiple of "
                             f"the {cells} cells of spatial={self.grid}.")
        self.fields, self.scalars = divmod(obs_dim, cells)
        self.c_in, self.c_out = self.fields + self.scalars, act_dim // cells
        factor = 2 ** (len(hidden) - 1)
        if any(v % factor for v in self.grid):
            raise ValueError(f"{len(hidden)} levels halve the grid {len(hidden) - 1} times: every "
                             f"size in {self.grid} must be divisible by {factor}; use fewer "
                             f"levels (a shorter hidden).")
        dims = len(self.grid)
        self.dims = dims
        self.down = nn.ModuleList()
        width = self.c_in
        for h in hidden:
            self.down.append(_DoubleConv(dims, width, h, norm))
            width = h
        self.up = nn.ModuleList(
            _DoubleConv(dims, width_below + skip, skip, norm)
            for width_below, skip in zip(reversed(hidden[1:]), reversed(hidden[:-1]), strict=True))
        conv = nn.Conv1d if dims == 1 else nn.Conv2d
        self.out = conv(hidden[0], self.c_out, 1)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Fields in, fields out (layout as described in the class docstring)."""
        lead = obs.shape[0]
        flat = obs.ndim == 2
        if flat:
            cells = math.prod(self.grid)
            x = obs[:, :self.fields * cells].reshape(lead, self.fields, *self.grid)
            if self.scalars:
                extra = obs[:, self.fields * cells:].reshape(lead, self.scalars,
                                                             *([1] * self.dims))
                x = torch.cat([x, extra.expand(lead, self.scalars, *self.grid)], dim=1)
        else:
            x = obs.reshape(lead, self.c_in, *self.grid)
        pool = F.max_pool1d if self.dims == 1 else F.max_pool2d
        mode = "linear" if self.dims == 1 else "bilinear"
        skips = []
        for i, block in enumerate(self.down):
            if i:
                x = pool(x, 2)
            x = block(x)
            skips.append(x)
        for block in self.up:
            skips.pop()
            x = _periodic_upsample(x, mode)
            x = block(torch.cat([x, skips[-1]], dim=1))
        out = self.out(x)
        if flat:
            return out.reshape(lead, -1)
        if obs.ndim == self.dims + 1 and self.c_out == 1:
            return out[:, 0]
        return out


def _grid_channels(obs_dim: int, act_dim: int, spatial: Sequence[int]
                   ) -> tuple[tuple[int, int], int, int]:
    """``(grid, input channels, output channels)`` of a 2-D network on ``spatial = (H, W)``:
    ``obs_dim = C_in·H·W`` and ``act_dim = C_out·H·W``."""
    grid = tuple(int(v) for v in spatial)
    if len(grid) != 2 or min(grid) < 1:
        raise ValueError(f"spatial must be (H, W), got {tuple(spatial)}.")
    cells = grid[0] * grid[1]
    if obs_dim < cells or obs_dim % cells or act_dim < cells or act_dim % cells:
        raise ValueError(f"obs_dim={obs_dim} and act_dim={act_dim} must be multiples of the "
                         f"{cells} cells of spatial={grid} (channels of fields on the grid).")
    return (grid[0], grid[1]), obs_dim // cells, act_dim // cells


class CNNEncoder(nn.Module):
    """Small convolutional encoder of 2-D fields with circular (periodic) padding:
    ``(B, C, H, W) → (B, features)``.

    Each level is a 3×3 convolution with stride 2 (halving the grid) and ReLU; the last level's
    map is flattened into a linear layer of ``features`` units with ReLU. Shared by
    ``CNNPolicy`` and PPO's features extractor (``agents.ppo``), so that every method can
    start from the same weights.

    Args:
        channels: Input channels ``C``.
        grid: ``(H, W)``; every size must be divisible by ``2 ** len(hidden)``.
        hidden: Filters per level.
        features: Size of the output vector.

    Raises:
        ValueError: If the sizes do not fit (the message says what would).
    """

    def __init__(self, channels: int, grid: Sequence[int], hidden: Sequence[int] = (16, 32, 32),
                 features: int = 128) -> None:
        super().__init__()
        if channels < 1 or features < 1 or not hidden or any(h < 1 for h in hidden):
            raise ValueError(f"channels, features and hidden (filters per level) must be ≥ 1 "
                             f"(hidden non-empty), got {channels}, {features}, {tuple(hidden)}.")
        factor = 2 ** len(hidden)
        self.grid = tuple(int(v) for v in grid)
        if len(self.grid) != 2 or any(v % factor for v in self.grid):
            raise ValueError(f"{len(hidden)} stride-2 levels need every size of the grid "
                             f"{self.grid} divisible by {factor}; use fewer levels (a shorter "
                             "hidden).")
        layers: list[nn.Module] = []
        width = channels
        for h in hidden:
            layers += [nn.Conv2d(width, h, 3, stride=2, padding=1, padding_mode="circular"),
                       nn.ReLU()]
            width = h
        self.conv = nn.Sequential(*layers)
        flat = width * (self.grid[0] // factor) * (self.grid[1] // factor)
        self.linear = nn.Sequential(nn.Linear(flat, features), nn.ReLU())
        self.channels, self.features = channels, features

    def forward(self, fields: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W) → (B, features)``."""
        return self.linear(self.conv(fields).flatten(1))


class CNNPolicy(nn.Module):
    """A 2-D policy: ``CNNEncoder`` then a linear head to every cell of the action field,
    ``(B, C_in, H, W) → (B, C_out, H, W)`` (flat ``(B, obs_dim) → (B, act_dim)`` also works).

    Unlike ``UNet`` (local, translation-equivariant), the head sees the whole box at once:
    it can move a marker towards a target that lies far away. The head is initialised ×0.1 so
    that an untrained policy applies small forces.

    Args:
        obs_dim: ``C_in · H · W``.
        act_dim: ``C_out · H · W``.
        hidden: Filters per encoder level.
        spatial: The grid ``(H, W)`` (required).
        features: Width of the encoder's output.
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int] = (16, 32, 32), *,
                 spatial: Sequence[int] | None = None, features: int = 128) -> None:
        super().__init__()
        if spatial is None:
            raise ValueError("The cnn network works on 2-D fields: pass spatial=(H, W) (the "
                             "training loop does for 2-D envs); use mlp or unet for 1-D.")
        self.grid, self.c_in, self.c_out = _grid_channels(obs_dim, act_dim, spatial)
        self.encoder = CNNEncoder(self.c_in, self.grid, hidden, features)
        self.head = nn.Linear(features, act_dim)
        with torch.no_grad():
            self.head.weight.mul_(0.1)
            self.head.bias.zero_()

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Fields in, fields out (flat in, flat out)."""
        lead = obs.shape[0]
        out = self.head(self.encoder(obs.reshape(lead, self.c_in, *self.grid)))
        return out if obs.ndim == 2 else out.reshape(lead, self.c_out, *self.grid)


def UNetGroupNorm(obs_dim: int, act_dim: int, hidden: Sequence[int] = (16, 16, 16, 16), *,
                  spatial: Sequence[int] | None = None) -> UNet:
    """``UNet`` with GroupNorm instead of BatchNorm (``--network unet-gn``): the U-Net for
    control policies (see ``UNet``'s ``norm``)."""
    return UNet(obs_dim, act_dim, hidden, spatial=spatial, norm="group")


NETWORKS: dict[str, Callable[..., nn.Module]] = {"mlp": MLPPolicy, "unet": UNet,
                                                 "unet-gn": UNetGroupNorm, "cnn": CNNPolicy}

UNETS = ("unet", "unet-gn")
"""The U-Net variants (BatchNorm, GroupNorm)."""

SPATIAL_NETWORKS = ("unet", "unet-gn", "cnn")
"""Networks that read 2-D fields ``(B, C, H, W)`` (with ``spatial=(H, W)``) and give fields."""


def make_network(name: str, obs_dim: int, act_dim: int, *, hidden: Sequence[int] | None = None,
                 device: str | torch.device = "cpu", seed: int | None = None,
                 **kwargs: Any) -> nn.Module:
    """Build a registered network by name, seeded so that every method starts identically.

    ``hidden`` is the network's own notion of width (MLP: hidden layer widths, default
    ``(256, 256)``; U-Net: filters per level, default ``(16, 16, 16, 16)``; CNN: filters per
    encoder level, default ``(16, 32, 32)``); ``kwargs`` go to the network's constructor (e.g.
    ``spatial=(64, 64)`` for a 2-D U-Net or CNN).

    Raises:
        ValueError: For an unknown name (the message lists the known ones).
    """
    if name not in NETWORKS:
        raise ValueError(f"Unknown network {name!r}; choose one of {sorted(NETWORKS)}.")
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        if hidden is not None:
            kwargs["hidden"] = tuple(hidden)
        net = NETWORKS[name](obs_dim, act_dim, **kwargs)
    return net.to(device)
