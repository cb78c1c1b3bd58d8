"""Seeded determinism across processes: the same seeds give bit-identical rollouts (single and
vector envs, every registered id, both precisions) and training runs, whatever the process and
its hash seed.

In-process seeding (same seed → same episode, different seed → different) is covered in
``tests/envs``; a fresh process catches what in-process tests cannot: state hidden in module
globals, iteration order of sets/dicts of strings (``PYTHONHASHSEED``), unseeded generators.
"""

from __future__ import annotations

import subprocess
from dataclasses import replace
from typing import Any

import pytest
import torch
from reliability_support import PYTHON, subprocess_env

from agents import diffphys, sip, supervised

# Run in-process (exec) and in child processes; prints one SHA-256 over every output.
ROLLOUT_SCRIPT = r'''
import hashlib

import gymnasium as gym
import numpy as np

import sipenv


def digest() -> str:
    h = hashlib.sha256()

    def feed(x):
        if isinstance(x, dict):
            for k in sorted(x):
                h.update(k.encode())
                feed(x[k])
        elif isinstance(x, (tuple, list)):
            for y in x:
                feed(y)
        else:
            a = np.asarray(x)
            if a.dtype == object:  # e.g. info["final_obs"]: hash the items, not the pointers
                for y in a.ravel():
                    feed(y)
            else:
                h.update(f"{a.dtype.str}{a.shape}".encode())
                h.update(np.ascontiguousarray(a).tobytes())

    cases = [(env_id, {}) for env_id in sipenv.ENV_IDS]
    cases.append(("sip/ControlledDiffusion-v0", {"dtype": "float64", "horizon": 3}))
    for env_id, kwargs in cases:
        h.update(env_id.encode())
        env = gym.make(env_id, **kwargs)
        env.action_space.seed(11)
        feed(env.reset(seed=123))
        for _ in range(3 * 16 + 2):  # several episodes, seedless resets in between
            out = env.step(1.3 * env.action_space.sample())
            feed(out)
            if out[2] or out[3]:
                feed(env.reset())
        envs = gym.make_vec(env_id, num_envs=3, vectorization_mode="vector_entry_point",
                            **kwargs)
        envs.action_space.seed(12)
        feed(envs.reset(seed=7))
        for _ in range(20):  # crosses autoresets
            feed(envs.step(envs.action_space.sample()))
    return h.hexdigest()
'''


def _in_process() -> str:
    """The digest computed here, with one torch thread like the child processes: torch's CPU
    FFTs split work by thread count, which may change the last bit of a float (bit-identical
    results are promised for the same thread count, not across thread counts)."""
    import torch

    namespace: dict[str, Any] = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        exec(compile(ROLLOUT_SCRIPT, "<rollout>", "exec"), namespace)
        return str(namespace["digest"]())
    finally:
        torch.set_num_threads(threads)


@pytest.mark.slow  # (≈ 5 s: fresh interpreters)
def test_env_rollouts_are_identical_across_processes_and_hash_seeds() -> None:
    code = ROLLOUT_SCRIPT + "\nprint(digest())\n"
    procs = [subprocess.Popen([PYTHON, "-c", code], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=subprocess_env(PYTHONHASHSEED=seed))
             for seed in ("0", "4242")]
    here = _in_process()
    digests = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()[-2000:]
        digests.append(out.decode().strip().splitlines()[-1])
    assert digests == [here, here]


TINY = dict(hidden=(16, 16), batch_size=8, eval_episodes=4, iterations=5, log_every=1,
            progress=False)


def test_training_is_reproducible_and_depends_on_the_seed() -> None:
    """Same config → bit-identical weights and curves (every algorithm); another seed differs."""
    for module, config_cls in ((sip, sip.SIPConfig), (diffphys, diffphys.DPConfig),
                               (supervised, supervised.SupervisedConfig)):
        cfg = config_cls(**TINY)  # type: ignore[arg-type]
        a = module.train(cfg, write=False, progress=False)
        b = module.train(cfg, write=False, progress=False)
        c = module.train(replace(cfg, seed=1), write=False, progress=False)
        for (k, x), y, z in zip(a.policy.state_dict().items(), b.policy.state_dict().values(),
                                c.policy.state_dict().values(), strict=True):
            assert torch.equal(x, y), (cfg.algo, k)
            assert not torch.equal(x, z) or k.endswith("bias"), (cfg.algo, k)
        strip = [{k: v for k, v in h.items() if k != "time"} for h in a.history]
        assert strip == [{k: v for k, v in h.items() if k != "time"} for h in b.history]
        assert a.final_eval == b.final_eval


def test_training_does_not_touch_the_global_rngs() -> None:
    """Runs draw only from their own seeded generators: the caller's global torch stream is
    unchanged (so training cannot silently depend on, or disturb, other code's randomness)."""
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    sip.train(sip.SIPConfig(**TINY), write=False, progress=False)  # type: ignore[arg-type]
    assert torch.equal(torch.get_rng_state(), before)
