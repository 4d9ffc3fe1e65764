"""`--generator` and `--real-data` of `adagen train` (and `--generator` of `adagen eval` / `adagen bench`): another
generator than the env's zoo default, and the online discriminator's real images.

A checkpoint's metadata is JSON, so it records the generator as `generator_source` spells it (a zoo name, or an
absolute path), never the model; resume and eval load it again from there, and the recorded `generator_digest`
checks that the weights found there are the ones the policy was trained on. Loading a diffusers directory imports
diffusers only then (`adagen_env.adapters`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from adagen_env.errors import CheckpointError, DatasetError
from agents.names import ZOO_NAMES


def generator_source(value: str | Path | None) -> str | None:
    """`--generator` as a checkpoint records it: a zoo name as given, a `.safetensors` file or a diffusers directory
    as an absolute path; None stays None (the env's zoo default).

    Raises:
        CheckpointError: a path that does not exist, or a file that is not `.safetensors`.
    """
    if value is None:
        return None
    if str(value) in ZOO_NAMES:
        return str(value)
    path = Path(value).expanduser()
    if not path.exists():
        raise CheckpointError(
            f"generator {str(value)!r} does not exist: --generator takes a local diffusers model directory "
            "(diffusers' from_pretrained layout, docs/diffusers.md), a .safetensors file or a zoo name"
        )
    if path.is_file() and path.suffix != ".safetensors":
        raise CheckpointError(
            f"generator {str(value)!r} is a file, not a diffusers model directory or a .safetensors file"
        )
    return str(path.resolve())


def real_reward(name: str, sampler: Any, folder: str | Path, device: Any) -> Any:
    """The reward model `name` over `sampler`'s classes and image side, its discriminator's reals drawn from the
    image folder `folder` (`adagen_env.data.ImageFolderDataset`: one sub-folder per class, in label order, each
    image resized to the generated images' side).

    Raises:
        DatasetError: the folder is missing, empty or has another number of classes than the generator.
        InvalidArgument: a reward model that takes no real data (`adagen_env.rewards.REAL_DATA_REWARDS`).
    """
    from adagen_env.data import ImageFolderDataset
    from adagen_env.rewards import make_reward_model

    resolution = sampler.image_shape[-1]
    data = ImageFolderDataset(folder, resolution)
    if data.num_classes != sampler.num_classes:
        raise DatasetError(
            f"--real-data {str(folder)!r} has {data.num_classes} class folders; the generator has "
            f"{sampler.num_classes} classes (one sub-folder per class, in label order: sorted names)"
        )
    return make_reward_model(name, sampler.num_classes, resolution, device, real_data=data)


__all__ = ["generator_source", "real_reward"]
