"""Training safety: divergence stops cleanly, checkpoints are atomic and validated, a killed run
resumes to bit-identical weights.

The basics (a NaN loss stops training, the uniform-split overflow is reported, a truncated or
foreign checkpoint is refused, in-process resume) are in ``tests/agents/test_training.py``.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from reliability_support import PYTHON, ROOT, load_script, subprocess_env

from agents import diffphys, sip
from agents.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from agents.trainer import Step, TrainingDiverged, run_training
from sipenv.envs.core import core_of

TINY = dict(hidden=(16, 16), batch_size=8, eval_episodes=4, log_every=1, progress=False)


def _config(tmp_path: Path, name: str, **kw: Any) -> sip.SIPConfig:
    return sip.SIPConfig(runs_dir=str(tmp_path), run_name=name, **{**TINY, **kw})  # type: ignore[arg-type]


def _assert_same_tensors(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def _assert_same_optimizer(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a["param_groups"] == b["param_groups"]
    assert a["state"].keys() == b["state"].keys()
    for k in a["state"]:
        _assert_same_tensors(a["state"][k], b["state"][k])


def _assert_same_run_state(a: dict[str, Any], b: dict[str, Any]) -> None:
    """Two checkpoints hold the same training state: weights, optimizer, data stream, iteration."""
    assert a["iteration"] == b["iteration"]
    _assert_same_tensors(a["model"], b["model"])
    _assert_same_optimizer(a["optimizer"], b["optimizer"])
    assert torch.equal(a["data_rng"], b["data_rng"])


class _NaNGradient(torch.autograd.Function):
    """Identity forward (finite value), NaN backward: a loss whose gradient is NaN but whose
    value is finite, as a bad custom op or an ``x/x`` at 0 would give."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return torch.full_like(grad, float("nan"))


def _failing_at(call: int, how: str) -> Any:
    """SIP's loss, made non-finite (value or gradient) on the ``call``-th iteration."""
    calls = {"n": 0}

    def loss_fn(policy, problem, batch, config):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        step = sip.loss(policy, problem, batch, config)
        loss = step.loss
        weights = sum(p.sum() for p in policy.parameters())
        if how == "weights":
            loss = loss * 1e-6  # tiny steps with the huge --lr, until...
            if calls["n"] == call:  # ...value 0, gradient 1e38 (finite): lr·1e38 overflows
                loss = loss + 1e38 * (weights - weights.detach())
        elif calls["n"] == call:
            if how == "loss":
                loss = loss * float("nan")
            else:  # "gradient": the value is unchanged and finite
                loss = loss + 0.0 * _NaNGradient.apply(weights)
        return Step(loss, step.prediction)

    return loss_fn


# --- divergence ------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["loss", "gradient"])
def test_non_finite_loss_or_gradient_keeps_the_last_good_state_and_resumes_exactly(
        tmp_path: Path, how: str) -> None:
    """Diverging at iteration 4 stops with a message naming it; the checkpoint is exactly the
    state after 3 clean iterations (weights, optimizer and data stream), so resuming from it
    continues like a run that never diverged."""
    clean3 = sip.train(_config(tmp_path, "clean3", iterations=3, checkpoint_every=0))
    with pytest.raises(TrainingDiverged,
                       match=rf"Non-finite {how} at iteration 4; training stopped\. The last "
                             r"good weights \(before this update\) are in .*checkpoint\.pt"):
        run_training(_config(tmp_path, "bad", iterations=6, checkpoint_every=0),
                     _failing_at(4, how), progress=False)
    bad = load_checkpoint(tmp_path / "bad" / "checkpoint.pt")
    _assert_same_run_state(bad, load_checkpoint(tmp_path / "clean3" / "checkpoint.pt"))
    assert all(torch.isfinite(v).all() for v in bad["model"].values())
    assert clean3.iterations == 3

    resumed = sip.train(_config(tmp_path, "bad", iterations=6), resume=True)
    straight = sip.train(_config(tmp_path, "straight", iterations=6, checkpoint_every=0))
    _assert_same_tensors(resumed.policy.state_dict(), straight.policy.state_dict())


def test_an_update_that_overflows_the_weights_stops_and_never_saves_them(tmp_path: Path) -> None:
    """A finite gradient times a huge learning rate gives inf weights: training stops on that
    iteration, and checkpoint.pt keeps the last periodic save (never non-finite weights)."""
    cfg = _config(tmp_path, "r", iterations=8, checkpoint_every=2, optimizer="sgd", lr=10.0)
    with pytest.raises(TrainingDiverged,
                       match=r"Non-finite weights after the update at iteration 3; training "
                             r"stopped\. The update overflowed the weights; lower --lr\. .*"
                             r"checkpoint\.pt keeps the last periodic checkpoint"):
        run_training(cfg, _failing_at(3, "weights"), progress=False)
    ckpt = load_checkpoint(tmp_path / "r" / "checkpoint.pt")
    assert ckpt["iteration"] == 2
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())


def test_divergence_without_a_run_directory_names_the_iteration() -> None:
    with pytest.raises(TrainingDiverged, match=r"^Non-finite gradient at iteration 2; training "
                                               r"stopped\. Lower --lr"):
        run_training(sip.SIPConfig(iterations=4, **TINY), _failing_at(2, "gradient"),  # type: ignore[arg-type]
                     write=False, progress=False)


# --- atomic checkpoints ----------------------------------------------------------------------


def _payload(value: float) -> dict[str, Any]:
    return {"algo": "sip", "env_id": "sip/ControlledDiffusion-v0", "env_kwargs": {},
            "network": {}, "config": {}, "model": {"w": torch.full((1000,), value)},
            "iteration": int(value)}


def _crash_midway(exc: BaseException) -> Any:
    real_save = torch.save

    def save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        buf = io.BytesIO()
        real_save(obj, buf, *args, **kwargs)
        f.write(buf.getvalue()[: len(buf.getvalue()) // 2])  # half a file on disk, then...
        raise exc

    return save


@pytest.mark.parametrize("exc", [OSError(28, "No space left on device"), KeyboardInterrupt(),
                                 RuntimeError("serialisation failed")],
                         ids=["disk-full", "ctrl-c", "error"])
def test_a_crash_during_save_keeps_the_previous_checkpoint_and_no_temp_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exc: BaseException) -> None:
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, _payload(1.0))
    before = path.read_bytes()
    monkeypatch.setattr(torch, "save", _crash_midway(exc))
    with pytest.raises(type(exc)):
        save_checkpoint(path, _payload(2.0))
    assert path.read_bytes() == before
    assert load_checkpoint(path)["iteration"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_a_crash_in_the_final_rename_keeps_the_previous_checkpoint(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, _payload(1.0))

    def no_replace(src: Any, dst: Any) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "replace", no_replace)
    with pytest.raises(PermissionError):
        save_checkpoint(path, _payload(2.0))
    assert load_checkpoint(path)["iteration"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_a_crash_during_the_first_save_leaves_nothing(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch, "save", _crash_midway(OSError(5, "I/O error")))
    with pytest.raises(OSError, match="I/O error"):
        save_checkpoint(tmp_path / "checkpoint.pt", _payload(1.0))
    assert list(tmp_path.iterdir()) == []


def test_a_save_crash_mid_training_keeps_a_resumable_checkpoint(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The third periodic save (iteration 6) crashes the run; the iteration-4 checkpoint is
    intact and resuming from it gives the weights of an uninterrupted run."""
    real_save, saves = torch.save, {"n": 0}

    def flaky_save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        saves["n"] += 1
        if saves["n"] == 3:
            return _crash_midway(OSError(28, "No space left on device"))(obj, f)
        real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", flaky_save)
    with pytest.raises(OSError, match="No space left"):
        sip.train(_config(tmp_path, "r", iterations=10, checkpoint_every=2))
    monkeypatch.setattr(torch, "save", real_save)
    run = tmp_path / "r"
    assert load_checkpoint(run / "checkpoint.pt")["iteration"] == 4
    assert not [p for p in run.iterdir() if p.suffix == ".tmp"]
    resumed = sip.train(_config(tmp_path, "r", iterations=10, checkpoint_every=2), resume=True)
    straight = sip.train(_config(tmp_path, "s", iterations=10, checkpoint_every=0))
    _assert_same_tensors(resumed.policy.state_dict(), straight.policy.state_dict())


# --- corrupt, truncated and mismatched checkpoints -------------------------------------------


@pytest.fixture(scope="module")
def good_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    sip.train(sip.SIPConfig(iterations=2, runs_dir=str(runs), run_name="good", **TINY))  # type: ignore[arg-type]
    return runs / "good"


def _flip_a_weight_byte(data: bytes) -> bytes:
    """Flip one byte inside the stored tensor data (not in the zip headers), as a bad disk
    sector or a copy error would: the file still unzips and unpickles."""
    import struct
    import zipfile

    with zipfile.ZipFile(io.BytesIO(data)) as z:
        info = max((i for i in z.infolist() if "/data/" in i.filename),
                   key=lambda i: i.file_size)  # the largest weight matrix
    # The local header's name and extra lengths (torch pads the extra field for alignment).
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26:
                                                     info.header_offset + 30])
    offset = info.header_offset + 30 + name_len + extra_len + info.file_size // 2
    out = bytearray(data)
    out[offset] ^= 0x5A
    return bytes(out)


CORRUPTIONS = {
    "empty": (lambda b: b"", "corrupt or truncated"),
    "truncated-10%": (lambda b: b[: len(b) // 10], "corrupt or truncated"),
    "truncated-50%": (lambda b: b[: len(b) // 2], "corrupt or truncated"),
    "truncated-last-byte": (lambda b: b[:-1], "corrupt or truncated"),
    "garbage": (lambda b: os.urandom(len(b)), "corrupt or truncated"),
    "flipped-weight-byte": (_flip_a_weight_byte, "fails its CRC check"),
}


@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_corrupt_checkpoints_are_refused_by_load_resume_and_evaluate(
        good_run: Path, tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    corrupt, match = CORRUPTIONS[kind]
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(corrupt((good_run / "checkpoint.pt").read_bytes()))
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(run / "checkpoint.pt")
    with pytest.raises(CheckpointError, match=match):
        sip.train(_config(tmp_path, "run", iterations=4), resume=True)
    evaluate = load_script("scripts/evaluate.py")
    assert evaluate.main([str(run / "checkpoint.pt"), "--episodes", "2"]) == 2
    assert match.split()[-1] in capsys.readouterr().err


def _tampered(good_run: Path, tmp_path: Path, edit: Any, name: str = "run") -> Path:
    data = load_checkpoint(good_run / "checkpoint.pt")
    edit(data)
    path = tmp_path / name / "checkpoint.pt"
    save_checkpoint(path, {k: v for k, v in data.items() if k not in ("format", "version")})
    return path


def _set_hidden(data: dict[str, Any], hidden: list[int]) -> None:
    data["network"]["hidden"] = hidden
    data["config"]["hidden"] = hidden


@pytest.mark.parametrize(("edit", "config_cls", "error", "match"), [
    pytest.param(lambda d: d.update(env_id="sip/Other-v0"), sip.SIPConfig, CheckpointError,
                 r"was trained on 'sip/Other-v0', not 'sip/ControlledDiffusion-v0'",
                 id="other-env"),
    pytest.param(lambda d: None, diffphys.DPConfig, CheckpointError,
                 r"was trained with 'sip', not 'dp'", id="other-algo"),
    pytest.param(lambda d: _set_hidden(d, [32, 32]), sip.SIPConfig, CheckpointError,
                 r"does not match network .*'hidden': \[32, 32\]", id="other-widths"),
    pytest.param(lambda d: d["config"].update(env_kwargs='{"n": 32}'), sip.SIPConfig,
                 CheckpointError, r"does not match network .*'obs_dim': 65", id="other-env-size"),
    pytest.param(lambda d: d.pop("data_rng"), sip.SIPConfig, CheckpointError,
                 r"lacks \['data_rng'\], which resuming needs", id="no-data-rng"),
    pytest.param(lambda d: d.pop("optimizer"), sip.SIPConfig, CheckpointError,
                 r"lacks \['optimizer'\], which resuming needs", id="no-optimizer"),
    pytest.param(lambda d: d.update(data_rng=torch.zeros(3)), sip.SIPConfig, CheckpointError,
                 "invalid data_rng state", id="bad-data-rng"),
])
def test_mismatched_checkpoints_are_refused_on_resume(good_run: Path, tmp_path: Path, edit: Any,
                                                      config_cls: Any, error: type[Exception],
                                                      match: str) -> None:
    path = _tampered(good_run, tmp_path, edit)
    before = path.read_bytes()
    cfg = config_cls(runs_dir=str(tmp_path), run_name="run", iterations=4, **TINY)
    with pytest.raises(error, match=match):
        run_training(cfg, sip.ALGORITHM, resume=True, progress=False)
    assert path.read_bytes() == before  # a refused resume writes nothing


@pytest.mark.parametrize(("edit", "match"), [
    pytest.param(lambda d: d.update(version=99), "format version 99; this sipenv reads version 1",
                 id="other-version"),
    pytest.param(lambda d: d.pop("model"), r"lacks fields \['model'\]; it is incomplete",
                 id="no-model"),
    pytest.param(lambda d: d.update(format="other-tool"), "not a sipenv checkpoint",
                 id="other-format"),
])
def test_checkpoints_of_another_version_or_incomplete_are_refused(good_run: Path, tmp_path: Path,
                                                                  edit: Any, match: str) -> None:
    data = torch.load(good_run / "checkpoint.pt", weights_only=True)
    edit(data)
    torch.save(data, tmp_path / "checkpoint.pt")
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(tmp_path / "checkpoint.pt")


def test_resume_keeps_the_checkpoint_settings_over_new_flags(good_run: Path,
                                                             tmp_path: Path) -> None:
    """Documented: on resume the checkpoint's settings win (only iterations and time_budget
    extend the run), so other --hidden widths cannot silently mismatch the stored weights."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes((good_run / "checkpoint.pt").read_bytes())
    cfg = sip.SIPConfig(runs_dir=str(tmp_path), run_name="run", iterations=3,
                        **{**TINY, "hidden": (64, 64), "lr": 0.5})  # type: ignore[arg-type]
    result = sip.train(cfg, resume=True)
    assert result.iterations == 3
    ckpt = load_checkpoint(run / "checkpoint.pt")
    assert ckpt["network"]["hidden"] == [16, 16] and ckpt["config"]["lr"] == 1e-3


@pytest.mark.parametrize(("edit", "match"), [
    ({"split": "min-force"}, "split must be one of"),                 # an older spelling
    ({"optimizer": "adamw"}, "optimizer must be one of"),
    ({"lr": "0.001"}, "lr must be a finite number > 0"),              # edited by hand
    ({"eta": float("nan")}, "eta must be a finite number > 0"),
    ({"env_kwargs": '{"viscosity": 0.1}'}, "unexpected keyword argument 'viscosity'"),
    ({"env_kwargs": '{"dtype": "float64"}'}, "use --env-dtype"),
    ({"hidden": [16, 0]}, "hidden widths must be ints ≥ 1"),
    ({"run_name": "../elsewhere"}, "does not name a folder inside --runs-dir"),
    ({"proxy": "l1"}, "does not know: ['proxy']"),                    # a renamed field
])
@pytest.mark.parametrize("how", ["library", "cli"])
def test_resume_validates_the_saved_settings_before_writing_anything(
        good_run: Path, tmp_path: Path, edit: dict[str, Any], match: str, how: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    """An edited or older saved ``config`` is a ``CheckpointError`` (exit 2 from train.py)
    naming the setting; nothing in the run directory changes (config.json is not rewritten)."""
    run = tmp_path / "run"
    run.mkdir()
    for name in ("config.json", "metrics.jsonl"):
        (run / name).write_bytes((good_run / name).read_bytes())
    ckpt = load_checkpoint(good_run / "checkpoint.pt")
    save_checkpoint(run / "checkpoint.pt", {**ckpt, "config": {**ckpt["config"], **edit}})
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    if how == "library":
        cfg = sip.SIPConfig(runs_dir=str(tmp_path), run_name="run", iterations=3, **TINY)  # type: ignore[arg-type]
        with pytest.raises(CheckpointError, match=re.escape(match)):
            sip.train(cfg, resume=True)
    else:
        train = load_script("scripts/train.py")
        assert train.main(["sip", "--runs-dir", str(tmp_path), "--run-name", "run", "--resume",
                           "--iterations", "3", "--hidden", "16", "16", "--eval-episodes", "4",
                           "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and match in err and "Traceback" not in err, err
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_a_checkpoint_that_runs_code_is_refused(tmp_path: Path) -> None:
    """Checkpoints load with ``weights_only=True``: a pickle that would run code is refused."""

    class Payload:
        def __reduce__(self) -> Any:
            return (print, ("this must never run",))

    path = tmp_path / "evil.pt"
    torch.save({"format": "sipenv-checkpoint", "version": 1, "model": Payload()}, path)
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(path)


def test_a_directory_in_place_of_the_checkpoint_is_refused(tmp_path: Path) -> None:
    (tmp_path / "checkpoint.pt").mkdir()
    with pytest.raises(CheckpointError, match="No checkpoint at"):
        load_checkpoint(tmp_path / "checkpoint.pt")


# --- kill and resume -------------------------------------------------------------------------


def test_resume_survives_a_metrics_line_cut_short_and_a_stale_temp_file(tmp_path: Path) -> None:
    """What SIGKILL can leave behind: half a metrics.jsonl line, a checkpoint temp file."""
    cfg = _config(tmp_path, "r", iterations=4, checkpoint_every=2)
    sip.train(cfg)
    run = tmp_path / "r"
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"iteration": 5, "time": 0.1, "lo')
    (run / "checkpoint.pt.abc123.tmp").write_bytes(b"half a checkpoint")
    resumed = sip.train(replace(cfg, iterations=8), resume=True)
    straight = sip.train(_config(tmp_path, "s", iterations=8, checkpoint_every=2))
    _assert_same_tensors(resumed.policy.state_dict(), straight.policy.state_dict())
    iterations = [json.loads(line)["iteration"]
                  for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert iterations == list(range(1, 9))


KILL_ARGS = ["sip", "--hidden", "32", "32", "--batch-size", "8", "--eval-episodes", "4",
             "--checkpoint-every", "5", "--log-every", "1", "--iterations", "150",
             "--no-progress"]


def _train_cmd(runs: Path, name: str, *extra: str) -> list[str]:
    return [PYTHON, str(ROOT / "scripts" / "train.py"), *KILL_ARGS, "--runs-dir", str(runs),
            "--run-name", name, *extra]


def _wait_for_checkpoint(proc: subprocess.Popen[bytes], path: Path, iteration: int,
                         timeout: float = 180.0) -> None:
    deadline, seen = time.monotonic() + timeout, 0.0
    while True:
        assert proc.poll() is None, (
            f"the run ended (rc={proc.returncode}) before it could be killed; raise --iterations."
            f"\n{proc.communicate()[1].decode()[-2000:]}")
        assert time.monotonic() < deadline, "no checkpoint appeared in time"
        if path.exists() and path.stat().st_mtime != seen:
            seen = path.stat().st_mtime
            if torch.load(path, weights_only=True)["iteration"] >= iteration:
                return
        time.sleep(0.005)


@pytest.mark.slow  # (≈ 16 s: three train.py processes; in-process resume is tested by default)
def test_kill_and_resume_gives_identical_final_weights(tmp_path: Path) -> None:
    """SIGKILL a real ``scripts/train.py`` run after its iteration-10 checkpoint (mid-iteration,
    maybe mid-save), resume it with ``--resume``, and compare with an uninterrupted run of the
    same settings in another process: weights, optimizer state, data stream, per-iteration
    metrics and the final evaluation are identical."""
    straight = subprocess.Popen(_train_cmd(tmp_path, "straight"), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=subprocess_env(PYTHONHASHSEED="1"))
    victim = subprocess.Popen(_train_cmd(tmp_path, "killed"), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=subprocess_env(PYTHONHASHSEED="2"))
    killed = tmp_path / "killed"
    try:
        _wait_for_checkpoint(victim, killed / "checkpoint.pt", 10)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=60)
    finally:
        if victim.poll() is None:
            victim.kill()
    assert victim.returncode == -signal.SIGKILL
    at_kill = load_checkpoint(killed / "checkpoint.pt")["iteration"]
    assert 10 <= at_kill < 150 and not (killed / "final_eval.json").exists()

    resumed = subprocess.run(_train_cmd(tmp_path, "killed", "--resume"), capture_output=True,
                             env=subprocess_env(PYTHONHASHSEED="3"), timeout=300)
    assert resumed.returncode == 0, resumed.stderr.decode()[-2000:]
    assert straight.wait(timeout=300) == 0, straight.communicate()[1].decode()[-2000:]

    a = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")
    b = load_checkpoint(killed / "checkpoint.pt")
    assert a["iteration"] == b["iteration"] == 150
    _assert_same_run_state(a, b)

    def curve(run: Path) -> list[dict[str, Any]]:
        records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if k != "time"} for r in records]

    assert curve(killed) == curve(tmp_path / "straight")
    final_a, final_b = (json.loads((run / "final_eval.json").read_text())
                        for run in (tmp_path / "straight", killed))
    final_a.pop("train_time")
    final_b.pop("train_time")
    assert final_a == final_b


def test_sip_names_an_overflowing_policy_not_the_split() -> None:
    """When the SIP targets are finite but the network's outputs are not, the advice is to lower
    the learning rate (not to change the split, which is fine)."""
    import gymnasium as gym

    from agents.networks import make_network

    core = core_of(gym.make("sip/ControlledDiffusion-v0", horizon=4))
    policy = make_network("mlp", core.obs_dim, core.n, hidden=(8,), seed=0)
    with torch.no_grad():
        last = policy.net[-1]
        last.weight.fill_(1e38)
        last.bias.fill_(1e38)
    s0, target = core.sample_tasks(4, torch.Generator().manual_seed(0))
    with pytest.raises(TrainingDiverged,
                       match=r"policy's outputs are not \(its weights diverged\)\. Lower --lr"):
        sip.control_loss(policy, core, s0, target, sip.SIPConfig())


def test_a_run_directory_stands_for_its_checkpoint(tmp_path: Path) -> None:
    """``evaluate.py runs/<name>`` (the folder, not the file) loads the run's checkpoint; a
    folder without one says so instead of calling the path missing."""
    save_checkpoint(tmp_path / "checkpoint.pt", _payload(3.0))
    assert load_checkpoint(tmp_path)["iteration"] == 3
    empty = tmp_path / "empty-run"
    empty.mkdir()
    with pytest.raises(CheckpointError, match=r"holds no checkpoint\.pt"):
        load_checkpoint(empty)


def test_a_dp_run_saves_checkpoints_and_logs_without_one_are_never_overwritten(
        tmp_path: Path) -> None:
    """DP saves on the trainer's ``checkpoint_every`` like every algorithm (its activation
    checkpointing is a separate option), and a folder holding the logs of a run stopped before
    its first checkpoint is refused, not overwritten."""
    cfg = diffphys.DPConfig(hidden=(16,), batch_size=4, eval_episodes=4, iterations=2,
                            checkpoint_every=1, log_every=1, runs_dir=str(tmp_path),
                            run_name="dp", progress=False)
    diffphys.train(cfg)
    assert (tmp_path / "dp" / "checkpoint.pt").is_file()
    stopped = tmp_path / "stopped"
    stopped.mkdir()
    (stopped / "metrics.jsonl").write_text('{"iteration": 1}\n')
    with pytest.raises(FileExistsError, match="before its first checkpoint"):
        diffphys.train(replace(cfg, run_name="stopped"))
    assert (stopped / "metrics.jsonl").read_text() == '{"iteration": 1}\n'
