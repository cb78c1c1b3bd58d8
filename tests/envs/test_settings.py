"""Keyword routing (:mod:`sipenv.envs.settings`): how env factories split ``gym.make`` keywords
between dataclasses, each of which owns its defaults."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from sipenv.envs.settings import Factory, Route, route


@dataclass(frozen=True)
class Model:
    n: int = 8
    nu: float = 0.1
    _private: int = 0
    derived: int = field(default=0, init=False)


@dataclass(frozen=True)
class Task:
    model: Model
    horizon: int
    scale: float = 1.0


ROUTES = {"model": Route(Model), "fine": Route(Model, prefix="fine_", exclude=("nu",)),
          "task": Route(Task, exclude=("model",))}


def test_keywords_are_the_public_init_fields_with_prefix_and_exclusions() -> None:
    assert Route(Model).keywords() == {"n": "n", "nu": "nu"}
    assert ROUTES["fine"].keywords() == {"fine_n": "n"}
    assert ROUTES["task"].keywords() == {"horizon": "horizon", "scale": "scale"}


def test_route_splits_by_field_name_and_leaves_out_what_is_not_given() -> None:
    out = route({"n": 4, "fine_n": 16, "horizon": 3}, ROUTES, owner="x")
    assert out == {"model": {"n": 4}, "fine": {"n": 16}, "task": {"horizon": 3}}


def test_unknown_keywords_raise_type_error_listing_the_accepted_ones() -> None:
    with pytest.raises(TypeError, match=r"^env got an unexpected keyword argument 'bogus'; "
                                        r"accepted: render_mode, device, dtype, fine_n, "
                                        r"horizon, n, nu, scale\.$"):
        route({"bogus": 1}, ROUTES, owner="env")
    with pytest.raises(TypeError, match="unexpected keyword arguments 'a', 'b'"):
        route({"a": 1, "n": 2, "b": 3}, ROUTES, owner="env")
    with pytest.raises(TypeError, match="'_private'"):  # private fields are not keywords
        route({"_private": 1}, ROUTES, owner="env")


def test_a_keyword_routed_twice_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="routed to both"):
        route({}, {"a": Route(Model), "b": Route(Model)}, owner="env")


def test_factory_builds_over_its_own_defaults_and_reports_every_default() -> None:
    def build(kw: dict[str, dict[str, object]]) -> Task:
        return Task(model=Model(**kw["model"]), **kw["task"])  # type: ignore[arg-type]

    factory = Factory("env", {"model": Route(Model), "task": Route(Task, exclude=("model",))},
                      build, horizon=5, nu=0.5)
    task = factory()
    assert task == Task(Model(n=8, nu=0.5), horizon=5)
    assert factory(horizon=2, n=4) == Task(Model(n=4, nu=0.5), horizon=2)
    assert factory.keywords() == ("horizon", "n", "nu", "scale")
    assert factory.default_values() == {"n": 8, "nu": 0.5, "horizon": 5, "scale": 1.0}
    with pytest.raises(TypeError, match="its defaults"):  # a misspelt default fails at once
        Factory("env", {"model": Route(Model)}, build, nuu=1.0)
