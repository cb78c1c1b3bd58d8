"""Conformance suite: the Gymnasium contract every registered env keeps, checked for each id in
:data:`sipenv.ENV_IDS` (the ``env_id`` fixture of ``conftest.py``; it adds the test-only
``sip-test/Recipe-v0`` of ``recipe_env.py``, a new env written as the env layer intends).

A new env is tested here by being registered; actions and reset options come from its spaces
(``action_space``, ``reset_options_space``), and :data:`env_support.SMALL_KWARGS` may make it
small. What is checked, for the single and the native vector env:

- registration (both entry points, module-prefixed id), spaces of the two agree;
- Gymnasium's ``check_env``, with only the allowed warnings of :data:`ALLOWED_CHECK_ENV_WARNINGS`;
- seeded determinism (same seed → same observations, rewards, infos, also across seedless
  resets and autoresets; another seed → another task);
- pickling mid-episode: the copy continues identically (also its random streams);
- the vector env equals single envs step by step (posed tasks; the same seed with one sub-env;
  across the autoreset, whose step ignores its action);
- bad actions (wrong shape, NaN/inf, strings) → ``ValueError``, nothing changed;
- bad reset options (non-dict, unknown keys, wrong shapes, NaN, strings) → ``ValueError``,
  neither the episode nor the random generator changed;
- calls out of order (step before reset, after the end; render before reset) → errors;
- unknown ``gym.make`` keywords → ``TypeError`` naming the accepted ones;
- rendering: ``rgb_array`` frames ``(H, W, 3) uint8``, a tuple of them for the vector env,
  ``render_mode=None`` warns;
- :func:`sipenv.envs.core.core_of` gives the core of field envs (matching their spaces) and
  refuses one-step envs.

Env-specific facts (closed forms, the documented task numbers) stay in the per-env files.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import inspect
import pickle
import re
import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from env_support import (
    NUM_ENVS,
    actions,
    assert_close,
    assert_same,
    is_same_step,
    make,
    make_vec,
    noiseless,
    option_row,
    reset_options,
    small_kwargs,
)
from gymnasium.error import ResetNeeded
from gymnasium.utils.env_checker import check_env

import sipenv
from sipenv.envs.core import TaskCore, core_of
from sipenv.envs.sensing import Sensing

# --- registration --------------------------------------------------------------------------------


def test_registered_with_both_entry_points_and_matching_spaces(env_id: str) -> None:
    spec = gym.spec(env_id)
    assert spec.namespace is not None and spec.version is not None  # versioned, namespaced
    assert spec.namespace == "sip" or env_id not in sipenv.ENV_IDS
    assert isinstance(spec.entry_point, str) and isinstance(spec.vector_entry_point, str)
    env, envs = make(env_id), make_vec(env_id)
    assert isinstance(env.unwrapped, gym.Env)
    assert isinstance(envs.unwrapped, gym.vector.VectorEnv) and envs.num_envs == NUM_ENVS
    assert envs.single_action_space == env.action_space
    assert envs.single_observation_space == env.observation_space
    assert envs.action_space.shape == (NUM_ENVS, *env.action_space.shape)
    assert envs.observation_space.shape == (NUM_ENVS, *env.observation_space.shape)
    assert env.observation_space.dtype == np.float32
    assert env.metadata["render_fps"] > 0 and "rgb_array" in env.metadata["render_modes"]
    assert envs.metadata["autoreset_mode"] in (gym.vector.AutoresetMode.NEXT_STEP,
                                               gym.vector.AutoresetMode.SAME_STEP)
    prefixed = gym.make(f"sipenv:{env_id}", **small_kwargs(env_id))
    assert type(prefixed.unwrapped) is type(env.unwrapped)


# --- Gymnasium's checker -------------------------------------------------------------------------

ALLOWED_CHECK_ENV_WARNINGS = {
    # Fields are unbounded by design (states, targets, physical answers): check_env warns about
    # every infinite Box bound. Allowed only where the declared space really is unbounded.
    r"A Box observation space minimum value is -infinity":
        lambda env: bool(np.isneginf(env.observation_space.low).any()),
    r"A Box observation space maximum value is infinity":
        lambda env: bool(np.isposinf(env.observation_space.high).any()),
    r"A Box action space minimum value is -infinity":
        lambda env: bool(np.isneginf(env.action_space.low).any()),
    r"A Box action space maximum value is infinity":
        lambda env: bool(np.isposinf(env.action_space.high).any()),
}
"""Warnings ``check_env`` may give, each with the condition under which it is expected."""


def test_check_env_passes_with_only_allowed_warnings(env_id: str) -> None:
    env = make(env_id, render_mode="rgb_array").unwrapped  # its render checks too
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env)
    unexpected = [str(w.message) for w in caught
                  if not any(re.search(pattern, str(w.message)) and expected(env)
                             for pattern, expected in ALLOWED_CHECK_ENV_WARNINGS.items())]
    assert not unexpected, f"check_env emitted unexpected warnings: {unexpected}"


# --- seeding -------------------------------------------------------------------------------------


def _run(env: gym.Env[Any, Any], seed: int, steps: int) -> list[Any]:
    """``reset(seed)``, then ``steps`` steps with seeded actions, resetting (seedless) at the end
    of each episode."""
    out: list[Any] = [env.reset(seed=seed)]
    for action in actions(env.action_space, seed, steps):
        out.append(env.step(action))
        if out[-1][2] or out[-1][3]:
            out.append(env.reset())
    return out


def test_seeded_determinism(env_id: str) -> None:
    first, again, other = (_run(make(env_id), seed, 7) for seed in (4, 4, 5))
    assert_same(first, again)
    assert not np.array_equal(first[0][0], other[0][0])
    resets = [o[0] for o in first if len(o) == 2]  # seedless resets draw new tasks
    assert len(resets) >= 2 and not np.array_equal(resets[0], resets[1])


def test_vector_seeded_determinism(env_id: str) -> None:
    def run(seed: int) -> list[Any]:
        envs = make_vec(env_id)
        out: list[Any] = [envs.reset(seed=seed)]
        out += [envs.step(a) for a in actions(envs.action_space, 0, 9)]  # crosses autoresets
        return [*out, envs.reset()]

    first, again, other = run(7), run(7), run(8)
    assert_same(first, again)
    assert not np.array_equal(first[0][0], other[0][0])
    assert not np.array_equal(first[0][0][0], first[0][0][1])  # sub-envs draw different tasks


# --- pickling ------------------------------------------------------------------------------------


def test_pickles_and_deep_copies_mid_episode(env_id: str) -> None:
    env = make(env_id)
    env.reset(seed=8)
    acts = actions(env.action_space, 1, 6)
    if env.step(acts[0])[2]:  # a one-step env: take the copy in its next episode instead
        env.reset()
    clones = [pickle.loads(pickle.dumps(env)), copy.deepcopy(env)]
    for action in acts[1:]:
        out = env.step(action)
        for clone in clones:
            assert_same(clone.step(action), out)
        if out[2]:
            out = env.reset()
            for clone in clones:
                assert_same(clone.reset(), out)


def test_vector_env_pickles_mid_episode_with_its_autoreset_stream(env_id: str) -> None:
    envs = make_vec(env_id)
    envs.reset(seed=8)
    acts = actions(envs.action_space, 2, 9)
    envs.step(acts[0])
    clone = pickle.loads(pickle.dumps(envs.unwrapped))
    for action in acts[1:]:  # crosses autoresets, drawn from the copied generators
        assert_same(clone.step(action), envs.unwrapped.step(action))
    assert_same(clone.reset(), envs.unwrapped.reset())


# --- the vector env equals single envs -----------------------------------------------------------


def _sub_env_step(out: tuple[Any, ...], i: int, same_step: bool) -> tuple[Any, ...]:
    """Sub-env ``i``'s part of a vector step, laid out like a single env's step."""
    obs, reward, terminated, truncated, info = out
    if same_step:  # the answered observation and the step's info are the "final" ones
        obs = info["final_obs"][i]
        info = {k: v[i] for k, v in info["final_info"].items() if not k.startswith("_")}
    else:
        obs, info = obs[i], {k: v[i] for k, v in info.items()
                             if not k.startswith("_")}
    return obs, reward[i], terminated[i], truncated[i], info


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_vector_env_equals_single_envs_on_posed_tasks(env_id: str, dtype: str) -> None:
    envs = make_vec(env_id, dtype=dtype, **noiseless(env_id))  # the noise: other seeds
    singles = [make(env_id, dtype=dtype, **noiseless(env_id)) for _ in range(NUM_ENVS)]
    options = reset_options(envs, 3)
    obs, info = envs.reset(seed=0, options=options)
    for i, env in enumerate(singles):
        o, inf = env.reset(seed=10 + i, options=option_row(options, i))
        row = {k: v[i] for k, v in info.items() if not k.startswith("_")}
        assert_close((o, inf), (obs[i], row))
    same_step = is_same_step(envs)
    for batch in actions(envs.action_space, 4, 8):
        out = envs.step(batch)
        for i, env in enumerate(singles):
            single = env.step(batch[i])
            assert type(single[1]) is float and type(single[2]) is bool
            assert_close(single, _sub_env_step(out, i, same_step))
        if out[2].all():
            break
    assert out[2].all(), "the sub-envs did not end their episodes together"


def test_vector_env_with_one_sub_env_equals_the_single_env_of_the_same_seed(env_id: str) -> None:
    envs, env = make_vec(env_id, num_envs=1), make(env_id)
    obs, _ = envs.reset(seed=21)
    assert_close(env.reset(seed=21)[0], obs[0])
    same_step = is_same_step(envs)
    for batch in actions(envs.action_space, 5, 4):
        out = envs.step(batch)
        single = env.step(batch[0])
        assert_close(single, _sub_env_step(out, 0, same_step))
        if same_step:  # the next problem comes from the same stream as a seedless reset
            assert_close(env.reset()[0], out[0][0])
        elif single[2]:  # the next episode comes from the vector env's generator: next test
            return
    assert same_step, "the episode did not end"


def test_next_step_autoreset_ignores_the_action_and_continues_like_a_single_env(
        env_id: str) -> None:
    twins = [make_vec(env_id, **noiseless(env_id)), make_vec(env_id, **noiseless(env_id))]
    if is_same_step(twins[0]):
        pytest.skip("one-step env: SAME_STEP autoreset, checked above")
    for envs in twins:
        envs.reset(seed=2)
    acts = actions(twins[0].action_space, 6, 12)
    for t, batch in enumerate(acts):  # noqa: B007  (t: the step that ends the episodes)
        outs = [envs.step(batch) for envs in twins]
        if outs[0][2].all():
            break
    assert outs[0][2].all()
    # The autoreset step: its actions are ignored (the twins get different ones), reward 0,
    # neither terminated nor truncated.
    ignored = [twins[0].step(acts[t + 1]), twins[1].step(-acts[t + 1])]
    assert_same(ignored[0], ignored[1])
    obs, reward, terminated, truncated, info = ignored[0]
    np.testing.assert_array_equal(reward, np.zeros(NUM_ENVS))
    assert not terminated.any() and not truncated.any()
    # Each new episode is a task drawn from the vector env's generator; started there, a
    # single env continues exactly alike.
    vec = twins[0].unwrapped
    singles = []
    for i in range(NUM_ENVS):
        env = make(env_id, **noiseless(env_id))
        env.reset(seed=0)
        inner = env.unwrapped
        start = inner._start(vec.state[i:i + 1].clone(), vec.target[i:i + 1].clone(), None)
        assert_close(start, (obs[i], {k: v[i] for k, v in info.items() if not k.startswith("_")}))
        singles.append(env)
    for batch in acts[t + 2:]:
        out = twins[0].step(batch)
        for i, env in enumerate(singles):
            assert_close(env.step(batch[i]), _sub_env_step(out, i, False))
        if out[2].all():
            break


# --- native versus sync mode ------------------------------------------------------------------


def _structure(value: Any) -> Any:
    """The layout of an env output: types, dtypes and shapes (dicts recursively), no values."""
    if isinstance(value, dict):
        return {key: _structure(v) for key, v in value.items()}
    if isinstance(value, np.ndarray):
        return ("ndarray", value.dtype.str, value.shape)
    return type(value).__name__


def _pose_like(native: Any, sync_env: gym.Env[Any, Any], i: int) -> tuple[Any, Any]:
    """Give sync sub-env ``i`` the task native sub-env ``i`` has just drawn (their generators
    differ by design: sync seeds each sub-env, native draws from one stream); its
    ``(observation, info)`` as its reset would report them."""
    vec, inner = native.unwrapped, sync_env.unwrapped
    if hasattr(vec, "core"):  # a field env (NEXT_STEP): the task is (state, target)
        return inner._start(vec.state[i:i + 1].clone(), vec.target[i:i + 1].clone(), None)
    problem = vec._problem()  # a one-step env (SAME_STEP): the posed problem
    first = problem[0] if isinstance(problem, tuple) else problem
    inner._pose(first[i:i + 1].clone())
    return inner._obs()[0], {}


@pytest.mark.parametrize("max_episode_steps", [None, 1, 2, 3, 5])
def test_native_vector_env_matches_sync_mode_step_by_step(env_id: str,
                                                          max_episode_steps: int | None) -> None:
    """``gym.make_vec(id, max_episode_steps=K)`` in native mode behaves like sync mode (the
    single env under ``TimeLimit``, batched by ``SyncVectorEnv`` with the native env's autoreset
    mode): observations, rewards, ``terminated`` / ``truncated`` and the ``info`` layout with
    its ``_key`` masks, step by step across time-limit truncations and autoresets. The tasks
    after each (auto)reset come from different generators, so the native env's are posed in the
    sync sub-envs and compared from there on."""
    limit = {} if max_episode_steps is None else {"max_episode_steps": max_episode_steps}
    limit.update(noiseless(env_id))  # the sync sub-envs' generators differ by design
    native = make_vec(env_id, **limit)
    same_step = is_same_step(native)
    sync = gym.make_vec(env_id, num_envs=NUM_ENVS, vectorization_mode="sync",
                        vector_kwargs={"autoreset_mode": native.metadata["autoreset_mode"]},
                        **small_kwargs(env_id), **limit)
    n_obs, n_info = native.reset(seed=0)
    s_obs, s_info = sync.reset(seed=0)
    assert _structure((n_obs, n_info)) == _structure((s_obs, s_info))
    for i, env in enumerate(sync.envs):
        assert_close(_pose_like(native, env, i), (n_obs[i], {
            k: v[i] for k, v in n_info.items() if not k.startswith("_")}))
    flags = {"truncated": 0, "terminated": 0, "autoreset": 0}
    pending = np.zeros(NUM_ENVS, dtype=bool)  # NEXT_STEP: sub-envs the next step resets
    for batch in actions(native.action_space, 9, 10):
        n_out, s_out = native.step(batch), sync.step(batch)
        assert _structure(n_out) == _structure(s_out)
        for n_flag, s_flag in zip(n_out[2:4], s_out[2:4], strict=True):
            np.testing.assert_array_equal(n_flag, s_flag)
        np.testing.assert_allclose(n_out[1], s_out[1], rtol=1e-5, atol=1e-8)
        n_info, s_info = n_out[4], s_out[4]
        for key in n_info:  # the masks (and for SAME_STEP the final_* masks) are equal
            if key.startswith("_"):
                np.testing.assert_array_equal(n_info[key], s_info[key], err_msg=key)
        for i, env in enumerate(sync.envs):
            if same_step:  # the answered problem's observation and info
                assert_close(n_info["final_obs"][i], s_info["final_obs"][i])
                assert_close({k: v[i] for k, v in n_info["final_info"].items()},
                             {k: v[i] for k, v in s_info["final_info"].items()})
            if same_step or pending[i]:  # a new task: pose the native one in sync mode too
                obs, info = _pose_like(native, env, i)
            else:
                obs, info = s_out[0][i], {k: v[i] for k, v in s_info.items()
                                          if not k.startswith("_")}
            assert_close((obs, info), (n_out[0][i], {k: v[i] for k, v in n_info.items()
                                                     if not k.startswith(("_", "final"))}))
        flags["autoreset"] += int(pending.sum())
        pending = (n_out[2] | n_out[3]) & (not same_step)
        flags["terminated"] += int(n_out[2].sum())
        flags["truncated"] += int(n_out[3].sum())
    episode = 1 if same_step else native.unwrapped.horizon
    binds = max_episode_steps is not None and max_episode_steps <= episode
    ends = max_episode_steps is None or max_episode_steps >= episode
    assert (flags["truncated"] > 0) == binds and (flags["terminated"] > 0) == ends
    assert same_step or flags["autoreset"] > 0


def test_make_vec_arguments_are_checked(env_id: str) -> None:
    for bad in (0, -2, 2.5, "3", True):
        with pytest.raises(ValueError, match="max_episode_steps"):
            make_vec(env_id, max_episode_steps=bad)
    with pytest.raises(ValueError, match="disable_env_checker"):
        make_vec(env_id, disable_env_checker="no")
    for fine in (-1, None):  # gym.make's "no time limit"
        assert make_vec(env_id, max_episode_steps=fine).unwrapped.max_episode_steps is None
    make_vec(env_id, disable_env_checker=True).reset(seed=0)


def test_vector_env_takes_torch_actions_like_numpy(env_id: str) -> None:
    a, b = make_vec(env_id), make_vec(env_id)
    a.reset(seed=1)
    b.reset(seed=1)
    for batch in actions(a.action_space, 7, 4):
        assert_same(a.step(batch), b.step(torch.from_numpy(np.asarray(batch))))


def test_vector_api_contract(env_id: str) -> None:
    envs = make_vec(env_id)
    obs, info = envs.reset(seed=0)
    assert obs in envs.observation_space and isinstance(info, dict)
    for batch in actions(envs.action_space, 0, 5):
        obs, reward, terminated, truncated, info = envs.step(batch)
        assert obs in envs.observation_space and obs.dtype == np.float32
        assert reward.shape == terminated.shape == truncated.shape == (NUM_ENVS,)
        assert reward.dtype == np.float64 and np.isfinite(reward).all()
        assert terminated.dtype == np.bool_ and truncated.dtype == np.bool_
        for value in info.values():
            if not isinstance(value, dict):
                assert np.asarray(value).shape[0] == NUM_ENVS
    # Returned arrays are not views of buffers that later steps overwrite.
    kept = obs.copy()
    envs.step(envs.action_space.sample())
    np.testing.assert_array_equal(obs, kept)
    envs.close()
    envs.close()


# --- bad actions ---------------------------------------------------------------------------------


FLOAT64_LIMIT = r"beyond ±1\.798e\+308, the largest magnitude float64 can hold"


def _beyond_float64(shape: tuple[int, ...]) -> list[Any]:
    """Finite numbers that float64 (every input is read as float64) cannot hold."""
    values: list[Any] = [np.full(shape, 10**400, dtype=object)]  # Python ints, exact
    if np.finfo(np.longdouble).max > 1e400:  # x86 long double
        values.append(np.full(shape, np.longdouble("1e400")))
    return values


def _bad_actions(shape: tuple[int, ...], bounded: bool = True) -> list[tuple[Any, str]]:
    longer = (*shape[:-1], shape[-1] + 1)
    out = [(np.zeros(longer), "shape"), (np.zeros((2, *shape)), "shape"),
           (np.full(shape, np.nan), "NaN or inf"), (np.full(shape, -np.inf), "NaN or inf"),
           ("x", "numeric"), *((v, FLOAT64_LIMIT) for v in _beyond_float64(shape))]
    if not bounded:  # used as it is, not clipped: limited by what the env computes in
        out.append((np.full(shape, -1e300), r"beyond ±\d"))
    return out


def _bounded(space: Any) -> bool:
    return bool(np.isfinite(space.low).all() and np.isfinite(space.high).all())


def test_bad_actions_raise_and_change_nothing(env_id: str) -> None:
    env, twin = make(env_id), make(env_id)
    acts = actions(env.action_space, 3, 2)
    for bad, match in _bad_actions(env.action_space.shape, _bounded(env.action_space)):
        assert_same(env.reset(seed=0), twin.reset(seed=0))
        with pytest.raises(ValueError, match=match):
            env.unwrapped.step(bad)
        assert_same(env.step(acts[0]), twin.step(acts[0]))
        assert_same(env.reset(), twin.reset())


def test_vector_bad_actions_raise_and_change_nothing(env_id: str) -> None:
    envs, twin = make_vec(env_id), make_vec(env_id)
    acts = actions(envs.action_space, 3, 2)
    bad_tensors = [(torch.zeros(NUM_ENVS + 1, *envs.single_action_space.shape), "shape"),
                   (torch.full(envs.action_space.shape, float("nan")), "NaN or inf")]
    bounded = _bounded(envs.single_action_space)
    for bad, match in [*_bad_actions(envs.action_space.shape, bounded), *bad_tensors]:
        assert_same(envs.reset(seed=0), twin.reset(seed=0))
        assert_same(envs.step(acts[0]), twin.step(acts[0]))
        with pytest.raises(ValueError, match=match):
            envs.step(bad)
        assert_same(envs.step(acts[1]), twin.step(acts[1]))


# --- bad reset options ---------------------------------------------------------------------------


def _bad_options(env: Any) -> list[tuple[Any, str]]:
    space = env.unwrapped.reset_options_space
    key, box = next(iter(space.items()))
    shape = box.shape
    longer = (*shape[:-1], shape[-1] + 1)
    # Finite but beyond what the env can hold: its dtype, its float32 observation, or (a
    # bounded option such as SineInversion's target) its box.
    beyond = r"beyond ±\d.*(float32|float64|dtype)|must lie in \[-1, 1\]"
    return [({key: np.zeros(longer)}, "shape"), ({key: np.zeros(shape[1:])}, "shape"),
            ({key: np.full(shape, np.nan)}, "NaN or inf"), ({key: "abc"}, "numeric"),
            ({"bogus": 0}, "Unknown reset options"), ([(key, 0)], "must be a dict"),
            ("options", "must be a dict"), ({key: np.full(shape, 1e200)}, beyond),
            *(({key: value}, FLOAT64_LIMIT) for value in _beyond_float64(shape))]


@pytest.mark.parametrize("vector", [False, True], ids=["single", "vector"])
@pytest.mark.parametrize("seed", [None, 99], ids=["seedless", "seeded"])
def test_rejected_reset_changes_neither_the_episode_nor_the_generator(
        env_id: str, vector: bool, seed: int | None) -> None:
    env, twin = (make_vec(env_id), make_vec(env_id)) if vector else (make(env_id), make(env_id))
    acts = actions(env.action_space, 3, 2)
    for bad, match in _bad_options(env):
        assert_same(env.reset(seed=0), twin.reset(seed=0))
        out = env.step(acts[0])
        assert_same(out, twin.step(acts[0]))
        generator = env.unwrapped.np_random.bit_generator.state
        with pytest.raises(ValueError, match=match):
            env.reset(seed=seed, options=bad)
        assert env.unwrapped.np_random.bit_generator.state == generator
        # The episode in progress continues (unless a single env's has ended), then the stream.
        if vector or not out[2]:
            assert_same(env.step(acts[1]), twin.step(acts[1]))
        assert_same(env.reset(), twin.reset())


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_representable_huge_target_gives_finite_errors_and_rewards(env_id: str,
                                                                    dtype: str) -> None:
    """Issue 13: a float32 target of 1e19 made ‖s*‖² overflow into a NaN terminal reward. Any
    target the env accepts gives finite ``target_error`` and rewards (single and vector)."""
    env, envs = make(env_id, dtype=dtype), make_vec(env_id, dtype=dtype)
    space = env.unwrapped.reset_options_space
    if "target" not in space.spaces or _bounded(space["target"]):
        pytest.skip("no unbounded target option")
    shape = space["target"].shape
    for big in (1e19, 3e38, -3e38):
        target = np.full(shape, big) * np.where(np.arange(shape[-1]) % 2, 1.0, 0.5)
        outs = [env.reset(seed=0, options={"target": target}),
                envs.reset(seed=0, options={"target": np.stack([target] * NUM_ENVS)})]
        for _ in range(env.unwrapped.horizon):
            outs += [env.step(env.action_space.sample()), envs.step(envs.action_space.sample())]
        for out in outs:
            numbers = [out[-1]["target_error"], *(out[1:2] if len(out) == 5 else ())]
            assert np.isfinite(np.asarray(numbers, dtype=np.float64)).all(), out[-1]
        assert outs[-2][2]  # the terminal reward was among them


def test_valid_reset_options_pose_the_same_task_every_time(env_id: str) -> None:
    env = make(env_id, **noiseless(env_id))  # posed, not drawn: only the noise would differ
    options = reset_options(env, 5)
    first = env.reset(seed=1, options=options)
    assert_same(env.reset(seed=2, options=options)[0], first[0])
    assert env.unwrapped.reset_options_space.contains(
        {k: np.asarray(v, dtype=np.float64) for k, v in options.items()})


# --- calls out of order --------------------------------------------------------------------------


def test_calls_out_of_order_raise(env_id: str) -> None:
    env = make(env_id, render_mode="rgb_array")
    action = env.action_space.sample()
    with pytest.raises(RuntimeError, match=r"reset\(\)"):
        env.unwrapped.step(action)
    with pytest.raises(RuntimeError, match=r"reset\(\)"):
        env.unwrapped.render()
    with pytest.raises(ResetNeeded):  # gymnasium's OrderEnforcing wrapper
        env.step(action)
    env.reset(seed=0)
    while not env.step(action)[2]:
        pass
    with pytest.raises(RuntimeError, match=r"reset\(\)"):
        env.step(action)
    env.reset()
    env.step(action)  # a reset starts a new episode
    envs = make_vec(env_id, render_mode="rgb_array")
    with pytest.raises(RuntimeError, match=r"reset\(\)"):
        envs.step(envs.action_space.sample())
    with pytest.raises(RuntimeError, match=r"reset\(\)"):
        envs.render()


# --- constructor keywords ------------------------------------------------------------------------


def test_unknown_keywords_raise_type_error_naming_the_accepted_ones(env_id: str) -> None:
    for build in (lambda: make(env_id, bogus=1), lambda: make_vec(env_id, bogus=1)):
        with pytest.raises(TypeError, match=r"unexpected keyword argument 'bogus'; accepted: "
                                            r"render_mode, device, dtype, "):
            build()


# --- rendering -----------------------------------------------------------------------------------


def _assert_frame(frame: Any) -> None:
    assert isinstance(frame, np.ndarray) and frame.dtype == np.uint8
    assert frame.ndim == 3 and frame.shape[2] == 3 and frame.shape[0] > 0 and frame.shape[1] > 0


def test_rgb_array_frames(env_id: str) -> None:
    env = make(env_id, render_mode="rgb_array")
    env.reset(seed=0)
    first = env.render()
    _assert_frame(first)
    env.step(env.action_space.sample())
    after = env.render()
    _assert_frame(after)
    assert after.shape == first.shape and np.any(after != first)  # it shows the step
    np.testing.assert_array_equal(env.render(), after)  # a pure function of the env state
    envs = make_vec(env_id, render_mode="rgb_array")
    envs.reset(seed=0)
    for _ in range(2):
        frames = envs.render()
        assert isinstance(frames, tuple) and len(frames) == NUM_ENVS
        for frame in frames:
            _assert_frame(frame)
            assert frame.shape == first.shape
        envs.step(envs.action_space.sample())


def test_render_without_render_mode_warns_and_returns_none(env_id: str) -> None:
    env, envs = make(env_id), make_vec(env_id)
    env.reset(seed=0)
    envs.reset(seed=0)
    for target in (env.unwrapped, envs):
        with pytest.warns(UserWarning, match="render_mode"):
            assert target.render() is None


# --- the core agents differentiate through -------------------------------------------------------


def test_core_of_gives_field_envs_their_core(env_id: str) -> None:
    env, envs = make(env_id), make_vec(env_id)
    if is_same_step(envs):  # a one-step inverse problem: agents use env.unwrapped.physics
        for e in (env, envs):
            with pytest.raises(TypeError, match="has no task core"):
                core_of(e)
        return
    core = core_of(env)
    assert isinstance(core, TaskCore) and core_of(envs) is envs.unwrapped.core
    assert core is env.unwrapped.core
    assert env.action_space.shape == core.action_shape
    assert env.observation_space.shape == core.observation_shape
    assert core_of(env, type(core)) is core
    with pytest.raises(TypeError, match="not a int"):
        core_of(env, int)


# --- the documented arguments --------------------------------------------------------------------


def test_documented_argument_defaults_are_the_real_ones(env_id: str) -> None:
    """Every ``name=value`` in the docstring's Arguments section is a keyword the env accepts,
    with that default (the dataclasses own the defaults; the docstring must follow them)."""
    env = make(env_id).unwrapped
    doc = type(env).__doc__ or ""
    assert "## Arguments" in doc, "the Gymnasium docstring template has an Arguments section"
    section = doc.split("## Arguments", 1)[1].split("\n    ## ", 1)[0]
    factory = getattr(type(env), "make_core", None) or type(env).make_task
    defaults = factory.default_values()
    if hasattr(env, "core"):  # a field env also takes the sensing keywords (sipenv.envs.sensing)
        defaults |= {f.name: f.default for f in dataclasses.fields(Sensing) if f.init}
    signature = inspect.signature(type(env).__init__).parameters
    documented = re.findall(r"``(\w+)=([^`]+)``", section)
    assert documented
    for name, text in documented:
        value = ast.literal_eval(text)
        if name in signature and name not in defaults:
            actual = signature[name].default
        else:
            assert name in defaults, f"{name} is documented but not accepted"
            actual = defaults[name]
        if actual is None and value is not None:
            continue  # a physics default resolved at construction (e.g. substeps per scheme)
        if isinstance(value, float):
            assert actual == pytest.approx(value), name
        else:
            assert actual == value, name


def test_a_rejected_first_reset_leaves_the_env_usable(env_id: str) -> None:
    """``gym.make``'s default wrappers survive a first ``reset`` that the env refuses (Gymnasium
    1.4's passive checker, on by default elsewhere, would leave the env unable to step)."""
    env = make(env_id)
    with pytest.raises(ValueError, match="option"):
        env.reset(options={"no_such_option": 1})
    env.reset(seed=0)
    env.step(actions(env.action_space, 0, 1)[0])

