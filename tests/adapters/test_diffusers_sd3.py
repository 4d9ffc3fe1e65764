"""The diffusers SD3 adapter is the real model: with a zero action the env's images equal the loop of
`StableDiffusion3Pipeline` (its `FlowMatchEulerDiscreteScheduler`, classifier-free guidance against the empty prompt,
VAE scaling and shift) for the same noise, prompt embeddings, sigmas and guidance; the env passes the checkers and
trains; every mismatch is refused by name. The pipeline itself needs the text encoders' `transformers` package, so its
loop is written out here with the prompt embeddings passed directly. Tiny random-init models are built here."""

from __future__ import annotations

from pathlib import Path

import adapter_helpers as helpers  # tests/adapters/adapter_helpers.py
import numpy as np
import pytest
import torch

diffusers = pytest.importorskip("diffusers", reason="the diffusers adapters need the diffusers extra")

import adagen_env  # noqa: E402,F401  (registers the ids)
from adagen_env.adapters import load_pretrained  # noqa: E402
from adagen_env.adapters.common import PromptTable  # noqa: E402
from adagen_env.adapters.diffusers_sd3 import DiffusersSD3, DiffusersSD3Sampler  # noqa: E402
from adagen_env.envs import DiTVectorEnv, SiTEnv, SiTVectorEnv  # noqa: E402
from adagen_env.errors import CheckpointError, InvalidArgument  # noqa: E402
from adagen_env.samplers import make_generator  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

TOLERANCE = 1e-5
"""Largest allowed pixel difference (images in [0, 1]) from diffusers' result: float32 rounding only."""
LATENT = (16, 8, 8)


def tiny_transformer(seed: int = 0, **overrides) -> diffusers.SD3Transformer2DModel:
    """An SD3-medium-shaped MMDiT in miniature: 16 latent channels, patch 2, joint attention over prompt tokens."""
    torch.manual_seed(seed)
    config = dict(
        sample_size=8,
        patch_size=2,
        in_channels=16,
        out_channels=16,
        num_layers=2,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=12,
        caption_projection_dim=16,
        pooled_projection_dim=10,
        pos_embed_max_size=6,
    )
    return diffusers.SD3Transformer2DModel(**{**config, **overrides})


def tiny_vae(seed: int = 1, **overrides) -> diffusers.AutoencoderKL:
    """SD3's VAE layout in miniature: 16 latent channels, its scaling and shift factors."""
    config = {"latent_channels": 16, "scaling_factor": 1.5305, "shift_factor": 0.0609}
    return helpers.tiny_decoder(diffusers.AutoencoderKL, seed, **{**config, **overrides})


def tiny_prompts(
    num_prompts: int = 3, seed: int = 2, tokens: int = 5, width: int = 12, pooled: int = 10
) -> PromptTable:
    """Stand-ins for the text encoders' outputs (token width 12, pooled width 10)."""
    return helpers.tiny_prompt_table(num_prompts, seed, tokens, width, pooled)


def save_pipeline(root: Path, transformer=None, vae=None, scheduler=None, prompts=None) -> Path:
    """A diffusers pipeline directory as the hub's SD3-medium lays it out (minus the text encoders), with the table."""
    return helpers.save_components(
        root,
        prompts or tiny_prompts(),
        transformer=transformer or tiny_transformer(),
        vae=vae or tiny_vae(),
        scheduler=scheduler or diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0),
    )


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return save_pipeline(tmp_path_factory.mktemp("sd3"))


@pytest.fixture(scope="module")
def tiny_model(tiny_dir) -> DiffusersSD3:
    return DiffusersSD3.from_pretrained(tiny_dir)


def _zero_action_images(generator, num_steps: int, cfg_scale, labels: list[int], seed: int, solver: str = "ddim"):
    kwargs = {"cfg_scale": cfg_scale, "solver": solver}
    return helpers.zero_action_images("AdaGen/SiT-v0", generator, num_steps, kwargs, labels, seed)


def sd3_loop(
    model: DiffusersSD3,
    scheduler,
    labels: list[int],
    seed: int,
    guidance_scale: float,
    num_steps: int | None = None,
    sigmas: list[float] | None = None,
) -> torch.Tensor:
    """`StableDiffusion3Pipeline.__call__`'s denoising loop and decoding with `prompt_embeds` passed directly."""
    prompts = model.prompt_embeds[:-1], model.pooled_prompt_embeds[:-1]
    null = model.prompt_embeds[-1], model.pooled_prompt_embeds[-1]
    embeds, pooled = prompts[0][labels], prompts[1][labels]
    guided = guidance_scale > 1
    if guided:  # the pipeline's order: negative (here the empty prompt's), then positive
        embeds = torch.cat([null[0].expand_as(embeds), embeds])
        pooled = torch.cat([null[1].expand_as(pooled), pooled])
    scheduler.set_timesteps(num_steps, sigmas=sigmas)
    latents = torch.randn((len(labels), *LATENT), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        for t in scheduler.timesteps:
            model_input = torch.cat([latents] * 2) if guided else latents
            noise_pred = model.transformer(
                hidden_states=model_input,
                timestep=t.expand(model_input.shape[0]),
                encoder_hidden_states=embeds,
                pooled_projections=pooled,
                return_dict=False,
            )[0]
            if guided:
                uncond, text = noise_pred.chunk(2)
                noise_pred = uncond + guidance_scale * (text - uncond)
            latents = scheduler.step(noise_pred, t, latents, return_dict=False)[0]
        latents = latents / model.vae.config.scaling_factor + model.vae.config.shift_factor
        image = model.vae.decode(latents, return_dict=False)[0]
    return (image / 2 + 0.5).clamp(0, 1)  # VaeImageProcessor.postprocess's denormalisation


@pytest.mark.parametrize(
    ("shift", "num_steps", "guidance_scale"),
    [
        (3.0, 4, 7.0),  # SD3's shift and default guidance
        (3.0, 7, 1.0),  # guidance_scale 1: no guidance (cfg_scale None)
        (1.0, 5, 3.5),  # unshifted sigmas
    ],
)
def test_zero_action_images_equal_the_sd3_scheduler_loop(
    tiny_dir, tiny_model, shift, num_steps, guidance_scale
) -> None:
    labels, seed = [2, 0, 1], 7
    cfg = None if guidance_scale == 1.0 else guidance_scale - 1  # ours: cond + w (cond - uncond); diffusers' s = w + 1
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler(shift=shift)
    model = DiffusersSD3(tiny_model.transformer, tiny_model.vae, tiny_prompts(), scheduler)
    ours = _zero_action_images(model, num_steps, cfg, labels, seed)
    reference = sd3_loop(model, scheduler, labels, seed, guidance_scale, num_steps=num_steps).numpy()
    assert ours.shape == reference.shape == (3, 3, 16, 16)
    assert reference.std() > 0.05  # a real image, not a constant one
    assert np.abs(ours - reference).max() < TOLERANCE


def test_the_directorys_scheduler_is_the_baseline_and_a_directory_is_a_generator(tiny_dir, tiny_model) -> None:
    labels = [1, 2]
    by_path = _zero_action_images(str(tiny_dir), 4, 6.0, labels, 0)
    by_model = _zero_action_images(tiny_model, 4, 6.0, labels, 0)
    assert np.array_equal(by_path, by_model)
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler.from_pretrained(tiny_dir, subfolder="scheduler")
    reference = sd3_loop(tiny_model, scheduler, labels, 0, 7.0, num_steps=4).numpy()
    assert np.abs(by_model - reference).max() < TOLERANCE
    sampler = SiTVectorEnv(num_envs=1, generator=tiny_model, num_steps=4, reward_model=None).sampler
    assert isinstance(sampler, DiffusersSD3Sampler)
    assert sampler.solver == "ddim" and sampler.cfg_scale == 6.0  # SD3's Euler and guidance 7
    assert torch.allclose(sampler.baseline_schedule()[:, 0], 1 - scheduler.sigmas, atol=1e-6)
    assert sampler.min_gap < 0.2 / 4  # the shifted grid's last step (sigma 0.009 -> 0) is below the usual gap


def test_a_policy_like_schedule_equals_the_scheduler_on_the_same_sigmas(tiny_model) -> None:
    """Uneven times (what a policy picks): Euler with custom sigmas agrees; DPM-Solver++(2M) does not."""
    sigmas, labels, seed, guidance_scale = [1.0, 0.9, 0.55, 0.4, 0.1], [0, 2], 3, 4.0
    sampler = DiffusersSD3Sampler(tiny_model, num_steps=len(sigmas), cfg_scale=guidance_scale - 1)
    times = 1 - torch.tensor([*sigmas, 0.0])
    schedule = torch.stack([times, torch.full_like(times, guidance_scale - 1)], dim=-1)
    ours = sampler.sample(torch.tensor(labels), make_generator(seed), schedule)
    unshifted = diffusers.FlowMatchEulerDiscreteScheduler(shift=1.0)  # set_timesteps shifts custom sigmas too
    reference = sd3_loop(tiny_model, unshifted, labels, seed, guidance_scale, sigmas=sigmas)
    assert (ours - reference).abs().max() < TOLERANCE
    second_order = DiffusersSD3Sampler(
        tiny_model, num_steps=len(sigmas), solver="dpmpp2m", cfg_scale=guidance_scale - 1
    )
    other = second_order.sample(torch.tensor(labels), make_generator(seed), schedule)
    assert (other - reference).abs().max() > 100 * TOLERANCE


def test_features_are_a_blocks_image_tokens_pooled_to_a_fixed_grid(tiny_model) -> None:
    x, t, y = torch.randn(2, *LATENT), torch.tensor([0.25, 0.75]), torch.tensor([1, 3])  # 3: the empty prompt
    seen = {}
    hook = tiny_model.transformer.transformer_blocks[-1].register_forward_hook(lambda m, a, out: seen.update(out=out))
    try:
        velocity, features = tiny_model(x, t, y)
    finally:
        hook.remove()
    tokens = seen["out"][1]  # (B, N, D) = (2, 16, 16); the last block returns no context tokens
    assert seen["out"][0] is None and features.shape == (2, 16, 4, 4)
    assert torch.allclose(features, tokens.transpose(1, 2).reshape(2, 16, 4, 4))
    embeds, pooled = tiny_prompts().stacked()
    direct = tiny_model.transformer(
        x, encoder_hidden_states=embeds[y], pooled_projections=pooled[y], timestep=torch.tensor([750.0, 250.0])
    ).sample
    assert torch.equal(velocity, -direct)  # the linear path's velocity x - noise is minus SD3's noise - x
    first = DiffusersSD3(tiny_model.transformer, tiny_model.vae, tiny_prompts(), feature_block=0, feature_grid=2)
    _, small = first(x, t, y)
    assert small.shape == (2, 16, 2, 2) and not torch.allclose(small, torch.nn.functional.avg_pool2d(features, 2))


def test_bfloat16_models_sample_in_float32_state(tiny_dir, tiny_model) -> None:
    half = DiffusersSD3.from_pretrained(tiny_dir, dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16 and next(half.vae.parameters()).dtype == torch.bfloat16
    labels = torch.tensor([0, 1])
    images = DiffusersSD3Sampler(half, num_steps=3).sample(labels, make_generator(0))
    full = DiffusersSD3Sampler(tiny_model, num_steps=3).sample(labels, make_generator(0))
    assert images.dtype == torch.float32 and (images - full).abs().max() < 0.05


def test_the_prompt_table_round_trips_and_checks_its_shapes(tmp_path) -> None:
    table = tiny_prompts()
    table.save(tmp_path / "p.safetensors")
    back = PromptTable.load(tmp_path / "p.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(table.stacked(), back.stacked(), strict=True))
    with pytest.raises(InvalidArgument, match=r"empty prompt's embeddings must be \(5, 12\) and \(10,\)"):
        PromptTable(table.embeds, table.pooled, table.null_embeds[:4], table.null_pooled)
    with pytest.raises(InvalidArgument, match="same C >= 1"):
        PromptTable(table.embeds, table.pooled[:2], table.null_embeds, table.null_pooled)
    (tmp_path / "junk.safetensors").write_text("hello")
    with pytest.raises(CheckpointError, match="cannot read the prompt table"):
        PromptTable.load(tmp_path / "junk.safetensors")


@pytest.fixture(scope="module")
def shapes_model() -> DiffusersSD3:
    """The tiny SD3 with 8 prompts, the shapes data's class count, so the default discriminator can reward it."""
    return DiffusersSD3(tiny_transformer(), tiny_vae(), tiny_prompts(num_prompts=8))


def test_the_single_lane_env_passes_the_checker(shapes_model) -> None:
    helpers.check_single_lane_env(SiTEnv, shapes_model, 2, DiffusersSD3Sampler)


def test_two_ppo_updates_train_on_the_adapter(tmp_path, shapes_model) -> None:
    sampler = DiffusersSD3Sampler(shapes_model, num_steps=2)
    helpers.train_two_ppo_updates(tmp_path, "AdaGen/SiT-v0", SiTVectorEnv, sampler)


# -- refusals --------------------------------------------------------------------------------------


def test_directories_that_are_not_an_sd3_pipeline_are_refused(tmp_path, tiny_dir) -> None:
    with pytest.raises(CheckpointError, match="does not exist or is not a directory"):
        DiffusersSD3.from_pretrained(tmp_path / "nowhere")
    junk = helpers.junk_directory(tmp_path / "junk")
    with pytest.raises(CheckpointError, match=r"not a diffusers model directory.*notes\.txt.*SD3Transformer2DModel"):
        DiffusersSD3.from_pretrained(junk)
    dit = helpers.copy_with_class(tiny_dir, tmp_path / "dit", "DiTTransformer2DModel")
    with pytest.raises(
        CheckpointError,
        match=r"holds a DiTTransformer2DModel, another model family \(AdaGen/DiT-v0 "
        r"serves it\); the SD3 adapter takes an SD3Transformer2DModel",
    ):
        SiTVectorEnv(num_envs=1, generator=str(dit), reward_model=None)
    no_vae = helpers.copy_without(tiny_dir, tmp_path / "no_vae", "vae")
    with pytest.raises(CheckpointError, match=r"missing VAE \(no vae/config\.json\)"):
        DiffusersSD3.from_pretrained(no_vae)
    no_prompts = helpers.copy_without(tiny_dir, tmp_path / "no_prompts", "prompts.safetensors")
    with pytest.raises(CheckpointError, match=r"no prompt table .*save a PromptTable as prompts\.safetensors"):
        DiffusersSD3.from_pretrained(no_prompts)
    assert DiffusersSD3.from_pretrained(no_prompts, prompts=tiny_dir / "prompts.safetensors").config.num_classes == 3
    ddim = helpers.copy_without(tiny_dir, tmp_path / "ddim", "scheduler")
    diffusers.DDIMScheduler().save_pretrained(ddim / "scheduler")
    with pytest.raises(CheckpointError, match="scheduler DDIMScheduler is not a FlowMatchEulerDiscreteScheduler"):
        load_pretrained(ddim, paradigm="flow")


def test_latent_shapes_and_prompts_the_env_cannot_serve_are_refused(tmp_path) -> None:
    wide_vae = save_pipeline(tmp_path / "wide", vae=tiny_vae(latent_channels=4))
    with pytest.raises(
        CheckpointError, match="latent shape not served: the transformer takes 16 latent channels, the VAE makes 4"
    ):
        DiffusersSD3.from_pretrained(wide_vae)
    with pytest.raises(InvalidArgument, match="latent shape not served: the transformer outputs 8 channels"):
        DiffusersSD3(tiny_transformer(out_channels=8), tiny_vae(), tiny_prompts())
    with pytest.raises(
        InvalidArgument, match="latent shape not served: sample_size 9 is not a multiple of patch_size 2"
    ):
        DiffusersSD3(tiny_transformer(sample_size=9), tiny_vae(), tiny_prompts())
    with pytest.raises(
        InvalidArgument,
        match=r"latent shape not served: the 8x8 token grid exceeds the positional "
        r"embedding's 6x6",
    ):
        DiffusersSD3(tiny_transformer(sample_size=16), tiny_vae(), tiny_prompts())
    with pytest.raises(
        InvalidArgument,
        match=r"prompt embeddings of widths \(tokens 7, pooled 10\); the SD3 "
        r"transformer \(joint_attention_dim, pooled_projection_dim\) takes \(12, 10\)",
    ):
        DiffusersSD3(tiny_transformer(), tiny_vae(), tiny_prompts(width=7))
    with pytest.raises(InvalidArgument, match=r"feature_grid must be an int in \[1, 4\]"):
        DiffusersSD3(tiny_transformer(), tiny_vae(), tiny_prompts(), feature_grid=5)


def test_objects_of_another_family_or_a_missing_vae_are_refused(tiny_model) -> None:
    dit = helpers.other_family_dit(in_channels=16)
    with pytest.raises(InvalidArgument, match="must be a diffusers SD3Transformer2DModel, got DiTTransformer2DModel"):
        DiffusersSD3(dit, tiny_vae(), tiny_prompts())
    with pytest.raises(InvalidArgument, match="missing VAE"):
        DiffusersSD3(tiny_transformer(), None, tiny_prompts())
    with pytest.raises(InvalidArgument, match="prompts must be a PromptTable"):
        DiffusersSD3(tiny_transformer(), tiny_vae(), torch.zeros(3, 5, 12))
    with pytest.raises(InvalidArgument, match="scheduler option use_dynamic_shifting=True"):
        DiffusersSD3(
            tiny_transformer(),
            tiny_vae(),
            tiny_prompts(),
            diffusers.FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True),
        )
    with pytest.raises(InvalidArgument, match="is a 'flow' model; this env needs 'diffusion'"):
        DiTVectorEnv(num_envs=1, generator=tiny_model, reward_model=None)
