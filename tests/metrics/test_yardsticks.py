"""The yardsticks beside the classifier FID: the renderer and its factors, the oracle fidelity and coverage, FD-SSL.

Mechanics run on any weights; the quality claims (real images re-render at the grain's floor, two real sets at FD
near 0) need the shipped factor network and SSL encoder.
"""

from __future__ import annotations

import pytest
import torch
import torch_fidelity
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from adagen_env import zoo
from adagen_env.data import ShapesDataset
from adagen_env.data.shapes import GRAIN_SIGMA, render_shapes
from adagen_env.errors import InvalidArgument
from adagen_env.metrics import FLOOR_SEED, ImageTensorDataset, balanced_labels, compute_metrics, shapes_reference
from adagen_env.metrics.oracle import (
    FACTOR_NET,
    factor_coverage,
    fit_factors,
    grain_level,
    load_factor_net,
    oracle_scores,
)
from adagen_env.metrics.ssl import (
    BLOCK_VARIANCE,
    SSL_EXTRACTOR,
    SSLFeatureExtractor,
    frechet_distance,
    ssl_features,
    ssl_scores,
)
from adagen_env.models.factors import FactorNet, FactorNetConfig, factors_to_vector, vector_to_factors
from adagen_env.models.ssl import contrastive_views

needs_measures = pytest.mark.skipif(
    not (zoo.weights_path(FACTOR_NET).exists() and zoo.weights_path(SSL_EXTRACTOR).exists()),
    reason="no shipped factor network / SSL encoder weights",
)


def drawn(n: int, res: int, seed: int = 5):
    data = ShapesDataset(res)
    labels = balanced_labels(n)
    return data, labels, data.draw_factors(labels, torch.Generator().manual_seed(seed))


# -- the renderer and the factor vector ------------------------------------------------------------------
def test_rendering_drawn_factors_is_the_dataset():
    data, labels, factors = drawn(40, 16, seed=3)
    images, _ = data.sample(40, seed=3, labels=labels)
    assert torch.equal(render_shapes(labels, factors), images)


def test_factor_vector_round_trip_renders_the_same_image():
    _, labels, factors = drawn(64, 16)
    clean = {k: v for k, v in factors.items() if k != "grain"}
    vector, mask = factors_to_vector(labels, clean)
    again = vector_to_factors(labels, vector)
    torch.testing.assert_close(
        render_shapes(labels, again, resolution=16), render_shapes(labels, clean, resolution=16), atol=1e-4, rtol=0
    )
    # The angle of a circle (class 0) or a ring (class 3) is not a target.
    assert mask[labels == 0, 3:5].sum() == 0 and mask[labels == 1, 3:5].all()


def test_render_without_grain_needs_a_resolution():
    _, labels, factors = drawn(4, 16)
    with pytest.raises(InvalidArgument, match="resolution"):
        render_shapes(labels, {k: v for k, v in factors.items() if k != "grain"})


def test_contrastive_views_pair_rows_that_differ_only_in_grain():
    views = contrastive_views(6, torch.Generator().manual_seed(0))
    assert views.shape[0] == 24
    pair_gap = (views[:12] - views[12:]).abs().mean(dim=(1, 2, 3))  # same scene, other grain
    miss_gap = (views[:6] - views[6:12]).abs().mean(dim=(1, 2, 3))  # scene vs its near miss
    assert pair_gap.max() < 0.03 and bool((miss_gap > pair_gap[:6]).all())


# -- oracle fidelity and coverage ------------------------------------------------------------------------
@needs_measures
@pytest.mark.parametrize("res", [16, 32])
def test_factor_network_re_renders_real_images_at_the_grain_floor(res):
    real_u8, labels = shapes_reference(256, res, seed=FLOOR_SEED)
    _, rmse = fit_factors(real_u8.float() / 255, labels, load_factor_net())
    # Real = clean rendering + grain of std GRAIN_SIGMA (less where clamping to [0, 1] cuts it).
    assert float(rmse.mean()) < 1.1 * GRAIN_SIGMA
    assert float(rmse.max()) < 1.3 * GRAIN_SIGMA


@needs_measures
def test_oracle_fidelity_sees_wrong_classes_and_blur():
    real_u8, labels = shapes_reference(128, 16, seed=FLOOR_SEED)
    images, net = real_u8.float() / 255, load_factor_net()
    clean = oracle_scores(images, labels, net)["oracle_fidelity"]
    wrong = oracle_scores(images, (labels + 1) % 8, net)["oracle_fidelity"]
    blurred = torch.nn.functional.avg_pool2d(images, 3, stride=1, padding=1, count_include_pad=False)
    assert wrong > 3 * clean and oracle_scores(blurred, labels, net)["oracle_fidelity"] > 1.3 * clean


def test_coverage_sees_a_collapsed_position_and_a_missing_class():
    _, labels, clean = drawn(800, 16)
    base = factor_coverage(labels, clean)
    collapsed = factor_coverage(labels, {**clean, "centre": torch.zeros_like(clean["centre"])})
    assert collapsed["per_factor"]["centre_x"] > 5 * base["per_factor"]["centre_x"]
    assert collapsed["coverage"] > base["coverage"]
    keep = labels != 2
    missing = factor_coverage(labels[keep], {k: v[keep] for k, v in clean.items()})
    assert missing["per_class"]["triangle"] >= 1.0 > base["per_class"]["triangle"]


def test_coverage_grain_level_sees_noise_and_smoothing_and_is_required():
    _, labels, factors = drawn(800, 16)
    base = factor_coverage(labels, factors)["per_factor"]["grain"]
    noisy = factor_coverage(labels, {**factors, "grain": factors["grain"] * 2})["per_factor"]["grain"]
    smooth = factor_coverage(labels, {**factors, "grain": factors["grain"] * 0.25})["per_factor"]["grain"]
    assert base < 0.1 and noisy > 0.8 and smooth > 0.6  # in units of the grain's sigma: ~1 and ~0.75 away
    assert float(grain_level(factors["grain"]).mean()) == pytest.approx(GRAIN_SIGMA, rel=0.1)
    with pytest.raises(InvalidArgument, match="grain_level"):
        factor_coverage(labels, {k: v for k, v in factors.items() if k != "grain"})


# -- FD-SSL ----------------------------------------------------------------------------------------------
def test_ssl_extractor_is_registered_with_torch_fidelity():
    assert FEATURE_EXTRACTORS_REGISTRY[SSL_EXTRACTOR] is SSLFeatureExtractor
    assert SSLFeatureExtractor.get_default_feature_layer_for_metric("fid") == "pool"
    with pytest.raises(ValueError, match="Inception Score"):
        SSLFeatureExtractor.get_default_feature_layer_for_metric("isc")


def test_frechet_distance_is_zero_on_itself_and_grows_with_a_shift():
    features = torch.randn(500, 8, generator=torch.Generator().manual_seed(0))
    assert abs(frechet_distance(features, features)) < 1e-6
    assert frechet_distance(features, features + 1.0) == pytest.approx(8.0, rel=1e-4)


@needs_measures
def test_fd_ssl_of_two_real_sets_is_at_its_floor_and_torch_fidelity_agrees():
    from torchvision.transforms.functional import gaussian_blur

    a_u8, a_labels = shapes_reference(1000, 16)
    b_u8, b_labels = shapes_reference(1000, 16, seed=FLOOR_SEED)
    blurred_u8 = (gaussian_blur(b_u8.float(), [7, 7], [1.0, 1.0]) + 0.5).byte()
    real_vs_real = ssl_scores(b_u8, b_labels, a_u8, a_labels)
    blurred = ssl_scores(blurred_u8, b_labels, a_u8, a_labels)
    # Near 0: the finite-sample floor, a few percent of the features' total variance (2 blocks), far below damage.
    assert real_vs_real["fd_ssl"] < 0.03 * 2 * BLOCK_VARIANCE and real_vs_real["fd_ssl"] < 0.5 * blurred["fd_ssl"]
    assert real_vs_real["fjd_ssl"] < blurred["fjd_ssl"]
    wrong = ssl_scores(b_u8, (b_labels + 1) % 8, a_u8, a_labels)  # same images, the labels of another class
    assert wrong["fd_ssl"] == pytest.approx(real_vs_real["fd_ssl"])
    assert wrong["fjd_ssl"] > 1.15 * real_vs_real["fjd_ssl"]
    fidelity = torch_fidelity.calculate_metrics(
        input1=ImageTensorDataset(b_u8),
        input2=ImageTensorDataset(a_u8),
        feature_extractor=SSL_EXTRACTOR,
        fid=True,
        cache=False,
        verbose=False,
        save_cpu_ram=True,
        cuda=False,
    )
    assert fidelity[torch_fidelity.KEY_METRIC_FID] == pytest.approx(real_vs_real["fd_ssl"], rel=1e-3)
    assert ssl_features(b_u8).shape == (1000, 352)


@needs_measures
def test_compute_metrics_reports_every_yardstick():
    images, labels = ShapesDataset(16).sample(64, seed=2, labels=balanced_labels(64))
    scores = compute_metrics(images, labels, metrics=("fid", "ssl", "oracle"))
    for key in (
        "fid",
        "fd_ssl",
        "fjd_ssl",
        "kid_ssl",
        "precision_ssl",
        "recall_ssl",
        "oracle_fidelity",
        "oracle_coverage",
        "class_agreement",
    ):
        assert key in scores and torch.isfinite(torch.tensor(scores[key])), key
    assert "oracle_fidelity" not in compute_metrics(images, None, metrics=("ssl", "oracle"))


@pytest.mark.parametrize("bad, match", [(float("nan"), "NaN"), (1.5, r"\[0, 1\]"), (-0.2, r"\[0, 1\]")])
def test_every_yardstick_refuses_non_finite_or_out_of_range_images(bad, match):
    images, labels = ShapesDataset(16).sample(8, seed=2)
    images[0, 0, 0, 0] = bad
    for metrics in (("fid",), ("ssl",), ("oracle",)):
        with pytest.raises(InvalidArgument, match=match):
            compute_metrics(images, labels, metrics=metrics)
    with pytest.raises(InvalidArgument, match=match):
        oracle_scores(images, labels, FactorNet(FactorNetConfig(width=8)))


def test_ssl_scores_refuse_float_images():
    images, labels = ShapesDataset(16).sample(8, seed=2)
    with pytest.raises(InvalidArgument, match="uint8"):
        ssl_scores(images, labels, images, labels)


@pytest.mark.parametrize("name", ["shapes-factors", "shapes-ssl"])
def test_measuring_recipes_train_and_ship(name):
    recipe = zoo.entry(name)
    assert name not in zoo.GENERATORS
    torch.manual_seed(0)
    model = recipe.model_cls(type(recipe.config)(**{**recipe.config.to_dict(), "width": 8}))
    loss = recipe.loss(
        model, torch.zeros(4, 3, 16, 16), torch.zeros(4, dtype=torch.long), torch.Generator().manual_seed(0)
    )
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in model.parameters() if p.requires_grad)
    if zoo.weights_path(name).exists():
        assert not any(p.requires_grad for p in zoo.load(name).parameters())


# -- FD-DINOv2 from disk ---------------------------------------------------------------------------------
HUBCONF = """
import torch

def dinov2_vits14(pretrained=True, **kwargs):
    assert not pretrained, "the local loader must never ask for pretrained (downloaded) weights"
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten(), torch.nn.Linear(48, 6))
"""


def test_fd_dinov2_builds_from_local_code_and_weights(tmp_path):
    (tmp_path / "hubconf.py").write_text(HUBCONF)
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten(), torch.nn.Linear(48, 6))
    weights = tmp_path / "dinov2_vits14.pth"
    torch.save(net.state_dict(), weights)
    a, _ = ShapesDataset(16).sample(40, seed=1)
    b, _ = ShapesDataset(16).sample(40, seed=2)
    common = dict(feature_extractor="dinov2-vit-s-14", dinov2_code_dir=tmp_path, metrics=("fid",))
    same = compute_metrics(a, reference=a, dinov2_weights_path=weights, **common)["fid"]
    other = compute_metrics(a, reference=b.clamp(0, 0.5), dinov2_weights_path=weights, **common)["fid"]
    assert abs(same) < 1e-3 < other
    with pytest.raises(InvalidArgument, match="weights on disk"):
        compute_metrics(a, reference=b, **common)
    torch.save({"other": torch.zeros(1)}, weights)
    with pytest.raises(InvalidArgument, match="do not fit"):
        compute_metrics(a, reference=b, dinov2_weights_path=weights, **common)
