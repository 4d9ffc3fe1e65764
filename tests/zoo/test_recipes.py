"""Zoo training losses: bad recipe arguments are named."""

import pytest
import torch

from adagen_env.errors import InvalidArgument
from adagen_env.zoo import continuous_loss


def test_unknown_time_sampling_is_named_with_the_choices():
    with pytest.raises(InvalidArgument, match=r"'beta'.*uniform.*logit-normal"):
        continuous_loss("flow", time_sampling="beta")


def test_zoo_training_resumes_from_its_checkpoint_and_never_unpickles_it(tmp_path) -> None:
    import pickle

    from adagen_env.errors import CheckpointError
    from adagen_env.models.classifier import ClassifierConfig, ShapesClassifier, classifier_loss
    from adagen_env.zoo.training import TrainConfig, train

    config = TrainConfig(steps=4, batch_size=8, lr=1e-3, warmup=1, resolution=16, checkpoint_every=2)
    torch.manual_seed(0)
    whole = train(ShapesClassifier(ClassifierConfig(width=4)), classifier_loss, config, tmp_path / "whole")
    checkpoint = tmp_path / "whole" / "checkpoint.pt"
    assert torch.load(checkpoint, weights_only=True)["step"] == 4
    again = train(ShapesClassifier(ClassifierConfig(width=4)), classifier_loss, config, tmp_path / "whole")
    assert all(torch.equal(a, b) for a, b in zip(whole.state_dict().values(), again.state_dict().values()))
    checkpoint.write_bytes(pickle.dumps({"step": object()}))
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        train(ShapesClassifier(ClassifierConfig(width=4)), classifier_loss, config, tmp_path / "whole")


def test_a_run_cut_short_resumes_to_the_same_weights_and_records_each_sitting(tmp_path) -> None:
    import json

    from adagen_env.models.classifier import ClassifierConfig, ShapesClassifier, classifier_loss
    from adagen_env.zoo.training import SEGMENTS, TrainConfig, train

    config = TrainConfig(steps=4, batch_size=8, lr=1e-3, warmup=1, resolution=16, checkpoint_every=2)
    torch.manual_seed(0)
    whole = train(ShapesClassifier(ClassifierConfig(width=4)), classifier_loss, config, tmp_path / "whole")
    calls = []

    def killed_after_two_steps(model, images, labels, g):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # the sitting ends after the checkpoint at step 2
        return classifier_loss(model, images, labels, g)

    torch.manual_seed(0)
    with pytest.raises(KeyboardInterrupt):
        train(ShapesClassifier(ClassifierConfig(width=4)), killed_after_two_steps, config, tmp_path / "cut")
    torch.manual_seed(0)
    resumed = train(ShapesClassifier(ClassifierConfig(width=4)), classifier_loss, config, tmp_path / "cut")
    assert all(torch.equal(a, b) for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()))
    segments = json.loads((tmp_path / "cut" / SEGMENTS).read_text())
    assert [(s["start_step"], s["end_step"]) for s in segments] == [(0, 2), (2, 4)]
    assert all(s["seconds"] >= 0 and "commit" in s for s in segments)


def test_a_finished_run_trains_on_only_with_a_new_stage_where_it_ended(tmp_path) -> None:
    import json
    from dataclasses import replace

    from adagen_env.errors import CheckpointError
    from adagen_env.models.classifier import ClassifierConfig, ShapesClassifier, classifier_loss
    from adagen_env.zoo.training import SEGMENTS, TrainConfig, train

    config = TrainConfig(steps=4, batch_size=8, lr=1e-3, warmup=1, resolution=16, checkpoint_every=2)
    torch.manual_seed(0)
    train(ShapesClassifier(ClassifierConfig(width=4)), classifier_loss, config, tmp_path)
    (tmp_path / "other").mkdir()
    for other in (replace(config, steps=8), replace(config, steps=8, stages=(4,), lr=2e-3)):
        with pytest.raises(CheckpointError, match="would not have trained its 4 steps alike"):
            train(ShapesClassifier(ClassifierConfig(width=4)), classifier_loss, other, tmp_path)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    torch.save({**state, "config": {**state["config"], "momentum": 0.9}}, tmp_path / "other" / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="momentum"):  # another schema is named, not a TypeError
        train(ShapesClassifier(ClassifierConfig(width=4)), classifier_loss, config, tmp_path / "other")
    longer = replace(config, steps=8, stages=(4,))
    train(ShapesClassifier(ClassifierConfig(width=4)), classifier_loss, longer, tmp_path)
    segments = json.loads((tmp_path / SEGMENTS).read_text())
    assert [(s["start_step"], s["end_step"]) for s in segments] == [(0, 4), (4, 8)]
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["config"]["steps"] == 8


def test_the_learning_rate_warms_up_again_at_each_stage() -> None:
    from adagen_env.zoo.training import TrainConfig, _lr_factor

    config = TrainConfig(steps=100, warmup=10, stages=(40,))
    factors = [_lr_factor(step, config) for step in range(100)]
    assert factors[0] == factors[40] == 0.1 and factors[9] == factors[49] == 1.0
    assert factors[39] == pytest.approx(0.1, abs=0.01) and factors[99] == pytest.approx(0.1, abs=0.01)
    assert _lr_factor(50, TrainConfig(steps=100, warmup=10)) < 1.0  # one stage: no second warm-up
