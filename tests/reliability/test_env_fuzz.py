"""Fuzzing the envs: garbage actions, calls out of order, bad ``gym.make`` arguments, pickling.

Every rejected call must raise a clear error (type and message asserted) and leave the env exactly
as it was: state, target, time *and* random streams. "Exactly" is checked from outside too: after
the rejected call the env continues bit for bit like a fresh env that saw only the valid calls.
The basic cases (wrong shapes, NaN/inf, step before reset, bad reset options) are in
``tests/envs``; this file adds the rest.
"""

from __future__ import annotations

import copy
import pickle
import warnings
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from reliability_support import hyp_settings

from sipenv.envs.control import ControlVectorEnv
from sipenv.envs.controlled_diffusion import ControlledDiffusionEnv, ControlledDiffusionVectorEnv

ENV_ID = "sip/ControlledDiffusion-v0"
N = 64


def _make(**kwargs: Any) -> gym.Env:
    return gym.make(ENV_ID, **kwargs)


def _make_vec(num_envs: int = 3, **kwargs: Any) -> gym.vector.VectorEnv:
    return gym.make_vec(ENV_ID, num_envs=num_envs, vectorization_mode="vector_entry_point",
                        **kwargs)


def _actions(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1.5, 1.5, shape).astype(np.float32)


# --- snapshots of everything a rejected call must not touch -----------------------------------


def _snapshot(env: Any) -> dict[str, Any]:
    inner = env.unwrapped
    snap = {"state": inner.state.clone(), "target": inner.target.clone(), "t": copy.copy(inner.t),
            "np_random": copy.deepcopy(inner.np_random.bit_generator.state)}
    if isinstance(inner, ControlVectorEnv):
        snap.update(generator=inner._generator.get_state(), prev_done=inner._prev_done.copy())
    return snap


def _assert_unchanged(env: Any, snap: dict[str, Any]) -> None:
    now = _snapshot(env)
    assert torch.equal(now["state"], snap["state"]) and torch.equal(now["target"], snap["target"])
    np.testing.assert_array_equal(now["t"], snap["t"])
    assert now["np_random"] == snap["np_random"]
    if "generator" in snap:
        assert torch.equal(now["generator"], snap["generator"])
        np.testing.assert_array_equal(now["prev_done"], snap["prev_done"])


def _same(a: Any, b: Any) -> None:
    """Exact equality of (nested) env outputs."""
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _same(a[k], b[k])
    elif isinstance(a, (tuple, list)):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _same(x, y)
    else:
        np.testing.assert_array_equal(a, b)


Call = Callable[[Any], Any]


def _check_rejection_is_harmless(make: Callable[[], Any], before: list[Call], bad: Call,
                                 error: type[Exception], match: str, after: list[Call]) -> None:
    """Run ``before``; ``bad`` must raise ``error`` matching ``match`` and change nothing; then
    ``after`` must give exactly what a fresh env gives for ``before + after`` alone."""
    env, ref = make(), make()
    for call in before:
        call(env)
        call(ref)
    snap = _snapshot(env)
    with pytest.raises(error, match=match):
        bad(env)
    _assert_unchanged(env, snap)
    for call in after:
        _same(call(env), call(ref))


# --- garbage actions (single env) --------------------------------------------------------------

GARBAGE_ACTIONS = [
    pytest.param("left", r"numeric array of shape \(64,\), got str", id="str"),
    pytest.param(np.array(["0.5"] * N), r"numeric .*dtype <U3", id="numeric-strings"),
    pytest.param(["0.5"] * N, r"numeric array of shape \(64,\), got list", id="list-of-str"),
    pytest.param([0.0] * (N - 1) + ["1"], "numeric", id="list-mixed-str"),
    pytest.param(b"\x00" * N, "numeric.*got bytes", id="bytes"),
    pytest.param(np.array([object()] * N), r"numeric .*dtype object", id="object-array"),
    pytest.param([0.0] * (N - 1) + [None], "numeric", id="list-with-None"),
    pytest.param({"force": np.zeros(N)}, "numeric.*got dict", id="dict"),
    pytest.param(np.ones(N, complex), r"numeric .*dtype complex128", id="complex"),
    pytest.param(torch.ones(N, dtype=torch.complex64), "numeric.*complex64", id="complex-tensor"),
    pytest.param([[0.1, 0.2], [0.3]], "numeric", id="ragged"),
    pytest.param(np.zeros((N, 1)), r"shape \(64,\), got \(64, 1\)", id="column"),
    pytest.param(np.zeros(0), r"shape \(64,\), got \(0,\)", id="empty"),
    pytest.param(np.zeros(N // 2), r"shape \(64,\), got \(32,\)", id="half"),
    pytest.param([float("nan")] * N, "NaN or inf", id="list-of-nan"),
    pytest.param(np.full(N, np.inf, np.float16), "NaN or inf", id="inf-float16"),
    pytest.param(torch.full((N,), float("nan")), "NaN or inf", id="nan-tensor"),
]


@pytest.mark.parametrize(("action", "match"), GARBAGE_ACTIONS)
def test_garbage_actions_raise_value_error_and_change_nothing(action: Any, match: str) -> None:
    a0, a1 = _actions(0, (2, N))
    _check_rejection_is_harmless(
        _make, before=[lambda e: e.reset(seed=3), lambda e: e.step(a0)],
        bad=lambda e: e.unwrapped.step(action), error=ValueError, match=match,
        after=[lambda e: e.step(a1), lambda e: e.reset(), lambda e: e.step(a0)])


# Documented conversions: real numbers of any dtype and container are accepted, then clipped to
# [-1, 1] exactly like the equivalent float array.
ACCEPTED_ACTIONS = [
    pytest.param(np.ones(N, np.int64), np.ones(N), id="int64"),
    pytest.param(np.full(N, 100, np.int8), np.ones(N), id="int8-clipped"),
    pytest.param(np.full(N, 7, np.uint8), np.ones(N), id="uint8-clipped"),
    pytest.param(np.r_[np.ones(N // 2, bool), np.zeros(N // 2, bool)],
                 np.r_[np.ones(N // 2), np.zeros(N // 2)], id="bool-as-0-1"),
    pytest.param([0.25] * N, np.full(N, 0.25), id="list"),
    pytest.param(np.array([0.25] * N, dtype=object), np.full(N, 0.25), id="object-of-floats"),
    pytest.param([1, 0.5] * (N // 2), np.array([1, 0.5] * (N // 2)), id="list-mixed-int-float"),
    pytest.param(np.full(N, 1e300), np.ones(N), id="1e300-clipped"),
    pytest.param(np.full(N, -1e300), -np.ones(N), id="-1e300-clipped"),
    pytest.param(np.full(N, np.finfo(np.float64).max), np.ones(N), id="float64-max"),
    pytest.param(np.full(N, 0.5, np.float16), np.full(N, 0.5), id="float16"),
    pytest.param(torch.full((N,), 0.5, requires_grad=True), np.full(N, 0.5), id="tensor-grad"),
    pytest.param(torch.full((N,), 3.0, dtype=torch.float64), np.ones(N), id="tensor-f64"),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("action", "equivalent"), ACCEPTED_ACTIONS)
def test_real_actions_of_any_type_are_converted_and_clipped(action: Any, equivalent: np.ndarray,
                                                            dtype: str) -> None:
    env, ref = _make(dtype=dtype), _make(dtype=dtype)
    env.reset(seed=4)
    ref.reset(seed=4)
    _same(env.step(action), ref.step(equivalent.astype(np.float32)))


@hyp_settings(100)
@given(action=st.one_of(
    hnp.arrays(dtype=st.sampled_from([np.float16, np.float32, np.float64, np.int8, np.int64,
                                      np.uint8, np.bool_]),
               shape=st.sampled_from([(N,), (N + 1,), (1, N), (), (N, 2)])),
    hnp.arrays(dtype=np.float64, shape=(N,),
               elements=st.floats(allow_nan=True, allow_infinity=True, width=64)),
))
def test_fuzzed_actions_raise_or_match_the_clipped_reference(action: np.ndarray) -> None:
    """Any numeric array: a wrong shape or a NaN/inf raises (and changes nothing); everything
    else behaves exactly like ``clip(float(action), -1, 1)``."""
    env, ref = _make(horizon=3), _make(horizon=3)
    env.reset(seed=1)
    ref.reset(seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # float16 → float64 of huge ints etc.
        as_float = action.astype(np.float64)
    if action.shape != (N,):
        snap = _snapshot(env)
        with pytest.raises(ValueError, match=r"shape \(64,\)"):
            env.step(action)
        _assert_unchanged(env, snap)
    elif not np.isfinite(as_float).all():
        snap = _snapshot(env)
        with pytest.raises(ValueError, match="NaN or inf"):
            env.step(action)
        _assert_unchanged(env, snap)
    else:
        _same(env.step(action), ref.step(np.clip(as_float, -1, 1)))
    a = _actions(5, (N,))
    _same(env.step(a), ref.step(a))


# --- garbage actions (vector env) --------------------------------------------------------------

VEC_GARBAGE = [
    pytest.param(lambda: "go", "numeric.*got str", id="str"),
    pytest.param(lambda: np.full((3, N), "0.5"), "numeric.*dtype <U3", id="numeric-strings"),
    pytest.param(lambda: np.ones((3, N), complex), "numeric.*complex128", id="complex"),
    pytest.param(lambda: torch.ones(3, N, dtype=torch.complex64), "real-valued", id="cplx-tensor"),
    pytest.param(lambda: [[0.0] * N] * 2 + [[0.0] * (N - 1)], "numeric", id="ragged"),
    pytest.param(lambda: np.array([[object()] * N] * 3), "numeric.*object", id="object"),
    pytest.param(lambda: np.zeros((N, 3)), r"shape \(3, 64\)", id="transposed"),
    pytest.param(lambda: torch.zeros(N, 3), r"shape \(3, 64\)", id="transposed-tensor"),
    pytest.param(lambda: np.r_[np.zeros((2, N)), np.full((1, N), -np.inf)], "NaN or inf",
                 id="one-inf-row"),
]


@pytest.mark.parametrize(("make_action", "match"), VEC_GARBAGE)
def test_vector_garbage_actions_raise_and_change_nothing(make_action: Callable[[], Any],
                                                         match: str) -> None:
    # horizon 2: the bad call comes while every sub-env waits for its NEXT_STEP autoreset, so
    # the generators and the pending resets must survive it too.
    acts = _actions(1, (3, 3, N))
    _check_rejection_is_harmless(
        lambda: _make_vec(3, horizon=2),
        before=[lambda e: e.reset(seed=2), lambda e: e.step(acts[0]), lambda e: e.step(acts[1])],
        bad=lambda e: e.step(make_action()), error=ValueError, match=match,
        after=[lambda e: e.step(acts[2]), lambda e: e.step(acts[0]), lambda e: e.step(acts[1])])


@pytest.mark.parametrize(("action", "equivalent"), [
    pytest.param(lambda: torch.full((3, N), 1e300, dtype=torch.float64), np.ones((3, N)),
                 id="tensor-1e300-f64"),
    pytest.param(lambda: np.full((3, N), -1e300), -np.ones((3, N)), id="numpy-1e300"),
    pytest.param(lambda: torch.full((3, N), 5, dtype=torch.int64), np.ones((3, N)),
                 id="int-tensor"),
    pytest.param(lambda: torch.ones(3, N, dtype=torch.bool), np.ones((3, N)), id="bool-tensor"),
    pytest.param(lambda: [[0.5] * N] * 3, np.full((3, N), 0.5), id="nested-list"),
])
def test_vector_real_actions_are_converted_and_clipped(action: Callable[[], Any],
                                                       equivalent: np.ndarray) -> None:
    env, ref = _make_vec(3), _make_vec(3)
    env.reset(seed=6)
    ref.reset(seed=6)
    _same(env.step(action()), ref.step(equivalent.astype(np.float32)))


# --- calls out of order ------------------------------------------------------------------------


def test_step_after_termination_raises_and_changes_nothing() -> None:
    a = _actions(2, (3, N))
    _check_rejection_is_harmless(
        lambda: _make(horizon=2),
        before=[lambda e: e.reset(seed=0), lambda e: e.step(a[0]), lambda e: e.step(a[1])],
        bad=lambda e: e.unwrapped.step(a[2]), error=RuntimeError,
        match=r"episode ended after 2 steps; call reset\(\)",
        after=[lambda e: e.reset(), lambda e: e.step(a[2])])


def test_reset_twice_is_a_fresh_episode_each_time() -> None:
    env = _make()
    first = env.reset(seed=5)
    env.step(_actions(0, (N,)))
    _same(env.reset(seed=5), first)  # same seed, same task, time back at 0
    assert env.unwrapped.t == 0
    env.reset(seed=5)
    second = env.reset()  # seedless: continues the seeded stream, a new task
    assert not np.array_equal(second[0], first[0])


def test_vector_reset_twice_is_a_fresh_start_each_time() -> None:
    envs = _make_vec(3, horizon=2)
    first = envs.reset(seed=5)
    for a in _actions(0, (3, 3, N)):
        envs.step(a)
    _same(envs.reset(seed=5), first)
    np.testing.assert_array_equal(envs.unwrapped.t, 0)
    assert not envs.unwrapped._prev_done.any()


@pytest.mark.parametrize("render_mode", [None, "rgb_array"])
def test_close_is_idempotent_and_keeps_the_episode(render_mode: str | None) -> None:
    env, ref = _make(render_mode=render_mode), _make(render_mode=render_mode)
    for e in (env, ref):
        e.reset(seed=1)
        if render_mode:
            e.render()
    env.close()
    env.close()
    a = _actions(0, (N,))
    _same(env.step(a), ref.step(a))  # close only releases the window


def test_render_before_reset_raises_for_the_vector_env() -> None:
    envs = _make_vec(2, render_mode="rgb_array")
    with pytest.raises(RuntimeError, match=r"reset\(\) before render\(\)"):
        envs.render()
    envs.close()
    envs.close()


# --- bad reset options: nothing changes, not even the random stream ----------------------------

BAD_OPTIONS = [
    pytest.param(["initial_state"], "options must be a dict", id="list"),
    pytest.param("target", "options must be a dict", id="str"),
    pytest.param({"target": np.full(N, "1.0")}, r"options\['target'\] must be a numeric",
                 id="numeric-strings"),
    pytest.param({"initial_state": np.zeros(N), "seed": 3}, "Unknown reset options",
                 id="unknown-key"),
    pytest.param({"initial_state": np.zeros(N), "target": np.zeros(N)}, "identically zero",
                 id="zero-target"),
    pytest.param({"initial_state": np.ones(N), "target": np.r_[np.ones(N - 1), np.nan]},
                 "NaN or inf", id="nan-target"),
]


@pytest.mark.parametrize("seed", [None, 99], ids=["seedless", "seeded"])
@pytest.mark.parametrize(("options", "match"), BAD_OPTIONS)
def test_rejected_reset_neither_reseeds_nor_draws(options: Any, match: str,
                                                  seed: int | None) -> None:
    a = _actions(3, (2, N))
    _check_rejection_is_harmless(
        _make, before=[lambda e: e.reset(seed=3), lambda e: e.step(a[0])],
        bad=lambda e: e.unwrapped.reset(seed=seed, options=options), error=ValueError,
        match=match, after=[lambda e: e.step(a[1]), lambda e: e.reset(), lambda e: e.step(a[0])])


@pytest.mark.parametrize("seed", [None, 99], ids=["seedless", "seeded"])
@pytest.mark.parametrize(("options", "match"), [
    pytest.param(("target",), "options must be a dict", id="tuple"),
    pytest.param({"target": np.zeros((3, N))}, "identically zero", id="zero-target"),
    pytest.param({"initial_state": np.zeros((3, N + 1))}, r"shape \(3, 64\)", id="shape"),
])
def test_vector_rejected_reset_neither_reseeds_nor_draws(options: Any, match: str,
                                                         seed: int | None) -> None:
    acts = _actions(4, (3, 3, N))
    _check_rejection_is_harmless(
        lambda: _make_vec(3, horizon=2),
        before=[lambda e: e.reset(seed=3), lambda e: e.step(acts[0]), lambda e: e.step(acts[1])],
        bad=lambda e: e.reset(seed=seed, options=options), error=ValueError, match=match,
        after=[lambda e: e.step(acts[2]), lambda e: e.step(acts[0]), lambda e: e.reset()])


# --- bad gym.make arguments --------------------------------------------------------------------

BAD_MAKE_KWARGS = [
    ({"n": "64"}, ValueError, r"n \(number of cells\) must be an int ≥ 4, got '64'"),
    ({"n": 64.0}, ValueError, r"n \(number of cells\) must be an int ≥ 4, got 64.0"),
    ({"n": True}, ValueError, r"n \(number of cells\) must be an int"),
    ({"nu": "0.01"}, ValueError, r"nu must be a finite number > 0, got '0.01'"),
    ({"nu": None}, ValueError, "nu must be a finite number > 0, got None"),
    ({"dt": [0.01]}, ValueError, r"dt must be a finite number > 0, got \[0.01\]"),
    ({"length": float("nan")}, ValueError, "length must be a finite number > 0, got nan"),
    ({"max_gain": "1e4"}, ValueError, "max_gain must be a finite number > 0"),
    ({"max_gain": 0.5}, ValueError, "max_gain must be ≥ 1"),
    ({"horizon": 2.5}, ValueError, "horizon must be an int ≥ 1, got 2.5"),
    ({"horizon": True}, ValueError, "horizon must be an int ≥ 1, got True"),
    ({"horizon": "16"}, ValueError, "horizon must be an int ≥ 1, got '16'"),
    ({"force_scale": "100"}, ValueError, "force_scale must be a finite number > 0, got '100'"),
    ({"force_scale": None}, ValueError, "force_scale must be a finite number > 0, got None"),
    ({"force_penalty": "0"}, ValueError, "force_penalty must be a finite number ≥ 0, got '0'"),
    ({"max_mode": 2.5}, ValueError,
     r"max_mode must be an int in \[1, 31\], got 2.5. \(modes up to n/2 - 1 fit n=64"),
    ({"max_mode": "8"}, ValueError, r"max_mode must be an int in \[1, 31\]"),
    ({"amplitude": True}, ValueError, "amplitude must be a finite number > 0, got True"),
    ({"dtype": "float16"}, ValueError, "dtype must be 'float32' or 'float64', got 'float16'"),
    ({"dtype": torch.int32}, ValueError, "dtype must be 'float32' or 'float64'"),
    ({"device": "gpu"}, ValueError, "device must be a torch device such as 'cpu' or 'cuda'"),
    ({"device": 3.5}, ValueError, "device must be a torch device"),
    ({"device": "cuda:99"}, ValueError, "CUDA"),
    ({"bogus": 1}, TypeError, "unexpected keyword argument 'bogus'"),
]


@pytest.mark.parametrize(("kwargs", "error", "match"), BAD_MAKE_KWARGS,
                         ids=[str(k) for k, *_ in BAD_MAKE_KWARGS])
def test_bad_make_kwargs_raise_clear_errors(kwargs: dict[str, Any], error: type[Exception],
                                           match: str) -> None:
    with pytest.raises(error, match=match):
        gym.make(ENV_ID, **kwargs)
    with pytest.raises(error, match=match):
        gym.make_vec(ENV_ID, num_envs=2, vectorization_mode="vector_entry_point", **kwargs)


def test_bad_render_mode_raises_clear_errors() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gym.make warns about the undeclared mode first
        with pytest.raises(ValueError, match="render_mode must be one of"):
            gym.make(ENV_ID, render_mode="bogus")
    # Non-string modes fail inside gym.make itself (gymnasium calls render_mode.endswith), so
    # the class is checked directly.
    with pytest.raises(ValueError, match="render_mode must be one of"):
        ControlledDiffusionEnv(render_mode=5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"render_mode must be one of.*for the vector env"):
        ControlledDiffusionVectorEnv(num_envs=2, render_mode="human")


@pytest.mark.parametrize("num_envs", [0, -1, 2.0, True, "3", None])
def test_bad_num_envs_raise(num_envs: Any) -> None:
    with pytest.raises(ValueError, match="num_envs must be an int ≥ 1"):
        ControlledDiffusionVectorEnv(num_envs=num_envs)


def test_numpy_integers_are_accepted_as_sizes() -> None:
    env = gym.make(ENV_ID, n=np.int64(32), horizon=np.int32(4), max_mode=np.int16(3))
    assert env.reset(seed=0)[0].shape == (65,)
    envs = ControlledDiffusionVectorEnv(num_envs=np.int64(2), n=np.int64(32))
    assert envs.num_envs == 2 and isinstance(envs.num_envs, int)


# --- pickling and copying ----------------------------------------------------------------------


def test_wrapped_env_pickles_and_deep_copies_mid_episode() -> None:
    env = _make(horizon=6)
    env.reset(seed=8)
    acts = _actions(6, (6, N))
    for a in acts[:3]:
        env.step(a)
    clones = [pickle.loads(pickle.dumps(env)), copy.deepcopy(env)]
    for a in acts[3:]:
        out = env.step(a)
        for clone in clones:
            _same(clone.step(a), out)
    out = env.reset()
    for clone in clones:
        _same(clone.reset(), out)


def test_vector_env_pickles_mid_episode_with_its_autoreset_stream() -> None:
    envs = _make_vec(3, horizon=2)
    envs.reset(seed=8)
    acts = _actions(7, (6, 3, N))
    envs.step(acts[0])
    envs.step(acts[1])  # all terminated: the next step autoresets from the torch generator
    clone = pickle.loads(pickle.dumps(envs.unwrapped))
    for a in acts[2:]:
        _same(clone.step(a), envs.unwrapped.step(a))
    _same(clone.reset(), envs.unwrapped.reset())


def test_physics_and_core_pickle_with_warm_caches() -> None:
    env = _make(dtype="float64")
    env.reset(seed=0)
    env.step(_actions(0, (N,)))  # fills the physics' factor cache
    core = env.unwrapped.core
    core_copy = pickle.loads(pickle.dumps(core))
    phys_copy = pickle.loads(pickle.dumps(core.physics))
    assert core_copy == core and phys_copy == core.physics
    s = torch.randn(2, N, dtype=torch.float64)
    a = torch.rand(2, N, dtype=torch.float64) * 2 - 1
    for c in (core_copy, core):
        torch.testing.assert_close(c.step(s, a), core.step(s, a), rtol=0, atol=0)
    torch.testing.assert_close(phys_copy.inverse_step(s, a, s), core.physics.inverse_step(s, a, s),
                               rtol=0, atol=0)


