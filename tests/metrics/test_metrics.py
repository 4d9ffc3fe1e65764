"""Benchmark metrics: the shapes classifier as a torch-fidelity feature extractor, FID/KID/IS/PR and class agreement.

Mechanics (registration, feature layers, small sample counts, argument errors) run on a tiny random-init
classifier saved to a temporary file. Whether the numbers mean anything (real vs real at the floor, damaged
images clearly worse, high class agreement on real data) needs the shipped classifier weights.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
import torch_fidelity
from safetensors.torch import save_file
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from adagen_env import zoo
from adagen_env.data import ShapesDataset
from adagen_env.errors import InvalidArgument
from adagen_env.metrics import (
    SHAPES_EXTRACTOR,
    ImageTensorDataset,
    ShapesFeatureExtractor,
    balanced_labels,
    class_agreement,
    compute_metrics,
    real_floor,
    register,
    shapes_reference,
    to_uint8,
)
from adagen_env.models.classifier import ClassifierConfig, ShapesClassifier

SHIPPED = zoo.weights_path(SHAPES_EXTRACTOR)
needs_shipped_weights = pytest.mark.skipif(not SHIPPED.exists(), reason=f"no shipped classifier weights at {SHIPPED}")
N = 256
"""Images per set in the quality tests."""


@pytest.fixture(scope="module")
def random_classifier(tmp_path_factory) -> str:
    """A tiny random-init classifier as a safetensors file with its config beside it."""
    torch.manual_seed(0)
    config = ClassifierConfig(width=8)
    net = ShapesClassifier(config)
    path = tmp_path_factory.mktemp("classifier") / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    path.with_suffix(".json").write_text(json.dumps({"config": config.to_dict()}))
    return str(path)


def real(n: int = N, seed: int = 11) -> tuple[torch.Tensor, torch.Tensor]:
    return ShapesDataset(16).sample(n, seed=seed, labels=balanced_labels(n))


# -- registration and the extractor ------------------------------------------------------------------
def test_extractor_is_registered_with_torch_fidelity():
    assert FEATURE_EXTRACTORS_REGISTRY[SHAPES_EXTRACTOR] is ShapesFeatureExtractor
    register()  # idempotent
    assert FEATURE_EXTRACTORS_REGISTRY[SHAPES_EXTRACTOR] is ShapesFeatureExtractor
    assert ShapesFeatureExtractor.get_default_feature_layer_for_metric("fid") == "pool"
    assert ShapesFeatureExtractor.get_default_feature_layer_for_metric("isc") == "logits_unbiased"


def test_extractor_features(random_classifier):
    extractor = ShapesFeatureExtractor(SHAPES_EXTRACTOR, ["pool", "logits_unbiased", "logits"], random_classifier)
    images = to_uint8(real(6)[0])
    pool, unbiased, logits = extractor(images)
    assert pool.shape == (6, 32) and unbiased.shape == (6, 8) and logits.shape == (6, 8)
    head = extractor.net.head
    torch.testing.assert_close(unbiased, pool @ head.weight.T)
    torch.testing.assert_close(logits, unbiased + head.bias)
    with pytest.raises(ValueError, match="uint8"):
        extractor(images.float() / 255)
    with pytest.raises(ValueError, match="Requested features"):
        ShapesFeatureExtractor(SHAPES_EXTRACTOR, ["2048"], random_classifier)


def test_calculate_metrics_uses_the_registered_extractor(random_classifier, monkeypatch):
    calls = []
    forward = ShapesFeatureExtractor.forward
    monkeypatch.setattr(ShapesFeatureExtractor, "forward", lambda self, x: calls.append(x.shape) or forward(self, x))
    a, b = to_uint8(real(20, seed=1)[0]), to_uint8(real(20, seed=2)[0])
    out = torch_fidelity.calculate_metrics(
        input1=ImageTensorDataset(a),
        input2=ImageTensorDataset(b),
        feature_extractor=SHAPES_EXTRACTOR,
        feature_extractor_weights_path=random_classifier,
        fid=True,
        isc=True,
        cuda=False,
        cache=False,
        save_cpu_ram=True,
        isc_splits=2,
        verbose=False,
    )
    assert calls and all(shape[1:] == (3, 16, 16) for shape in calls)
    assert out[torch_fidelity.KEY_METRIC_FID] >= 0
    assert 1 <= out[torch_fidelity.KEY_METRIC_ISC_MEAN] <= 8


def test_compute_metrics_small_counts_stay_valid(random_classifier):
    images, labels = real(5, seed=3)
    out = compute_metrics(images, labels, classifier_weights_path=random_classifier, num_reference=7)
    keys = ["fid", "kid_mean", "kid_std", "isc_mean", "isc_std", "precision", "recall", "f_score", "class_agreement"]
    for key in keys:
        assert key in out and out[key] == out[key], key  # present and not NaN
    assert out["num_samples"] == 5 and out["num_reference"] == 7
    two = compute_metrics(images[:2], classifier_weights_path=random_classifier, metrics=("fid", "kid", "prc"))
    assert "class_agreement" not in two and two["num_reference"] == 2


def test_metrics_are_deterministic_and_reference_forms_agree(random_classifier):
    images, labels = real(40, seed=4)
    first = compute_metrics(images, labels, classifier_weights_path=random_classifier)
    again = compute_metrics(images, labels, classifier_weights_path=random_classifier)
    assert first == again
    ref_u8, ref_labels = shapes_reference(40, 16)
    as_tensor = compute_metrics(images, reference=ref_u8.float() / 255, classifier_weights_path=random_classifier)
    pair = (ref_u8.float() / 255, ref_labels)
    as_pair = compute_metrics(images, reference=pair, classifier_weights_path=random_classifier)
    assert as_tensor["fid"] == pytest.approx(first["fid"]) and as_pair["fid"] == pytest.approx(first["fid"])


def test_reference_folder(random_classifier, tmp_path):
    from torchvision.utils import save_image

    ref, _ = real(12, seed=5)
    for i, image in enumerate(ref):
        save_image(image, str(tmp_path / f"{i}.png"))
    images, _ = real(12, seed=6)
    out = compute_metrics(images, reference=str(tmp_path), classifier_weights_path=random_classifier, metrics=("fid",))
    in_memory = compute_metrics(images, reference=ref, classifier_weights_path=random_classifier, metrics=("fid",))
    assert out["fid"] == pytest.approx(in_memory["fid"], rel=1e-4)


# -- argument errors -----------------------------------------------------------------------------------
GOOD = torch.rand(4, 3, 16, 16)


@pytest.mark.parametrize(
    "images, match",
    [
        (torch.rand(4, 3, 16), r"\(B, 3, H, W\)"),
        (torch.rand(4, 1, 16, 16), r"\(B, 3, H, W\)"),
        (torch.rand(1, 3, 16, 16), "at least 2"),
        (GOOD * 2, r"\[0, 1\]"),
        (GOOD - 1, r"\[0, 1\]"),
        (GOOD.masked_fill(GOOD > 0.9, float("nan")), "NaN"),
        ((GOOD * 255).to(torch.uint8), "images / 255"),
        (GOOD.numpy(), "torch.Tensor"),
    ],
)
def test_bad_images_raise(images, match):
    with pytest.raises(InvalidArgument, match=match):
        compute_metrics(images)


def test_bad_labels_and_options_raise(random_classifier, tmp_path):
    with pytest.raises(InvalidArgument, match=r"shape \(4,\)"):
        compute_metrics(GOOD, torch.zeros(3, dtype=torch.long))
    with pytest.raises(InvalidArgument, match="integer"):
        compute_metrics(GOOD, torch.zeros(4))
    with pytest.raises(InvalidArgument, match="metrics"):
        compute_metrics(GOOD, metrics=("fid", "lpips"))
    with pytest.raises(InvalidArgument, match="feature_extractor"):
        compute_metrics(GOOD, feature_extractor="clip")
    with pytest.raises(InvalidArgument, match="never downloads"):
        compute_metrics(GOOD, feature_extractor="inception-v3-compat")
    with pytest.raises(InvalidArgument, match="never downloads"):
        compute_metrics(GOOD, feature_extractor="inception-v3-compat", inception_weights_path=tmp_path / "none.pth")
    with pytest.raises(InvalidArgument, match="not an existing folder"):
        compute_metrics(GOOD, reference=str(tmp_path / "nowhere"))
    with pytest.raises(InvalidArgument, match="reference images"):
        compute_metrics(GOOD, reference=torch.rand(4, 3, 16, 16) + 1)
    with pytest.raises(InvalidArgument, match="square"):
        compute_metrics(torch.rand(4, 3, 16, 12))
    with pytest.raises(InvalidArgument, match=r"\[0, 8\)"):
        class_agreement(GOOD, torch.tensor([0, 1, 2, 8]), random_classifier)
    with pytest.raises(InvalidArgument, match="differ"):
        real_floor(4, reference_seed=3, other_seed=3)


# -- the numbers mean something (shipped weights) -----------------------------------------------------
@pytest.fixture(scope="module")
def quality() -> dict[str, dict[str, float]]:
    """Scores of real, noisy and blurred sets of N images against the same real reference."""
    images, labels = real(N, seed=21)
    g = torch.Generator().manual_seed(0)
    noisy = (images + 0.2 * torch.randn(images.shape, generator=g)).clamp(0, 1)
    blurred = F.interpolate(F.avg_pool2d(images, 4), scale_factor=4, mode="nearest")  # 4x4 blocks: 4x4 pixel art
    metrics = ("fid", "kid")
    return {
        "floor": real_floor(N, metrics=metrics),
        "real": compute_metrics(images, labels, metrics=metrics),
        "noisy": compute_metrics(noisy, labels, metrics=metrics),
        "blurred": compute_metrics(blurred, labels, metrics=metrics),
    }


@needs_shipped_weights
def test_real_vs_real_is_near_the_floor(quality):
    floor, real_scores = quality["floor"]["fid"], quality["real"]["fid"]
    assert real_scores < 2 * floor + 0.5, (real_scores, floor)


@needs_shipped_weights
@pytest.mark.parametrize("damage", ["noisy", "blurred"])
def test_damaged_images_score_clearly_worse(quality, damage):
    floor = quality["floor"]
    assert quality[damage]["fid"] > 5 * floor["fid"] + 1, (quality[damage], floor)
    assert quality[damage]["kid_mean"] > floor["kid_mean"] + 5 * floor["kid_std"]


@needs_shipped_weights
def test_class_agreement_is_high_on_real_data(quality):
    assert quality["real"]["class_agreement"] > 0.95
    assert quality["floor"]["class_agreement"] > 0.95
    images, labels = real(64, seed=22)
    wrong = (labels + 1) % 8
    assert class_agreement(images, wrong) < 0.1
