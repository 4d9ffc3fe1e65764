"""The image-folder dataset: reading users' images, and errors that name the offending path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from adagen_env.data import ImageFolderDataset
from adagen_env.errors import DatasetError

PIL = pytest.importorskip("PIL.Image")


def write_image(path: Path, size: tuple[int, int], colour: tuple[int, int, int]) -> None:
    array = np.zeros((size[1], size[0], 3), dtype=np.uint8) + np.array(colour, dtype=np.uint8)
    PIL.fromarray(array).save(path)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Two classes: 'blue' (2 images) and 'red' (3 images, one a JPEG, of different sizes)."""
    root = tmp_path / "data"
    (root / "red").mkdir(parents=True)
    (root / "blue").mkdir()
    for i, size in enumerate([(10, 10), (20, 12), (7, 7)]):
        write_image(root / "red" / f"r{i}.png", size, (255, 0, 0))
    write_image(root / "red" / "r3.jpg", (16, 16), (250, 5, 5))
    for i in range(2):
        write_image(root / "blue" / f"b{i}.png", (16, 16), (0, 0, 255))
    (root / "notes.txt").write_text("a stray file next to the class folders is ignored")
    (root / "blue" / "readme.md").write_text("ignored too")
    return root


def test_reads_classes_and_images(folder):
    data = ImageFolderDataset(folder, resolution=8)
    assert data.class_names == ("blue", "red")
    assert data.num_classes == 2 and len(data) == 6
    images, labels = data.sample(10, seed=0)
    assert images.shape == (10, 3, 8, 8) and images.dtype == torch.float32
    assert images.min() >= 0 and images.max() <= 1
    # Colour follows the label: blue images have blue > red, red images the reverse.
    blue, red = images[:, 2].mean(dim=(1, 2)), images[:, 0].mean(dim=(1, 2))
    assert torch.equal(labels == 0, blue > red)


def test_labels_respected_and_deterministic(folder):
    data = ImageFolderDataset(folder, resolution=8)
    wanted = torch.tensor([1, 1, 0, 1, 0])
    a, la = data.sample(5, seed=1, labels=wanted)
    b, lb = data.sample(5, seed=1, labels=wanted)
    assert torch.equal(la, wanted) and torch.equal(a, b) and torch.equal(la, lb)


def test_missing_folder_names_the_path(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetError, match=str(missing)):
        ImageFolderDataset(missing, resolution=8)


def test_folder_without_classes_names_the_path(tmp_path):
    (tmp_path / "flat").mkdir()
    write_image(tmp_path / "flat" / "x.png", (8, 8), (1, 2, 3))
    with pytest.raises(DatasetError, match="no class sub-folders"):
        ImageFolderDataset(tmp_path / "flat", resolution=8)


def test_empty_class_names_the_class_folder(folder):
    (folder / "green").mkdir()
    (folder / "green" / "not_an_image.txt").write_text("x")
    with pytest.raises(DatasetError, match=str(folder / "green")):
        ImageFolderDataset(folder, resolution=8)


def test_unreadable_image_names_the_file(folder):
    broken = folder / "blue" / "broken.png"
    broken.write_bytes(b"this is not a png")
    data = ImageFolderDataset(folder, resolution=8)  # files are read lazily, so construction succeeds
    index = [path for path, _ in data.files].index(broken)
    with pytest.raises(DatasetError, match=str(broken)):
        data.load(index)
    # Drawing 64 blue images (of 3 files) surely reaches the broken one.
    with pytest.raises(DatasetError, match=str(broken)):
        data.sample(64, labels=torch.zeros(64, dtype=torch.long), seed=0)


def test_label_outside_the_classes_raises(folder):
    data = ImageFolderDataset(folder, resolution=8)
    with pytest.raises(DatasetError, match="label 2"):
        data.sample(2, labels=torch.tensor([0, 2]), seed=0)
