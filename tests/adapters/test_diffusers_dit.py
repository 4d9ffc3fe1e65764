"""The diffusers DiT adapter is the real model: with a zero action the env's images equal diffusers' own DiTPipeline
(and a hand-driven scheduler loop) for the same noise, labels, timesteps and guidance; the env passes the checkers and
trains; every mismatch is refused by name. Tiny random-init models are built here and saved with `save_pretrained`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import adapter_helpers as helpers  # tests/adapters/adapter_helpers.py
import numpy as np
import pytest
import torch

diffusers = pytest.importorskip("diffusers", reason="the diffusers adapters need the diffusers extra")

import adagen_env  # noqa: E402,F401  (registers the ids)
from adagen_env.adapters import load_pretrained  # noqa: E402
from adagen_env.adapters.diffusers_dit import DiffusersDiT, DiffusersDiTSampler, DiscreteVPPath  # noqa: E402
from adagen_env.envs import DiTEnv, DiTVectorEnv, SiTVectorEnv, VARVectorEnv  # noqa: E402
from adagen_env.errors import CheckpointError, InvalidArgument  # noqa: E402
from adagen_env.models.paths import VPPath  # noqa: E402
from adagen_env.samplers import make_generator  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # diffusers' numpy call

TOLERANCE = 1e-5
"""Largest allowed pixel difference (images in [0, 1]) from diffusers' result: float32 rounding only."""


def tiny_transformer(seed: int = 0, **overrides) -> diffusers.DiTTransformer2DModel:
    """A DiT-XL/2-256-shaped transformer in miniature: learned sigma (8 output channels), 1000 classes + null."""
    torch.manual_seed(seed)
    config = dict(
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=4,
        out_channels=8,
        num_layers=2,
        sample_size=8,
        patch_size=2,
        num_embeds_ada_norm=1000,
    )
    model = diffusers.DiTTransformer2DModel(**{**config, **overrides})
    for p in model.parameters():  # break adaLN-zero so the output depends on the input, time and label
        if p.abs().sum() == 0:
            torch.nn.init.normal_(p, std=0.05)
    return model


def tiny_vae(seed: int = 1, **overrides) -> diffusers.AutoencoderKL:
    return helpers.tiny_decoder(diffusers.AutoencoderKL, seed, **{"latent_channels": 4, **overrides})


def save_pipeline(root: Path, transformer=None, vae=None, scheduler=None) -> Path:
    """A diffusers pipeline directory as the hub's DiT-XL-2-256 lays it out (its scheduler is a DDIMScheduler)."""
    return helpers.save_components(
        root,
        transformer=transformer or tiny_transformer(),
        vae=vae or tiny_vae(),
        scheduler=scheduler or diffusers.DDIMScheduler(clip_sample=False),
    )


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return save_pipeline(tmp_path_factory.mktemp("dit"))


@pytest.fixture(scope="module")
def tiny_model(tiny_dir) -> DiffusersDiT:
    return DiffusersDiT.from_pretrained(tiny_dir)


def _zero_action_images(generator, num_steps: int, cfg_scale, labels: list[int], seed: int, solver: str) -> np.ndarray:
    kwargs = {"cfg_scale": cfg_scale, "solver": solver}
    return helpers.zero_action_images("AdaGen/DiT-v0", generator, num_steps, kwargs, labels, seed)


@pytest.mark.parametrize(
    ("scheduler_cls", "solver", "num_steps", "guidance_scale"),
    [
        (
            "DPMSolverMultistepScheduler",
            "dpmpp2m",
            7,
            3.0,
        ),  # 7 does not divide 1000: the grid is rounded like diffusers'
        ("DPMSolverMultistepScheduler", "dpmpp2m", 4, 1.0),  # guidance_scale 1: no guidance (cfg_scale None)
        ("DDIMScheduler", "ddim", 4, 2.0),
        ("DDIMScheduler", "ddim", 8, 4.0),  # DiTPipeline's default guidance
    ],
)
def test_zero_action_images_equal_the_dit_pipeline(
    tiny_dir, tiny_model, scheduler_cls, solver, num_steps, guidance_scale
) -> None:
    labels, seed = [3, 141, 999], 7
    cfg = None if guidance_scale == 1.0 else guidance_scale - 1  # ours: cond + w (cond - uncond); diffusers' s = w + 1
    ours = _zero_action_images(tiny_model, num_steps, cfg, labels, seed, solver)
    # diffusers' own pipeline on the same transformer and VAE, its scheduler loaded from the same directory with the
    # spacing that starts at pure noise ("trailing", the env's uniform baseline).
    scheduler = getattr(diffusers, scheduler_cls).from_pretrained(
        tiny_dir, subfolder="scheduler", timestep_spacing="trailing"
    )
    pipe = diffusers.DiTPipeline(tiny_model.transformer, tiny_model.vae, scheduler)
    pipe.set_progress_bar_config(disable=True)
    out = pipe(
        labels,
        guidance_scale=guidance_scale,
        generator=torch.Generator().manual_seed(seed),
        num_inference_steps=num_steps,
        output_type="np",
    ).images
    reference = np.transpose(out, (0, 3, 1, 2))
    assert ours.shape == reference.shape == (3, 3, 16, 16)
    assert reference.std() > 0.05  # a real image, not a constant one
    assert np.abs(ours - reference).max() < TOLERANCE


def _scheduler_loop(
    model: DiffusersDiT, scheduler, timesteps: list[int], labels: list[int], seed: int, guidance_scale: float
) -> torch.Tensor:
    """DiTPipeline's loop written out with custom timesteps (the pipeline takes only a step count)."""
    scheduler.set_timesteps(timesteps=timesteps)
    latents = torch.randn((len(labels), 4, 8, 8), generator=torch.Generator().manual_seed(seed))
    y = torch.tensor(labels + [1000] * len(labels))
    with torch.no_grad():
        for t in scheduler.timesteps:
            out = model.transformer(
                torch.cat([latents] * 2), timestep=t[None].expand(2 * len(labels)), class_labels=y
            ).sample
            cond, uncond = out[:, :4].chunk(2)
            latents = scheduler.step(uncond + guidance_scale * (cond - uncond), t, latents).prev_sample
        images = model.vae.decode(1 / model.vae.config.scaling_factor * latents).sample
    return (images / 2 + 0.5).clamp(0, 1)


def test_a_policy_like_schedule_equals_the_scheduler_on_the_same_timesteps(tiny_dir, tiny_model) -> None:
    """Uneven times (what a policy picks) on the training grid: DPM-Solver++(2M) with custom timesteps agrees."""
    timesteps, labels, seed, guidance_scale = [999, 800, 520, 200], [5, 6], 3, 2.5
    sampler = DiffusersDiTSampler(tiny_model, num_steps=len(timesteps), solver="dpmpp2m", cfg_scale=guidance_scale - 1)
    times = torch.cat([tiny_model.path.time_of(torch.tensor(timesteps)), torch.zeros(1)])
    schedule = torch.stack([times, torch.full_like(times, guidance_scale - 1)], dim=-1)
    ours = sampler.sample(torch.tensor(labels), make_generator(seed), schedule)
    scheduler = diffusers.DPMSolverMultistepScheduler.from_pretrained(tiny_dir, subfolder="scheduler")
    reference = _scheduler_loop(tiny_model, scheduler, timesteps, labels, seed, guidance_scale)
    assert (ours - reference).abs().max() < TOLERANCE
    # The shipped continuous linear-beta path is not this model's schedule: stepping on it gives other images.
    sampler.path = VPPath()
    assert (
        sampler.sample(torch.tensor(labels), make_generator(seed), schedule) - reference
    ).abs().max() > 100 * TOLERANCE


def test_a_diffusers_directory_is_a_generator_of_the_dit_env(tiny_dir, tiny_model) -> None:
    labels = [1, 2]
    by_path = _zero_action_images(str(tiny_dir), 3, 1.0, labels, 0, "dpmpp2m")
    by_model = _zero_action_images(tiny_model, 3, 1.0, labels, 0, "dpmpp2m")
    assert np.array_equal(by_path, by_model)
    envs = DiTVectorEnv(
        num_envs=2, generator=DiffusersDiTSampler(tiny_model, num_steps=3), reward_model=None, return_images=True
    )
    obs, _ = envs.reset(seed=0, options={"labels": labels})
    assert obs["features"].shape == (2, 16, 4, 4) and not obs["features"].any()  # step 0: nothing evaluated yet
    for _ in range(envs.horizon):
        obs, _, _, _, info = envs.step(np.zeros((2, 2), np.float32))
    assert np.array_equal(info["final_images"], by_model)
    assert info["nfe"].tolist() == [1, 1]  # the last update: one unconditional pass
    sampler = envs.sampler
    assert sampler.image_shape == (3, 16, 16) and sampler.latent_shape == (4, 8, 8) and sampler.num_classes == 1000
    assert sampler.episode_nfe == 3 + 3  # three conditional passes, three guided updates


def test_bfloat16_models_sample_in_float32_state(tiny_dir, tiny_model) -> None:
    """The models may run in bfloat16 (how DiT-XL/2 runs on a GPU); the sampler's state and images stay float32."""
    half = DiffusersDiT.from_pretrained(tiny_dir, dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16 and next(half.vae.parameters()).dtype == torch.bfloat16
    labels, generator = torch.tensor([1, 2]), make_generator(0)
    images = DiffusersDiTSampler(half, num_steps=4).sample(labels, generator)
    full = DiffusersDiTSampler(tiny_model, num_steps=4).sample(labels, make_generator(0))
    assert images.dtype == torch.float32 and (images - full).abs().max() < 0.05


def test_features_are_a_blocks_hidden_states_pooled_to_a_fixed_grid(tiny_model) -> None:
    x, t, y = torch.randn(2, 4, 8, 8), torch.tensor([0.9, 0.4]), torch.tensor([0, 7])
    seen = {}
    hook = tiny_model.transformer.transformer_blocks[-1].register_forward_hook(lambda m, a, out: seen.update(out=out))
    try:
        prediction, features = tiny_model(x, t, y)
    finally:
        hook.remove()
    tokens = seen["out"]  # (B, N, D) = (2, 16, 16)
    assert prediction.shape == (2, 4, 8, 8) and features.shape == (2, 16, 4, 4)
    assert torch.allclose(features, tokens.transpose(1, 2).reshape(2, 16, 4, 4))  # grid 4 = the token grid
    direct = tiny_model.transformer(x, timestep=torch.tensor([899.0, 399.0]), class_labels=y).sample
    assert torch.equal(prediction, direct[:, :4])  # epsilon: the first half of the learned-sigma output
    pooled = DiffusersDiT(tiny_transformer(), tiny_vae(), feature_block=0, feature_grid=2)  # the same weights
    _, small = pooled(x, t, y)
    assert small.shape == (2, 16, 2, 2) and not torch.allclose(small, torch.nn.functional.avg_pool2d(features, 2))


def test_the_discrete_path_is_the_schedules_alphas_cumprod() -> None:
    scheduler = diffusers.DDIMScheduler()
    path = DiscreteVPPath(scheduler.alphas_cumprod)
    n = torch.tensor([999, 500, 0, -1])
    t = path.time_of(n)
    assert torch.equal(path.timestep(t), n.double())
    expected = torch.cat([scheduler.alphas_cumprod[n[:3]].double(), torch.ones(1, dtype=torch.float64)])
    assert torch.allclose(path.alpha(t.double()) ** 2, expected, rtol=1e-12, atol=0)
    grid = torch.linspace(0, 1, 101)
    a, s = path.alpha(grid), path.sigma(grid)
    assert torch.allclose(a**2 + s**2, torch.ones_like(a)) and bool((a[1:] < a[:-1]).all())
    assert float(s[0]) == 0.0 and float(a[0]) == 1.0
    # In between, the model gets a fractional timestep and log alpha_bar is interpolated.
    assert float(path.timestep(torch.tensor(0.5005))) == pytest.approx(499.5, abs=1e-3)


@pytest.fixture(scope="module")
def shapes_model() -> DiffusersDiT:
    """The tiny DiT with the shapes data's 8 classes (null class 8), so the default online discriminator, whose
    reals are the shapes, can reward it."""
    return DiffusersDiT(tiny_transformer(num_embeds_ada_norm=8), tiny_vae(), diffusers.DDIMScheduler())


def test_the_single_lane_env_passes_the_checker(shapes_model) -> None:
    helpers.check_single_lane_env(DiTEnv, shapes_model, 2, DiffusersDiTSampler)


def test_two_ppo_updates_train_on_the_adapter(tmp_path, shapes_model) -> None:
    sampler = DiffusersDiTSampler(shapes_model, num_steps=2)
    helpers.train_two_ppo_updates(tmp_path, "AdaGen/DiT-v0", DiTVectorEnv, sampler)


# -- refusals --------------------------------------------------------------------------------------


def test_directories_that_are_not_a_dit_pipeline_are_refused(tmp_path, tiny_dir) -> None:
    with pytest.raises(CheckpointError, match="does not exist or is not a directory"):
        DiffusersDiT.from_pretrained(tmp_path / "nowhere")
    junk = helpers.junk_directory(tmp_path / "junk")
    with pytest.raises(CheckpointError, match=r"not a diffusers model directory.*notes\.txt.*transformer/"):
        DiffusersDiT.from_pretrained(junk)
    unet = tmp_path / "sd"
    (unet / "unet").mkdir(parents=True)
    (unet / "unet" / "config.json").write_text(json.dumps({"_class_name": "UNet2DConditionModel"}))
    with pytest.raises(CheckpointError, match=r"holds a UNet \(unet/\): another model family"):
        DiffusersDiT.from_pretrained(unet)
    single = tmp_path / "single"
    tiny_transformer().save_pretrained(single)
    with pytest.raises(CheckpointError, match=r"single model's folder \(DiTTransformer2DModel\), not a pipeline"):
        DiffusersDiT.from_pretrained(single)
    sd3 = helpers.copy_with_class(tiny_dir, tmp_path / "sd3", "SD3Transformer2DModel")
    with pytest.raises(CheckpointError, match="transformer/ holds a SD3Transformer2DModel.*another model family"):
        DiffusersDiT.from_pretrained(sd3)
    no_vae = helpers.copy_without(tiny_dir, tmp_path / "no_vae", "vae")
    with pytest.raises(CheckpointError, match=r"missing VAE \(no vae/config\.json\)"):
        DiffusersDiT.from_pretrained(no_vae)
    no_weights = helpers.copy_without_weights(tiny_dir, tmp_path / "no_weights", "transformer")
    with pytest.raises(CheckpointError, match="cannot load transformer/ as DiTTransformer2DModel"):
        DiffusersDiT.from_pretrained(no_weights)


def test_the_hubs_legacy_transformer_class_name_loads(tmp_path, tiny_dir, tiny_model) -> None:
    legacy = helpers.copy_with_class(tiny_dir, tmp_path / "legacy", "Transformer2DModel")
    model = load_pretrained(legacy, paradigm="diffusion")
    assert isinstance(model.transformer, diffusers.DiTTransformer2DModel)
    x, t, y = torch.randn(1, 4, 8, 8), torch.tensor([0.5]), torch.tensor([3])
    assert torch.equal(model(x, t, y)[0], tiny_model(x, t, y)[0])


def test_latent_shapes_the_env_cannot_serve_are_refused(tmp_path) -> None:
    wide_vae = save_pipeline(tmp_path / "wide", vae=tiny_vae(latent_channels=8))
    with pytest.raises(
        CheckpointError, match="latent shape not served: the transformer takes 4 latent channels, the VAE makes 8"
    ):
        DiffusersDiT.from_pretrained(wide_vae)
    odd = save_pipeline(tmp_path / "odd", transformer=tiny_transformer(out_channels=6))
    with pytest.raises(CheckpointError, match="latent shape not served: the transformer outputs 6 channels"):
        DiffusersDiT.from_pretrained(odd)
    with pytest.raises(
        InvalidArgument, match="latent shape not served: sample_size 9 is not a multiple of patch_size 2"
    ):
        DiffusersDiT(tiny_transformer(sample_size=9), tiny_vae())
    with pytest.raises(InvalidArgument, match=r"feature_grid must be an int in \[1, 4\]"):
        DiffusersDiT(tiny_transformer(), tiny_vae(), feature_grid=8)
    with pytest.raises(InvalidArgument, match=r"feature_block must be an int in \[-2, 2\)"):
        DiffusersDiT(tiny_transformer(), tiny_vae(), feature_block=2)


def test_objects_of_another_family_or_a_missing_vae_are_refused(tiny_model) -> None:
    unet = diffusers.UNet2DModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D",) * 2,
        up_block_types=("UpBlock2D",) * 2,
        norm_num_groups=4,
        layers_per_block=1,
    )
    with pytest.raises(
        InvalidArgument, match="must be a diffusers DiTTransformer2DModel.*got UNet2DModel: another model"
    ):
        DiffusersDiT(unet, tiny_vae())
    with pytest.raises(InvalidArgument, match="missing VAE"):
        DiffusersDiT(tiny_transformer(), None)
    with pytest.raises(InvalidArgument, match="FlowMatchEulerDiscreteScheduler has no discrete VP schedule"):
        DiffusersDiT(tiny_transformer(), tiny_vae(), diffusers.FlowMatchEulerDiscreteScheduler())
    with pytest.raises(InvalidArgument, match="prediction_type 'sample' is not supported"):
        DiffusersDiT(tiny_transformer(), tiny_vae(), diffusers.DDIMScheduler(prediction_type="sample"))
    unguided = DiffusersDiT(tiny_transformer(), tiny_vae())
    unguided.has_null_class = False
    with pytest.raises(InvalidArgument, match="no null-class embedding.*cfg_scale=None"):
        DiffusersDiTSampler(unguided)
    with pytest.raises(InvalidArgument, match="is a 'diffusion' model; this env needs 'flow'"):
        SiTVectorEnv(num_envs=1, generator=tiny_model, reward_model=None)


def test_a_diffusers_directory_on_an_env_without_an_adapter_is_refused(tiny_dir) -> None:
    with pytest.raises(InvalidArgument, match="no diffusers adapter for the 'var' paradigm yet"):
        VARVectorEnv(num_envs=1, generator=str(tiny_dir), reward_model=None)


def test_importing_the_library_does_not_import_diffusers() -> None:
    code = (
        "import sys, adagen_env, adagen_env.adapters, adagen_env.envs, adagen_env.adapters.diffusers_dit, "
        "adagen_env.adapters.diffusers_sd3, adagen_env.adapters.diffusers_amused; print('diffusers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.strip() == "False"
