"""The diffusers aMUSEd adapter is the real model: with a zero action the env decodes the same tokens, and so the same
images, as `AmusedPipeline`'s loop over `AmusedScheduler` (guidance against the empty prompt, the scheduler's mask
counts and re-mask temperatures, the VQ codebook lookup) for the same prompt embeddings, steps and guidance, when the
scheduler's two random draws are the env's; the env passes the checkers and trains; every mismatch is refused by name.

What is not compared bit for bit: the draws themselves. The scheduler samples tokens with `torch.multinomial` and
perturbs confidences with its `gumbel_noise`, both from one generator; the env samples by Gumbel-max (an exact
categorical draw) from per-lane streams. The reference loop below runs diffusers' scheduler with those two functions
replaced by readers of the env's streams (same law, same numbers); everything else in it is diffusers' code. The
pipeline itself needs `transformers` (CLIP), so its loop is written out with the prompt embeddings passed directly."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import adapter_helpers as helpers  # tests/adapters/adapter_helpers.py
import numpy as np
import pytest
import torch

diffusers = pytest.importorskip("diffusers", reason="the diffusers adapters need the diffusers extra")

import adagen_env  # noqa: E402,F401  (registers the ids)
from adagen_env.adapters.common import PromptTable  # noqa: E402
from adagen_env.adapters.diffusers_amused import DiffusersAmused, DiffusersAmusedSampler  # noqa: E402
from adagen_env.envs import MaskGITEnv, MaskGITVectorEnv, SiTVectorEnv  # noqa: E402
from adagen_env.errors import CheckpointError, InvalidArgument  # noqa: E402
from adagen_env.samplers import make_generator  # noqa: E402
from adagen_env.samplers.base import LaneNoise  # noqa: E402
from adagen_env.samplers.maskgit import MaskGITSampler  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

TOLERANCE = 1e-5
CODEBOOK, VOCAB, MASK_ID, GRID = 32, 40, 39, 8
"""aMUSEd's layout in miniature: codes 0 .. 31, embedding rows for 40 ids, the mask id the last of them (amused-256:
8192, 8256, 8255), an 8 x 8 token grid."""


def tiny_transformer(seed: int = 0, **overrides) -> diffusers.UVit2DModel:
    """amused-256's UVit2DModel in miniature: downsampling to a 4 x 4 grid for the transformer layers."""
    torch.manual_seed(seed)
    config = dict(
        hidden_size=16,
        use_bias=False,
        cond_embed_dim=12,
        micro_cond_encode_dim=2,
        micro_cond_embed_dim=10,
        encoder_hidden_size=12,
        vocab_size=VOCAB,
        codebook_size=CODEBOOK,
        in_channels=8,
        block_out_channels=8,
        num_res_blocks=1,
        downsample=True,
        upsample=True,
        block_num_heads=1,
        num_hidden_layers=2,
        num_attention_heads=1,
        intermediate_size=32,
        sample_size=GRID,
    )
    model = diffusers.UVit2DModel(**{**config, **overrides})
    for p in model.parameters():  # the response norms start at zero; give them weight so every path counts
        if p.abs().sum() == 0:
            torch.nn.init.normal_(p, std=0.5)
    return model


def tiny_vqvae(seed: int = 1, **overrides) -> diffusers.VQModel:
    config = {"latent_channels": 6, "num_vq_embeddings": CODEBOOK, "lookup_from_codebook": True}
    return helpers.tiny_decoder(diffusers.VQModel, seed, **{**config, **overrides})


def tiny_prompts(num_prompts: int = 3, seed: int = 2, width: int = 12) -> PromptTable:
    """Stand-ins for CLIP's penultimate hidden states (5 tokens) and its pooled `text_embeds`."""
    return helpers.tiny_prompt_table(num_prompts, seed, tokens=5, width=width, pooled=12)


def save_pipeline(root: Path, transformer=None, vqvae=None, scheduler=None, prompts=None) -> Path:
    """A diffusers pipeline directory as the hub's amused-256 lays it out (minus the text encoder), with the table."""
    return helpers.save_components(
        root,
        prompts or tiny_prompts(),
        transformer=transformer or tiny_transformer(),
        vqvae=vqvae or tiny_vqvae(),
        scheduler=scheduler or diffusers.AmusedScheduler(mask_token_id=MASK_ID),
    )


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return save_pipeline(tmp_path_factory.mktemp("amused"))


@pytest.fixture(scope="module")
def tiny_model(tiny_dir) -> DiffusersAmused:
    return DiffusersAmused.from_pretrained(tiny_dir)


@contextmanager
def env_draws(noise: LaneNoise, step: int, batch: int):
    """Inside `AmusedScheduler.step`: its token draw and its confidence noise read the env's streams of `step`."""
    from diffusers.schedulers import scheduling_amused

    def multinomial(probs, num_samples, generator=None):  # (B*N, V) -> (B*N, 1): Gumbel-max, the env's draw 0
        gumbel = noise.gumbel((batch, probs.shape[0] // batch, probs.shape[1]), step, 0, probs.device)
        return (probs.log() + gumbel.reshape(probs.shape)).argmax(dim=-1, keepdim=True)

    def gumbel_noise(t, generator=None):  # (B, N): the env's draw 1
        return noise.gumbel(tuple(t.shape), step, 1, t.device)

    with (
        mock.patch.object(scheduling_amused.torch, "multinomial", multinomial),
        mock.patch.object(scheduling_amused, "gumbel_noise", gumbel_noise),
    ):
        yield


def amused_loop(
    model: DiffusersAmused, scheduler, labels: list[int], seed: int, guidance_scale: float, num_steps: int, temperature
) -> tuple[torch.Tensor, torch.Tensor]:
    """`AmusedPipeline.__call__`'s loop and decoding with the prompt embeddings passed directly; (ids, images)."""
    b, resolution = len(labels), model.config.tokenizer.resolution
    embeds, pooled = model.prompt_embeds[labels], model.pooled_prompt_embeds[labels]
    guided = guidance_scale > 1.0
    if guided:  # the pipeline's order: negative (here the empty prompt's), then positive
        embeds = torch.cat([model.prompt_embeds[-1].expand_as(embeds), embeds])
        pooled = torch.cat([model.pooled_prompt_embeds[-1].expand_as(pooled), pooled])
    micro_conds = torch.tensor([resolution, resolution, 0, 0, 6], dtype=embeds.dtype)[None].expand(embeds.shape[0], -1)
    noise = LaneNoise.start(make_generator(seed), torch.device("cpu"))  # what the env's reset seeds its streams with
    latents = torch.full((b, GRID, GRID), scheduler.config.mask_token_id, dtype=torch.long)
    scheduler.set_timesteps(num_steps, temperature)
    with torch.no_grad():
        for i, timestep in enumerate(scheduler.timesteps):
            model_input = torch.cat([latents] * 2) if guided else latents
            out = model.transformer(
                model_input, micro_conds=micro_conds, pooled_text_emb=pooled, encoder_hidden_states=embeds
            )
            if guided:
                uncond, cond = out.chunk(2)
                out = uncond + guidance_scale * (cond - uncond)
            with env_draws(noise, i, b):
                latents = scheduler.step(model_output=out, timestep=timestep, sample=latents).prev_sample
        images = model.vqvae.decode(
            latents, force_not_quantize=True, shape=(b, GRID, GRID, model.vqvae.config.latent_channels)
        ).sample.clip(0, 1)
    return latents.flatten(1), images


def _zero_action(generator, num_steps: int, sampler_kwargs: dict, labels: list[int], seed: int) -> np.ndarray:
    return helpers.zero_action_images("AdaGen/MaskGIT-v0", generator, num_steps, sampler_kwargs, labels, seed)


def _final_ids(sampler, labels: list[int], seed: int) -> torch.Tensor:
    schedule = sampler.baseline_schedule()
    state = sampler.reset(torch.tensor(labels), make_generator(seed))
    for k in range(sampler.horizon):
        state = sampler.step(state, schedule[k].expand(len(labels), -1))
    return state.ids


@pytest.mark.parametrize(
    ("masking_schedule", "num_steps", "guidance_scale", "temperature"),
    [
        ("cosine", 4, 10.0, (2.0, 0.0)),  # aMUSEd's defaults but the step count
        ("cosine", 6, 1.0, 3.0),  # guidance_scale 1: no guidance; one temperature: linspace(3, 0.01)
        ("linear", 5, 4.0, (1.0, 0.5)),
    ],
)
def test_zero_action_tokens_and_images_equal_the_amused_scheduler_loop(
    tiny_model, masking_schedule, num_steps, guidance_scale, temperature
) -> None:
    labels, seed = [2, 0, 1], 11
    scheduler = diffusers.AmusedScheduler(mask_token_id=MASK_ID, masking_schedule=masking_schedule)
    model = DiffusersAmused(tiny_model.transformer, tiny_model.vqvae, tiny_prompts(), scheduler)
    kwargs = {"cfg_scale": None if guidance_scale == 1.0 else guidance_scale - 1, "remask_temp": temperature}
    ours = _zero_action(model, num_steps, kwargs, labels, seed)
    ids, reference = amused_loop(model, scheduler, labels, seed, guidance_scale, num_steps, temperature)
    assert ours.shape == tuple(reference.shape) == (3, 3, 16, 16) and reference.std() > 0.05
    assert np.abs(ours - reference.numpy()).max() < TOLERANCE
    sampler = DiffusersAmusedSampler(model, num_steps=num_steps, **kwargs)
    assert torch.equal(_final_ids(sampler, labels, seed), ids)
    # The comparison sees the schedule and the draws: the shipped MaskGIT baseline, or other draws, decode otherwise.
    assert not torch.equal(_final_ids(MaskGITSampler(model, num_steps=num_steps), labels, seed), ids)
    assert not torch.equal(
        amused_loop(model, scheduler, labels, seed + 1, guidance_scale, num_steps, temperature)[0], ids
    )


def test_the_baseline_is_the_schedulers_mask_counts_and_temperatures(tiny_model) -> None:
    sampler = DiffusersAmusedSampler(tiny_model, num_steps=4)
    schedule = sampler.baseline_schedule()
    n = GRID * GRID  # cos(pi/2 (k + 1) / 4) * 64 = 59.1, 45.3, 24.5, then every token decoded
    state = sampler.reset(torch.tensor([0]), make_generator(0))
    counts = []
    for k in range(4):
        state = sampler.step(state, schedule[k][None])
        counts.append(int((state.ids == MASK_ID).sum()))
    assert counts == [59, 45, 24, 0] and n == 64
    assert torch.allclose(schedule[:3, 1], torch.tensor([2.0, 4 / 3, 2 / 3]), atol=1e-5)  # linspace(2, 0, 4)
    assert torch.allclose(schedule[:, 2], torch.ones(4), atol=1e-5)  # the scheduler samples at temperature 1
    assert torch.allclose(schedule[:, 3], torch.full((4,), 9.0), atol=1e-5)  # guidance 10, constant
    assert sampler.config()["remask_temp"] == (2.0, 0.0)


def test_a_diffusers_directory_is_a_generator_of_the_maskgit_env(tiny_dir, tiny_model) -> None:
    labels = [1, 2]
    assert np.array_equal(_zero_action(str(tiny_dir), 3, {}, labels, 0), _zero_action(tiny_model, 3, {}, labels, 0))
    envs = MaskGITVectorEnv(num_envs=2, generator=tiny_model, num_steps=3, reward_model=None)
    assert isinstance(envs.sampler, DiffusersAmusedSampler)
    obs, _ = envs.reset(seed=0, options={"labels": labels})
    assert obs["features"].shape == (2, 16, 4, 4) and obs["features"].any()  # step 0's conditional pass
    assert envs.sampler.image_shape == (3, 16, 16) and envs.sampler.num_classes == 3
    assert envs.sampler.episode_nfe == 3 * 2
    assert envs.sampler.intermediate(envs._state).shape == (2, 3, 16, 16)


def test_logits_features_and_decoding_are_the_models(tiny_model) -> None:
    ids = torch.randint(0, CODEBOOK, (2, GRID * GRID), generator=torch.Generator().manual_seed(0))
    ids[:, ::3] = MASK_ID
    labels = torch.tensor([0, 3])  # 3: the empty prompt
    seen = {}
    hook = tiny_model.transformer.transformer_layers[-1].register_forward_hook(lambda m, a, out: seen.update(out=out))
    try:
        logits, features = tiny_model(ids, labels)
    finally:
        hook.remove()
    embeds, pooled = tiny_prompts().stacked()
    micro = torch.tensor([[16.0, 16, 0, 0, 6]] * 2)
    direct = tiny_model.transformer(
        ids.reshape(2, GRID, GRID),
        micro_conds=micro,
        pooled_text_emb=pooled[labels],
        encoder_hidden_states=embeds[labels],
    )  # (B, V, g, g)
    assert logits.shape == (2, GRID * GRID, CODEBOOK) and torch.equal(logits, direct.flatten(2).transpose(1, 2))
    tokens = seen["out"]  # (B, 16, 16): the downsampled 4 x 4 grid
    assert features.shape == (2, 16, 4, 4) and torch.allclose(features, tokens.transpose(1, 2).reshape(2, 16, 4, 4))
    codes = ids.clamp(max=CODEBOOK - 1)
    images = tiny_model.tokenizer.decode(codes)
    expected = tiny_model.vqvae.decode(
        codes.reshape(2, GRID, GRID), force_not_quantize=True, shape=(2, GRID, GRID, 6)
    ).sample.clip(0, 1)
    assert torch.equal(images, expected)
    first = DiffusersAmused(tiny_model.transformer, tiny_model.vqvae, tiny_prompts(), feature_block=0, feature_grid=2)
    assert first(ids, labels)[1].shape == (2, 16, 2, 2)


@pytest.fixture(scope="module")
def shapes_model() -> DiffusersAmused:
    """The tiny aMUSEd with 8 prompts, the shapes data's class count, so the default discriminator can reward it."""
    return DiffusersAmused(
        tiny_transformer(), tiny_vqvae(), tiny_prompts(num_prompts=8), diffusers.AmusedScheduler(mask_token_id=MASK_ID)
    )


def test_the_single_lane_env_passes_the_checker(shapes_model) -> None:
    helpers.check_single_lane_env(MaskGITEnv, shapes_model, 3, DiffusersAmusedSampler)


def test_two_ppo_updates_train_on_the_adapter(tmp_path, shapes_model) -> None:
    sampler = DiffusersAmusedSampler(shapes_model, num_steps=3)
    helpers.train_two_ppo_updates(tmp_path, "AdaGen/MaskGIT-v0", MaskGITVectorEnv, sampler)


# -- refusals --------------------------------------------------------------------------------------


def test_directories_that_are_not_an_amused_pipeline_are_refused(tmp_path, tiny_dir) -> None:
    with pytest.raises(CheckpointError, match="does not exist or is not a directory"):
        DiffusersAmused.from_pretrained(tmp_path / "nowhere")
    junk = helpers.junk_directory(tmp_path / "junk")
    with pytest.raises(CheckpointError, match=r"not a diffusers model directory.*notes\.txt.*UVit2DModel"):
        DiffusersAmused.from_pretrained(junk)
    single = tmp_path / "single"
    tiny_vqvae().save_pretrained(single)
    with pytest.raises(CheckpointError, match=r"single model's folder \(VQModel\), not a pipeline"):
        DiffusersAmused.from_pretrained(single)
    sd3 = helpers.copy_with_class(tiny_dir, tmp_path / "sd3", "SD3Transformer2DModel")
    with pytest.raises(
        CheckpointError,
        match=r"holds a SD3Transformer2DModel, another model family \(AdaGen/SiT-v0 "
        r"serves it\); the aMUSEd adapter takes aMUSEd's UVit2DModel",
    ):
        MaskGITVectorEnv(num_envs=1, generator=str(sd3), reward_model=None)
    no_vq = helpers.copy_without(tiny_dir, tmp_path / "no_vq", "vqvae")
    with pytest.raises(CheckpointError, match=r"missing VAE \(no vqvae/config\.json\); aMUSEd needs its VQModel"):
        DiffusersAmused.from_pretrained(no_vq)
    no_prompts = helpers.copy_without(tiny_dir, tmp_path / "no_prompts", "prompts.safetensors")
    with pytest.raises(CheckpointError, match="no prompt table"):
        DiffusersAmused.from_pretrained(no_prompts)
    no_weights = helpers.copy_without_weights(tiny_dir, tmp_path / "no_weights", "vqvae")
    with pytest.raises(CheckpointError, match="cannot load vqvae/ as VQModel"):
        DiffusersAmused.from_pretrained(no_weights)


def test_token_grids_and_prompts_the_env_cannot_serve_are_refused(tmp_path) -> None:
    unlooked = save_pipeline(tmp_path / "unlooked", vqvae=tiny_vqvae(lookup_from_codebook=False))
    with pytest.raises(CheckpointError, match=r"latent shape not served: the VQModel does not look token ids up"):
        DiffusersAmused.from_pretrained(unlooked)
    with pytest.raises(
        InvalidArgument,
        match="latent shape not served: the transformer predicts 32 codes, the VQModel's codebook has 64",
    ):
        DiffusersAmused(tiny_transformer(), tiny_vqvae(num_vq_embeddings=64), tiny_prompts())
    with pytest.raises(InvalidArgument, match="latent shape not served: a 7x7 token grid with downsample=True"):
        DiffusersAmused(tiny_transformer(sample_size=7), tiny_vqvae(), tiny_prompts())
    with pytest.raises(InvalidArgument, match=r"mask_token_id 12 must be a non-code id .* in \[32, 40\)"):
        DiffusersAmused(tiny_transformer(), tiny_vqvae(), tiny_prompts(), diffusers.AmusedScheduler(mask_token_id=12))
    with pytest.raises(InvalidArgument, match=r"prompt embeddings of widths \(tokens 7, pooled 12\); the UVit2DModel"):
        DiffusersAmused(tiny_transformer(), tiny_vqvae(), tiny_prompts(width=7))
    with pytest.raises(InvalidArgument, match=r"feature_grid must be an int in \[1, 4\]"):
        DiffusersAmused(tiny_transformer(), tiny_vqvae(), tiny_prompts(), feature_grid=8)
    with pytest.raises(InvalidArgument, match=r"remask_temp must be a number or a \(start, end\) pair"):
        DiffusersAmusedSampler(DiffusersAmused(tiny_transformer(), tiny_vqvae(), tiny_prompts()), remask_temp=(1, 2, 3))


def test_objects_of_another_family_or_a_missing_vae_are_refused(tiny_model) -> None:
    dit = helpers.other_family_dit(in_channels=4)
    with pytest.raises(InvalidArgument, match="must be aMUSEd's diffusers UVit2DModel, got DiTTransformer2DModel"):
        DiffusersAmused(dit, tiny_vqvae(), tiny_prompts())
    with pytest.raises(InvalidArgument, match="missing VAE"):
        DiffusersAmused(tiny_transformer(), None, tiny_prompts())
    kl = diffusers.AutoencoderKL(block_out_channels=(8,), norm_num_groups=4, latent_channels=6)
    with pytest.raises(InvalidArgument, match="vqvae must be a diffusers VQModel, got AutoencoderKL"):
        DiffusersAmused(tiny_transformer(), kl, tiny_prompts())
    with pytest.raises(InvalidArgument, match="scheduler DDIMScheduler is not an AmusedScheduler"):
        DiffusersAmused(tiny_transformer(), tiny_vqvae(), tiny_prompts(), diffusers.DDIMScheduler())
    with pytest.raises(InvalidArgument, match="is a 'maskgit' model; this env needs 'flow'"):
        SiTVectorEnv(num_envs=1, generator=tiny_model, reward_model=None)
