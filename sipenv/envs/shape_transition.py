"""``sip/ShapeTransition-v0``: steer a marker (smoke) in a 2-D incompressible flow from one shape
to another by applying force fields (the shape-transition task of Holl, Thuerey & Koltun,
ICLR 2020, with forces on an incompressible flow instead of a prescribed velocity).

The module holds the task's batched core (:class:`ShapeTransitionCore`, what agents
differentiate through), its Gymnasium hooks (:class:`ShapeTransitionTask`) and the single and
native vector envs. The frames are drawn by :mod:`sipenv.envs.rendering_2d`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple, SupportsFloat

import numpy as np
import torch
from gymnasium import spaces

from sipenv.envs.checks import as_field, checked_options
from sipenv.envs.control import ControlEnv, ControlTask, ControlVectorEnv
from sipenv.envs.core import FieldCore, Rollout, relative_squared_error
from sipenv.envs.sensing import Sensing
from sipenv.envs.settings import Factory, Route
from sipenv.physics.flow import IncompressibleFlowPhysics, periodic_bilinear
from sipenv.physics.grid import FactorCache
from sipenv.physics.shapes import SHAPE_KINDS, render_shapes, sample_shape_params
from sipenv.validation import (
    check_bool,
    check_choice,
    check_int,
    check_nonnegative,
    check_positive,
)

__all__ = ["ACTUATION_REGIONS", "FREQUENCY_SIGMA", "ShapeTransitionCore", "ShapeTransitionEnv",
           "ShapeTransitionTask", "ShapeTransitionVectorEnv", "actuation_mask", "make_core"]

ENV_ID = "sip/ShapeTransition-v0"

ACTUATION_REGIONS = ("full", "bottom", "sides", "border")
"""Named actuation regions (``actuation=``): the whole box; the ``actuation_width`` lowest rows
(small ``y``); the ``actuation_width`` columns at each side; bottom and sides together (the
restricted actuation of the indirect-control task of Holl, Thuerey & Koltun, 2020)."""

FREQUENCY_SIGMA = 0.01
"""Width ``σ_k`` (cycles per cell) of the Gaussian frequency weight of
:meth:`ShapeTransitionCore.frequency_l1`."""

OBS_CHANNELS = ("marker", "velocity_y", "velocity_x", "target_marker", "time")
"""The channels of a spatial observation, in order."""


@functools.lru_cache(maxsize=16)
def actuation_mask(region: str, shape: tuple[int, int], width: int) -> np.ndarray:
    """The ``(H, W)`` boolean mask of the cells where forces act (read-only).

    Args:
        region: One of :data:`ACTUATION_REGIONS`.
        shape: The grid ``(H, W)``.
        width: Rows / columns of the ``bottom`` / ``sides`` strips.
    """
    h, w = shape
    rows, cols = np.arange(h)[:, None], np.arange(w)[None, :]
    bottom = np.broadcast_to(rows < width, (h, w))
    sides = np.broadcast_to((cols < width) | (cols >= w - width), (h, w))
    mask = {"full": np.ones((h, w), dtype=bool), "bottom": bottom, "sides": sides,
            "border": bottom | sides}[region].copy()
    mask.setflags(write=False)
    return mask


class _ControlFactors(NamedTuple):
    """Per-``(device, dtype)`` constants of a :class:`ShapeTransitionCore`: the actuation
    mask ``(H, W)`` and the positions of the physics cells on the control grid
    ``(2, H, W)`` (in control cells, for the upsampling)."""

    mask: torch.Tensor
    positions: torch.Tensor


@dataclass(frozen=True)
class ShapeTransitionCore(FieldCore):
    """Batched, differentiable definition of ``sip/ShapeTransition-v0`` (see the env's
    docstring for the task).

    Shapes: a state is the physics state ``(B, 3, H, W)`` = ``[u_y, u_x, m]``; a target is a
    marker ``(B, H, W)``; a normalised action is a force field ``(B, 2, h, w)`` on the control
    grid ``(h, w)`` (``control_resolution``, default the physics grid); an observation is
    ``(B, 5, H, W)`` (``[m, u_y, u_x, m*, t/T]``) or flat ``(B, 4·H·W + 1)``.

    Args:
        physics: The flow (``IncompressibleFlowPhysics`` with one marker).
        horizon: Steps per episode (≥ 1).
        force_scale: Force (cells per step², i.e. velocity change per step) per unit action.
        force_penalty: Weight of the per-step force cost (≥ 0).
        control_resolution: ``(h, w)`` of the control grid, each in ``[1, grid size]``; the
            force is upsampled to the physics grid by periodic bilinear interpolation (coarse
            sample ``(i, j)`` sits on fine cell ``(i·H/h, j·W/w)``). ``None``: the physics grid.
        actuation: Where forces act, one of :data:`ACTUATION_REGIONS`; outside it the applied
            force is zero.
        actuation_width: Width in cells of the ``bottom`` / ``sides`` strips (≥ 1).
        flat_observation: Flat observations ``(4·H·W + 1,)`` instead of ``(5, H, W)``.
        kinds: Shape kinds to draw (names from ``sipenv.physics.shapes.SHAPE_KINDS``);
            ``None``: all of them.
        size_range: Outer radius of the initial shape as a fraction of the box, ``(low, high)``.
        match_area: Rescale each target shape so that its marker mass equals the initial
            one's (an incompressible flow preserves areas).
        initial_speed: RMS speed of a random smooth initial velocity (cells per step);
            ``0``: the fluid starts at rest.
        sensing: Sensors, actuators and noise (``sipenv.envs.sensing.Sensing``, 2-D): with
            sensors the observation is flat, ``[m, u_y, u_x at the K sensors, m* (whole, or at
            the sensors), t/T]``; with ``M`` actuators the action is ``(2, M)``, each force
            component the basis times its row (instead of a control grid: not together with
            ``control_resolution``).
    """

    physics: IncompressibleFlowPhysics
    horizon: int = 16
    force_scale: float = 1.0
    force_penalty: float = 1e-3
    control_resolution: tuple[int, int] | None = None
    actuation: str = "full"
    actuation_width: int = 8
    flat_observation: bool = False
    kinds: tuple[str, ...] | None = None
    size_range: tuple[float, float] = (0.1, 0.2)
    match_area: bool = True
    initial_speed: float = 0.0
    sensing: Sensing = field(default_factory=Sensing)
    _cache: FactorCache = field(default_factory=FactorCache, init=False, repr=False,
                                compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.physics, IncompressibleFlowPhysics) or self.physics.markers != 1:
            raise ValueError("physics must be an IncompressibleFlowPhysics with markers=1.")
        check_int("horizon", self.horizon, minimum=1)
        check_positive("force_scale", self.force_scale)
        check_nonnegative("force_penalty", self.force_penalty)
        h, w = self.physics.shape
        res = self.control_resolution
        if res is not None:
            if not (isinstance(res, (tuple, list)) and len(res) == 2):
                raise ValueError(f"control_resolution must be a pair (h, w) or None, got "
                                 f"{res!r}.")
            res = (check_int("control_resolution[0]", res[0], minimum=1, maximum=h),
                   check_int("control_resolution[1]", res[1], minimum=1, maximum=w))
            object.__setattr__(self, "control_resolution", res)
        check_choice("actuation", self.actuation, ACTUATION_REGIONS)
        check_int("actuation_width", self.actuation_width, minimum=1)
        check_bool("flat_observation", self.flat_observation)
        if self.kinds is not None:
            if isinstance(self.kinds, str) or not self.kinds:
                raise ValueError(f"kinds must be a non-empty sequence of names from "
                                 f"{SHAPE_KINDS}, or None; got {self.kinds!r}.")
            object.__setattr__(self, "kinds", tuple(check_choice("kind", k, SHAPE_KINDS)
                                                    for k in self.kinds))
        sr = self.size_range
        if not (isinstance(sr, (tuple, list)) and len(sr) == 2
                and all(isinstance(v, (int, float)) for v in sr) and 0 < sr[0] <= sr[1] < 0.5):
            raise ValueError(f"size_range must be (low, high) with 0 < low ≤ high < 0.5 "
                             f"(fractions of the box), got {sr!r}.")
        object.__setattr__(self, "size_range", (float(sr[0]), float(sr[1])))
        check_bool("match_area", self.match_area)
        check_nonnegative("initial_speed", self.initial_speed)
        self.sensing.check(self.grid_shape)
        if self.sensing.actuated and self.control_resolution is not None:
            raise ValueError("actuators and control_resolution both set the action's layout; "
                             "give one of them.")

    # --- shapes ---------------------------------------------------------------------------------

    @property
    def grid_shape(self) -> tuple[int, int]:
        """The physics grid ``(H, W)``."""
        h, w = self.physics.shape
        return h, w

    @property
    def control_shape(self) -> tuple[int, int]:
        """The control grid ``(h, w)``."""
        return self.control_resolution or self.grid_shape

    @property
    def action_shape(self) -> tuple[int, ...]:
        """``(2, h, w)``: ``[f_y, f_x]`` on the control grid; ``(2, M)`` with ``M``
        actuators."""
        if self.sensing.actuated:
            return (2, self.sensing.actuator_count(self.grid_shape))
        return (2, *self.control_shape)

    @property
    def observation_shape(self) -> tuple[int, ...]:
        """``(5, H, W)``, or ``(4·H·W + 1,)`` with ``flat_observation``; with ``K`` sensors
        ``(3K + H·W + 1,)`` (``(4K + 1,)`` with ``target_observation="sensors"``)."""
        if self.sensing.sensed:
            k = self.sensing.sensor_count(self.grid_shape)
            target = k if self.sensing.target_observation == "sensors" else self.n
            return (3 * k + target + 1,)
        if self.flat_observation:
            return (4 * self.n + 1,)
        return (len(OBS_CHANNELS), *self.grid_shape)

    @property
    def sensor_noise_mask(self) -> torch.Tensor:
        """``observation_shape`` booleans: the marker and velocity readings."""
        mask = torch.zeros(self.observation_shape, dtype=torch.bool)
        if self.sensing.sensed:
            mask[:3 * self.sensing.sensor_count(self.grid_shape)] = True
        elif self.flat_observation:
            mask[:3 * self.n] = True
        else:
            mask[:3] = True
        return mask

    @property
    def obs_dim(self) -> int:
        """Observation size (flat)."""
        return math.prod(self.observation_shape)

    # --- forces ---------------------------------------------------------------------------------

    def _build(self, device: torch.device) -> _ControlFactors:
        m = actuation_mask(self.actuation, self.grid_shape, self.actuation_width)
        (h, w), (fh, fw) = self.control_shape, self.grid_shape
        iy = torch.arange(fh, device=device, dtype=torch.float64) * (h / fh)
        ix = torch.arange(fw, device=device, dtype=torch.float64) * (w / fw)
        positions = torch.stack(torch.broadcast_tensors(iy[:, None], ix[None, :]))
        return _ControlFactors(torch.from_numpy(m.copy()).to(device, torch.float64), positions)

    def mask(self, device: torch.device | str | None = None,
             dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The actuation mask ``(H, W)`` as 0/1 values (cached per device and dtype)."""
        return self._cache.get(device, dtype, self._build).mask

    def upsample(self, values: torch.Tensor) -> torch.Tensor:
        """Periodic bilinear upsampling ``(…, 2, h, w)`` → ``(…, 2, H, W)`` (identity on the
        physics grid); linear, and never leaves the range of its input. With actuators: the
        basis times the actuator values, ``(…, 2, M)`` → ``(…, 2, H, W)``."""
        if self.sensing.actuated:
            return self.sensing.actuate(values, self.grid_shape)
        if tuple(values.shape[-2:]) == self.grid_shape:
            return values
        lead = values.shape[:-3]
        x = values.reshape(-1, *values.shape[-3:])
        fh, fw = self.grid_shape
        pos = self._cache.get(x.device, x.dtype, self._build).positions
        up = periodic_bilinear(x, pos.expand(x.shape[0], 2, fh, fw))
        return up.reshape(*lead, 2, fh, fw)

    def applied(self, values: torch.Tensor) -> torch.Tensor:
        """``mask · upsample(values)``: a control-grid field as it acts on the physics grid."""
        up = self.upsample(values)
        return up if self.actuation == "full" else up * self.mask(values.device, values.dtype)

    def action_to_force(self, action: torch.Tensor) -> torch.Tensor:
        """``force_scale · mask · upsample(clip(a, −1, 1))``, ``(…, 2, H, W)``."""
        return self.force_scale * self.applied(action.clamp(-1.0, 1.0))

    def force_cost(self, action: torch.Tensor) -> torch.Tensor:
        """``mean((f / force_scale)²)`` over the physics grid and both components of the applied
        force (``mean(clip(a)²)`` on a full-resolution, fully actuated grid), shape ``(…,)``."""
        return self.applied(action.clamp(-1.0, 1.0)).square().mean((-3, -2, -1))

    # --- tasks ----------------------------------------------------------------------------------

    def sample_tasks(self, batch: int, generator: torch.Generator, *,
                     device: torch.device | str | None = None,
                     dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """``batch`` tasks: states ``(batch, 3, H, W)`` (a random shape, at rest unless
        ``initial_speed > 0``) and target markers ``(batch, H, W)`` (another random shape, its
        mass matched to the initial one's with ``match_area``)."""
        phys, shape = self.physics, self.grid_shape
        kw = dict(shape=shape, length=phys.length, kinds=self.kinds, size_range=self.size_range)
        first = sample_shape_params(batch, generator, **kw)  # type: ignore[arg-type]
        second = sample_shape_params(batch, generator, **kw)  # type: ignore[arg-type]
        dev = generator.device if device is None else device
        m0 = render_shapes(first, shape, length=phys.length, device=dev, dtype=torch.float64)
        if self.match_area:
            m1 = render_shapes(second, shape, length=phys.length, device=dev,
                               dtype=torch.float64)
            ratio = (m0.sum((-2, -1)) / m1.sum((-2, -1)).clamp_min(1e-12)).sqrt()
            size = (second.size * ratio.to(second.size.device)).clamp_max(
                0.45 * min(phys.domain.lengths))
            second = second._replace(size=size)
        target = render_shapes(second, shape, length=phys.length, device=dev, dtype=dtype)
        if self.initial_speed > 0:
            u = phys.sample_velocities(batch, generator, amplitude=self.initial_speed,
                                       device=dev, dtype=dtype)
        else:
            u = torch.zeros(batch, 2, *shape, device=dev, dtype=dtype)
        return torch.cat((u, m0.to(dtype)[:, None]), 1), target

    # --- observations and errors ----------------------------------------------------------------

    def observe(self, state: torch.Tensor, target: torch.Tensor,
                time_fraction: float | torch.Tensor) -> torch.Tensor:
        """Float32 observations: ``[m, u_y, u_x, m*, t/T]`` as ``(B, 5, H, W)`` (the time a
        constant channel), or flat ``[m, u_y, u_x, m*]`` (``4·H·W``) then ``t/T``."""
        b = state.shape[0]
        tf = torch.as_tensor(time_fraction, dtype=torch.float32, device=state.device)
        tf = tf.expand(b) if tf.ndim == 0 else tf
        if self.sensing.sensed:  # [m, u_y, u_x at the sensors, m* whole or sensed, t/T]
            grid, sensing = self.grid_shape, self.sensing
            readings = sensing.sense(torch.cat((state[:, 2:3], state[:, :2]), 1).float(), grid)
            goal = target.float()
            goal = (sensing.sense(goal, grid) if sensing.target_observation == "sensors"
                    else goal.flatten(1))
            return torch.cat((readings.flatten(1), goal, tf[:, None]), 1)
        fields = torch.cat((state[:, 2:3].float(), state[:, :2].float(),
                            target[:, None].float()), 1)
        if self.flat_observation:
            return torch.cat((fields.flatten(1), tf[:, None]), 1)
        time = tf.view(b, 1, 1, 1).expand(b, 1, *self.grid_shape)
        return torch.cat((fields, time), 1)

    def target_error(self, state: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Relative squared error of the marker ``‖m − m*‖² / ‖m*‖²`` per sample, ``(…,)``."""
        return relative_squared_error(state[..., 2, :, :].flatten(-2), target.flatten(-2))

    def frequency_l1(self, state: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The frequency-weighted L1 marker error (the loss of Holl, Thuerey & Koltun, 2020):
        ``Σ_k w(k) |FFT(m − m*)(k)| / (H·W)`` with ``w(k) = exp(−½ |k|² / σ_k²)``, ``k`` in
        cycles per cell and ``σ_k =`` :data:`FREQUENCY_SIGMA` (it weighs the few lowest
        modes: the marker's mass and position more than its outline), ``(…,)``."""
        h, w = self.grid_shape
        diff = state[..., 2, :, :] - target
        ky = torch.fft.fftfreq(h, device=diff.device, dtype=diff.dtype)[:, None]
        kx = torch.fft.fftfreq(w, device=diff.device, dtype=diff.dtype)[None, :]
        weight = torch.exp(-0.5 * (ky.square() + kx.square()) / FREQUENCY_SIGMA**2)
        return (weight * torch.fft.fft2(diff).abs()).sum((-2, -1)) / (h * w)

    def episode_loss(self, rollout: Rollout) -> torch.Tensor:
        """Negative return per sample: terminal error + penalty · Σ force cost, ``(B,)``."""
        cost = self.force_cost(rollout.actions).sum(0)
        return self.target_error(rollout.states[-1], rollout.target) + self.force_penalty * cost


def _build(kw: dict[str, dict[str, Any]]) -> ShapeTransitionCore:
    return ShapeTransitionCore(physics=IncompressibleFlowPhysics(markers=1, **kw["physics"]),
                               **kw["core"])


make_core: Factory[ShapeTransitionCore] = Factory(
    ENV_ID, {"physics": Route(IncompressibleFlowPhysics, exclude=("markers", "keep_energy")),
             "core": Route(ShapeTransitionCore, exclude=("physics",))},
    _build)
"""Builds the core of ``sip/ShapeTransition-v0`` from its keywords (see the env's Arguments):
the physics defaults are ``IncompressibleFlowPhysics``'s (one marker), the task's
``ShapeTransitionCore``'s."""


# --- the task hooks ------------------------------------------------------------------------------

_OPTIONS = ("initial_marker", "initial_velocity", "target_marker")


class ShapeTransitionTask(ControlTask):
    """The hooks of ``sip/ShapeTransition-v0`` (batched, shared by the single and the vector
    env): reset options ``initial_marker`` / ``initial_velocity`` / ``target_marker``, the
    marker error, and 2-D frames."""

    core: ShapeTransitionCore  # type: ignore[assignment]

    def _options_space(self) -> spaces.Dict:
        grid = self.core.grid_shape
        return spaces.Dict({
            "initial_marker": spaces.Box(-np.inf, np.inf, shape=grid, dtype=np.float64),
            "initial_velocity": spaces.Box(-np.inf, np.inf, shape=(2, *grid), dtype=np.float64),
            "target_marker": spaces.Box(-np.inf, np.inf, shape=grid, dtype=np.float64)})

    def _parse_reset(self, options: Any) -> dict[str, torch.Tensor]:
        options = checked_options(
            options, _OPTIONS, example="{'initial_marker': m0, 'target_marker': m_star}",
            described="'initial_marker', 'initial_velocity', 'target_marker'")
        grid = self.core.grid_shape
        shapes = {"initial_marker": grid, "initial_velocity": (2, *grid), "target_marker": grid}
        fields = {name: as_field(options[name], name, (*self._batch_shape, *shapes[name]),
                                 self.device, self.dtype) for name in options}
        if "target_marker" in fields:
            flat = fields["target_marker"].reshape(self._batch_size, -1)
            if bool((flat.square().sum(-1) == 0).any()):
                raise ValueError("options['target_marker'] must not be identically zero: the "
                                 "relative target error ‖m − m*‖²/‖m*‖² is undefined for m* = 0.")
        return fields

    def _new_episodes(self, given: dict[str, torch.Tensor], generator: torch.Generator
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        # Drawn even when everything is given, so that later resets continue the same stream.
        s0, target = self.core.sample_tasks(self._batch_size, generator, device=self.device,
                                            dtype=self.dtype)
        grid = self.core.grid_shape
        b = self._batch_size
        if "initial_velocity" in given:
            u = given["initial_velocity"].reshape(b, 2, *grid)
            s0 = torch.cat((self.core.physics.project(u), s0[:, 2:]), 1)
        if "initial_marker" in given:
            s0 = torch.cat((s0[:, :2], given["initial_marker"].reshape(b, 1, *grid)), 1)
        if "target_marker" in given:
            target = given["target_marker"].reshape(b, *grid)
        return s0, target

    def _frequency_l1(self) -> torch.Tensor:
        assert self.state is not None and self.target is not None
        return self.core.frequency_l1(self.state, self.target)

    def _frames(self, forces: list[np.ndarray | None]) -> tuple[np.ndarray, ...]:
        """One ``(440, 640, 3) uint8`` frame per episode (``rendering_2d.draw_flow_frame``)."""
        from sipenv.envs.rendering_2d import draw_flow_frame

        assert self.state is not None and self.target is not None
        core = self.core
        state = self.state.detach().cpu().double().numpy()
        target = self.target.detach().cpu().double().numpy()
        errors = self._errors().cpu().double().numpy()
        freq = self._frequency_l1().cpu().double().numpy()
        mask = actuation_mask(core.actuation, core.grid_shape, core.actuation_width)
        steps = self._steps()
        out = []
        for i, force in enumerate(forces):
            out.append(draw_flow_frame(  # force: as applied on the physics grid
                state[i, 2], state[i, :2], target[i], force, step=int(steps[i]),
                horizon=self.horizon, force_limit=core.force_scale,
                mask=None if mask.all() else mask, target_error=float(errors[i]),
                frequency_l1=float(freq[i]), title=ENV_ID))
        return tuple(out)


# --- the envs ------------------------------------------------------------------------------------


class ShapeTransitionEnv(ShapeTransitionTask, ControlEnv):
    """
    ## Description

    A passive marker (smoke) is carried by a periodic 2-D incompressible flow
    (``sipenv.physics.IncompressibleFlowPhysics``: semi-Lagrangian self-advection, the force
    added, exact spectral pressure projection, then the marker advected by the new velocity).
    Each step the agent applies a force field; the goal is to turn the initial marker shape into
    the target shape at the last step, with little force. This is the shape-transition task of
    Holl, Thuerey & Koltun, "Learning to Control PDEs with Differentiable Physics" (ICLR 2020)
    — 64×64 periodic cells, 16 steps of ``dt = 1``, random shapes from a procedural library —
    with one change: the agent applies **forces** to an incompressible flow that has inertia,
    instead of prescribing the velocity of each step. The velocity is part of the state, so a
    force acts on every later step, and the pressure spreads each force over the whole box
    (forces applied in a region move the fluid everywhere: indirect control).

    What differs from the published task, and why: (1) forces on a flow with inertia instead of
    a prescribed velocity per step (sipenv's tasks are driven by small per-step forces, and a
    per-step inverse simulator exists for them); (2) the reward is the relative squared L2
    marker error, as in sipenv's other control tasks, while the frequency-weighted L1 that the
    paper trains on is reported in ``info``; (3) the target is rescaled to the initial marker's
    mass (an incompressible flow cannot change areas); (4) tasks are drawn fresh from the seed
    (no fixed set of 1000 examples), from 11 shape kinds instead of 10.

    ## Action Space

    ``Box(-1, 1, (2, h, w), float32)``: the normalised force ``[f_y, f_x]`` on the control grid
    ``(h, w)`` (``control_resolution``; default the physics grid ``(H, W)``). The applied force
    is ``f = force_scale · mask · upsample(clip(a, −1, 1))`` (cells per step², i.e. velocity
    change per step): a coarse control grid is upsampled by periodic bilinear interpolation, and
    ``mask`` (``actuation``) zeroes the force outside the actuated region. Out-of-range actions
    are **clipped**; NaN/inf or wrongly shaped actions raise ``ValueError`` and leave the state
    unchanged. The default ``force_scale = 1.0`` (cells per step²) is measured from data: the
    per-step forces of open-loop solutions of 16 default tasks, found by gradient descent
    through the physics (mean error 1.68 → 0.039), have |f| percentiles 99 %: 0.49 and
    99.9 %: 0.76, and replaying the solutions with every component clipped to the box leaves
    their error unchanged (0.040) (``scripts/measure_shape_force_scale.py``;
    ``tests/envs/test_shape_transition.py`` checks it under ``-m slow``).

    ## Observation Space

    ``Box(-inf, inf, (5, H, W), float32)``: channels ``[m, u_y, u_x, m*, t/T]`` (marker,
    velocity in cells per step, target marker, and the time fraction as a constant channel), so
    that convolutional policies apply directly. With ``flat_observation=True``:
    ``Box(-inf, inf, (4·H·W + 1,), float32)``, the first four channels flattened, then ``t/T``.
    Row ``i`` of a field is ``y = i`` (the rendering draws ``y`` upwards), column ``j`` is
    ``x = j``.

    ## Rewards

    Every step ``−force_penalty · mean((f / force_scale)²)`` (the mean over the physics grid and
    both components of the applied force); at the last step additionally the relative squared
    marker error ``−‖m_T − m*‖² / ‖m*‖²``. ``info`` holds ``target_error`` (that error for the
    current marker), ``force_cost`` (``mean((f / force_scale)²)`` of the step) and
    ``frequency_l1``, the frequency-weighted L1 marker error that Holl, Thuerey & Koltun train
    on (reported only: ``Σ_k exp(−½|k|²/σ²) |FFT(m − m*)| / (H·W)``, ``k`` in cycles per cell,
    ``σ = 0.01``). A caution for gradient-based training: when the marker and the target do
    not overlap, the squared error has no gradient that pulls the marker towards the target,
    and descent on it alone tends to smear the marker out (error → 1, the value of ``m = 0``);
    adding the frequency-weighted term (``core_of(env).frequency_l1``, differentiable), which
    sees the marker's position through the lowest modes, makes open-loop descent solve such
    tasks (``scripts/measure_shape_force_scale.py``).

    ## Starting State

    The initial marker and the target are random shapes (``sipenv.physics.shapes``: circle,
    square, triangle, ring, cross, bar, diamond, L-shape, star, ellipse, hexagon) with
    independent kinds, centres (uniform over the box), rotations and outer radii
    (``size_range``, fractions of the box); the target is rescaled so that its marker mass
    equals the initial one's (``match_area``: an incompressible flow preserves areas, so the
    task is otherwise unsolvable). The fluid starts at rest (``initial_speed=0``).
    ``reset(options={"initial_marker": m0, "initial_velocity": u0, "target_marker": m_star})``
    poses a task (``(H, W)``, ``(2, H, W)`` and ``(H, W)`` arrays; any may be left out; ``u0``
    is made divergence-free by the flow's projection). ``env.unwrapped.reset_options_space``
    (a ``gymnasium.spaces.Dict``) describes the options.

    ## Episode End

    The episode terminates after ``horizon`` steps (``terminated=True``; the time is part of
    the observation). Stepping again without ``reset()`` raises ``RuntimeError``.

    ## Arguments

    - Physics (``IncompressibleFlowPhysics``): ``shape=(64, 64)``, ``length=None`` (unit
      cells), ``dt=1.0``, ``nu=0.0``, ``advection="semi_lagrangian"`` (or
      ``"mac_cormack"``), ``buoyancy=0.0``, ``inverse_iterations=8``, ``max_gain=10000.0``.
    - Task: ``horizon=16``, ``force_scale=1.0``, ``force_penalty=0.001``.
    - Control: ``control_resolution=None`` (e.g. ``(16, 16)``), ``actuation="full"`` (or
      ``"bottom"``, ``"sides"``, ``"border"``), ``actuation_width=8``.
    - Observations: ``flat_observation=False``.
    - Sensors, actuators and noise (``sipenv.envs.sensing``): ``sensors=None`` (a count, or
      ``(y, x)`` positions; the observation is then flat, see ``ShapeTransitionCore``),
      ``target_observation="full"``, ``actuators=None`` (a count of Gaussian bumps, or a basis;
      the action is then ``(2, M)``), ``actuator_width=None``, ``sensor_noise=0.0``,
      ``actuator_noise=0.0``.
    - Sampler: ``kinds=None`` (all kinds, or a tuple of names), ``size_range=(0.1, 0.2)``,
      ``match_area=True``, ``initial_speed=0.0``.
    - Keywords are routed by name to ``IncompressibleFlowPhysics`` and
      ``ShapeTransitionCore``; an unknown keyword raises ``TypeError`` naming the accepted ones.
    - ``device="cpu"``, ``dtype="float32"``: where and in which precision the physics runs.
    - ``render_mode``: ``"human"`` (pygame window) or ``"rgb_array"`` (``(440, 640, 3)``
      frames: the marker with the target's outline, the vorticity with velocity arrows, the
      applied force, the step and the errors).

    Agents reach the differentiable batched core with ``sipenv.envs.core.core_of``
    (``ShapeTransitionCore``: physics, sampler, horizon, the force map and costs; the physics
    has ``step``, ``inverse_step`` and ``force_for``).

    ## Example

    Pose a task — a square at rest to the same square moved 16 cells along ``x`` — push the
    whole fluid along ``x`` once, and let it coast (inviscid) for the other 15 steps:

    >>> import gymnasium as gym
    >>> import numpy as np
    >>> import sipenv
    >>> env = gym.make("sip/ShapeTransition-v0")
    >>> y, x = np.mgrid[:64, :64]
    >>> square = ((abs(y - 32) < 8) & (abs(x - 24) < 8)).astype(float)
    >>> moved = np.roll(square, 16, axis=1)
    >>> obs, info = env.reset(seed=0, options={"initial_marker": square, "target_marker": moved})
    >>> obs.shape, info["target_error"]
    ((5, 64, 64), 2.0)
    >>> push = np.zeros((2, 64, 64), dtype=np.float32)
    >>> push[1] = 1.0  # f_x = 1 cell/step²: from now on the fluid moves one cell per step
    >>> obs, reward, terminated, truncated, info = env.step(push)
    >>> round(float(obs[2].mean()), 4), info["force_cost"]
    (1.0, 0.5)
    >>> for _ in range(15):
    ...     obs, reward, terminated, truncated, info = env.step(np.zeros_like(push))
    >>> terminated, round(info["target_error"], 4)
    (True, 0.0)

    ## Version History

    - v0: initial release.
    """

    make_core = make_core

    def _start(self, s0: torch.Tensor, target: torch.Tensor, generator: torch.Generator
               ) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = super()._start(s0, target, generator)
        info["frequency_l1"] = float(self._frequency_l1()[0])
        return obs, info

    def step(self, action: Any) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = super().step(action)
        info["frequency_l1"] = float(self._frequency_l1()[0])
        return obs, reward, terminated, truncated, info


class ShapeTransitionVectorEnv(ShapeTransitionTask, ControlVectorEnv):
    """Native batched ``sip/ShapeTransition-v0`` (same arguments as the single env; NEXT_STEP
    autoreset, see ``sipenv.envs.control.FieldVectorEnv``).

    Made by ``gym.make_vec(id, num_envs=..., vectorization_mode="vector_entry_point")``.
    """

    make_core = make_core

    def _start(self, s0: torch.Tensor, target: torch.Tensor, generator: torch.Generator
               ) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = super()._start(s0, target, generator)
        info["frequency_l1"] = self._frequency_l1().cpu().double().numpy()
        return obs, info

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                          dict[str, Any]]:
        obs, reward, terminated, truncated, info = super().step(actions)
        info["frequency_l1"] = self._frequency_l1().cpu().double().numpy()
        return obs, reward, terminated, truncated, info
