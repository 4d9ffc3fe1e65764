"""Reward-hacking and diversity monitors (`agents.monitors`): per-class recall and near-duplicates, an alarm on a
fake collapse (and none on a healthy batch), the warning and the marked checkpoint of a training run."""

from __future__ import annotations

import pytest
import torch
from test_train import env_fn, tiny_args

import agents.callbacks
from adagen_env.data import ShapesDataset
from adagen_env.errors import InvalidArgument
from adagen_env.metrics import balanced_labels
from agents.checkpoint import read_meta
from agents.monitors import CollapseMonitor, class_recall, duplicate_share
from agents.rollout import Generation, ZeroPolicy, generate
from agents.train import train


def collapse(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Every image replaced by the first image of its class: a policy that found one sample per class."""
    first = {int(c): images[int((labels == c).nonzero()[0])] for c in labels.unique()}
    return torch.stack([first[int(c)] for c in labels])


def test_recall_and_duplicates_of_points() -> None:
    labels = torch.tensor([0] * 6 + [1] * 6)
    real = torch.randn(12, 5)
    assert class_recall(real, labels, real, labels, 3).tolist()[:2] == [1.0, 1.0]  # the real set covers itself
    assert torch.isnan(class_recall(real, labels, real, labels, 3)[2])  # class 2 has no images
    copies = real[[0] * 6 + [6] * 6]
    assert class_recall(copies, labels, real, labels, 2).max() <= 1 / 6  # only the copied image itself is covered
    assert duplicate_share(copies, labels, real, labels, 2) == 1.0
    assert duplicate_share(real, labels, real, labels, 2) == 0.0


def test_a_fake_collapse_raises_the_alarm_and_a_healthy_batch_does_not() -> None:
    data = ShapesDataset(resolution=32)
    labels = balanced_labels(64)
    baseline, _ = data.sample(64, seed=1, labels=labels)
    healthy, _ = data.sample(64, seed=2, labels=labels)
    monitor = CollapseMonitor(8)
    with pytest.raises(InvalidArgument, match="set_baseline"):
        monitor.check(healthy, labels)
    base = monitor.set_baseline(baseline, labels)
    assert base["recall"] > 0.3 and base["duplicates"] < 0.05
    stats, reasons = monitor.check(healthy, labels)
    assert reasons == [] and stats["recall"] > 0.9 * base["recall"]
    one_class = healthy.clone()
    one_class[labels == 3] = collapse(healthy, labels)[labels == 3]
    stats, _ = monitor.check(one_class, labels)
    assert stats["class_recall"][3] < 0.5 * base["class_recall"][3]  # the per-class view sees one class go
    stats, reasons = monitor.check(collapse(healthy, labels), labels)
    assert stats["duplicates"] == 1.0 and stats["recall"] < 0.9 * base["recall"]
    assert len(reasons) == 2 and "recall" in reasons[0] and "near-duplicates" in reasons[1]


def test_a_collapsing_run_warns_and_marks_its_checkpoints(tmp_path, monkeypatch) -> None:
    def collapsing(policy, env, labels, seed) -> Generation:
        run = generate(policy, env, labels, seed)
        if isinstance(policy, ZeroPolicy):
            return run
        return Generation(collapse(run.images, run.labels), run.labels, run.knobs, run.nfe)

    monkeypatch.setattr(agents.callbacks, "generate", collapsing)
    with pytest.warns(UserWarning, match="may be collapsing: .*near-duplicates"):
        out = train(tiny_args(tmp_path, total_updates=2, eval_every=1, eval_samples=16), env_fn())
    alarms = read_meta(out["checkpoint"])["collapse_alarms"]
    assert [alarm["updates"] for alarm in alarms] == [1, 2]
    assert any("near-duplicates 1.000" in reason for reason in alarms[0]["reasons"])
    assert "collapse_alarms" in read_meta(out["best_model"])
    log = (tmp_path / "runs").glob("*/progress.csv")
    header, *rows = next(log).read_text().splitlines()
    column = header.split(",").index("monitor/alarm")
    logged = [row.split(",")[column] for row in rows if row.split(",")[column]]
    assert logged and set(logged) == {"1.0"}  # (SB3 writes the rows it logs at updates; the final one is not dumped)
