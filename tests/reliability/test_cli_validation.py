"""Every CLI checks its arguments before any work: a bad flag exits with code 2 and a clear
``error:`` message on stderr, and writes nothing (no run directory, no output file).

Argument-parser errors (unknown flags, wrong types, bad choices) come from tyro and exit with
``SystemExit(2)``; value errors are caught by each script's own checks.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from reliability_support import load_script

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
    (["--network", "transformer"], "network must be one of ['mlp', 'unet']"),
    (["--device", "gpu"], "device must be a torch device such as 'cpu' or 'cuda'"),
    (["--device", "cuda:99"], "CUDA"),
    (["--env-id", "sip/Nope-v0"], "Unknown env id 'sip/Nope-v0'"),
    (["--env-kwargs", "{oops"], "env_kwargs must be a JSON object"),
    (["--env-kwargs", "[1, 2]"], "env_kwargs must be a JSON object"),
    (["--env-kwargs", '{"nu": -1}'], "do not fit sip/ControlledDiffusion-v0: nu must be a finite"),
    (["--env-kwargs", '{"horizon": 2.5}'], "horizon must be an int ≥ 1"),
    (["--env-kwargs", '{"bogus": 1}'], "unexpected keyword argument 'bogus'"),
    (["--resume"], "No checkpoint at"),
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
