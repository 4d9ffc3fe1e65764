"""`adagen bench`: static schedules share the policies' noise, the search finds optima, verdicts, outputs, CLI."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import (
    FAST_PPO,
    smoke_bench_argv,
    smoke_train_argv,
    tiny_dit,
)  # tests/conftest.py, tests/agents/conftest.py

from adagen_env import zoo
from adagen_env.envs import SiTVectorEnv
from adagen_env.errors import InvalidArgument
from adagen_env.evaluation import generate_static
from adagen_env.metrics import balanced_labels
from adagen_env.samplers import FlowSampler
from adagen_env.samplers.schedules import search_start, static_schedule
from agents.bench import BenchConfig, bench, matching_nfe, tune, tune_cma
from agents.cli import main
from agents.reporting import agreed_verdict, verdict
from agents.rollout import ZeroPolicy, generate

TINY = dict(num_samples=4, seeds=(0, 1), search_samples=4, search_rounds=1, batch_size=4)


def test_static_baseline_reproduces_the_env_baseline_bit_for_bit() -> None:
    sampler = FlowSampler(tiny_dit(), num_steps=3)
    env = SiTVectorEnv(num_envs=3, generator=sampler, reward_model=None, return_images=True)
    labels = balanced_labels(5)  # 2 batches of 3 lanes, the last one padded
    by_env = generate(ZeroPolicy(2), env, labels, seed=7)
    static = generate_static(sampler, sampler.baseline_schedule(), labels, seed=7, batch_size=3)
    assert torch.equal(by_env.images, static.images) and static.nfe == by_env.nfe
    other = generate_static(sampler, static_schedule(sampler, spacing="shift", shift=3.0), labels, seed=7, batch_size=3)
    assert not torch.equal(other.images, static.images)


def test_coordinate_search_finds_the_optimum_of_a_separable_score() -> None:
    sampler = FlowSampler(tiny_dit(), num_steps=3)
    calls = []

    def score(params):
        calls.append(params)
        return abs(params["shift"] - 2.0) + abs(params["cfg"] - 0.5) + (params["cfg_shape"] != "ramp")

    best, trace = tune(sampler, score, rounds=3)
    assert (best["shift"], best["cfg"], best["cfg_shape"]) == (2.0, 0.5, "ramp")
    assert trace[0]["params"] == search_start(sampler) and len(calls) == len(trace)  # each candidate scored once
    assert len({json.dumps(t["params"], sort_keys=True) for t in trace}) == len(trace)
    start_only, trace0 = tune(sampler, score, rounds=0)
    assert start_only == search_start(sampler) and len(trace0) == 1


def test_cma_es_finds_the_optimum_of_a_score_over_the_whole_table() -> None:
    pytest.importorskip("cma", reason="the CMA-ES search needs the `cma` package (the search extra)")
    sampler = FlowSampler(tiny_dit(), num_steps=3)
    target = sampler.baseline_schedule().clone()
    target[:, 1] += 0.7  # a better CFG at every step; the time grid stays the baseline's

    def score(table):
        return float((table - target).pow(2).sum())

    best, trace = tune_cma(sampler, score, evaluations=120, sigma=0.5)
    assert len(trace) <= 120 and score(best) == min(t["score"] for t in trace)
    assert score(best) < 0.05 * score(sampler.baseline_schedule())
    with pytest.raises(InvalidArgument, match="at least 2"):
        tune_cma(sampler, score, evaluations=1)


def test_verdicts_call_gaps_within_the_spread_ties() -> None:
    assert verdict(10.0, 0.5, 10.6, 0.5) == "tie"
    assert verdict(10.0, 0.1, 10.6, 0.1) == "better"
    assert verdict(11.0, 0.1, 10.0, 0.1) == "worse"


def test_agreed_verdict_needs_every_headline_yardstick() -> None:
    def row(fd, fidelity, coverage, fid=5.0):
        mean = {"fd_ssl": fd, "oracle_fidelity": fidelity, "oracle_coverage": coverage, "fid": fid}
        return {"mean": mean, "std": {k: 0.001 for k in mean}}

    ref = row(20.0, 0.03, 0.10)
    assert agreed_verdict(row(18.0, 0.05, 0.08, fid=9.0), ref)[0] == "better"  # FID and fidelity have no vote
    assert agreed_verdict(row(22.0, 0.02, 0.12), ref)[0] == "worse"
    assert agreed_verdict(row(20.0, 0.03, 0.10), ref)[0] == "tie"
    call, each = agreed_verdict(row(18.0, 0.03, 0.12), ref)
    assert call == "split" and each == {"fd_ssl": "better", "oracle_coverage": "worse"}
    older = {"mean": {"fid": 4.0}, "std": {"fid": 0.1}}  # a row from before the headline yardsticks
    assert agreed_verdict(older, {"mean": {"fid": 5.0}, "std": {"fid": 0.1}}) == ("better", {"fid": "better"})


def test_matching_nfe_uses_the_baseline_at_its_largest_nfe() -> None:
    def row(method, kind, nfe, fid):
        return {"env_id": "e", "method": method, "kind": kind, "nfe": nfe, "mean": {"fid": fid}, "std": {"fid": 0.1}}

    rows = [
        row("baseline", "baseline", 4, 9.0),
        row("baseline", "baseline", 16, 5.0),
        row("tuned", "tuned", 4, 6.0),
        row("tuned", "tuned", 8, 5.05),
        row("other", "hand-made", 4, 8.0),
    ]
    match = matching_nfe(rows, "e")
    assert match["target_nfe"] == 16 and match["nfe_to_match"] == {"baseline": 16, "tuned": 8, "other": None}


def test_bench_on_the_shipped_generator_writes_every_output(tmp_path) -> None:
    config = BenchConfig(step_grid={"AdaGen/SiT-v0": (2,)}, baseline_step_grid={"AdaGen/SiT-v0": (3,)}, **TINY)
    results = bench(config, out_dir=tmp_path)
    compared, (longer,) = results["rows"][:-1], results["rows"][-1:]
    kinds = [row["kind"] for row in compared]
    assert kinds[0] == "baseline" and "hand-made" in kinds and kinds[-1] == "tuned"
    assert len({row["nfe"] for row in compared}) == 1  # equal NFE
    assert longer["kind"] == "baseline" and longer["steps"] == 3 and longer["nfe"] > compared[0]["nfe"]
    assert matching_nfe(results["rows"], "AdaGen/SiT-v0")["target_nfe"] == longer["nfe"]
    tuned = compared[-1]
    trace = tuned["search"]["trace"]
    assert min(t["score"] for t in trace) == next(t["score"] for t in trace if t["params"] == tuned["params"])
    for row in results["rows"]:
        assert [s["seed"] for s in row["per_seed"]] == [0, 1] and np.isfinite(row["mean"]["fid"])
    table = (tmp_path / "bench.md").read_text()
    assert "| tuned static | tuned |" in table and "| tie (" in table and "NFE to match" in table
    assert (tmp_path / "bench_fid_vs_nfe.png").stat().st_size > 0
    assert len((tmp_path / "bench.csv").read_text().splitlines()) == len(results["rows"]) + 1
    assert "## AdaGen/SiT-v0, steps 3" in table
    digest = zoo.weights_digest(zoo.load("flow"))
    assert {row["generator_digest"] for row in results["rows"]} == {digest} and f"AdaGen/SiT-v0 `{digest}`" in table


def test_bench_adds_a_cma_es_row_that_becomes_the_static_bar(tmp_path) -> None:
    pytest.importorskip("cma", reason="the CMA-ES search needs the `cma` package (the search extra)")
    config = BenchConfig(
        step_grid={"AdaGen/SiT-v0": (2,)},
        baseline_step_grid={},
        hand_made=False,
        cma_evaluations=4,
        **{**TINY, "search_rounds": 0},
    )
    rows = bench(config, out_dir=tmp_path)["rows"]
    assert [r["kind"] for r in rows] == ["baseline", "tuned", "tuned"] and rows[-1]["method"] == "CMA-ES static"
    cma_row = rows[-1]
    assert len(cma_row["search"]["trace"]) == 4 and cma_row["search"]["metric"] == "fd_ssl"
    assert len(cma_row["search"]["heldout_scores"]) == 2
    assert len({r["nfe"] for r in rows}) == 1
    assert "CMA-ES: 4 candidates" in (tmp_path / "bench.md").read_text()
    assert "on 2 held-out seeds of the same size" in (tmp_path / "bench.md").read_text()


def test_a_killed_bench_resumes_measuring_only_the_rows_it_had_not_finished(tmp_path, monkeypatch) -> None:
    import agents.bench as bench_module

    config = BenchConfig(step_grid={"AdaGen/SiT-v0": (2,)}, baseline_step_grid={}, hand_made=False, **TINY)
    whole = bench(config, out_dir=tmp_path / "whole")["rows"]
    assert not (tmp_path / "whole" / bench_module.PROGRESS).exists()  # removed once the bench is done

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # the coordinate search is where the kill lands

    monkeypatch.setattr(bench_module, "tune", killed)
    with pytest.raises(KeyboardInterrupt):
        bench(config, out_dir=tmp_path / "resumed")
    saved = json.loads((tmp_path / "resumed" / bench_module.PROGRESS).read_text())
    assert list(saved["rows"]) == ["AdaGen/SiT-v0|2|baseline (uniform t)"]

    monkeypatch.undo()
    measured = []
    real_static_row = bench_module._static_row
    monkeypatch.setattr(bench_module, "_static_row", lambda *a, **k: measured.append(a[2]) or real_static_row(*a, **k))
    resumed = bench(config, out_dir=tmp_path / "resumed")["rows"]
    assert measured == ["tuned static"]  # the baseline row came from the progress file
    drop = ("seconds_per_image", "per_seed")
    assert [{k: v for k, v in r.items() if k not in drop} for r in resumed] == [
        {k: v for k, v in r.items() if k not in drop} for r in whole
    ]
    assert not (tmp_path / "resumed" / bench_module.PROGRESS).exists()


def test_a_bench_of_other_inputs_does_not_reuse_a_progress_file(tmp_path, monkeypatch) -> None:
    import agents.bench as bench_module

    config = BenchConfig(step_grid={"AdaGen/SiT-v0": (2,)}, baseline_step_grid={}, hand_made=False, **TINY)
    monkeypatch.setattr(bench_module, "tune", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        bench(config, out_dir=tmp_path)
    monkeypatch.undo()
    measured = []
    real_static_row = bench_module._static_row
    monkeypatch.setattr(bench_module, "_static_row", lambda *a, **k: measured.append(a[2]) or real_static_row(*a, **k))
    bench(replace(config, seeds=(0, 2)), out_dir=tmp_path)
    assert measured == ["baseline (uniform t)", "tuned static"]


def test_a_corrupt_progress_file_is_measured_over_not_trusted(tmp_path) -> None:
    import agents.bench as bench_module

    config = BenchConfig(step_grid={"AdaGen/SiT-v0": (2,)}, baseline_step_grid={}, hand_made=False, **TINY)
    (tmp_path / bench_module.PROGRESS).write_text('{"inputs": 1, "rows": [')
    rows = bench(config, out_dir=tmp_path)["rows"]
    assert [r["method"] for r in rows] == ["baseline (uniform t)", "tuned static"]
    assert not (tmp_path / bench_module.PROGRESS).exists()


def test_bench_config_refuses_a_search_seed_that_is_also_an_eval_seed() -> None:
    with pytest.raises(InvalidArgument, match="search_seed"):
        BenchConfig(seeds=(0, 1000), search_seed=1000)
    with pytest.raises(InvalidArgument, match="held-out seeds"):
        BenchConfig(seeds=(0, 1002), search_seed=1000)


def test_cli_bench_with_a_policy_adds_an_adaptive_row(tmp_path, capsys) -> None:
    runs = tmp_path / "runs"
    main(smoke_train_argv(runs, "--algo-kwargs", FAST_PPO))
    checkpoint = json.loads(capsys.readouterr().out)["checkpoint"]
    main(smoke_bench_argv(checkpoint, tmp_path / "bench", "--baseline-steps", "3"))
    table = capsys.readouterr().out
    assert "| adaptive |" in table and "| baseline |" in table and "Made by `adagen bench --env" in table
    assert [p.name for p in tmp_path.glob("bench/bench_knobs_*.png")] == ["bench_knobs_AdaGen-SiT-v0_2.png"]
    saved = json.loads((tmp_path / "bench" / "bench.json").read_text())
    assert saved["config"]["baseline_step_grid"] == {"AdaGen/SiT-v0": [3]} and saved["rows"][-1]["steps"] == 3
    with pytest.raises(SystemExit, match="not in the bench grid"):
        main(["bench", "--env", "AdaGen/DiT-v0", "--policy", checkpoint, "--out", str(tmp_path / "b2")])


def test_ablation_trains_each_variant_and_writes_its_section(tmp_path) -> None:
    from test_train import TINY_ALGO_KWARGS, env_fn

    from agents.ablation import ABLATIONS, NO_STEP_CONDITIONING, run_ablation, run_name
    from agents.checkpoint import load_model

    tiny = {"num_envs": 2, "total_updates": 1, "progress_bar": False, "algo_kwargs": TINY_ALGO_KWARGS["ppo"]}
    report = run_ablation(
        "step-conditioning",
        num_samples=4,
        seeds=(0, 1),
        logdir=tmp_path / "runs",
        out=tmp_path,
        env_fn=env_fn(),
        train_overrides=tiny,
    )
    assert [r["variant"] for r in report["rows"]] == ["on", "off", "baseline schedule"]
    assert len({r["nfe"] for r in report["rows"]}) == 1
    off_run = run_name(ABLATIONS["step-conditioning"], NO_STEP_CONDITIONING)
    assert off_run.startswith("dit-v0-4-") and run_name(ABLATIONS["reward"], {}) == "dit-v0-4-reference"
    model, _ = load_model(tmp_path / "runs" / off_run / "checkpoint.zip")
    assert model.policy.pi_features_extractor.step_conditioning is False
    text = (tmp_path / "ablations.md").read_text()
    assert text.count("<!-- ablation:step-conditioning -->") == 1 and "Measured here: off " in text
    assert f"`adagen bench ablation step-conditioning --budget-minutes 10 --out {tmp_path}`" in text
    assert {p.name for p in (tmp_path / "step_conditioning").iterdir()} == {"ablation.json", "eval.json", "eval.md"}
    assert f"AdaGen/DiT-v0 `{zoo.weights_digest(tiny_dit(0))}`" in text
    run_ablation(
        "step-conditioning",
        num_samples=4,
        seeds=(0, 1),
        logdir=tmp_path / "runs",
        out=tmp_path,
        env_fn=env_fn(),
        train_overrides=tiny,
    )  # resumes (already trained) and replaces its section
    assert (tmp_path / "ablations.md").read_text().count("## step-conditioning") == 1
    with pytest.raises(InvalidArgument, match="unknown ablation"):
        run_ablation("rewards")


def test_knob_plot_names_have_no_none() -> None:
    from agents.bench import knob_plot_name

    assert knob_plot_name("AdaGen/DiT-v0", 4) == "bench_knobs_AdaGen-DiT-v0_4.png"
    assert knob_plot_name("AdaGen/VAR-v0", None) == "bench_knobs_AdaGen-VAR-v0_default.png"


def test_policy_steps_resolve_the_env_default() -> None:
    from agents.bench import policy_steps

    assert policy_steps({"env_id": "AdaGen/SiT-v0", "env_kwargs": {"num_steps": None}}) == 8
    assert policy_steps({"env_id": "AdaGen/DiT-v0", "env_kwargs": {"num_steps": 4}}) == 4
    assert policy_steps({"env_id": "AdaGen/VAR-v0", "env_kwargs": {}}) is None
