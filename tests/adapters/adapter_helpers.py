"""What the diffusers adapter tests share: tiny decoders, prompt tables and pipeline directories, altered copies of a
directory, a zero-action episode, and the checker and two-update PPO run on an adapted model.

Imported by name from the test modules of this directory (pytest puts it on `sys.path`); importing it needs no
diffusers (the tests that import it skip without it)."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from gymnasium.utils.env_checker import check_env

from adagen_env.adapters.common import PROMPTS_FILE, PromptTable

DECODER_LAYOUT = dict(
    block_out_channels=(8, 16),
    down_block_types=("DownEncoderBlock2D",) * 2,
    up_block_types=("UpDecoderBlock2D",) * 2,
    norm_num_groups=4,
    sample_size=16,
)
"""The tiny VAEs' layout: two levels (latents at half the 16 px images' side)."""


def tiny_decoder(cls: type, seed: int, **config) -> torch.nn.Module:
    """A random-init diffusers `AutoencoderKL` or `VQModel` of `DECODER_LAYOUT`, with `config` on top."""
    torch.manual_seed(seed)
    return cls(**{**DECODER_LAYOUT, **config})


def tiny_prompt_table(num_prompts: int, seed: int, tokens: int, width: int, pooled: int) -> PromptTable:
    """Stand-ins for the text encoders' outputs; the empty prompt's embedding is not zero, as a real one is not."""
    g = torch.Generator().manual_seed(seed)
    return PromptTable(
        torch.randn(num_prompts, tokens, width, generator=g),
        torch.randn(num_prompts, pooled, generator=g),
        torch.randn(tokens, width, generator=g),
        torch.randn(pooled, generator=g),
    )


def save_components(root: Path, prompts: PromptTable | None = None, **folders) -> Path:
    """Each diffusers object's `save_pretrained` into its folder of `root` (diffusers' pipeline layout), then the
    prompt table, if any, as `prompts.safetensors`."""
    for folder, component in folders.items():
        component.save_pretrained(root / folder)
    if prompts is not None:
        prompts.save(root / PROMPTS_FILE)
    return root


def junk_directory(root: Path) -> Path:
    """A folder holding one text file: not a diffusers model."""
    root.mkdir()
    (root / "notes.txt").write_text("hello")
    return root


def copy_with_class(source: Path, dest: Path, class_name: str) -> Path:
    """A copy of the pipeline directory `source` whose `transformer/config.json` names `class_name`."""
    shutil.copytree(source, dest)
    config_path = dest / "transformer" / "config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "_class_name": class_name}))
    return dest


def copy_without(source: Path, dest: Path, name: str) -> Path:
    """A copy of the pipeline directory `source` without its folder or file `name`."""
    shutil.copytree(source, dest)
    if (dest / name).is_dir():
        shutil.rmtree(dest / name)
    else:
        (dest / name).unlink()
    return dest


def copy_without_weights(source: Path, dest: Path, folder: str) -> Path:
    """A copy of the pipeline directory `source` whose `folder` has its config but no weights."""
    shutil.copytree(source, dest)
    for path in (dest / folder).glob("*.safetensors"):
        path.unlink()
    return dest


def other_family_dit(in_channels: int) -> torch.nn.Module:
    """A one-block class-conditional diffusers `DiTTransformer2DModel`: the transformer of another family."""
    import diffusers

    return diffusers.DiTTransformer2DModel(
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=in_channels,
        num_layers=1,
        sample_size=8,
        patch_size=2,
        num_embeds_ada_norm=10,
    )


def zero_action_images(
    env_id: str, generator, num_steps: int, sampler_kwargs: dict, labels: list[int], seed: int
) -> np.ndarray:
    """The final images of one episode of the vector env `env_id` (one lane per label) under zero actions."""
    envs = gym.make_vec(
        env_id,
        num_envs=len(labels),
        generator=generator,
        num_steps=num_steps,
        sampler_kwargs=sampler_kwargs,
        reward_model=None,
        return_images=True,
    )
    envs.reset(seed=seed, options={"labels": labels})
    for _ in range(envs.horizon):
        _, _, terminated, _, info = envs.step(np.zeros((len(labels), len(envs.controlled)), np.float32))
    assert terminated.all()
    return info["final_images"]


def check_single_lane_env(env_cls: type, model, num_steps: int, sampler_cls: type) -> None:
    """The single-lane env on `model` builds a `sampler_cls` of the shapes data's 8 classes and passes the checker."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the single-lane env's advice to train on the batched one
        env = env_cls(generator=model, num_steps=num_steps)
    assert isinstance(env.sampler, sampler_cls) and env.sampler.num_classes == 8
    check_env(env, skip_render_check=True)


def train_two_ppo_updates(tmp_path: Path, env_id: str, vector_env_cls: type, sampler) -> None:
    """`agents.train` runs two Stable-Baselines3 PPO updates on `vector_env_cls` lanes over `sampler` and writes its
    checkpoint."""
    from agents.train import Args, train

    def make(num_envs, reward_model, return_images, generator=None, group_size=1):
        return vector_env_cls(
            num_envs=num_envs,
            generator=generator or sampler,
            reward_model=reward_model,
            return_images=return_images,
            group_size=group_size,
        )

    args = Args(
        env=env_id,
        num_envs=2,
        total_updates=2,
        checkpoint_every=1,
        eval_every=0,
        logdir=str(tmp_path / "runs"),
        progress_bar=False,
        algo_kwargs={"n_epochs": 1, "episodes_per_update": 1},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        out = train(args, make)
    assert out["updates"] == 2 and Path(out["checkpoint"]).is_file()
