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
