"""Keyword routing for env factories: every default is stated once.

A physics dataclass (e.g. ``DiffusionPhysics``) owns its physics defaults and
a core dataclass (``ControlCore``) its task defaults; an env states only
the defaults that make it *this* task (its horizon, its force scale …), in one
``Factory``. ``gym.make`` keywords are split by the field names of those dataclasses
(``route``), so an env never restates a signature, and an unknown keyword is refused with a
``TypeError`` that lists the accepted ones::

    make_core = Factory(
        "sip/ControlledDiffusion-v0",
        {"physics": Route(DiffusionPhysics), "core": Route(ControlCore, exclude=("physics",))},
        build=lambda kw: ControlCore(physics=DiffusionPhysics(**kw["physics"]), **kw["core"]),
        horizon=16, force_scale=100.0)

(``sipenv.envs.control.control_factory`` writes exactly this for a control env.)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar

__all__ = ["ENV_KEYWORDS", "Factory", "Route", "route"]

T = TypeVar("T")

ENV_KEYWORDS: tuple[str, ...] = ("render_mode", "device", "dtype")
"""Keywords every env takes itself (the vector envs also ``num_envs``)."""


@dataclasses.dataclass(frozen=True)
class Route:
    """The keywords of one dataclass: its public ``__init__`` fields (not those starting with
    ``_``, nor ``exclude``), each as ``prefix + name``.

    Args:
        target: The dataclass the keywords are for.
        prefix: Prepended to each field name (e.g. ``"fine_"`` for a second physics model).
        exclude: Fields the factory sets itself (e.g. ``physics`` of a core).
    """

    target: type
    prefix: str = ""
    exclude: tuple[str, ...] = ()

    def keywords(self) -> dict[str, str]:
        """``{keyword: field name}``."""
        if not dataclasses.is_dataclass(self.target):
            raise TypeError(f"Route target {self.target.__name__} is not a dataclass.")
        return {self.prefix + f.name: f.name for f in dataclasses.fields(self.target)
                if f.init and not f.name.startswith("_") and f.name not in self.exclude}


def _keyword_table(routes: Mapping[str, Route]) -> dict[str, tuple[str, str]]:
    """``{keyword: (group, field)}``; a keyword claimed by two routes is a programming error."""
    table: dict[str, tuple[str, str]] = {}
    for group, r in routes.items():
        for keyword, name in r.keywords().items():
            if keyword in table:
                raise ValueError(f"Keyword {keyword!r} is routed to both {table[keyword][0]!r} "
                                 f"and {group!r}; give one route a prefix or exclude it.")
            table[keyword] = (group, name)
    return table


def route(kwargs: Mapping[str, Any], routes: Mapping[str, Route], *, owner: str,
          also_accepted: Iterable[str] = ENV_KEYWORDS) -> dict[str, dict[str, Any]]:
    """Split ``kwargs`` into ``{group: {field: value}}`` by the routes' keywords.

    Every group is present (empty when no keyword went to it). Keywords not given are left out,
    so the dataclass's own default applies.

    Raises:
        TypeError: For a keyword no route accepts: ``"<owner> got an unexpected keyword argument
            'x'; accepted: ..."`` (listing ``also_accepted`` and every routed keyword).
    """
    table = _keyword_table(routes)
    unknown = [k for k in kwargs if k not in table]
    if unknown:
        accepted = ", ".join([*also_accepted, *sorted(table)])
        what = (f"an unexpected keyword argument {unknown[0]!r}" if len(unknown) == 1 else
                f"unexpected keyword arguments {', '.join(map(repr, unknown))}")
        raise TypeError(f"{owner} got {what}; accepted: {accepted}.")
    out: dict[str, dict[str, Any]] = {group: {} for group in routes}
    for keyword, value in kwargs.items():
        group, name = table[keyword]
        out[group][name] = value
    return out


class Factory(Generic[T]):
    """Builds an env's model (a core, or a one-step task's physics and settings) from
    ``gym.make`` keywords.

    Args:
        owner: The env id (names the env in errors).
        routes: ``{group: Route}``: which keyword goes to which dataclass.
        build: Makes the model from the routed ``{group: {field: value}}``.
        **defaults: The env's own defaults, routed like keywords (so a misspelt default fails at
            import): only what differs from the dataclasses' defaults.
    """

    def __init__(self, owner: str, routes: Mapping[str, Route],
                 build: Callable[[dict[str, dict[str, Any]]], T], **defaults: Any) -> None:
        self.owner = owner
        self.routes = dict(routes)
        self.build = build
        route(defaults, self.routes, owner=f"{owner} (its defaults)")
        self.defaults = defaults

    def keywords(self) -> tuple[str, ...]:
        """Every keyword this factory accepts (sorted)."""
        return tuple(sorted(_keyword_table(self.routes)))

    def default_values(self) -> dict[str, Any]:
        """``{keyword: default}``: the env's own default where it states one, else the
        dataclass field's (keywords whose field has no default are left out)."""
        out: dict[str, Any] = {}
        for r in self.routes.values():
            fields = {f.name: f for f in dataclasses.fields(r.target)}
            for keyword, name in r.keywords().items():
                f = fields[name]
                if keyword in self.defaults:
                    out[keyword] = self.defaults[keyword]
                elif f.default is not dataclasses.MISSING:
                    out[keyword] = f.default
                elif f.default_factory is not dataclasses.MISSING:
                    out[keyword] = f.default_factory()
        return out

    def __call__(self, **kwargs: Any) -> T:
        """The model for ``kwargs`` (over the env's defaults)."""
        return self.build(route({**self.defaults, **kwargs}, self.routes, owner=self.owner))

    def __repr__(self) -> str:
        return f"Factory({self.owner!r}, defaults={self.defaults!r})"
