"""A reusable local inverse: defect correction preconditioned by an approximate inverse.

To solve ``F(s) = y`` for ``s`` when an approximate inverse ``Q ≈ F⁻¹`` is cheap (for a
time-dependent PDE: the time-reversed scheme), iterate from a start ``s₀``::

    s ← s + W [Q(y) − Q(F(s))]

and return, per sample, the iterate with the smallest residual ``‖F(s) − y‖²`` (``s₀``
included). If ``Q`` were exact this converges in one iteration; otherwise it converges where
``I − W Q'F'`` is a contraction, and keeping the best iterate makes the result never worse than
the start and never inf/NaN for a finite start with a finite residual (an iterate whose residual
is NaN or inf is never "better"). ``W`` (optional, linear) damps the update of components that
``F`` barely shows (e.g. Fourier modes a step damps away), so that they keep their values from
``s₀`` instead of being amplified from rounding.

It is the local inverse of :class:`~sipenv.physics.BurgersPhysics` and the model for any
nonlinear PDE whose step can be approximately reversed. It sits beside the Gauss–Newton
inverse of :mod:`sipenv.physics.generic_inverse`, which needs only derivatives of ``F`` but
costs two backward passes per iteration.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from sipenv.validation import check_int

__all__ = ["defect_correction", "per_sample_sq_norm"]

Map = Callable[[torch.Tensor], torch.Tensor]
"""A batched map ``(B, *shape) → (B, *shape)``."""


def per_sample_sq_norm(x: torch.Tensor) -> torch.Tensor:
    """``Σ x²`` over every axis but the first: ``(B, …) → (B,)``."""
    return x.square().sum(dim=tuple(range(1, x.ndim)))


def defect_correction(forward: Map, approximate_inverse: Map, goal: torch.Tensor,
                      start: torch.Tensor, *, iterations: int,
                      weight: Map | None = None) -> torch.Tensor:
    """Best iterate of ``s ← s + W [Q(goal) − Q(F(s))]`` from ``start`` (module docstring).

    Args:
        forward: ``F``, batched: ``(B, *shape) → (B, *shape)``; samples must be independent.
        approximate_inverse: ``Q ≈ F⁻¹``, same shapes.
        goal: ``y``, the value ``F`` should reach, ``(B, *shape)``.
        start: ``s₀``, ``(B, *shape)``.
        iterations: Number of iterations (≥ 0; each costs one ``F`` and one ``Q``; 0 returns
            ``start``).
        weight: ``W``, a linear map applied to each update (``None``: identity).

    Returns:
        Per sample the iterate (``start`` included) with the smallest ``‖F(s) − goal‖²``,
        ``(B, *shape)``, dtype and device of ``start``. Differentiable through the iterations
        (the selection itself is piecewise constant); ``goal`` and ``start`` are not modified.

    Raises:
        ValueError: If ``iterations`` is not an int ≥ 0 or the shapes differ.

    Example:
        >>> f = lambda s: s + 0.1 * s**3            # invertible, no closed form needed
        >>> q = lambda y: y - 0.1 * y**3            # its first-order inverse
        >>> y = torch.tensor([[0.5, -0.3]], dtype=torch.float64)
        >>> s = defect_correction(f, q, y, y, iterations=8)
        >>> bool((f(s) - y).abs().max() < 1e-6)
        True
    """
    iterations = check_int("iterations", iterations, minimum=0)
    if goal.shape != start.shape:
        raise ValueError(f"goal and start must have the same shape, got {tuple(goal.shape)} "
                         f"and {tuple(start.shape)}.")
    if iterations == 0:
        return start
    s = best = start
    image = forward(s)
    best_res = per_sample_sq_norm(image - goal)
    select = (-1, *([1] * (start.ndim - 1)))
    reverse_goal = approximate_inverse(goal)
    for _ in range(iterations):
        update = reverse_goal - approximate_inverse(image)
        s = s + (weight(update) if weight is not None else update)
        image = forward(s)
        res = per_sample_sq_norm(image - goal)
        better = res < best_res  # False for NaN: a diverged sample keeps its best iterate
        best = torch.where(better.view(select), s, best)
        best_res = torch.where(better, res, best_res)
    return best
