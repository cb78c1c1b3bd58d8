"""The synthetic 2-D inverse problem of the SIP paper: a rotated, ill-conditioned sine.

Forward model (Holl, Koltun & Thuerey, NeurIPS 2022, "SIP training example")::

    x̂ = R_φ x,     R_φ = [[cos φ, −sin φ], [sin φ, cos φ]]      (φ in degrees)
    P(x) = ( sin(a x̂₁),  b x̂₂ ),     a = γ / ξ,   b = γ ξ,   γ = 10.

``ξ`` sets the conditioning: ``∂P/∂x̂`` scales like ``1/ξ`` in the first and like ``ξ`` in the
second direction, so gradients of ``L`` differ by ``ξ²`` between them (``ξ⁴`` in curvature). ``φ``
couples the two components of ``x``; at ``φ = 0`` the problem separates per component, which
per-parameter optimizers (Adam, Adagrad, RMSprop) exploit and which a rotation destroys.

The loss is ``L(x) = ½‖P(x) − y*‖²`` per sample. Everything here is pure, batched torch on tensors
of shape ``(B, 2)``; dtype and device follow the input; nothing is edited in place.

Closed-form derivatives
-----------------------
``L`` separates in the rotated coordinates ``x̂``. With ``u = a x̂₁``, residuals
``r₁ = sin u − y₁*``, ``r₂ = b x̂₂ − y₂*``::

    ∇_x̂ L = ( a cos(u) r₁,  b r₂ )
    ∇²_x̂ L = diag( a² (cos²u − r₁ sin u),  b² )        (exact: includes the sin'' term)

so the Hessian in ``x`` is ``H = R_φᵀ diag(λ₁, λ₂) R_φ``: its eigen-decomposition is known in
closed form (eigenvalues ``λ₁, λ₂``, eigenvectors the rows of ``R_φ``), for every sample at once,
without autograd. This is also the numerically sound way to get it: ``λ₂/λ₁`` reaches ``ξ⁴ ≈
1.7·10⁷`` at ``ξ = 64``, and a generic 2×2 eigen-solver (``symmetric_eigh_2x2``) applied to the
assembled ``H`` loses the small eigenvalue to cancellation in float32.

Saddle-free Newton inverse
--------------------------
``SinePhysics.inverse`` is one saddle-free Newton step on ``L`` (``saddle_free_step``, the
rule of the published code): in eigen-coordinates, along directions whose curvature is positive and
at least the geometric mean ``τ = (Π|λ_i|)^{1/n}`` of the ``|λ_i|`` the full Newton step
``−g_i/λ_i``; along the others (flat or negative curvature) the step ``|g_i|/|λ_i|`` limited to
``max_loss_change / |g_i|`` (a linearly predicted loss decrease of at most ``max_loss_change``,
0.2 by default); always in the descent direction ``−sign(g_i)``. The result is finite for every
finite input (zero gradients give a zero step, zero eigenvalues the limited step).

Exact solutions
---------------
``P(x) = y*`` holds on two families of points (for ``|y₁*| ≤ 1``):
``x̂₂ = y₂*/b`` and ``a x̂₁ ∈ {arcsin y₁* + 2πk, π − arcsin y₁* + 2πk}``. ``SinePhysics.
nearest_solution`` picks the branch and the ``k`` closest to a given ``x`` (rotation preserves
distances, so only ``x̂₁`` decides).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from sipenv.physics.grid import as_dtype_of, check_batch
from sipenv.validation import check_finite, check_int, check_positive

__all__ = ["SinePhysics", "saddle_free_newton_step", "saddle_free_step", "symmetric_eigh_2x2"]


def _check_vectors(name: str, x: torch.Tensor, n: int = 2) -> None:
    check_batch(name, x, (n,), "vector", item="vector")


# --- saddle-free Newton step (generic) ------------------------------------------------------------

def saddle_free_step(grad_eig: torch.Tensor, eigenvalues: torch.Tensor,
                     max_loss_change: float = 0.2) -> torch.Tensor:
    """The saddle-free Newton step in the Hessian's eigen-coordinates.

    For each eigen-direction ``i`` with gradient component ``g_i`` and curvature ``λ_i``, and the
    geometric mean ``τ = exp(mean_i log|λ_i|)`` of the ``|λ_i|`` per sample::

        step_i = −sign(g_i) · |g_i| / |λ_i|                              if λ_i > 0 and λ_i ≥ τ
        step_i = −sign(g_i) · min(|g_i| / |λ_i|, max_loss_change / |g_i|)  otherwise

    i.e. the full Newton step along well-curved directions and, along flat or negative-curvature
    ones, a step whose linearly predicted loss decrease ``|g_i| · |step_i|`` is at most
    ``max_loss_change``. Always a descent direction (``g · step ≤ 0``).

    Args:
        grad_eig: Gradient in eigen-coordinates, ``(B, n)``.
        eigenvalues: Hessian eigenvalues ``λ_i`` in the same order, ``(B, n)``.
        max_loss_change: Limit on the predicted loss decrease along limited directions (> 0).

    Returns:
        The step in eigen-coordinates, ``(B, n)``; finite wherever the inputs are finite
        (``g_i = 0`` gives 0; ``λ_i = 0`` gives the limited step).
    """
    tiny = torch.finfo(grad_eig.dtype).tiny
    g_abs = grad_eig.abs()
    lam_abs = eigenvalues.abs()
    # λ_i ≥ τ compared in log space, so that equal eigenvalues are exactly "at" the mean
    # (log 0 = −inf gives τ = 0 and no NaN).
    log_abs = lam_abs.log()
    full = (eigenvalues > 0) & (log_abs >= log_abs.mean(-1, keepdim=True))
    newton = g_abs / lam_abs.clamp_min(tiny)  # inf only where λ_i ≈ 0 and g_i ≠ 0
    limit = max_loss_change / g_abs.clamp_min(tiny)  # finite: ≤ max_loss_change / tiny
    step = torch.where(full, newton, torch.minimum(newton, limit))
    step = torch.where(torch.isfinite(step), step, limit)  # a positive λ_i ≈ 0 was "full"
    return -torch.sign(grad_eig) * step


def symmetric_eigh_2x2(h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-form eigen-decomposition of a batch of symmetric 2×2 matrices.

    For ``h = [[p, q], [q, s]]``: ``λ = (p + s)/2 ± hypot((p − s)/2, q)`` and eigenvectors at the
    angle ``θ = ½ atan2(2q, p − s)``. No iteration, no Python loop over the batch.

    Precision limit: the smaller eigenvalue is a difference of the larger ones, so its absolute
    error is ``~eps · max|λ|``; for condition numbers near ``1/eps`` use a structured
    decomposition instead (as ``SinePhysics`` does).

    Args:
        h: ``(B, 2, 2)`` symmetric matrices (only ``h[:, 0, 0]``, ``h[:, 0, 1]``, ``h[:, 1, 1]``
            are read).

    Returns:
        ``(eigenvalues (B, 2), eigenvectors (B, 2, 2))``, eigenvalues ascending and eigenvector
        ``i`` in column ``i`` (``h = V diag(λ) Vᵀ``), like ``torch.linalg.eigh``.
    """
    if h.ndim != 3 or h.shape[-2:] != (2, 2):
        raise ValueError(f"h must have shape (B, 2, 2), got {tuple(h.shape)}.")
    p, q, s = h[:, 0, 0], h[:, 0, 1], h[:, 1, 1]
    mean, half_diff = (p + s) / 2, (p - s) / 2
    radius = torch.hypot(half_diff, q)
    theta = torch.atan2(q, half_diff) / 2  # direction of the larger eigenvalue
    c, sn = torch.cos(theta), torch.sin(theta)
    eigenvalues = torch.stack([mean - radius, mean + radius], -1)
    # column 0 (smaller λ) ⟂ column 1 (larger λ = (c, sn)).
    eigenvectors = torch.stack([torch.stack([-sn, c], -1), torch.stack([c, sn], -1)], -1)
    return eigenvalues, eigenvectors


def saddle_free_newton_step(grad: torch.Tensor, hessian: torch.Tensor,
                            max_loss_change: float = 0.2) -> torch.Tensor:
    """Saddle-free Newton step ``Δx`` for a batch of 2-D problems given gradient and Hessian.

    Decomposes ``hessian`` with ``symmetric_eigh_2x2`` and applies ``saddle_free_step``.
    Generic (any twice-differentiable 2-D loss); see the precision limit of
    ``symmetric_eigh_2x2``.

    Args:
        grad: ``(B, 2)`` gradients.
        hessian: ``(B, 2, 2)`` symmetric Hessians.
        max_loss_change: Limit on the predicted loss decrease along limited directions.
    """
    _check_vectors("grad", grad)
    eigenvalues, vectors = symmetric_eigh_2x2(hessian)
    grad_eig = torch.einsum("bij,bi->bj", vectors, grad)  # Vᵀ g
    return torch.einsum("bij,bj->bi", vectors, saddle_free_step(grad_eig, eigenvalues,
                                                                max_loss_change))


# --- the physics ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class SinePhysics:
    """The rotated, ill-conditioned sine ``P(x) = (sin(γ x̂₁/ξ), γ ξ x̂₂)``, ``x̂ = R_φ x``.

    Args:
        xi: Conditioning ``ξ`` (> 0); ``ξ = 1`` is well conditioned.
        phi: Rotation ``φ`` in degrees (any finite value); ``φ = 0`` separates the components.
        gamma: Global scale ``γ`` (> 0; 10 in the paper).
        max_loss_change: Predicted-loss-change limit of the saddle-free Newton inverse (> 0).

    Raises:
        ValueError: If a parameter is non-finite or out of range.

    Example:
        >>> import torch
        >>> phys = SinePhysics(xi=32.0, phi=45.0)
        >>> y_target = phys.sample_targets(4, torch.Generator().manual_seed(0))
        >>> x = phys.nearest_solution(torch.zeros(4, 2), y_target)
        >>> bool(torch.allclose(phys.forward(x), y_target, atol=1e-4))
        True
    """

    xi: float = 1.0
    phi: float = 0.0
    gamma: float = 10.0
    max_loss_change: float = 0.2
    _cache: dict[tuple[torch.device, torch.dtype], torch.Tensor] = field(
        default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_positive("xi", self.xi)
        check_finite("phi", self.phi)
        check_positive("gamma", self.gamma)
        check_positive("max_loss_change", self.max_loss_change)

    # --- constants ------------------------------------------------------------------------------

    @property
    def a(self) -> float:
        """Frequency ``γ/ξ`` of the sine in the rotated first coordinate."""
        return self.gamma / self.xi

    @property
    def b(self) -> float:
        """Slope ``γ ξ`` of the rotated second coordinate."""
        return self.gamma * self.xi

    @property
    def solution_radius(self) -> float:
        """Bound on ``|x_i|`` of the principal exact solution (``arcsin`` branch) of any
        ``y* ∈ [-1, 1]²``: ``π ξ/(2γ) + 1/(γ ξ)``."""
        return math.pi * self.xi / (2 * self.gamma) + 1 / (self.gamma * self.xi)

    def rotation(self, device: torch.device | str | None = None,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``R_φ`` (``(2, 2)``), computed in float64 once per (device, dtype) and cached."""
        key = (torch.device(device) if device is not None else torch.device("cpu"), dtype)
        rot = self._cache.get(key)
        if rot is None:
            c, s = math.cos(math.radians(self.phi)), math.sin(math.radians(self.phi))
            rot = torch.tensor([[c, -s], [s, c]], dtype=torch.float64).to(key[0], dtype)
            self._cache[key] = rot
        return rot

    def rotate(self, x: torch.Tensor) -> torch.Tensor:
        """``x̂ = R_φ x`` for a batch ``(B, 2)``."""
        return x @ self.rotation(x.device, x.dtype).T

    def unrotate(self, x_hat: torch.Tensor) -> torch.Tensor:
        """``x = R_φᵀ x̂`` for a batch ``(B, 2)`` (the inverse of ``rotate``)."""
        return x_hat @ self.rotation(x_hat.device, x_hat.dtype)

    # --- forward model and closed-form derivatives ---------------------------------------------

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``P(x) = (sin(a x̂₁), b x̂₂)``: ``(B, 2) → (B, 2)``, differentiable."""
        _check_vectors("x", x)
        x_hat = self.rotate(x)
        return torch.stack([torch.sin(self.a * x_hat[:, 0]), self.b * x_hat[:, 1]], -1)

    def jacobian(self, x: torch.Tensor) -> torch.Tensor:
        """``∂P/∂x = diag(a cos(a x̂₁), b) R_φ``, shape ``(B, 2, 2)``."""
        _check_vectors("x", x)
        x_hat = self.rotate(x)
        rot = self.rotation(x.device, x.dtype)
        scale = torch.stack([self.a * torch.cos(self.a * x_hat[:, 0]),
                             torch.full_like(x_hat[:, 1], self.b)], -1)
        return scale[:, :, None] * rot

    def loss(self, x: torch.Tensor, y_target: torch.Tensor) -> torch.Tensor:
        """``L = ½‖P(x) − y*‖²`` per sample, shape ``(B,)``, differentiable."""
        _check_vectors("y_target", y_target)
        return 0.5 * (self.forward(x) - as_dtype_of(y_target, x)).pow(2).sum(-1)

    def _rotated_derivatives(self, x: torch.Tensor, y_target: torch.Tensor
                             ) -> tuple[torch.Tensor, torch.Tensor]:
        """Gradient and Hessian eigenvalues of ``L`` in the rotated frame, each ``(B, 2)``."""
        _check_vectors("x", x)
        _check_vectors("y_target", y_target)
        y_target = as_dtype_of(y_target, x)
        x_hat = self.rotate(x)
        u = self.a * x_hat[:, 0]
        sin_u, cos_u = torch.sin(u), torch.cos(u)
        r1 = sin_u - y_target[:, 0]
        r2 = self.b * x_hat[:, 1] - y_target[:, 1]
        grad_hat = torch.stack([self.a * cos_u * r1, self.b * r2], -1)
        curvature = torch.stack([self.a**2 * (cos_u * cos_u - r1 * sin_u),
                                 torch.full_like(u, self.b**2)], -1)
        return grad_hat, curvature

    def loss_gradient(self, x: torch.Tensor, y_target: torch.Tensor) -> torch.Tensor:
        """``∇_x L`` in closed form, ``(B, 2)``."""
        grad_hat, _ = self._rotated_derivatives(x, y_target)
        return self.unrotate(grad_hat)

    def hessian_eigh(self, x: torch.Tensor, y_target: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """Closed-form eigen-decomposition of the exact Hessian ``∇²_x L``.

        Returns:
            ``(eigenvalues (B, 2), eigenvectors (B, 2, 2))`` with ``H = V diag(λ) Vᵀ``;
            eigenvector ``i`` is column ``i``. Order: column 0 is the sine direction
            (``λ₀ = a²(cos²u − r₁ sin u)``, any sign), column 1 the linear one (``λ₁ = b²``);
            not sorted.
        """
        _, curvature = self._rotated_derivatives(x, y_target)
        vectors = self.rotation(x.device, x.dtype).T.expand(x.shape[0], 2, 2)
        return curvature, vectors

    def loss_hessian(self, x: torch.Tensor, y_target: torch.Tensor) -> torch.Tensor:
        """The exact Hessian ``∇²_x L = R_φᵀ diag(λ) R_φ`` in closed form, ``(B, 2, 2)``."""
        _, curvature = self._rotated_derivatives(x, y_target)
        rot = self.rotation(x.device, x.dtype)
        return torch.einsum("ki,bk,kj->bij", rot, curvature, rot)

    # --- inverse simulator ------------------------------------------------------------------------

    def inverse(self, y_target: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Local inverse ``x̃ = x + Δx``: one saddle-free Newton step on ``½‖P(x) − y*‖²``.

        The step is taken in the Hessian's eigenbasis (the rotated frame, see the module
        docstring) with ``saddle_free_step`` and ``max_loss_change``. Near a solution
        (``|y₁* | < 1``, small residual) it is the full Newton step, which converges
        quadratically; far from one it is limited, never ascends, and is never inf/NaN for
        finite inputs. Argument order matches ``agents.sip.sip_inverse_targets``'s ``inverse``.

        Args:
            y_target: ``(B, 2)`` outputs to reach (``y*`` or a Newton-stepped ``ỹ``).
            x: ``(B, 2)`` current guess to step from.

        Returns:
            ``(B, 2)`` the stepped ``x̃``, same dtype/device as ``x``.
        """
        grad_hat, curvature = self._rotated_derivatives(x, y_target)
        return x + self.unrotate(saddle_free_step(grad_hat, curvature, self.max_loss_change))

    def newton_step(self, x: torch.Tensor, y_target: torch.Tensor) -> torch.Tensor:
        """Just the step ``Δx = inverse(y*, x) − x``, ``(B, 2)``."""
        grad_hat, curvature = self._rotated_derivatives(x, y_target)
        return self.unrotate(saddle_free_step(grad_hat, curvature, self.max_loss_change))

    # --- exact solutions --------------------------------------------------------------------------

    def nearest_solution(self, x: torch.Tensor, y_target: torch.Tensor) -> torch.Tensor:
        """The exact solution of ``P(x*) = y*`` closest to ``x``, ``(B, 2)``.

        Both ``arcsin`` branches (``u = arcsin y₁*`` and ``π − arcsin y₁*``), each shifted by the
        multiple of ``2π`` nearest to ``a x̂₁``; the closer branch wins; ``x̂₂* = y₂*/b``; then
        rotated back. For ``|y₁*| > 1`` (no exact solution) ``y₁*`` is clamped to ``±1``, which
        gives the nearest minimiser of ``L`` instead.
        """
        _check_vectors("x", x)
        _check_vectors("y_target", y_target)
        y_target = as_dtype_of(y_target, x)
        x_hat = self.rotate(x)
        u = self.a * x_hat[:, 0]
        two_pi = 2 * math.pi
        base1 = torch.asin(y_target[:, 0].clamp(-1.0, 1.0))
        base2 = math.pi - base1
        cand1 = base1 + two_pi * torch.round((u - base1) / two_pi)
        cand2 = base2 + two_pi * torch.round((u - base2) / two_pi)
        u_star = torch.where((u - cand1).abs() <= (u - cand2).abs(), cand1, cand2)
        x_hat_star = torch.stack([u_star / self.a, y_target[:, 1] / self.b], -1)
        return self.unrotate(x_hat_star)

    def solution_distance(self, x: torch.Tensor, y_target: torch.Tensor) -> torch.Tensor:
        """``‖x − nearest_solution(x, y*)‖`` per sample, ``(B,)`` (the paper's ``x_dist``)."""
        return (x - self.nearest_solution(x, y_target)).norm(dim=-1)

    # --- sampler ----------------------------------------------------------------------------------

    def sample_targets(self, batch: int, generator: torch.Generator, *,
                       device: torch.device | str | None = None,
                       dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``batch`` targets ``y* ~ U([-1, 1]²)`` drawn from ``generator``, ``(batch, 2)``.

        Drawn on ``generator.device`` and then moved, so a seed gives the same targets whatever
        ``device``/``dtype``.

        Raises:
            ValueError: If ``batch < 1``.
        """
        batch = check_int("batch", batch, minimum=1)
        y = torch.rand(batch, 2, generator=generator, device=generator.device,
                       dtype=torch.float64) * 2 - 1
        return y.to(device=device if device is not None else generator.device, dtype=dtype)
