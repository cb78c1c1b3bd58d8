"""Smoke runs of every CLI for a few iterations (CleanRL-style), plus their error paths."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import ModuleType

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from script_loading import load_script

import sipenv

ROOT = Path(__file__).resolve().parents[2]


def _load(path: str) -> ModuleType:
    return load_script(path)


train = _load("scripts/train.py")
evaluate = _load("scripts/evaluate.py")
render = _load("scripts/render.py")
demo = _load("scripts/demo.py")
compare = _load("scripts/compare.py")
gallery = _load("scripts/env_gallery.py")

FAST = ["--eval-episodes", "4", "--hidden", "32", "32", "--batch-size", "8", "--no-progress"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    assert train.main(["sip", "--iterations", "5", "--runs-dir", str(runs), "--run-name", "r",
                       *FAST]) == 0
    return runs / "r"


def test_train_writes_a_run_and_resumes(trained_run: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("config.json", "metrics.jsonl", "checkpoint.pt", "final_eval.json",
                 "learning_curve.png"):
        assert (trained_run / name).is_file()
    runs, name = str(trained_run.parent), trained_run.name
    # an existing run is never overwritten
    assert train.main(["sip", "--iterations", "5", "--runs-dir", runs, "--run-name", name,
                       *FAST]) == 2
    assert train.main(["sip", "--iterations", "8", "--runs-dir", runs, "--run-name", name,
                       "--resume", *FAST]) == 0
    assert json.loads((trained_run / "final_eval.json").read_text())["iteration"] == 8
    assert "ignored" not in capsys.readouterr().err  # the same settings: nothing to say
    # a setting given with --resume is the saved run's; the note says so instead of silence
    assert train.main(["sip", "--iterations", "9", "--runs-dir", runs, "--run-name", name,
                       "--resume", "--lr", "0.5", *FAST]) == 0
    err = capsys.readouterr().err
    saved_lr = json.loads((trained_run / "config.json").read_text())["lr"]
    assert f"ignored: --lr 0.5 (the run's: {saved_lr})" in err
    assert json.loads((trained_run / "final_eval.json").read_text())["iteration"] == 9


def test_resume_takes_the_runs_env_when_env_id_is_not_given(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env = ["--env-id", "sip/SineInversion-v0"]
    assert train.main(["dp", *env, "--iterations", "2", "--runs-dir", str(tmp_path),
                       "--run-name", "r", *FAST]) == 0
    # no --env-id: the default (ControlledDiffusion) is not checked against the checkpoint
    assert train.main(["dp", "--iterations", "3", "--runs-dir", str(tmp_path), "--run-name",
                       "r", "--resume", *FAST]) == 0
    final = json.loads((tmp_path / "r" / "final_eval.json").read_text())
    assert final["iteration"] == 3 and "test_x_dist" in final
    # an explicit --env-id that differs is refused (no contradicting "ignored" note), and
    # nothing is written
    capsys.readouterr()
    before = (tmp_path / "r" / "checkpoint.pt").read_bytes()
    assert train.main(["dp", "--env-id", "sip/ControlledDiffusion-v0", "--iterations", "4",
                       "--runs-dir", str(tmp_path), "--run-name", "r", "--resume",
                       *FAST]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "leave --env-id out" in err and "ignored" not in err
    assert (tmp_path / "r" / "checkpoint.pt").read_bytes() == before


def test_resuming_a_cosine_run_with_new_limits_says_the_schedule_stretches(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["dp", "--lr-schedule", "cosine", "--runs-dir", str(tmp_path), "--run-name", "c",
            *FAST]
    assert train.main([*args, "--iterations", "2"]) == 0
    capsys.readouterr()
    assert train.main([*args, "--iterations", "2", "--resume"]) == 0  # same limits: no note
    assert "stretched" not in capsys.readouterr().err
    assert train.main([*args, "--iterations", "4", "--resume"]) == 0
    assert "--lr-schedule cosine" in capsys.readouterr().err


@pytest.mark.parametrize("algo", ["dp", "supervised"])
def test_train_other_algorithms(algo: str, tmp_path: Path) -> None:
    assert train.main([algo, "--iterations", "3", "--runs-dir", str(tmp_path), *FAST]) == 0


@pytest.mark.parametrize(("algo", "env_args", "metric"), [
    ("sip", ["--env-id", "sip/SineInversion-v0", "--env-kwargs", '{"xi": 4}'], "val_x_dist"),
    ("dp", ["--env-id", "sip/SineInversion-v0"], "test_x_dist"),
    ("sip", ["--env-id", "sip/HeatInverse-v0", "--env-kwargs", '{"shape": [8, 8]}'],
     "val_x_error"),
    ("dp", ["--env-id", "sip/HeatInverse-v0", "--env-kwargs", '{"shape": [8, 8]}'],
     "test_x_error"),
])
def test_train_on_single_step_inverse_problems(algo: str, env_args: list[str], metric: str,
                                               tmp_path: Path) -> None:
    assert train.main([algo, *env_args, "--iterations", "3", "--runs-dir", str(tmp_path),
                       "--run-name", "r", *FAST]) == 0
    final = json.loads((tmp_path / "r" / "final_eval.json").read_text())
    assert final["iteration"] == 3 and metric in final
    assert render.main(["--checkpoint", str(tmp_path / "r" / "checkpoint.pt"), "--out",
                        str(tmp_path / "r.gif")]) == 0
    out = tmp_path / "eval.json"
    assert evaluate.main([str(tmp_path / "r" / "checkpoint.pt"), "--episodes", "4",
                          "--out", str(out)]) == 0
    assert json.loads(out.read_text())["relative_difference"] < 1e-4


@pytest.mark.parametrize(("argv", "match"), [
    (["supervised", "--env-id", "sip/SineInversion-v0"], "no reference solution"),
    (["ppo", "--env-id", "sip/HeatInverse-v0"], "single-step inverse problem"),
    (["supervised", "--env-id", "sip/ControlledBurgers-v0"], "no reference solution"),
])
def test_train_refuses_combinations_that_cannot_work(argv: list[str], match: str,
                                                     tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert train.main([*argv, "--runs-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and match in err and "Traceback" not in err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("bad", [["--lr", "-1"], ["--env-kwargs", "{oops"],
                                 ["--env-id", "sip/Nope-v0"], ["--resume"]])
def test_train_rejects_bad_arguments_before_work(bad: list[str], tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert train.main(["sip", "--runs-dir", str(tmp_path), *FAST, *bad]) == 2
    assert "error:" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing was written


def test_evaluate_agrees_with_torch(trained_run: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "eval.json"
    assert evaluate.main([str(trained_run / "checkpoint.pt"), "--episodes", "4",
                          "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["relative_difference"] <= 1e-4
    assert len(data["gym"]["target_error"]) == 4
    assert "gym API" in capsys.readouterr().out


def test_evaluate_refuses_corrupt_checkpoint(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert evaluate.main([str(bad)]) == 2
    assert "corrupt" in capsys.readouterr().err


def test_render_checkpoint_and_policies(trained_run: Path, tmp_path: Path) -> None:
    gif = tmp_path / "run.gif"
    assert render.main(["--checkpoint", str(trained_run / "checkpoint.pt"),
                        "--out", str(gif)]) == 0
    frames = iio.imread(gif, index=None)
    assert frames.shape[0] == 17 and frames.shape[1:3] == (440, 640)  # reset + 16 steps
    assert render.main(["--policy", "random", "--out", str(tmp_path / "r.gif")]) == 0
    assert render.main(["--policy", "zero", "--human"]) == 0  # headless (dummy video driver)


@pytest.mark.parametrize("env_id,key", [("sip/HeatInverse-v0", "x_error"),
                                         ("sip/SineInversion-v0", "x_distance")])
def test_render_one_step_envs_reports_their_own_infos(
        env_id: str, key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The one-step envs report no ``target_error``; the summary names what they do report."""
    out = tmp_path / "one_step.gif"
    assert render.main(["--env-id", env_id, "--policy", "random", "--out", str(out)]) == 0
    assert out.stat().st_size > 0 and f"final {key} " in capsys.readouterr().out


def test_render_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert render.main(["--policy", "zero"]) == 2  # neither --out nor --human
    assert render.main(["--policy", "zero", "--out", str(tmp_path / "x.avi")]) == 2
    assert ".gif or .mp4" in capsys.readouterr().err


def test_demo_runs_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "demo"
    assert demo.main(["--time-budget", "1", "--episodes", "4", "--runs-dir", str(tmp_path),
                      "--run-name", "demo"]) == 0
    for name in ("rollout.gif", "rollout_uncontrolled.gif", "learning_curve.png",
                 "checkpoint.pt"):
        assert (run / name).is_file()
    assert "held-out relative terminal error" in capsys.readouterr().out


@pytest.mark.slow  # (≈ 7 s: a whole comparison)
def test_compare_writes_table_json_and_plot(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    threads = torch.get_num_threads()
    tiny = ["--seeds", "0", "--sweep-budget", "0.3", "--time-budget", "0.6", "--iterations",
            "6", "--eval-every", "3", "--eval-episodes", "4", "--batch-size", "8", "--hidden",
            "16", "--out", str(tmp_path)]
    try:
        assert compare.main(["--methods", "sip", *tiny]) == 0
        first = json.loads((tmp_path / "compare.json").read_text())["methods"]["sip"]
        # --resume reuses the finished method and trains only the new one
        assert compare.main(["--methods", "sip", "dp-adam", "--resume", *tiny]) == 0
        assert "[sip] reused" in capsys.readouterr().out
    finally:
        torch.set_num_threads(threads)
    assert json.loads((tmp_path / "compare.json").read_text())["methods"]["sip"] == first
    report = json.loads((tmp_path / "compare.json").read_text())
    assert set(report["methods"]) == {"sip", "dp-adam"}
    for m in report["methods"].values():
        assert len(m["sweep"]["lrs"]) >= 4 and m["sweep"]["best_lr"] in m["sweep"]["lrs"]
    table = (tmp_path / "compare.md").read_text()
    assert "| SIP (Adam) |" in table and "| DP, Adam |" in table
    assert (tmp_path / "compare.png").stat().st_size > 0
    assert compare.main(["--methods", "nope"]) == 2
    # re-scoring from the stored curves reproduces the summaries without training
    (tmp_path / "compare.md").unlink()
    assert compare.main(["--from-json", str(tmp_path / "compare.json")]) == 0
    assert (tmp_path / "compare.md").read_text() == table


def test_bench_smoke(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    bench = _load("benchmarks/bench_envs.py")
    threads = torch.get_num_threads()
    try:
        result = bench.run(bench.parse_args(["--quick", "--repeats", "1", "--target-s", "0.01",
                                             "--warmup-s", "0", "--out", str(tmp_path)]))
    finally:
        torch.set_num_threads(threads)
    assert result["ratio_native1024_over_sync64"] > 0
    assert (tmp_path / "bench_envs.md").is_file() and (tmp_path / "bench_envs.json").is_file()


def test_env_gallery_draws_a_frame_per_env_and_checks_its_arguments(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    frame, taken = gallery.gallery_frame("sip/ControlledDiffusion-v0", 3, seed=0,
                                         policy="random")
    assert frame.shape == (440, 640, 3) and frame.dtype == np.uint8 and taken == 3
    assert gallery.gallery_frame("sip/SineInversion-v0", 5, seed=0)[1] == 1  # one-step env
    assert gallery.main(["--steps", "0", "--out", str(tmp_path)]) == 2
    # every registered env, on a cheap stand-in for the frame (the envs' drawing is tested
    # in tests/envs); the files are named after the ids
    monkeypatch.setattr(gallery, "gallery_frame",
                        lambda *a, **k: (np.zeros((4, 4, 3), np.uint8), 1))
    assert gallery.main(["--out", str(tmp_path / "g")]) == 0
    assert sorted(p.name for p in (tmp_path / "g").iterdir()) == sorted(
        f"{i.split('/')[-1]}.png" for i in sipenv.ENV_IDS)


def test_simple_policies_keep_to_the_bounds_cut_to_one() -> None:
    from gymnasium.spaces import Box

    from agents.playback import simple_policy

    narrow, wide = Box(0.0, 0.5, (3,)), Box(-1e4, 1e4, (2, 2))
    draws = np.stack([simple_policy("random", narrow, seed=1)(None) for _ in range(50)])
    assert draws.min() >= 0.0 and draws.max() <= 0.5 and draws.std() > 0
    wide_draw = simple_policy("random", wide, seed=1)(None)
    assert wide_draw.shape == (2, 2) and np.abs(wide_draw).max() <= 1.0
    assert not simple_policy("zero", wide)(None).any()
    with pytest.raises(ValueError, match="'zero' or 'random'"):
        simple_policy("greedy", wide)
