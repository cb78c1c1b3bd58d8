"""The extension guide (docs/extending.md) runs as written: its Kuramoto–Sivashinsky physics
and env modules are built from the page's code blocks, registered, and put through the checks a
real env gets; its example algorithm trains through the one loop."""

from __future__ import annotations

import doctest
import importlib
import re
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "extending.md"
BLOCK = re.compile(r'```python title="([^"]+)"\n(.*?)```', re.S)
ENV_ID = "sip/ControlledKS-v0"


def _blocks() -> dict[str, str]:
    return {path: code for path, code in BLOCK.findall(GUIDE.read_text())}


def _install(path: str, code: str) -> types.ModuleType:
    """Execute a guide block as the module its file name says (e.g. agents/dp_clip.py)."""
    name = path.removesuffix(".py").replace("/", ".")
    module = types.ModuleType(name)
    module.__file__ = str(GUIDE)
    sys.modules[name] = module
    exec(compile(code, f"{GUIDE.name}:{path}", "exec"), module.__dict__)
    parent, _, child = name.rpartition(".")
    setattr(importlib.import_module(parent), child, module)
    return module


@pytest.fixture(scope="module")
def guide() -> Iterator[dict[str, types.ModuleType]]:
    blocks = _blocks()
    assert {"sipenv/physics/kuramoto_sivashinsky.py", "sipenv/envs/controlled_ks.py",
            "agents/dp_clip.py"} <= set(blocks), sorted(blocks)
    modules = {path: _install(path, code) for path, code in blocks.items()}
    gym.register(ENV_ID, entry_point="sipenv.envs.controlled_ks:ControlledKSEnv",
                 vector_entry_point="sipenv.envs.controlled_ks:ControlledKSVectorEnv")
    yield modules
    del gym.registry[ENV_ID]
    for path in blocks:
        sys.modules.pop(path.removesuffix(".py").replace("/", "."), None)


def test_the_physics_steps_and_inverts(guide: dict[str, types.ModuleType]) -> None:
    physics = guide["sipenv/physics/kuramoto_sivashinsky.py"].KuramotoSivashinskyPhysics(n=32)
    gen = torch.Generator().manual_seed(0)
    s, f = (physics.sample_fields(4, gen, max_mode=4, amplitude=0.5, dtype=torch.float64)
            for _ in range(2))
    nxt = physics.step(s, f)
    torch.testing.assert_close(physics.step(s, physics.force_for(s, nxt)), nxt)
    back = physics.inverse_step(nxt, f, nxt)
    assert float(((back - s).norm(dim=-1) / s.norm(dim=-1)).max()) < 1e-2
    with pytest.raises(ValueError, match="dt"):
        guide["sipenv/physics/kuramoto_sivashinsky.py"].KuramotoSivashinskyPhysics(dt=-1.0)


def test_the_env_is_a_conforming_gymnasium_env(guide: dict[str, types.ModuleType]) -> None:
    env = gym.make(ENV_ID, n=32, render_mode="rgb_array")
    check_env(env.unwrapped, skip_render_check=True)
    obs, info = env.reset(seed=0)
    assert obs.shape == (65,) and env.render().shape[-1] == 3
    terminated = False
    while not terminated:
        obs, reward, terminated, _, info = env.step(env.action_space.sample())
    assert np.isfinite(reward) and info["target_error"] > 0
    envs = gym.make_vec(ENV_ID, num_envs=3, vectorization_mode="vector_entry_point", n=32)
    assert envs.reset(seed=0)[0].shape == (3, 65)
    with pytest.raises(TypeError, match="accepted"):
        gym.make(ENV_ID, viscosity=1.0)
    env_module = guide["sipenv/envs/controlled_ks.py"]
    assert doctest.testmod(env_module).failed == 0


def test_the_algorithm_trains_through_the_loop(guide: dict[str, types.ModuleType]) -> None:
    dp_clip = guide["agents/dp_clip.py"]
    config = dp_clip.ClippedDPConfig(env_id="sip/ControlledDiffusion-v0", iterations=15,
                                     batch_size=16, eval_episodes=8, hidden=(32,),
                                     max_grad_norm=0.1, lr=1e-3, progress=False, log_every=1,
                                     env_kwargs='{"n": 16, "max_mode": 3, "horizon": 4}')
    config.validate()
    result = dp_clip.ALGORITHM.train(config, write=False, progress=False)
    losses = [h["loss"] for h in result.history if "loss" in h]
    assert result.iterations == 15 and losses[-1] < losses[0]
    with pytest.raises(ValueError, match="max_grad_norm"):
        dp_clip.ClippedDPConfig(max_grad_norm=0.0).validate()
