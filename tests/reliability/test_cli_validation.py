"""Every CLI checks its arguments before any work: a bad flag exits with code 2 and a clear
``error:`` message on stderr, and writes nothing (no run directory, no output file).

Argument-parser errors (unknown flags, wrong types, bad choices) come from tyro and exit with
``SystemExit(2)``; value errors are caught by each script's own checks.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest
from reliability_support import load_script

import sipenv
from agents import trainer
from agents.registry import ALGORITHMS

train = load_script("scripts/train.py")
evaluate = load_script("scripts/evaluate.py")
render = load_script("scripts/render.py")
compare = load_script("scripts/compare.py")

FAST = ["--eval-episodes", "4", "--hidden", "16", "--batch-size", "8", "--iterations", "2",
        "--no-progress"]


def _rejected(main: object, argv: list[str], match: str, out: Path,
              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2  # type: ignore[operator]
    err = capsys.readouterr().err
    assert err.startswith("error: ") and match in err, err
    assert not any(out.iterdir()), f"wrote {list(out.iterdir())}"


@pytest.mark.parametrize(("flags", "match"), [
    (["--lr", "-1"], "lr must be a finite number > 0"),
    (["--lr", "inf"], "lr must be a finite number > 0"),
    (["--batch-size", "0"], "batch_size must be an int ≥ 1"),
    (["--iterations", "0"], "iterations must be an int ≥ 1"),
    (["--eval-episodes", "0"], "eval_episodes must be an int ≥ 1"),
    (["--eval-every", "-1"], "eval_every must be an int ≥ 0"),
    (["--checkpoint-every", "-5"], "checkpoint_every must be an int ≥ 0"),
    (["--seed", "-1"], "seed must be an int in [0, 4294967295]"),
    (["--eval-seed", "-5"], "eval_seed must be an int in [0, 4294967295]"),
    (["--time-budget", "nan"], "time_budget must be ≥ 0 seconds"),
    (["--hidden", "0"], "hidden widths must be ints ≥ 1"),
    (["--hidden", "32", "-4"], "hidden widths must be ints ≥ 1"),
    (["--network", "transformer"], "network must be one of ['cnn', 'mlp', 'unet', 'unet-gn']"),
    (["--device", "gpu"], "device must be a torch device such as 'cpu' or 'cuda'"),
    (["--device", "cuda:99"], "CUDA"),
    (["--env-id", "sip/Nope-v0"], "Unknown env id 'sip/Nope-v0'"),
    (["--env-kwargs", "{oops"], "env_kwargs must be a JSON object"),
    (["--env-kwargs", "[1, 2]"], "env_kwargs must be a JSON object"),
    (["--env-kwargs", '{"nu": -1}'], "do not fit sip/ControlledDiffusion-v0: nu must be a finite"),
    (["--env-kwargs", '{"horizon": 2.5}'], "horizon must be an int ≥ 1"),
    (["--env-kwargs", '{"bogus": 1}'], "unexpected keyword argument 'bogus'"),
    (["--resume"], "No run to resume"),
])
@pytest.mark.parametrize("algo", ["sip", "dp"])
def test_train_rejects_bad_values_before_any_work(algo: str, flags: list[str], match: str,
                                                  tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    _rejected(train.main, [algo, "--runs-dir", str(tmp_path), *FAST, *flags], match, tmp_path,
              capsys)


def test_ppo_settings_are_checked_before_work(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    _rejected(train.main, ["ppo", "--runs-dir", str(tmp_path), *FAST, "--n-steps", "0"],
              "n_steps must be an int ≥ 1", tmp_path, capsys)


@pytest.mark.parametrize("argv", [
    [],                                          # no algorithm
    ["bogus"],                                   # unknown algorithm
    ["sip", "--bogus-flag"],                     # unknown flag
    ["sip", "--batch-size", "many"],             # wrong type
    ["sip", "--optimizer", "lbfgs"],             # not a choice
    ["sip", "--env-dtype", "float16"],           # not a choice
    ["sip", "--split", "random"],                # not a choice
])
def test_train_parser_errors_exit_2(argv: list[str], tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        train.main([*argv, "--runs-dir", str(tmp_path)] if argv else argv)
    assert exc.value.code == 2
    assert capsys.readouterr().err.strip()
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(("flags", "match"), [
    (["--episodes", "0"], "--episodes must be ≥ 1"),
    (["--seed", "-3"], "--seed must be ≥ 0"),
    (["--tolerance", "nan"], "--tolerance must be a finite number ≥ 0"),
    (["--tolerance", "-1e-3"], "--tolerance must be a finite number ≥ 0"),
    (["--device", "gpu"], "--device: device must be a torch device"),
    (["--device", "cuda:99"], "CUDA"),
])
def test_evaluate_checks_flags_before_loading(flags: list[str], match: str, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """Checked before the checkpoint is even opened (it does not exist here)."""
    out = tmp_path / "out"
    out.mkdir()
    _rejected(evaluate.main, [str(tmp_path / "none.pt"), "--out", str(out / "e.json"), *flags],
              match, out, capsys)


def test_evaluate_refuses_a_missing_checkpoint(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    _rejected(evaluate.main, [str(tmp_path / "none.pt"), "--out", str(out / "e.json")],
              "No checkpoint at", out, capsys)


@pytest.mark.parametrize(("flags", "match"), [
    (["--fps", "0"], "--fps must be ≥ 1"),
    (["--seed", "-1"], "--seed must be ≥ 0"),
    (["--device", "gpu"], "--device: device must be a torch device"),
    (["--env-kwargs", "{oops"], "--env-kwargs must be a JSON object"),
    (["--env-kwargs", "3"], "--env-kwargs must be a JSON object"),
    (["--env-id", "sip/Nope-v0"], "unknown --env-id 'sip/Nope-v0'"),
    (["--env-kwargs", '{"nu": -1}'], "nu must be a finite number > 0"),
    (["--env-kwargs", '{"bogus": 1}'], "unexpected keyword argument 'bogus'"),
    (["--checkpoint", "CKPT"], "No checkpoint at"),
])
def test_render_checks_flags_before_any_work(flags: list[str], match: str, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    flags = [str(tmp_path / "none.pt") if f == "CKPT" else f for f in flags]
    _rejected(render.main, ["--out", str(out / "x.gif"), *flags], match, out, capsys)


@pytest.mark.parametrize(("flags", "match"), [
    (["--methods", "bogus"], "Unknown methods ['bogus']"),
    (["--threads", "0"], "threads must be ≥ 1"),
    (["--eval-episodes", "0"], "eval_episodes must be ≥ 1"),
    (["--time-budget", "0"], "time_budget must be > 0 seconds"),
    (["--env-id", "sip/Nope-v0"], "Unknown env id 'sip/Nope-v0'"),
    (["--device", "cuda:99"], "CUDA"),
    (["--hidden", "0"], "hidden widths must be ints ≥ 1"),
    (["--seeds", "-1"], "seed must be an int in [0, 4294967295]"),
    (["--batch-size", "1", "--methods", "ppo"], "batch_size (the PPO minibatch) must be ≥ 2"),
])
def test_compare_checks_every_run_before_training(flags: list[str], match: str, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    _rejected(compare.main, ["--out", str(out / "c"), "--sweep-budget", "0.1", *flags], match,
              out, capsys)


# --- issue 13: settings silently ignored or failing late; output paths; optional extras ----------

demo = load_script("scripts/demo.py")
reproduce_heat = load_script("scripts/reproduce_heat.py")
reproduce_sine = load_script("scripts/reproduce_sine.py")

ALGOS = sorted(ALGORITHMS)
PPO_FAST = ["--n-envs", "2", "--n-steps", "8", "--iterations", "1"]


def _fast(algo: str) -> list[str]:
    return [*FAST, *(PPO_FAST if algo == "ppo" else [])]


@pytest.mark.parametrize(("kwargs", "match"), [
    ('{"dtype": "float64"}', "must not set 'dtype': use --env-dtype"),
    ('{"device": "cuda:7"}', "must not set 'device': use --device"),
    ('{"dtype": "float64", "device": "cpu"}', "'dtype': use --env-dtype; env_kwargs must not "
                                              "set 'device': use --device"),
    ('{"render_mode": "human"}', "must not set 'render_mode': use scripts/render.py"),
    ('{"max_episode_steps": 5}', "must not set 'max_episode_steps'"),
    ('{"disable_env_checker": true}', "must not set 'disable_env_checker'"),
])
@pytest.mark.parametrize("algo", ALGOS)
def test_train_refuses_env_kwargs_that_a_flag_owns(algo: str, kwargs: str, match: str,
                                                   tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """They used to be overridden silently (float32 on the CPU, exit 0)."""
    _rejected(train.main, [algo, "--runs-dir", str(tmp_path), *_fast(algo),
                           "--env-kwargs", kwargs], match, tmp_path, capsys)


@pytest.mark.parametrize("env_id", sipenv.ENV_IDS)
def test_train_refuses_unknown_env_kwargs_naming_the_accepted_ones(
        env_id: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _rejected(train.main, ["dp", "--runs-dir", str(tmp_path), *FAST, "--env-id", env_id,
                           "--env-kwargs", '{"bogus": 1}'],
              "unexpected keyword argument 'bogus'; accepted:", tmp_path, capsys)
    assert "was raised from the environment creator" not in capsys.readouterr().err


# Every combination of a registered algorithm, a registered env and the options below that
# cannot work, with what its refusal must say. Every other combination must train (checked by
# test_every_accepted_combination_trains, marked slow).
OPTIONS: dict[str, list[str]] = {
    "default": [],
    "unet": ["--network", "unet", "--hidden", "4", "4"],
    "float64": ["--env-dtype", "float64"],
    "split-uniform": ["--split", "uniform"],
    "split-gauss-newton": ["--split", "gauss-newton"],
    "gn-without-gauss-newton": ["--gn-iterations", "8"],
}
SIP_ONLY = {"split-uniform", "split-gauss-newton", "gn-without-gauss-newton"}
INVERSE = {"sip/SineInversion-v0", "sip/HeatInverse-v0", "sip/FluidInverse-v0"}
BURGERS = {"sip/ControlledBurgers-v0", "sip/CorrectedBurgers-v0"}
SPATIAL = {"sip/ShapeTransition-v0"}
"""Field envs with spatial observations/actions: they need a spatial network (unet, cnn), SIP's
generic split, and supervised training a cache of open-loop references."""


def _expected_refusal(algo: str, env_id: str, option: str) -> str | None:
    """What the pre-flight refusal of a combination says, or None if it must train."""
    if algo == "ppo" and option == "unet":
        return "network must be 'mlp'"
    if env_id in SPATIAL:
        if option != "unet":
            return "use a spatial network"
        if algo == "supervised":
            return "--references DIR"
        return "use --split gauss-newton" if algo == "sip" else None
    if algo == "ppo" and env_id in INVERSE:
        return "single-step inverse problem"
    if option == "unet" and env_id == "sip/SineInversion-v0":
        return "--network unet needs a field"
    if algo == "supervised" and env_id in BURGERS | {"sip/SineInversion-v0"}:
        return "no reference solution"
    if option == "gn-without-gauss-newton":
        return "only apply to --split gauss-newton"
    if algo == "sip" and option.startswith("split-") and env_id in INVERSE | {
            "sip/CorrectedBurgers-v0"}:
        return "has no effect on"
    if algo == "sip" and env_id == "sip/ControlledBurgers-v0" and not option.startswith("split"):
        return "minimum-force split needs linear spectral physics"
    if algo == "sip" and env_id == "sip/ControlledDiffusion-v0" and option == "split-uniform":
        return "uniform split cannot work"
    return None


def _combinations() -> list[tuple[str, str, str]]:
    return [(algo, env_id, option) for algo in ALGOS for env_id in sipenv.ENV_IDS
            for option in OPTIONS if algo == "sip" or option not in SIP_ONLY]


def _combination_argv(algo: str, env_id: str, option: str, runs: Path) -> list[str]:
    env_kwargs = ['--env-kwargs', '{"shape": [8, 8]}'] if env_id == "sip/HeatInverse-v0" else []
    return [algo, "--runs-dir", str(runs), "--run-name", "r", *_fast(algo), "--iterations", "1",
            "--env-id", env_id, *env_kwargs, *OPTIONS[option]]


@pytest.mark.parametrize(("algo", "env_id", "option"), [
    c for c in _combinations() if _expected_refusal(*c) is not None])
def test_combinations_that_cannot_work_are_refused_before_any_work(
        algo: str, env_id: str, option: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Every registered algorithm × every registered env × the options: what cannot work is
    refused with exit 2, its fix in the message and nothing written (no traceback later)."""
    match = _expected_refusal(algo, env_id, option)
    assert match is not None
    _rejected(train.main, _combination_argv(algo, env_id, option, tmp_path), match, tmp_path,
              capsys)


@pytest.mark.slow  # (≈ 1 min: a short run of every accepted combination)
@pytest.mark.parametrize(("algo", "env_id", "option"), [
    c for c in _combinations() if _expected_refusal(*c) is None])
def test_every_accepted_combination_trains(algo: str, env_id: str, option: str,
                                           tmp_path: Path) -> None:
    assert train.main(_combination_argv(algo, env_id, option, tmp_path)) == 0
    assert (tmp_path / "r" / "final_eval.json").is_file()


def _bad_values(default: object, name: str) -> list[object]:
    """Values of the wrong type (or non-finite) for a field with this default."""
    if isinstance(default, bool):
        return ["yes", 1]
    if isinstance(default, int) or name in ("data_seed", "iterations"):
        return ["3", 2.5, True, -1]
    if isinstance(default, float):
        return ["0.001", float("nan"), float("inf"), True]
    if isinstance(default, tuple):
        return [(), ("16",), (16.5,), "16"]
    if name in ("run_name", "runs_dir"):
        return [3, "/absolute"] if name == "run_name" else [3, ""]
    return [3, "bogus"]


def _field_cases() -> list[tuple[str, str, object]]:
    cases = []
    for algo in ALGOS:
        config_cls = ALGORITHMS[algo].config
        for f in dataclasses.fields(config_cls):
            default = getattr(config_cls(), f.name)
            for value in _bad_values(default, f.name):
                if f.name in ("log_std_init",) and isinstance(value, int) \
                        and not isinstance(value, bool):
                    continue
                cases.append((algo, f.name, value))
    return cases


@pytest.mark.parametrize(("algo", "name", "value"), _field_cases())
def test_every_config_field_of_every_algorithm_is_validated(algo: str, name: str,
                                                            value: object) -> None:
    """Type, range, choice and finiteness of every field (shared and the algorithm's own), with
    a ValueError naming the field, before any env is built."""
    config = dataclasses.replace(ALGORITHMS[algo].config(), **{name: value})
    with pytest.raises(ValueError, match=name.replace("_", "[_ -]")):
        config.validate()


def test_a_time_budget_alone_governs_and_the_output_says_which_limit_ended_the_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(trainer, "DEFAULT_ITERATIONS", 3)  # what --iterations used to impose
    base = ["sip", "--runs-dir", str(tmp_path), *FAST[:-3], "--no-progress", "--clock", "cpu"]
    assert "--iterations" not in base
    assert train.main([*base, "--run-name", "budget", "--time-budget", "0.3"]) == 0
    out = json.loads(capsys.readouterr().out)
    final = json.loads((tmp_path / "budget" / "final_eval.json").read_text())
    assert out["stopped_by"] == final["stopped_by"] == "time_budget"
    assert out["iterations"] > 3 and final["train_time"] >= 0.3
    # with --iterations too, whichever comes first ends the run
    assert train.main([*base, "--run-name", "both", "--time-budget", "100", "--iterations",
                       "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["stopped_by"] == "iterations" and out["iterations"] == 2
    # neither: the default iteration limit
    assert train.main([*base, "--run-name", "neither"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["stopped_by"] == "iterations" and out["iterations"] == 3


@pytest.mark.parametrize("name", ["../escaped", "a/../../escaped", "ABS", ".", "a/.."])
@pytest.mark.parametrize("script", ["train", "demo"])
def test_run_names_that_leave_the_runs_dir_are_refused(name: str, script: str, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    name = str(tmp_path / "escaped") if name == "ABS" else name
    argv = ["sip", *FAST] if script == "train" else ["--time-budget", "1", "--episodes", "4"]
    main = train.main if script == "train" else demo.main
    assert main([*argv, "--runs-dir", str(runs), "--run-name", name]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "does not name a folder inside --runs-dir" in err
    assert "--runs-dir" in err.split("inside --runs-dir", 1)[1]  # says how to choose another
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"] and not any(runs.iterdir())


def test_a_run_name_with_subfolders_inside_the_runs_dir_is_fine(tmp_path: Path) -> None:
    assert train.main(["dp", *FAST, "--runs-dir", str(tmp_path), "--run-name",
                       "group/./one"]) == 0
    assert (tmp_path / "group" / "one" / "checkpoint.pt").is_file()


def _without(monkeypatch: pytest.MonkeyPatch, module: str) -> None:
    """Simulate a missing optional extra: importing ``module`` raises ImportError."""
    for name in [m for m in sys.modules if m == module or m.startswith(module + ".")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, module, None)


def test_render_checks_the_video_extra_before_playing_or_creating_anything(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    _without(monkeypatch, "imageio_ffmpeg")
    played = []
    monkeypatch.setattr(render, "play_episode", lambda *a, **k: played.append(1))
    out = tmp_path / "new" / "x.mp4"
    assert render.main(["--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "pip install 'sipenv[video]'" in err
    assert not played and not any(tmp_path.iterdir())
    assert render.main(["--out", str(tmp_path / "x.gif"), "--fps", "0"]) == 2  # GIFs: no extra
    assert "--fps" in capsys.readouterr().err


@pytest.mark.parametrize("script", ["train", "compare"])
def test_ppo_without_the_rl_extra_is_refused_before_anything_is_written(
        script: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    _without(monkeypatch, "stable_baselines3")
    if script == "train":
        _rejected(train.main, ["ppo", "--runs-dir", str(tmp_path), *_fast("ppo")],
                  "pip install 'sipenv[rl]'", tmp_path, capsys)
    else:
        _rejected(compare.main, ["--out", str(tmp_path / "c"), "--methods", "sip", "ppo"],
                  "pip install 'sipenv[rl]'", tmp_path, capsys)


@pytest.mark.parametrize(("flags", "match"), [
    (["--env-kwargs", '{"render_mode": "human"}'], "must not set 'render_mode': use --human"),
    (["--env-kwargs", '{"device": "cpu"}'], "must not set 'device': use --device"),
    (["--checkpoint", "CKPT", "--env-id", "sip/HeatInverse-v0"], "--env-id cannot be used with "
                                                                 "--checkpoint"),
    (["--checkpoint", "CKPT", "--policy", "random"], "--policy cannot be used with"),
    (["--out", "FILE/x.gif"], "lies under the file"),
    (["--out", "DIR"], "is a folder"),
    (["--human", "--fps", "30", "--out", "NONE"], "--fps sets the frame rate of the --out file"),
])
def test_render_refuses_ignored_or_owned_settings_and_bad_outputs(
        flags: list[str], match: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "file").write_text("")
    (tmp_path / "folder.gif").mkdir()
    subs = {"CKPT": str(tmp_path / "none.pt"), "FILE/x.gif": str(tmp_path / "file" / "x.gif"),
            "DIR": str(tmp_path / "folder.gif")}
    argv = ["--out", str(out / "x.gif"), *[subs.get(f, f) for f in flags]]
    if "NONE" in argv:  # no --out at all
        argv = [a for a in argv if a != "--out" and a != "NONE" and a != str(out / "x.gif")]
    _rejected(render.main, argv, match, out, capsys)


def test_every_script_refuses_an_output_under_a_file(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    under = str(blocker / "out")
    for main, argv in [
        (compare.main, ["--out", under, "--methods", "sip"]),
        (compare.main, ["--out", str(blocker), "--methods", "sip"]),
        (evaluate.main, [str(tmp_path / "none.pt"), "--out", under + ".json"]),
        (reproduce_heat.main, ["--out", under, "--quick"]),
        (reproduce_sine.main, ["--out", under, "--quick"]),
        (train.main, ["sip", *FAST, "--runs-dir", under]),
        (demo.main, ["--runs-dir", under]),
    ]:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and ("file" in err), (argv, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
    assert blocker.read_text() == ""


def test_evaluating_and_rendering_a_ppo_checkpoint_need_no_rl_extra(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The deterministic PPO actor is rebuilt from checkpoint.pt without stable-baselines3, so
    evaluate.py and render.py do not require the rl extra."""
    from agents.checkpoint import save_checkpoint
    from agents.ppo import NETWORK_NAME, PPOActor, PPOConfig

    _without(monkeypatch, "stable_baselines3")
    actor = PPOActor.build(129, 64, (8,))
    config = dataclasses.asdict(PPOConfig(hidden=(8,)))
    save_checkpoint(tmp_path / "checkpoint.pt", {
        "algo": "ppo", "env_id": "sip/ControlledDiffusion-v0", "env_kwargs": {},
        "network": {"name": NETWORK_NAME, "obs_dim": 129, "act_dim": 64, "hidden": [8]},
        "config": {**config, "hidden": [8]}, "model": actor.state_dict(), "iteration": 1,
        "train_time": 0.0})
    assert evaluate.main([str(tmp_path / "checkpoint.pt"), "--episodes", "2"]) == 0
    assert render.main(["--checkpoint", str(tmp_path / "checkpoint.pt"), "--out",
                        str(tmp_path / "ppo.gif")]) == 0
    assert (tmp_path / "ppo.gif").is_file()
