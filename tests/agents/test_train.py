"""`adagen train` / `adagen eval`: checkpoints, resume after a stop or a kill, budget, refusals, reports, CLI."""

from __future__ import annotations

import argparse
import io
import json
import os
import zipfile
from dataclasses import fields
from pathlib import Path

import gymnasium as gym
import pytest
import torch
from conftest import smoke_train_argv, tiny_dit  # tests/conftest.py, tests/agents/conftest.py
from gymnasium.vector import VectorWrapper

from adagen_env import zoo
from adagen_env.envs import DiTVectorEnv, SiTVectorEnv
from adagen_env.errors import CheckpointError, InvalidArgument
from adagen_env.samplers import DiffusionSampler, FlowSampler
from agents.args import NOT_FLAGS, field_docs
from agents.checkpoint import CHECKPOINT, STATE, export_policy, generator_expectation, load_model, load_state, read_meta
from agents.cli import build_parser, main
from agents.evaluate import evaluate
from agents.train import Args, args_from_namespace, smooth, train

TINY_ALGO_KWARGS = {
    "ppo": {"n_epochs": 1, "episodes_per_update": 1},
    "a2c": {},
    "recurrent_ppo": {"n_epochs": 1, "episodes_per_update": 1, "policy_kwargs": {"lstm_hidden_size": 8}},
    "sac": {"buffer_size": 64, "batch_size": 8, "learning_starts": 0},
    "td3": {"buffer_size": 64, "batch_size": 8, "learning_starts": 0},
}


def env_fn(paradigm: str = "dit", knobs: tuple[str, ...] | None = None, generator_seed: int = 0):
    """Tiny generator env builder with `agents.train.EnvFn`'s signature (num_steps 2: horizon 3)."""
    env_cls, sampler_cls = {"dit": (DiTVectorEnv, DiffusionSampler), "sit": (SiTVectorEnv, FlowSampler)}[paradigm]
    sampler = sampler_cls(tiny_dit(generator_seed), num_steps=2)

    def make(num_envs: int, reward_model, return_images: bool, generator=None, group_size: int = 1):
        return env_cls(
            num_envs=num_envs,
            generator=generator or sampler,
            reward_model=reward_model,
            return_images=return_images,
            knobs=knobs,
            group_size=group_size,
        )

    return make


def tiny_args(tmp_path: Path, **overrides) -> Args:
    values = {
        "env": "AdaGen/DiT-v0",
        "num_envs": 2,
        "total_updates": 2,
        "checkpoint_every": 1,
        "eval_every": 0,
        "logdir": str(tmp_path / "runs"),
        "progress_bar": False,
        "algo_kwargs": TINY_ALGO_KWARGS[overrides.get("algo", "ppo")],
    }
    return Args(**{**values, **overrides})


def _data(path: str | Path) -> dict:
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read("data"))


@pytest.mark.parametrize("algo", sorted(TINY_ALGO_KWARGS))
def test_resume_continues_the_step_counters(tmp_path, algo: str) -> None:
    first = train(tiny_args(tmp_path, algo=algo, total_updates=2), env_fn())
    assert first["updates"] == 2 and not first["stopped_by_budget"]
    meta = read_meta(first["checkpoint"])
    assert meta["updates"] == 2 and meta["env_id"] == "AdaGen/DiT-v0" and meta["knobs"] == ["time", "cfg"]
    state = load_state(first["checkpoint"], first["num_timesteps"])
    disc_updates, n_updates = state["reward_model"]["num_updates"], _data(first["checkpoint"])["_n_updates"]
    # "Kill" (the process ends), then resume with a larger target: it continues from update 2.
    second = train(tiny_args(tmp_path, algo=algo, total_updates=4, resume=True), env_fn())
    assert second["run_dir"] == first["run_dir"]
    assert second["updates"] == 4 and second["num_timesteps"] == 2 * first["num_timesteps"]
    assert read_meta(second["checkpoint"])["updates"] == 4
    assert _data(second["checkpoint"])["_n_updates"] > n_updates > 0
    state = load_state(second["checkpoint"], second["num_timesteps"])
    assert state["reward_model"]["num_updates"] > disc_updates  # the discriminator continued too
    assert state["elapsed_seconds"] >= first["elapsed_seconds"]
    # A resumed run that has reached its target does nothing.
    third = train(tiny_args(tmp_path, algo=algo, total_updates=4, resume=True), env_fn())
    assert third["num_timesteps"] == second["num_timesteps"]


class _KillAfter(VectorWrapper):
    """Raises KeyboardInterrupt (a kill) on env step number `steps`."""

    def __init__(self, env, steps: int) -> None:
        super().__init__(env)
        self.left = steps

    def step(self, actions):
        self.left -= 1
        if self.left == 0:
            raise KeyboardInterrupt
        return self.env.step(actions)


def test_a_killed_run_resumes_from_its_last_checkpoint(tmp_path) -> None:
    make = env_fn()
    horizon = 3  # num_steps 2; one update = one episode = 3 env steps (+ the hidden autoreset step)

    def killing(num_envs, reward_model, return_images, generator=None, group_size=1):
        env = make(num_envs, reward_model, return_images, generator, group_size)
        return env if return_images else _KillAfter(env, 3 * (horizon + 1) + 2)  # in the 4th update

    with pytest.raises(KeyboardInterrupt):
        train(tiny_args(tmp_path, total_updates=6, checkpoint_every=2), killing)
    run_dir = next((tmp_path / "runs").iterdir())
    assert read_meta(run_dir / CHECKPOINT)["updates"] == 2  # update 3 was done but not saved
    assert not list(run_dir.glob("*.tmp"))
    resumed = train(tiny_args(tmp_path, total_updates=6, checkpoint_every=2, resume=True), env_fn())
    assert resumed["run_dir"] == str(run_dir) and resumed["updates"] == 6
    assert (run_dir / "progress.until-update-2.csv").is_file()
    rows = (run_dir / "progress.csv").read_text().splitlines()
    assert len(rows) == 1 + 4  # header + updates 3..6
    for _ in range(2):  # resuming a finished run trains nothing and keeps every segment of the curves
        train(tiny_args(tmp_path, total_updates=6, resume=True), env_fn())
    assert len((run_dir / "progress.until-update-6.csv").read_text().splitlines()) == 1 + 4


def test_budgeted_run_shows_its_budget_on_the_progress_bar(tmp_path, capsys) -> None:
    out = train(tiny_args(tmp_path, total_updates=1000, budget_minutes=0.02, progress_bar=True), env_fn())
    bar = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]
    assert out["stopped_by_budget"] and out["updates"] < 1000
    assert "/1 s budget" in bar and bar.startswith("100%")


def test_budget_stops_at_an_update_boundary_with_a_checkpoint(tmp_path) -> None:
    out = train(tiny_args(tmp_path, total_updates=50, budget_minutes=1e-6, checkpoint_every=100), env_fn())
    assert out["stopped_by_budget"]
    assert read_meta(out["checkpoint"])["updates"] == 1
    again = train(tiny_args(tmp_path, total_updates=50, budget_minutes=1e-6, resume=True), env_fn())
    assert again["num_timesteps"] == read_meta(out["checkpoint"])["num_timesteps"]  # budget spent: nothing more


def test_mismatched_or_corrupt_checkpoints_are_refused(tmp_path) -> None:
    out = train(tiny_args(tmp_path, total_updates=1), env_fn())
    path = out["checkpoint"]
    with pytest.raises(
        CheckpointError, match=r"checkpoint\.zip.*env_id: checkpoint has 'AdaGen/DiT-v0', expected 'AdaGen/SiT-v0'"
    ):
        train(tiny_args(tmp_path, env="AdaGen/SiT-v0", resume=True, logdir=out["run_dir"]), env_fn("sit"))
    with pytest.raises(CheckpointError, match=r"knobs: checkpoint has \['time', 'cfg'\], expected \['time'\]"):
        train(tiny_args(tmp_path, knobs=["time"], resume=True, logdir=out["run_dir"]), env_fn(knobs=("time",)))
    with pytest.raises(CheckpointError, match="algo: checkpoint has 'ppo', expected 'a2c'"):
        train(tiny_args(tmp_path, algo="a2c", resume=True, logdir=out["run_dir"]), env_fn())
    with pytest.raises(CheckpointError, match="env_id"):
        evaluate([path], env_id="AdaGen/SiT-v0", num_samples=2, seeds=[0], out_dir=None, env_fn=env_fn("sit"))
    with pytest.raises(CheckpointError, match="knobs"):
        evaluate([path], knobs=["cfg"], num_samples=2, seeds=[0], out_dir=None, env_fn=env_fn())
    garbage = tmp_path / "garbage.zip"
    garbage.write_bytes(b"not a zip at all")
    with pytest.raises(CheckpointError, match=r"garbage\.zip.*corrupt"):
        evaluate([garbage], num_samples=2, seeds=[0], out_dir=None, env_fn=env_fn())
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(Path(path).read_bytes()[:2000])
    with pytest.raises(CheckpointError, match="truncated.zip"):
        evaluate([truncated], num_samples=2, seeds=[0], out_dir=None, env_fn=env_fn())
    foreign = tmp_path / "foreign.zip"
    with zipfile.ZipFile(foreign, "w") as archive:
        archive.writestr("data", json.dumps({"policy_class": "x"}))
    with pytest.raises(CheckpointError, match="no adagen metadata"):
        evaluate([foreign], num_samples=2, seeds=[0], out_dir=None, env_fn=env_fn())
    # A checkpoint whose run state is from another save is refused on resume.
    state = load_state(path, out["num_timesteps"])
    _rewrite_entry(path, STATE, _saved({**state, "num_timesteps": 1}))
    with pytest.raises(CheckpointError, match="from timestep 1, but its model from timestep"):
        train(tiny_args(tmp_path, total_updates=2, resume=True, logdir=out["run_dir"]), env_fn())


def _saved(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _rewrite_entry(path, name: str, payload: bytes) -> None:
    """Replace one entry of a zip file."""
    with zipfile.ZipFile(path) as archive:
        entries = {item: archive.read(item) for item in archive.namelist() if item != name}
    with zipfile.ZipFile(path, "w") as archive:
        for item, content in {**entries, name: payload}.items():
            archive.writestr(item, content)


class _Payload:
    """Unpickling this runs code (here: it only flips a flag): what a crafted checkpoint would do."""

    ran = False

    def __reduce__(self):
        return (_Payload._run, ())

    @staticmethod
    def _run():
        _Payload.ran = True
        return "pwned"


def test_checkpoints_load_without_unpickling_anything(tmp_path) -> None:
    import base64
    import pickle

    out = train(tiny_args(tmp_path, total_updates=1), env_fn())
    path = Path(out["checkpoint"])
    with zipfile.ZipFile(path) as archive:
        data = json.loads(archive.read("data"))
    crafted = base64.b64encode(pickle.dumps(_Payload())).decode()
    for key in ("observation_space", "clip_range", "policy_class"):  # fields SB3 keeps pickled: rebuilt, never read
        data[key] = {":type:": "<class 'object'>", ":serialized:": crafted}
    _rewrite_entry(path, "data", json.dumps(data).encode())
    model, _ = load_model(path)
    assert not _Payload.ran and model.num_timesteps == out["num_timesteps"]
    data["surprise"] = {":type:": "<class 'object'>", ":serialized:": crafted}
    _rewrite_entry(path, "data", json.dumps(data).encode())
    with pytest.raises(CheckpointError, match="pickled field 'surprise'"):
        load_model(path)
    _rewrite_entry(path, STATE, pickle.dumps({"num_timesteps": _Payload()}))
    with pytest.raises(CheckpointError, match="holds more than tensors and numbers"):
        load_state(path, out["num_timesteps"])
    assert not _Payload.ran


def test_a_policy_is_refused_on_other_generator_weights(tmp_path) -> None:
    out = train(tiny_args(tmp_path, total_updates=1), env_fn())
    meta = read_meta(out["checkpoint"])
    assert meta["generator_digest"] == zoo.weights_digest(tiny_dit(0)) != zoo.weights_digest(tiny_dit(1))
    evaluate([out["checkpoint"]], num_samples=2, seeds=[0], out_dir=None, env_fn=env_fn())  # same weights: fine
    with pytest.raises(CheckpointError, match=r"generator_digest: checkpoint has '[0-9a-f]{16}', expected"):
        evaluate([out["checkpoint"]], num_samples=2, seeds=[0], out_dir=None, env_fn=env_fn(generator_seed=1))
    with pytest.raises(CheckpointError, match="generator_digest"):
        train(tiny_args(tmp_path, total_updates=2, resume=True, logdir=out["run_dir"]), env_fn(generator_seed=1))
    # Checkpoints from before the digest was recorded name no weights: nothing to check against.
    assert generator_expectation({}, None) == {}


def test_eval_writes_json_and_markdown_at_equal_nfe(tmp_path) -> None:
    out = train(tiny_args(tmp_path, total_updates=1), env_fn())
    results = evaluate(
        [out["checkpoint"]],
        baseline=True,
        num_samples=4,
        seeds=[0, 1],
        batch_size=2,
        out_dir=tmp_path / "eval",
        env_fn=env_fn(),
    )
    policy, baseline = results["rows"]
    assert baseline["name"] == "baseline" and policy["nfe"] == baseline["nfe"]
    assert [s["seed"] for s in policy["per_seed"]] == [0, 1]
    assert {"fid", "kid_mean", "isc_mean", "precision", "recall", "class_agreement"} <= set(policy["mean"])
    assert json.loads((tmp_path / "eval" / "eval.json").read_text())["rows"][1]["name"] == "baseline"
    table = (tmp_path / "eval" / "eval.md").read_text()
    assert "| AdaGen/DiT-v0 | baseline |" in table and "+0.0%" in table
    digest = zoo.weights_digest(tiny_dit(0))  # the weights every row was measured on, named in the table
    assert policy["generator_digest"] == baseline["generator_digest"] == digest and f"AdaGen/DiT-v0 `{digest}`" in table
    other = train(tiny_args(tmp_path, total_updates=1, smoothing=0.5, observation="step-only", run_name="b"), env_fn())
    both = evaluate(
        [out["checkpoint"], other["checkpoint"]],
        baseline=True,
        num_samples=2,
        seeds=[0],
        batch_size=2,
        out_dir=None,
        env_fn=env_fn(),
    )
    assert [row["name"] for row in both["rows"]][2:] == ["baseline"]  # u = 0 is the baseline whatever the policy sees


def _train_parser() -> argparse.ArgumentParser:
    return build_parser()._subparsers._group_actions[0].choices["train"]


def test_cli_train_defaults_are_the_args_defaults() -> None:
    assert args_from_namespace(build_parser().parse_args(["train"])) == Args()


def test_every_args_field_is_a_train_flag_or_documented_as_none() -> None:
    names = {spec.name for spec in fields(Args)}
    flags = {action.dest for action in _train_parser()._actions if action.dest != "help"}
    assert set(NOT_FLAGS) <= names
    assert flags == names - set(NOT_FLAGS)


def test_cli_train_help_shows_each_fields_doc(monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "100000")  # no wrapping: argparse breaks lines at hyphens
    help_text = _train_parser().format_help()
    docs = field_docs()
    assert set(docs) == {spec.name for spec in fields(Args)}  # every field has a docstring
    missing = [name for name, doc in docs.items() if name not in NOT_FLAGS and doc not in help_text]
    assert missing == []
    assert "(default: adversarial-projected)" in help_text and "{ppo,a2c,recurrent_ppo,sac,td3}" in help_text


def test_cli_train_flags_keep_their_behaviour() -> None:
    argv = [
        "train",
        "--env",
        "AdaGen/DiT-v0",
        "--algo",
        "sac",
        "--num-steps",
        "4",
        "--smoothing",
        "0.5",
        "--knobs",
        "cfg",
        "time",
        "--reward-model",
        "batch-fid",
        "--budget-minutes",
        "1.5",
        "--resume",
        "--algo-kwargs",
        '{"n_epochs": 10}',
        "--no-progress-bar",
        "--feature-dtype",
        "float16",
    ]
    args = args_from_namespace(build_parser().parse_args(argv))
    assert args == Args(
        env="AdaGen/DiT-v0",
        algo="sac",
        num_steps=4,
        smoothing=0.5,
        knobs=["cfg", "time"],
        reward_model="batch-fid",
        budget_minutes=1.5,
        resume=True,
        algo_kwargs={"n_epochs": 10},
        progress_bar=False,
        feature_dtype="float16",
    )
    for bad in (["--algo", "dqn"], ["--observation", "pixels"], ["--num-envs", "x"]):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["train", *bad])
    with pytest.raises(InvalidArgument, match="JSON object"):
        args_from_namespace(build_parser().parse_args(["train", "--algo-kwargs", "[1]"]))


@pytest.mark.skipif(not zoo.weights_path("flow").exists(), reason="shipped flow weights not present")
def test_cli_end_to_end_on_the_shipped_generator(tmp_path, capsys) -> None:
    logdir = tmp_path / "runs"
    main(smoke_train_argv(logdir))
    summary = json.loads(capsys.readouterr().out)
    assert summary["updates"] == 1 and read_meta(summary["checkpoint"])["horizon"] == 3
    main(
        [
            "eval",
            "--policy",
            summary["checkpoint"],
            "--schedule",
            "baseline",
            "--num-samples",
            "4",
            "--seeds",
            "0",
            "--batch-size",
            "2",
            "--out",
            str(tmp_path / "eval"),
        ]
    )
    table = capsys.readouterr().out
    nfe = json.loads((tmp_path / "eval" / "eval.json").read_text())["rows"][0]["nfe"]
    assert f"| AdaGen/SiT-v0 | baseline | {nfe} |" in table and f"checkpoint.zip | {nfe} |" in table
    with pytest.raises(SystemExit, match="env_id"):
        main(
            [
                "eval",
                "--policy",
                summary["checkpoint"],
                "--env",
                "AdaGen/DiT-v0",
                "--num-samples",
                "4",
                "--out",
                str(tmp_path / "eval"),
            ]
        )
    assert gym.spec("AdaGen/SiT-v0") is not None


def test_exported_policy_is_smaller_and_acts_the_same(tmp_path) -> None:
    out = train(tiny_args(tmp_path, total_updates=1), env_fn())
    shipped = export_policy(out["checkpoint"], tmp_path / "shipped" / "policy.zip")
    assert shipped.stat().st_size < Path(out["checkpoint"]).stat().st_size
    (original, meta), (exported, exported_meta) = load_model(out["checkpoint"]), load_model(shipped)
    assert exported_meta["exported_from"] == str(out["checkpoint"])
    assert {k: v for k, v in exported_meta.items() if k != "exported_from"} == meta
    env = smooth(env_fn()(num_envs=2, reward_model=None, return_images=False), meta["smoothing"])
    obs, _ = env.reset(seed=0)
    torch.testing.assert_close(
        torch.as_tensor(exported.predict(obs, deterministic=True)[0]),
        torch.as_tensor(original.predict(obs, deterministic=True)[0]),
    )
    with pytest.raises(CheckpointError, match="does not exist"):
        export_policy(tmp_path / "missing.zip", tmp_path / "x.zip")


def test_observation_mode_is_saved_and_rebuilt_for_evaluation(tmp_path) -> None:
    from agents.evaluate import eval_env

    out = train(tiny_args(tmp_path, env="AdaGen/SiT-v0", num_steps=2, total_updates=1, observation="step-only"))
    meta = read_meta(out["checkpoint"])
    assert meta["env_kwargs"]["observation"] == "step-only"
    env = eval_env(meta["env_id"], meta["env_kwargs"], meta["smoothing"], 2, "cpu")
    obs, _ = env.reset(seed=0)
    assert env.unwrapped.observation == "step-only" and not obs["features"].any()
    with pytest.raises(CheckpointError, match="observation"):
        train(
            tiny_args(tmp_path, env="AdaGen/SiT-v0", num_steps=2, total_updates=2, resume=True, logdir=out["run_dir"])
        )


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ({"budget_minutes": float("nan")}, "budget_minutes must be a finite"),
        ({"smoothing": -0.1}, r"smoothing must be an EMA beta in \[0, 1\)"),
        ({"group_size": 3}, r"group_size \(3\) must divide num_envs"),
    ],
)
def test_arguments_that_meant_nothing_are_refused(tmp_path, override, match) -> None:
    with pytest.raises(InvalidArgument, match=match):
        train(tiny_args(tmp_path, **override), env_fn())


def test_group_rollouts_train_on_centred_rewards_and_log_the_raw_ones(tmp_path) -> None:
    out = train(tiny_args(tmp_path, total_updates=2, group_size=2, eval_every=0), env_fn())
    run_dir = Path(out["run_dir"])
    assert read_meta(run_dir / CHECKPOINT)["group_size"] == 2
    rows = (run_dir / "progress.csv").read_text().splitlines()
    header, last = rows[0].split(","), rows[-1].split(",")
    mean = float(last[header.index("reward/terminal_mean")])
    assert 0 < mean < 1  # the discriminator's sigmoid reward, not the centred one (whose mean is 0)


def _final_weights(out: dict) -> dict[str, torch.Tensor]:
    """Policy and discriminator weights of a run's last checkpoint, read pickle-free."""
    with zipfile.ZipFile(out["checkpoint"]) as archive:
        policy = torch.load(io.BytesIO(archive.read("policy.pth")), weights_only=True)
    state = load_state(out["checkpoint"], _data(out["checkpoint"])["num_timesteps"])
    return {
        **{f"policy.{k}": v for k, v in policy.items()},
        **{f"disc.{k}": v for k, v in state["reward_model"]["discriminator"].items()},
    }


@pytest.mark.parametrize("algo", ["ppo", "sac"])
def test_a_resumed_run_equals_an_uninterrupted_one_bit_for_bit(tmp_path, algo: str) -> None:
    whole = train(tiny_args(tmp_path / "whole", algo=algo, total_updates=4, checkpoint_every=2), env_fn())
    train(tiny_args(tmp_path / "split", algo=algo, total_updates=2, checkpoint_every=2), env_fn())
    split = train(tiny_args(tmp_path / "split", algo=algo, total_updates=4, checkpoint_every=2, resume=True), env_fn())
    a, b = _final_weights(whole), _final_weights(split)
    assert a.keys() == b.keys()
    assert [k for k in a if not torch.equal(a[k], b[k])] == []


def test_resume_with_nothing_to_resume_and_a_new_run_over_an_old_one_are_refused(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="nothing to resume"):
        train(tiny_args(tmp_path, resume=True), env_fn())
    with pytest.raises(CheckpointError, match="nothing to resume"):
        train(tiny_args(tmp_path, resume=True, run_name="named"), env_fn())
    out = train(tiny_args(tmp_path, total_updates=1, run_name="named"), env_fn())
    with pytest.raises(InvalidArgument, match="already holds a run; pass --resume"):
        train(tiny_args(tmp_path, total_updates=2, run_name="named"), env_fn())
    (Path(out["run_dir"]) / CHECKPOINT).unlink()  # as if killed while writing its first checkpoint
    with pytest.raises(InvalidArgument, match="already holds a run"):
        train(tiny_args(tmp_path, total_updates=2, run_name="named"), env_fn())


def test_a_run_killed_with_sigkill_at_a_random_point_resumes_to_the_same_weights(tmp_path) -> None:
    import os
    import random
    import signal
    import subprocess
    import sys
    import time

    if not zoo.weights_path("flow").exists():
        pytest.skip("the shipped flow generator is not present")
    command = [
        sys.executable,
        "-m",
        "agents.cli",
        "train",
        "--env",
        "AdaGen/SiT-v0",
        "--num-steps",
        "1",
        "--num-envs",
        "2",
        "--total-updates",
        "16",
        "--checkpoint-every",
        "2",
        "--eval-every",
        "0",
        "--algo-kwargs",
        '{"n_epochs": 1, "episodes_per_update": 1}',
        "--no-progress-bar",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([*command, "--logdir", str(tmp_path), "--run-name", "whole"], check=True, env=env, timeout=300)
    killed = subprocess.Popen([*command, "--logdir", str(tmp_path), "--run-name", "killed"], env=env)
    checkpoint = tmp_path / "killed" / CHECKPOINT
    while not checkpoint.is_file() and killed.poll() is None:
        time.sleep(0.05)
    time.sleep(random.Random().uniform(0.0, 1.0))  # somewhere in updates 2..16, maybe inside a save
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    subprocess.run(
        [*command, "--logdir", str(tmp_path), "--run-name", "killed", "--resume"], check=True, env=env, timeout=300
    )
    runs = {name: {"checkpoint": tmp_path / name / CHECKPOINT} for name in ("whole", "killed")}
    a, b = _final_weights(runs["whole"]), _final_weights(runs["killed"])
    assert read_meta(runs["killed"]["checkpoint"])["updates"] == 16
    assert [k for k in a if not torch.equal(a[k], b[k])] == []


def test_eval_checks_its_output_folder_before_any_work_and_clears_old_results(tmp_path) -> None:
    import time

    out = train(tiny_args(tmp_path, total_updates=1), env_fn())
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    start = time.perf_counter()
    with pytest.raises(InvalidArgument, match="is an existing file, not a folder"):
        evaluate([out["checkpoint"]], num_samples=512, seeds=[0, 1, 2], out_dir=a_file, env_fn=env_fn())
    assert time.perf_counter() - start < 5  # refused before generating 1536 images
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if not os.access(locked, os.W_OK):  # (root can write anywhere: then only the file case is checked)
            with pytest.raises(InvalidArgument, match="cannot write results to"):
                evaluate([out["checkpoint"]], num_samples=4, seeds=[0], out_dir=locked, env_fn=env_fn())
    finally:
        locked.chmod(0o700)
    results = tmp_path / "results"
    results.mkdir()
    (results / "eval.json").write_text('{"rows": "an older policy"}')
    with pytest.raises(CheckpointError):
        evaluate([tmp_path / "missing.zip"], num_samples=4, seeds=[0], out_dir=results, env_fn=env_fn())
    assert not (results / "eval.json").exists()  # the failed eval left no older results looking current


def test_a_policy_with_nan_weights_is_refused_naming_the_file_and_tensor(tmp_path) -> None:
    out = train(tiny_args(tmp_path, total_updates=1), env_fn())
    path = Path(out["checkpoint"])
    with zipfile.ZipFile(path) as archive:
        weights = torch.load(io.BytesIO(archive.read("policy.pth")), weights_only=True)
    name = next(k for k in weights if k.startswith("action_net") and k.endswith("weight"))
    weights[name][0, 0] = float("nan")
    _rewrite_entry(path, "policy.pth", _saved(weights))
    with pytest.raises(CheckpointError, match=rf"checkpoint\.zip.*policy tensor '{name}' has NaN"):
        evaluate([path], num_samples=4, seeds=[0], out_dir=None, env_fn=env_fn())


def test_resume_refuses_another_group_size(tmp_path) -> None:
    out = train(tiny_args(tmp_path, total_updates=1, group_size=2), env_fn())
    with pytest.raises(CheckpointError, match="group_size: checkpoint has 2, expected 1"):
        train(tiny_args(tmp_path, total_updates=2, resume=True, logdir=out["run_dir"]), env_fn())


def test_a_policy_on_a_base_schedule_keeps_the_table_and_is_evaluated_beside_it(tmp_path) -> None:
    from adagen_env.samplers.schedules import save_schedule, static_schedule

    sampler = gym.make_vec("AdaGen/SiT-v0", num_envs=1, num_steps=2, reward_model=None).unwrapped.sampler
    table = static_schedule(sampler, spacing="shift", shift=3.0, cfg=2.5)
    path = save_schedule(tmp_path / "shift3.json", sampler, table, env_id="AdaGen/SiT-v0")
    out = train(tiny_args(tmp_path, env="AdaGen/SiT-v0", num_steps=2, total_updates=1, base_schedule=str(path)))
    meta = read_meta(out["checkpoint"])
    assert torch.equal(torch.tensor(meta["env_kwargs"]["base_schedule"]), table)
    path.unlink()  # the checkpoint carries the table, not the file's name
    results = evaluate([out["checkpoint"]], baseline=True, num_samples=4, seeds=[0], batch_size=2, out_dir=None)
    policy, base, baseline = results["rows"]
    assert base["name"] == f"base schedule of {out['checkpoint']}" and baseline["name"] == "baseline"
    assert base["mean"]["fd_ssl"] != baseline["mean"]["fd_ssl"]  # the baseline row does not run the base schedule
    with pytest.raises(CheckpointError, match="base_schedule: checkpoint has"):
        train(
            tiny_args(tmp_path, env="AdaGen/SiT-v0", num_steps=2, total_updates=2, resume=True, logdir=out["run_dir"])
        )
