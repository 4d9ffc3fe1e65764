"""The procedural shapes dataset: determinism, shapes and range, labels, seeds, argument errors."""

from __future__ import annotations

import pytest
import torch

from adagen_env.data import SHAPE_CLASSES, ShapesDataset
from adagen_env.errors import InvalidArgument


@pytest.mark.parametrize("resolution", [8, 16, 33])
def test_shapes_dtype_and_range(resolution):
    images, labels = ShapesDataset(resolution).sample(12, seed=0)
    assert images.shape == (12, 3, resolution, resolution)
    assert images.dtype == torch.float32
    assert images.min() >= 0 and images.max() <= 1
    assert labels.shape == (12,) and labels.dtype == torch.int64
    assert labels.min() >= 0 and labels.max() < len(SHAPE_CLASSES)


def test_same_seed_same_images():
    data = ShapesDataset(16)
    a, la = data.sample(10, seed=3)
    b, lb = data.sample(10, seed=3)
    assert torch.equal(a, b) and torch.equal(la, lb)
    # A generator seeded the same way draws the same batch; it is advanced in place.
    g = torch.Generator().manual_seed(3)
    c, lc = data.sample(10, generator=g)
    assert torch.equal(a, c) and torch.equal(la, lc)
    d, _ = data.sample(10, generator=g)
    assert not torch.equal(c, d)


def test_different_seeds_differ():
    data = ShapesDataset(16)
    a, _ = data.sample(8, seed=0, labels=torch.zeros(8, dtype=torch.long))
    b, _ = data.sample(8, seed=1, labels=torch.zeros(8, dtype=torch.long))
    assert not torch.equal(a, b)
    # Within a batch no two images are the same.
    flat = a.flatten(1)
    assert torch.cdist(flat, flat).add(torch.eye(8) * 1e9).min() > 0


def test_labels_are_respected():
    data = ShapesDataset(16, num_classes=5)
    wanted = torch.tensor([4, 0, 3, 3, 1, 2, 0])
    images, labels = data.sample(7, seed=0, labels=wanted)
    assert torch.equal(labels, wanted)
    # Same seed, other labels: other shapes (the per-image parameters are drawn identically).
    other, _ = data.sample(7, seed=0, labels=(wanted + 1) % 5)
    assert not torch.equal(images, other)
    # Labels given as a list work too.
    _, from_list = data.sample(3, seed=0, labels=[1, 1, 2])
    assert from_list.tolist() == [1, 1, 2]


def test_random_labels_cover_all_classes():
    data = ShapesDataset(8, num_classes=3)
    _, labels = data.sample(300, seed=0)
    assert set(labels.tolist()) == {0, 1, 2}


def test_device_argument():
    images, labels = ShapesDataset(8).sample(2, seed=0, device="cpu")
    assert images.device.type == "cpu" and labels.device.type == "cpu"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"resolution": 4}, "resolution"),
        ({"resolution": 16.0}, "resolution"),
        ({"resolution": 16, "num_classes": 1}, "num_classes"),
        ({"resolution": 16, "num_classes": 9}, "num_classes"),
    ],
)
def test_bad_constructor_args_raise(kwargs, match):
    with pytest.raises(InvalidArgument, match=match):
        ShapesDataset(**kwargs)


@pytest.mark.parametrize(
    "labels, match",
    [
        (torch.zeros(3, dtype=torch.long), r"shape \(4,\)"),
        (torch.zeros(4, 1, dtype=torch.long), r"shape \(4,\)"),
        (torch.tensor([0, 1, 2, 4]), r"\[0, 4\)"),
        (torch.tensor([0, -1, 2, 3]), r"\[0, 4\)"),
    ],
)
def test_bad_labels_raise(labels, match):
    with pytest.raises(InvalidArgument, match=match):
        ShapesDataset(16, num_classes=4).sample(4, seed=0, labels=labels)
