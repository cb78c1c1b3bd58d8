"""Headless rendering: ``rgb_array`` frames, a ``human`` window on SDL's dummy driver, videos.

``tests/conftest.py`` sets ``SDL_VIDEODRIVER=dummy`` before pygame is imported.
"""

from __future__ import annotations

import itertools
import os

import gymnasium as gym
import numpy as np
import pytest
from env_support import make, record_shown_frames

import sipenv
from sipenv.envs.rendering import HEIGHT, WIDTH, draw_frame

ENV_ID = "sip/ControlledDiffusion-v0"
N = 64
FRAME_SHAPE = (440, 640, 3)


def test_headless_driver_is_set() -> None:
    assert os.environ.get("SDL_VIDEODRIVER") == "dummy"
    assert (HEIGHT, WIDTH, 3) == FRAME_SHAPE


def test_rgb_array_frames() -> None:
    env = gym.make(ENV_ID, render_mode="rgb_array")
    env.reset(seed=0)
    first = env.render()
    assert isinstance(first, np.ndarray)
    assert first.shape == FRAME_SHAPE and first.dtype == np.uint8
    assert first.min() < 100 and first.max() == 255  # drawn content on a white background
    frames = [first]
    rng = np.random.default_rng(0)
    for _ in range(3):
        env.step(rng.uniform(-1, 1, N).astype(np.float32))
        frames.append(env.render())
    for a, b in itertools.pairwise(frames):
        assert b.shape == FRAME_SHAPE and b.dtype == np.uint8
        assert np.any(a != b), "the frame did not change after a step"
    # Rendering is a pure function of the env state: the same state gives the same frame.
    np.testing.assert_array_equal(env.render(), frames[-1])
    env.close()


def test_rendering_never_initialises_audio() -> None:
    pygame = pytest.importorskip("pygame")
    env = gym.make(ENV_ID, render_mode="rgb_array")
    env.reset(seed=0)
    env.render()
    assert not pygame.mixer.get_init(), "rendering called pygame.init() (opened audio)"


def test_human_mode_headless(monkeypatch: pytest.MonkeyPatch) -> None:
    pygame = pytest.importorskip("pygame")
    shown = record_shown_frames(monkeypatch)
    env = gym.make(ENV_ID, render_mode="human", horizon=3)
    env.reset(seed=0)
    assert pygame.display.get_init()
    for _ in range(3):
        env.step(np.zeros(N, np.float32))
    # reset and every step show a frame by themselves (Gymnasium's "human" contract).
    assert len(shown) == 4
    assert all(f.shape == FRAME_SHAPE and f.dtype == np.uint8 for f in shown)
    assert env.render() is None
    env.close()
    env.close()  # closing twice is fine
    assert env.unwrapped._window is None
    # A new window opens after a close.
    env.reset(seed=1)
    env.close()


def test_draw_frame_survives_extreme_values() -> None:
    x = np.arange(N) / N
    state = np.r_[np.full(N // 2, np.nan), np.full(N // 2, np.inf)]
    target = np.linspace(-1e12, 1e12, N)
    force = np.full(N, 1e9)
    frame = draw_frame(x, state, target, force, step=0, horizon=1, force_limit=1.0,
                       target_error=float("inf"), length=1.0, title="t")
    assert frame.shape == FRAME_SHAPE and frame.dtype == np.uint8


def test_record_video(tmp_path: object) -> None:
    pytest.importorskip("moviepy")
    from pathlib import Path

    folder = Path(str(tmp_path))
    env = gym.wrappers.RecordVideo(gym.make(ENV_ID, render_mode="rgb_array", horizon=4),
                                   video_folder=str(folder), disable_logger=True)
    env.reset(seed=0)
    for _ in range(4):
        env.step(np.zeros(N, np.float32))
    env.close()
    assert list(folder.glob("*.mp4"))


# --- vector env -------------------------------------------------------------------------------


def test_vector_env_frames_match_single_env_frames() -> None:
    rng = np.random.default_rng(0)
    s0, target = rng.normal(size=(2, N)), rng.normal(size=(2, N))
    action = rng.uniform(-1, 1, (2, N)).astype(np.float32)
    envs = gym.make_vec(ENV_ID, num_envs=2, vectorization_mode="vector_entry_point",
                        render_mode="rgb_array")
    envs.reset(options={"initial_state": s0, "target": target})
    envs.step(action)
    vec_frames = envs.render()
    for i in range(2):
        env = gym.make(ENV_ID, render_mode="rgb_array")
        env.reset(options={"initial_state": s0[i], "target": target[i]})
        env.step(action[i])
        np.testing.assert_array_equal(vec_frames[i], env.render())


def test_vector_env_frame_after_autoreset_ignores_the_ignored_action() -> None:
    """The autoreset step ignores its action, so the frame must not draw it as a force."""
    frames = []
    for sign in (1.0, -1.0):
        envs = gym.make_vec(ENV_ID, num_envs=2, vectorization_mode="vector_entry_point",
                            render_mode="rgb_array", horizon=1)
        envs.reset(seed=0)
        envs.step(np.zeros((2, N), np.float32))  # terminates
        envs.step(np.full((2, N), sign, np.float32))  # autoreset: action ignored
        frames.append(envs.render())
    for a, b in zip(*frames, strict=True):
        np.testing.assert_array_equal(a, b)




@pytest.mark.parametrize("env_id", sipenv.ENV_IDS)
def test_closing_one_human_window_leaves_the_others_working(env_id: str) -> None:
    """pygame has one display per process: closing one env releases only its own window; the
    display shuts down when the last window closes (and reopens for the next one)."""
    pygame = pytest.importorskip("pygame")
    first, second = make(env_id, render_mode="human"), make(env_id, render_mode="human")
    first.reset(seed=0)
    second.reset(seed=1)
    first.close()
    assert pygame.display.get_init(), "closing one window shut the display for the other"
    second.step(second.action_space.sample())  # shows a frame in human mode
    assert second.render() is None
    first.close()  # twice: still only its own window
    assert pygame.display.get_init()
    second.close()
    assert not pygame.display.get_init(), "the last window's close must shut the display"
    first.reset(seed=2)  # a closed env opens a new window
    assert pygame.display.get_init()
    first.close()
    assert not pygame.display.get_init()


def test_oscillator_frames_draw_the_episode_path_and_zero_rewards_are_positive() -> None:
    """The single oscillator env keeps its episode's path: the position curves below the phase
    portraits grow with the steps (the red curve of x_2 gains pixels). Its per-step reward
    without a force penalty is +0.0, not −0.0."""
    env = gym.make("sip/CoupledOscillators-v0", render_mode="rgb_array")
    env.reset(seed=0)

    def red_pixels() -> int:
        frame = env.render()
        assert isinstance(frame, np.ndarray)
        lower = frame[HEIGHT // 2:].astype(int)
        return int(np.all(np.abs(lower - np.array([214, 39, 40])) < 30, axis=-1).sum())

    before = red_pixels()
    for _ in range(30):
        _, reward, *_ = env.step(np.array([0.5], dtype=np.float32))
        assert np.copysign(1.0, float(reward)) == 1.0
    assert red_pixels() > before + 50
    env.close()
