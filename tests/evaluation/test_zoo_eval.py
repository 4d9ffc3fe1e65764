"""The zoo benchmark: one grid of points per paradigm, token paradigms included; reuse of measured rows."""

import dataclasses
import json

import pytest
import torch

from adagen_env import zoo
from adagen_env.errors import InvalidArgument
from adagen_env.evaluation import zoo_eval
from adagen_env.evaluation.grids import PARADIGMS, GridPoint, cross
from adagen_env.evaluation.zoo_eval import evaluate_zoo


def test_cross_repeats_each_nfe_cfg_point_per_settings_dict():
    points = cross({8: (None, 1.0)}, {}, {"top_k": 0})
    assert points == (
        GridPoint(8, None),
        GridPoint(8, None, (("top_k", 0),)),
        GridPoint(8, 1.0),
        GridPoint(8, 1.0, (("top_k", 0),)),
    )
    assert cross({4: (3.0,)}) == (GridPoint(4, 3.0),)


def test_every_zoo_generator_has_a_benchmark_row():
    assert {zoo.entry(name).paradigm for name in zoo.GENERATORS} <= set(PARADIGMS)


def test_var_factory_refuses_a_step_count_other_than_its_scales():
    model = zoo.load("var")
    spec = PARADIGMS["var"]
    assert spec.fixed_nfe
    assert spec.make_sampler(model, None, 1.5, "cpu").horizon == len(model.scales)
    with pytest.raises(InvalidArgument, match="one step per scale"):
        spec.make_sampler(model, 8, 1.5, "cpu")


def test_quick_eval_of_a_token_generator_writes_rows_with_their_settings(tmp_path):
    results = evaluate_zoo(["var"], num_samples=32, out_dir=tmp_path, quick=True)
    rows = results["generators"]["var"]["results"]
    assert [(r["nfe"], r["cfg"]) for r in rows] == [(6, None), (6, 1.5)]
    assert all(r["settings"] == {} and r["fid"] > 0 for r in rows)
    assert json.loads((tmp_path / "zoo-quick.json").read_text())["generators"]["var"]["results"] == rows
    assert "| 6 | 1.5 | baseline |" in (tmp_path / "zoo-quick.md").read_text()
    recon = results["generators"]["var"]["reconstruction"]
    assert 0 < recon["fid"] < min(r["fid"] for r in rows)  # the tokenizer bounds its generator
    assert "Tokenizer reconstruction" in (tmp_path / "zoo-quick.md").read_text()
    flips = results["generators"]["var"]["token_flip_rates"]
    assert len(flips) == 6 and flips == sorted(flips) and 0 < flips[0] < flips[-1] < 1  # fine scales see the grain
    assert "Token ids under a re-draw of the data's grain" in (tmp_path / "zoo-quick.md").read_text()


def test_reuse_keeps_measured_rows_and_samples_only_new_points(tmp_path, monkeypatch):
    first = evaluate_zoo(["var"], num_samples=32, out_dir=tmp_path, quick=True)["generators"]["var"]["results"]
    wider = dataclasses.replace(PARADIGMS["var"], quick_points=PARADIGMS["var"].quick_points + cross({6: (3.0,)}))
    monkeypatch.setitem(PARADIGMS, "var", wider)
    sampled = []
    real_generate = zoo_eval.generate_static

    def counting_generate(sampler, schedule, labels, *args, **kwargs):
        sampled.append(labels.shape[0])
        return real_generate(sampler, schedule, labels, *args, **kwargs)

    monkeypatch.setattr(zoo_eval, "generate_static", counting_generate)
    second = evaluate_zoo(["var"], num_samples=32, out_dir=tmp_path, quick=True, reuse=True)
    second = second["generators"]["var"]["results"]
    assert [r.pop("reused") for r in second[:2]] == [True, True]
    assert second[:2] == first
    assert (second[2]["cfg"], "reused" in second[2]) == (3.0, False)
    assert sampled[-1] == 32  # the new point; the reused best point's grid costs one batch at most
    assert "| 6* | 1.5 |" in (tmp_path / "zoo-quick.md").read_text()


def test_a_killed_run_resumes_from_its_progress_file_with_reuse(tmp_path, monkeypatch):
    real_metrics = zoo_eval.compute_metrics
    calls = []

    def dying_metrics(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the second grid point: the run is killed while scoring it
            raise KeyboardInterrupt
        return real_metrics(*args, **kwargs)

    monkeypatch.setattr(zoo_eval, "compute_metrics", dying_metrics)
    with pytest.raises(KeyboardInterrupt):
        evaluate_zoo(["var"], num_samples=32, out_dir=tmp_path, quick=True)
    progress = json.loads((tmp_path / "zoo-quick.progress.json").read_text())
    done = progress["generators"]["var"]["results"]
    assert [(r["nfe"], r["cfg"]) for r in done] == [(6, None)] and not (tmp_path / "zoo-quick.json").exists()
    monkeypatch.setattr(zoo_eval, "compute_metrics", real_metrics)
    rows = evaluate_zoo(["var"], num_samples=32, out_dir=tmp_path, quick=True, reuse=True)["generators"]["var"]
    assert [r.get("reused", False) for r in rows["results"]] == [True, False]
    assert {k: v for k, v in rows["results"][0].items() if k != "reused"} == done[0]
    assert not (tmp_path / "zoo-quick.progress.json").exists()  # a finished run leaves none


def test_rows_of_other_weights_are_never_reused():
    row = {"nfe": 6, "cfg": 1.5, "fid": 1.0}
    other_weights = {"file": "var.safetensors", "sha256_16": "0" * 16}
    previous = {"generators": {"var": {"weights": other_weights, "results": [row]}}}
    assert zoo_eval._measured_rows(previous, "var") == {}
    previous["generators"]["var"]["weights"] = zoo_eval._weights_meta("var")
    assert zoo_eval._measured_rows(previous, "var") == {(6, 1.5, "{}"): row}


def test_schedule_settings_go_to_the_static_schedule_not_the_sampler():
    model = zoo.load("var")
    spec = PARADIGMS["var"]
    sampler, schedule = spec.build(model, GridPoint(6, 1.5, (("temperature", 0.8),)), "cpu")
    baseline = sampler.baseline_values()
    column = sampler.knob_names.index("temperature")
    assert torch.equal(schedule[:, column], torch.full((sampler.horizon,), 0.8))
    others = [i for i in range(len(sampler.knob_names)) if i != column]
    assert torch.equal(schedule[:, others], baseline[:, others])
    assert spec.build(model, GridPoint(6, 1.5, (("top_k", 8),)), "cpu")[1] is None  # a sampler argument
