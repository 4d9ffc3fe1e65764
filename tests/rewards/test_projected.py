"""The projected discriminator: a frozen backbone, trainable heads, and DiffAugment on reals and fakes alike."""

from __future__ import annotations

import copy

import pytest
import torch

from adagen_env.data import ShapesDataset
from adagen_env.errors import InvalidArgument
from adagen_env.rewards import AdversarialReward, make_reward_model
from adagen_env.rewards import adversarial as adversarial_module
from adagen_env.rewards.projected import diff_augment


def test_diff_augment_is_seeded_differentiable_and_changes_every_image() -> None:
    images, _ = ShapesDataset(16).sample(8, seed=0)
    images.requires_grad_(True)
    a = diff_augment(images, torch.Generator().manual_seed(3))
    b = diff_augment(images, torch.Generator().manual_seed(3))
    assert a.shape == images.shape and torch.equal(a, b)
    assert ((a - images).abs().flatten(1).amax(1) > 0.05).all()
    assert ((a == 0).flatten(1).sum(1) >= 8 * 8 * 3).all()  # the cutout: a quarter of each image zeroed
    a.sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


def test_diff_augment_without_colour_moves_pixels_but_keeps_their_values() -> None:
    images, _ = ShapesDataset(16).sample(8, seed=0)
    a = diff_augment(images, torch.Generator().manual_seed(3), ("translation", "cutout"))
    assert not torch.equal(a, images)
    for image, out in zip(images, a):  # every output pixel is an input pixel of that image, or zero
        values = image.flatten(1).T  # (R * R, 3)
        pixels = out.flatten(1).T
        kept = pixels.abs().sum(1) > 0
        assert (pixels[kept][:, None] - values[None]).abs().sum(-1).amin(1).max() == 0
    with pytest.raises(InvalidArgument, match="augment must be a sequence of"):
        AdversarialReward(8, 16, architecture="projected", augment=("color",))
    with pytest.raises(InvalidArgument, match="augment must be a sequence of"):
        AdversarialReward(8, 16, architecture="projected", augment="translation")


@pytest.mark.parametrize(
    "backbones", [("reward-classifier",), ("var-tokenizer",), ("reward-classifier", "var-tokenizer")]
)
def test_projected_backbone_stays_frozen_and_heads_learn(backbones) -> None:
    reward = AdversarialReward(8, 16, architecture="projected", backbones=backbones)
    disc = reward.discriminator
    frozen = {k: v.clone() for k, v in disc.backbones.state_dict().items()}  # weights and BatchNorm statistics
    heads = {k: v.clone() for k, v in disc.heads.state_dict().items()}
    assert len(disc.heads) == sum(len(b.channels) for b in disc.backbones) >= 3 * len(backbones)
    labels = torch.arange(16) % 8
    for _ in range(3):
        reward.update(torch.rand(16, 3, 16, 16), labels)
    assert all(torch.equal(v, disc.backbones.state_dict()[k]) for k, v in frozen.items())
    assert not disc.backbones.training and disc.training
    assert any(not torch.equal(v, disc.heads.state_dict()[k]) for k, v in heads.items())
    assert all(not p.requires_grad for p in disc.backbones.parameters())


def test_projected_backbones_refuse_bad_names() -> None:
    with pytest.raises(InvalidArgument, match="unknown projected-discriminator backbone 'dino'"):
        AdversarialReward(8, 16, architecture="projected", backbones=("dino",))
    with pytest.raises(InvalidArgument, match="backbones are for the projected discriminator"):
        AdversarialReward(8, 16, architecture="conv", backbones=("var-tokenizer",))


def test_projected_reads_single_backbone_weight_names() -> None:
    a, b = (AdversarialReward(8, 16, architecture="projected", seed=s).discriminator for s in (1, 2))
    legacy = {k.replace("backbones.0.net.", "backbone.", 1): v for k, v in a.state_dict().items()}
    b.load_state_dict(legacy)
    images, labels = torch.rand(4, 3, 16, 16), torch.arange(4)
    assert torch.equal(a(images, labels), b(images, labels))


def test_augmentation_reaches_both_reals_and_fakes(monkeypatch) -> None:
    seen = []

    def spy(images, g, ops):
        seen.append(images.clone())
        assert ops == ("translation", "cutout")  # the projected discriminator's default: no colour jitter
        return diff_augment(images, g, ops)

    monkeypatch.setattr(adversarial_module, "diff_augment", spy)
    reward = AdversarialReward(8, 16, architecture="projected", updates_per_batch=1)
    fakes, labels = torch.rand(8, 3, 16, 16), torch.arange(8)
    reward.update(fakes, labels)
    assert len(seen) == 2 and torch.equal(seen[1], fakes)  # reals first, then these fakes
    reals, _ = ShapesDataset(16).sample(8, labels=labels, generator=torch.Generator().manual_seed(1))
    assert torch.equal(seen[0], reals)  # the reward's real stream (seed + 1) with the fakes' labels
    pixel = AdversarialReward(8, 16, architecture="conv", updates_per_batch=1)
    pixel.update(fakes, labels)
    assert len(seen) == 2  # the pixel discriminators are not augmented unless asked


def test_projected_reward_resumes_exactly() -> None:
    labels = torch.arange(8)
    a = AdversarialReward(8, 16, architecture="projected", seed=4)
    a.update(torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(0)), labels)
    b = AdversarialReward(8, 16, architecture="projected", seed=9)
    b.load_state_dict(copy.deepcopy(a.state_dict()))  # as through a file: Adam's state_dict shares its tensors
    fakes = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    a.update(fakes, labels)
    b.update(fakes, labels)
    torch.testing.assert_close(a.score(fakes, labels), b.score(fakes, labels), rtol=0, atol=0)


@pytest.mark.parametrize("resolution", [16, 32])
def test_projected_discriminator_scores_any_zoo_resolution(resolution: int) -> None:
    reward = make_reward_model("adversarial-projected", 8, resolution)
    scores = reward.score(torch.rand(4, 3, resolution, resolution), torch.arange(4))
    assert scores.shape == (4,) and torch.all((scores > 0) & (scores < 1))


def test_broken_images_never_reach_the_discriminator() -> None:
    from adagen_env.errors import InvalidArgument

    reward = AdversarialReward(8, 16, architecture="conv")
    before = {k: v.clone() for k, v in reward.discriminator.state_dict().items()}
    images, labels = torch.rand(4, 3, 16, 16), torch.arange(4)
    images[2, 0, 0, 0] = float("nan")
    with pytest.raises(InvalidArgument, match=r"images \[2\] .*NaN"):
        reward.update(images, labels)
    with pytest.raises(InvalidArgument, match=r"\[0, 1\]"):
        reward.score(torch.full((2, 3, 16, 16), 1.5), torch.arange(2))
    assert all(torch.equal(v, reward.discriminator.state_dict()[k]) for k, v in before.items())


def test_projected_heads_see_no_finer_grid_than_the_images() -> None:
    reward = make_reward_model("adversarial-projected", 8, 16)
    sides = [f.shape[-1] for f in reward.discriminator.depth_features(torch.rand(2, 3, 16, 16))]
    assert sides == [16, 16, 8]  # the backbone's 32 x 32 first stage, pooled to the 16 x 16 images
    sides = [
        f.shape[-1]
        for f in make_reward_model("adversarial-projected", 8, 32).discriminator.depth_features(
            torch.rand(2, 3, 32, 32)
        )
    ]
    assert sides == [32, 16, 8]


def test_projected_state_refuses_other_backbones() -> None:
    state = AdversarialReward(8, 16, architecture="projected").state_dict()
    with pytest.raises(
        InvalidArgument, match=r"for backbones \['reward-classifier'\], this reward uses \['var-tokenizer'\]"
    ):
        make_reward_model("adversarial-projected-tokenizer", 8, 16).load_state_dict(state)
