"""The VQ tokenizers and the two-stage zoo losses of the token paradigms, on tiny random-init configs.

Checks: encode/decode shapes, the out-of-range token error, k-means initialisation, EMA updates and
dead-code restarts of the codebook, that the multi-scale tokenizer's sampling path (`add_scale`,
`next_input`) rebuilds exactly what its quantisation computed, that the losses train the tokenizer
first and then only the transformer (and the decoder), config JSON round trips, checkpoint mismatch
errors, and the size of the shipped configs.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from adagen_env.data import ShapesDataset
from adagen_env.errors import CheckpointError, InvalidArgument
from adagen_env.models.maskgit import MaskGIT, MaskGITConfig, maskgit_loss
from adagen_env.models.var import VAR, VARConfig, var_loss
from adagen_env.models.vq import (
    Codebook,
    MultiScaleVQTokenizer,
    VQConfig,
    VQTokenizer,
    clean_pair,
    grain_flip_rates,
    round_trip,
)
from adagen_env.zoo import ZOO, load_state

TINY = VQConfig(resolution=16, base_channels=8, codebook_size=16, code_dim=4)
TINY_MS = VQConfig(resolution=16, base_channels=8, codebook_size=16, code_dim=4, scales=(1, 2, 4))


def images(n: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    return ShapesDataset(16, num_classes=3).sample(n, seed=seed)


def test_single_scale_encode_decode_shapes():
    torch.manual_seed(0)
    tok = VQTokenizer(TINY).eval()
    x, _ = images()
    ids = tok.encode(x)
    assert ids.shape == (6, 4, 4) and ids.dtype == torch.long
    assert ids.min() >= 0 and ids.max() < 16
    for grid in (ids, ids.flatten(1)):
        out = tok.decode(grid)
        assert out.shape == (6, 3, 16, 16)
        assert out.min() >= 0 and out.max() <= 1
    # Encoding picks each vector's nearest code: decoding re-looked-up codes gives the same image.
    torch.testing.assert_close(tok.decode(ids), tok.decoder(tok._quantise(x)[1]).add(1).div(2).clamp(0, 1))


def test_multi_scale_encode_decode_shapes():
    torch.manual_seed(0)
    tok = MultiScaleVQTokenizer(TINY_MS).eval()
    x, _ = images()
    ids = tok.encode(x)
    assert [tuple(i.shape) for i in ids] == [(6, 1), (6, 4), (6, 16)]
    out = tok.decode(ids)
    assert out.shape == (6, 3, 16, 16) and out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("bad", [-1, 16, 1000])
def test_out_of_range_token_names_the_range(bad):
    torch.manual_seed(0)
    tok, ms = VQTokenizer(TINY), MultiScaleVQTokenizer(TINY_MS)
    ids = torch.zeros(2, 4, 4, dtype=torch.long)
    ids[1, 2, 3] = bad
    with pytest.raises(InvalidArgument, match=r"\[0, 16\).*" + str(bad)):
        tok.decode(ids)
    maps = [torch.zeros(2, pn * pn, dtype=torch.long) for pn in (1, 2, 4)]
    maps[1][0, 1] = bad
    with pytest.raises(InvalidArgument, match=r"\[0, 16\)"):
        ms.decode(maps)


def test_bad_token_shapes_raise():
    torch.manual_seed(0)
    tok, ms = VQTokenizer(TINY), MultiScaleVQTokenizer(TINY_MS)
    with pytest.raises(InvalidArgument, match=r"\(B, 4, 4\)"):
        tok.decode(torch.zeros(2, 3, 3, dtype=torch.long))
    with pytest.raises(InvalidArgument, match="integer"):
        tok.decode(torch.zeros(2, 4, 4))
    with pytest.raises(InvalidArgument, match="one token map per scale"):
        ms.decode([torch.zeros(2, 1, dtype=torch.long)])
    with pytest.raises(InvalidArgument, match=r"scale 2 must have shape \(B, 4\)"):
        ms.decode(
            [
                torch.zeros(2, 1, dtype=torch.long),
                torch.zeros(2, 3, dtype=torch.long),
                torch.zeros(2, 16, dtype=torch.long),
            ]
        )


def test_config_validation():
    with pytest.raises(InvalidArgument, match="scales"):
        VQConfig(resolution=16, scales=(1, 2, 3))  # must end at the grid (4)
    with pytest.raises(InvalidArgument, match="scales"):
        VQConfig(resolution=16, scales=(2, 1, 4))
    with pytest.raises(InvalidArgument, match="divisible"):
        VQConfig(resolution=18)
    with pytest.raises(InvalidArgument, match="single-scale"):
        VQTokenizer(TINY_MS)
    with pytest.raises(InvalidArgument, match="scales"):
        MultiScaleVQTokenizer(TINY)


def test_codebook_kmeans_init_ema_and_dead_code_restart():
    g = torch.Generator().manual_seed(0)
    book = Codebook(size=4, dim=2, decay=0.5, dead_count=1.0)
    # Four well separated clusters: k-means must put one code on each centre.
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    z = centres.repeat_interleave(50, dim=0) + 0.01 * torch.randn(200, 2, generator=g)
    book.initialise(z, g, iters=10)
    assert int(book.initialised) == 1
    assert torch.cdist(centres, book.codes).min(dim=1).values.max() < 0.1
    # EMA update towards new data: the codes move halfway (decay 0.5) to the shifted clusters.
    shifted = z + 1.0
    before = book.codes.clone()
    book.update(shifted, book.nearest(shifted), g)
    assert ((book.codes - before) - 0.5).abs().max() < 0.05
    # A code nobody uses decays below dead_count and is restarted on one of the batch's vectors.
    only_first = z[:50]
    for _ in range(6):
        book.update(only_first, book.nearest(only_first), g)
    assert (book.counts >= 1.0).all()
    distance_to_batch = torch.cdist(book.codes, only_first).min(dim=1).values
    assert distance_to_batch.max() < 0.5, "dead codes were not restarted onto the batch"


def test_multi_scale_sampling_path_rebuilds_the_quantisation():
    torch.manual_seed(0)
    tok = MultiScaleVQTokenizer(TINY_MS).eval()
    x, _ = images()
    with torch.no_grad():
        _, f_hat, ids, _ = tok._quantise(x)
        rebuilt, inputs = tok.ids_to_fhat(ids)
    torch.testing.assert_close(rebuilt, f_hat, rtol=0, atol=1e-6)
    assert inputs.shape == (6, 4 + 16, 4)  # queries of scales 1 and 2
    # Queries of scale 1: f_hat after scale 0, area-pooled to 2x2; of scale 2: f_hat after scales 0-1 at 4x4.
    after_0 = tok.add_scale(torch.zeros_like(f_hat), ids[0], 0)
    after_1 = tok.add_scale(after_0, ids[1], 1)
    torch.testing.assert_close(inputs[:, :4], torch.nn.functional.avg_pool2d(after_0, 2).flatten(2).transpose(1, 2))
    torch.testing.assert_close(inputs[:, 4:], after_1.flatten(2).transpose(1, 2))


def test_residual_quantisation_error_shrinks_with_scales():
    """After training the codebook on a batch, adding finer scales reconstructs the latent better."""
    torch.manual_seed(0)
    tok = MultiScaleVQTokenizer(TINY_MS)
    x, _ = images(32)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _ in range(5):
            tok.loss(x, g)
        tok.eval()
        z, _, ids, _ = tok._quantise(x)
        f_hat, errors = torch.zeros_like(z), []
        for si, ids_s in enumerate(ids):
            f_hat = tok.add_scale(f_hat, ids_s, si)
            errors.append(float((z - f_hat).pow(2).mean()))
    assert errors[-1] < errors[0], errors


@pytest.mark.parametrize("kind", ["maskgit", "var"])
def test_two_stage_loss_trains_tokenizer_then_transformer(kind):
    torch.manual_seed(0)
    if kind == "maskgit":
        model = MaskGIT(MaskGITConfig(tokenizer=TINY, width=16, depth=1, heads=2, num_classes=3))
        loss_fn = maskgit_loss(tokenizer_steps=2, decoder_batch=4)
    else:
        model = VAR(VARConfig(tokenizer=TINY_MS, width=16, depth=1, heads=2, num_classes=3))
        loss_fn = var_loss(tokenizer_steps=2, decoder_batch=4)
    model.train()
    g = torch.Generator().manual_seed(0)
    x, y = images(8)
    tokenizer_params = {id(p) for p in model.tokenizer.parameters()}
    decoder_params = {id(p) for p in model.tokenizer.decoder.parameters()}
    for step in range(4):
        model.zero_grad(set_to_none=True)
        codes = model.tokenizer.codebook.codes.clone()
        loss = loss_fn(model, x, y, g)
        assert torch.isfinite(loss)
        loss.backward()
        with_grad = {id(p) for p in model.parameters() if p.grad is not None}
        if step < 2:  # tokenizer stage: only tokenizer parameters learn, and the codebook moves
            assert with_grad and with_grad <= tokenizer_params
            assert not torch.equal(model.tokenizer.codebook.codes, codes)
        else:  # transformer stage: the transformer and the decoder learn; encoder, phi and codebook are frozen
            assert with_grad - tokenizer_params, "the transformer got no gradient"
            assert with_grad & tokenizer_params == decoder_params
            assert torch.equal(model.tokenizer.codebook.codes, codes)
    assert int(model.trained_steps) == 4


@pytest.mark.parametrize("kind", ["maskgit", "var"])
def test_a_grain_free_tokenizer_learns_to_reconstruct_clean_renderings(kind):
    torch.manual_seed(0)
    config = VQConfig(
        resolution=16,
        base_channels=8,
        codebook_size=16,
        code_dim=4,
        grain_sigma=0.02,
        scales=(1, 2, 4) if kind == "var" else (),
    )
    if kind == "maskgit":
        model, loss_fn = (
            MaskGIT(MaskGITConfig(tokenizer=config, width=16, depth=1, heads=2, num_classes=3, codebook_tied=True)),
            maskgit_loss(tokenizer_steps=1, decoder_batch=4),
        )
    else:
        model, loss_fn = (
            VAR(VARConfig(tokenizer=config, width=16, depth=1, heads=2, num_classes=3, codebook_tied=True)),
            var_loss(1, decoder_batch=4),
        )
    seen = []
    spy = model.tokenizer.loss
    model.tokenizer.loss = lambda inputs, g, target=None: seen.append((inputs, target)) or spy(inputs, g, target)
    x, y = images(8)
    assert torch.isfinite(loss_fn(model, x, y, torch.Generator().manual_seed(0)))
    inputs, target = seen[0]
    assert target is not None and inputs.shape == target.shape == x.shape
    residual = (inputs - target)[(target > 0.05) & (target < 0.95)]  # unclamped pixels: the grain alone
    assert 0.015 < float(residual.std()) < 0.025 and abs(float(residual.mean())) < 0.005
    encoded = []
    encode = model.tokenizer.encode
    model.tokenizer.encode = lambda images: encoded.append(images) or encode(images)
    loss = loss_fn(model, x, y, torch.Generator().manual_seed(1))  # transformer stage, decoder on clean targets
    e = encoded[0]
    hh = e[..., 0::2, 0::2] - e[..., 0::2, 1::2] - e[..., 1::2, 0::2] + e[..., 1::2, 1::2]
    assert (
        float(hh.abs().median()) < 1e-3 < float((x[..., 0::2, 0::2] - x[..., 0::2, 1::2]).abs().median())
    )  # clean tokens
    loss.backward()
    assert torch.isfinite(loss) and model.tokenizer.decoder.parameters().__next__().grad is not None


@pytest.mark.parametrize("grain_sigma", [0.0, 0.02])
def test_round_trip_adds_the_grain_a_clean_tokenizer_leaves_out(grain_sigma):
    torch.manual_seed(0)
    tokenizer = VQTokenizer(
        VQConfig(resolution=16, base_channels=8, codebook_size=16, code_dim=4, grain_sigma=grain_sigma)
    )
    x, _ = images(4)
    out = round_trip(tokenizer, x, torch.Generator().manual_seed(0))
    plain = tokenizer.decode(tokenizer.encode(x))
    residual = (out - plain)[(plain > 0.1) & (plain < 0.9)]
    assert out.shape == x.shape and abs(float(residual.std()) - grain_sigma) < 0.004


def test_clean_pair_draws_the_labels_it_is_given_and_differs_only_by_the_grain():
    config = VQConfig(resolution=16, grain_sigma=0.02)
    labels = torch.tensor([3, 0, 7, 3])
    images, clean, drawn = clean_pair(4, config, 8, torch.Generator().manual_seed(0), labels)
    assert torch.equal(drawn, labels) and images.shape == clean.shape == (4, 3, 16, 16)
    grain = (images - clean)[(clean > 0.1) & (clean < 0.9)]
    assert 0.01 < float(grain.std()) < 0.03 and float(grain.mean().abs()) < 0.005


def test_grain_flip_rates_refuses_an_empty_scene_count_or_negative_grain():
    tokenizer = VQTokenizer(TINY)
    with pytest.raises(InvalidArgument, match="scenes"):
        grain_flip_rates(tokenizer, scenes=0)
    with pytest.raises(InvalidArgument, match="sigma"):
        grain_flip_rates(tokenizer, scenes=4, sigma=-0.1)


def test_codebook_tied_maskgit_reads_and_scores_the_code_vectors():
    torch.manual_seed(0)
    model = MaskGIT(MaskGITConfig(tokenizer=TINY, width=16, depth=1, heads=2, num_classes=3, codebook_tied=True))
    ids, labels = torch.randint(0, 16, (2, 16)), torch.tensor([0, 1])
    ids[:, :4] = model.mask_id
    logits, feats = model(ids, labels)
    assert logits.shape == (2, 16, 16) and feats.shape == (2, 16, 4, 4)
    before = logits.clone()
    with torch.no_grad():
        model.tokenizer.codebook.codes.mul_(2.0)  # the codes enter both the input and the logits
    after, _ = model(ids, labels)
    assert not torch.allclose(before, after)
    untied = MaskGIT(MaskGITConfig(tokenizer=TINY, width=16, depth=1, heads=2, num_classes=3))
    assert (
        sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in untied.parameters()) == 4 * 16 + 16 + 16 * 4
    )


def test_codebook_tied_var_scores_the_code_vectors():
    torch.manual_seed(0)
    model = VAR(VARConfig(tokenizer=TINY_MS, width=16, depth=1, heads=2, num_classes=3, codebook_tied=True))
    labels, inputs = torch.tensor([0, 1]), torch.randn(2, 1 + 4, 4)  # scales 1 and 2 queried
    logits, hidden = model(labels, inputs)
    assert logits.shape == (2, 1 + 1 + 4, 16) and hidden.shape == (2, 6, 16)
    with torch.no_grad():
        model.tokenizer.codebook.codes.mul_(2.0)
    assert not torch.allclose(logits, model(labels, inputs)[0])
    untied = VAR(VARConfig(tokenizer=TINY_MS, width=16, depth=1, heads=2, num_classes=3))
    assert sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in untied.parameters()) == 16 * 4
    with torch.no_grad():
        untied_logits, _ = untied(labels, inputs)
        untied.tokenizer.codebook.codes.mul_(2.0)
        assert torch.equal(untied_logits, untied(labels, inputs)[0])  # untied: the codes never enter the logits


@pytest.mark.parametrize("kind", ["maskgit", "var"])
def test_config_json_round_trip(kind):
    config = MaskGITConfig(tokenizer=TINY) if kind == "maskgit" else VARConfig(tokenizer=TINY_MS)
    again = type(config)(**json.loads(json.dumps(config.to_dict())))
    assert again == config
    assert isinstance(again.tokenizer, VQConfig)


def test_wrong_shape_checkpoint_names_file_and_mismatch(tmp_path):
    torch.manual_seed(0)
    small = MaskGIT(MaskGITConfig(tokenizer=TINY, width=16, depth=1, heads=2, num_classes=3))
    path = tmp_path / "maskgit.safetensors"
    save_file({k: v.contiguous() for k, v in small.state_dict().items()}, str(path))
    load_state(
        MaskGIT(MaskGITConfig(tokenizer=TINY, width=16, depth=1, heads=2, num_classes=3)), path
    )  # same shape: fine
    wider = MaskGIT(MaskGITConfig(tokenizer=TINY, width=32, depth=1, heads=2, num_classes=3))
    with pytest.raises(CheckpointError, match="maskgit.safetensors") as info:
        load_state(wider, path)
    assert "shape mismatches" in str(info.value) and "file (1, 17, 16) vs model (1, 17, 32)" in str(info.value)
    with pytest.raises(CheckpointError, match="missing"):
        load_state(VAR(VARConfig(tokenizer=TINY_MS, width=16, depth=1, heads=2, num_classes=3)), path)


@pytest.mark.parametrize("name", ["maskgit", "var"])
def test_zoo_recipes_build_and_stay_under_10_mb(name):
    recipe = ZOO[name]
    assert recipe.paradigm == name
    assert recipe.train_config.resolution == recipe.config.tokenizer.resolution == 32
    model = recipe.model_cls(recipe.config)
    size = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    assert size < 10e6, f"{name}: {size / 1e6:.1f} MB of float32 weights"
