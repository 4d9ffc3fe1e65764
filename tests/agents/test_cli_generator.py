"""`adagen train --generator DIR` and `adagen eval` from its checkpoint, through the command line's `main`, on a tiny
random-init diffusers DiT + AutoencoderKL saved with `save_pretrained`: the checkpoint records the directory, eval
loads it again from there (or from `--generator` when it moved), the discriminator's reals come from `--real-data`,
the scores from `--reference` in Inception-v3's space (a random-init Inception state dict stands in for
torch-fidelity's weights); a missing directory, one of another family and a pickle as weights are refused."""

from __future__ import annotations

import io
import json
import pickle
import shutil
import zipfile
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch

diffusers = pytest.importorskip("diffusers", reason="the diffusers adapters need the diffusers extra")

from conftest import FAST_PPO, smoke_train_argv  # noqa: E402  tests/agents/conftest.py

from adagen_env.errors import CheckpointError, InvalidArgument  # noqa: E402
from agents.cli import main  # noqa: E402

pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation:DeprecationWarning",  # diffusers' numpy call
    "ignore::UserWarning",
)

CLASSES = 4
"""Classes of the tiny DiT (its label embedding has a null row after them)."""


@pytest.fixture(scope="module")
def dit_dir(tmp_path_factory) -> Path:
    """A DiT pipeline directory as the hub's DiT-XL-2-256 lays it out, in miniature (16 px images)."""
    root = tmp_path_factory.mktemp("dit")
    torch.manual_seed(0)
    transformer = diffusers.DiTTransformer2DModel(
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=4,
        out_channels=8,
        num_layers=1,
        sample_size=8,
        patch_size=2,
        num_embeds_ada_norm=CLASSES,
    )
    for p in transformer.parameters():  # break adaLN-zero so the output depends on the input
        if p.abs().sum() == 0:
            torch.nn.init.normal_(p, std=0.05)
    vae = diffusers.AutoencoderKL(
        latent_channels=4,
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        norm_num_groups=4,
        sample_size=16,
    )
    transformer.save_pretrained(root / "transformer")
    vae.save_pretrained(root / "vae")
    diffusers.DDIMScheduler(clip_sample=False).save_pretrained(root / "scheduler")
    return root


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    """Real images in ImageFolderDataset's layout: one sub-folder per class, two 20 x 24 PNGs each."""
    from PIL import Image

    root = tmp_path_factory.mktemp("real")
    rng = np.random.default_rng(0)
    for c in range(CLASSES):
        (root / f"class_{c}").mkdir()
        for i in range(2):
            pixels = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / f"class_{c}" / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def inception_weights(tmp_path_factory) -> Path:
    """A random-init state dict of torch-fidelity's Inception-v3, saved as a plain tensor file."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    empty = io.BytesIO()
    torch.save({}, empty)
    empty.seek(0)
    torch.manual_seed(0)
    with mock.patch.object(FeatureExtractorInceptionV3, "load_state_dict", lambda self, state: None):
        net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=empty)
    path = tmp_path_factory.mktemp("inception") / "weights-inception.pth"
    torch.save(net.state_dict(), path)
    return path


def _train(logdir: Path, *flags: str) -> None:
    common = ["--checkpoint-every", "1", "--reward-model", "adversarial-conv", "--run-name", "run"]
    main(smoke_train_argv(logdir, *common, "--algo-kwargs", FAST_PPO, *flags, env="AdaGen/DiT-v0", updates=2))


def _meta(checkpoint: Path) -> dict:
    with zipfile.ZipFile(checkpoint) as archive:
        return json.loads(archive.read("data"))["adagen_meta"]


def test_train_on_a_diffusers_directory_then_eval_from_its_checkpoint(
    tmp_path, capsys, dit_dir, image_folder, inception_weights
) -> None:
    model_dir = shutil.copytree(dit_dir, tmp_path / "model")
    _train(tmp_path / "runs", "--generator", str(model_dir), "--real-data", str(image_folder))
    summary = json.loads(capsys.readouterr().out)
    checkpoint = Path(summary["checkpoint"])
    assert summary["updates"] == 2 and checkpoint.is_file()
    meta = _meta(checkpoint)
    assert meta["env_kwargs"]["generator"] == str(model_dir.resolve())
    assert meta["real_data"] == str(image_folder.resolve())
    assert meta["paradigm"] == "diffusion" and meta["sampler_config"]["num_steps"] == 2

    from adagen_env.adapters.diffusers_dit import DiffusersDiT
    from adagen_env.zoo import weights_digest

    assert meta["generator_digest"] == weights_digest(DiffusersDiT.from_pretrained(dit_dir))

    # A resume without --generator / --real-data continues on the recorded ones.
    _train(tmp_path / "runs", "--resume", "--total-updates", "3")
    resumed = json.loads(capsys.readouterr().out)
    assert resumed["updates"] == 3 and _meta(checkpoint)["env_kwargs"]["generator"] == str(model_dir.resolve())

    # eval rebuilds the generator from the recorded directory and scores against the real folder in Inception space.
    real = ["--reference", str(image_folder), "--inception-weights", str(inception_weights)]
    common = ["--policy", str(checkpoint), "--num-samples", "4", "--seeds", "0", "--batch-size", "4", *real]
    main(["eval", "--out", str(tmp_path / "eval"), *common])
    results = json.loads((tmp_path / "eval" / "eval.json").read_text())
    (row,) = results["rows"]
    assert row["generator_digest"] == meta["generator_digest"] and np.isfinite(row["mean"]["fid"])
    assert "fd_ssl" not in row["mean"] and results["reference"] == str(image_folder)
    assert "Inception FID" in (tmp_path / "eval" / "eval.md").read_text()

    # The directory moved: eval refuses the recorded path by name and runs from --generator, whose weights match.
    moved = model_dir.rename(tmp_path / "moved")
    with pytest.raises(SystemExit, match="does not exist"):
        main(["eval", "--out", str(tmp_path / "eval2"), *common])
    main(["eval", "--generator", str(moved), "--out", str(tmp_path / "eval3"), *common[:-4]])
    again = json.loads((tmp_path / "eval3" / "eval.json").read_text())["rows"][0]
    assert again["generator_digest"] == meta["generator_digest"]


def test_generators_that_are_missing_or_of_another_family_are_refused(tmp_path, dit_dir, image_folder) -> None:
    from agents.train import Args, train

    with pytest.raises(CheckpointError, match="does not exist"):
        train(Args(env="AdaGen/DiT-v0", generator=str(tmp_path / "nowhere"), logdir=str(tmp_path)))
    with pytest.raises(SystemExit, match="generator .* does not exist"):
        _train(tmp_path / "runs", "--generator", str(tmp_path / "nowhere"))
    with pytest.raises(SystemExit, match="another model family .*AdaGen/DiT-v0 serves it"):
        main(["train", "--env", "AdaGen/SiT-v0", "--generator", str(dit_dir), "--logdir", str(tmp_path)])
    with pytest.raises(SystemExit, match="--real-data needs a reward model that takes real images"):
        main(["train", "--env", "AdaGen/DiT-v0", "--generator", str(dit_dir), "--real-data", str(image_folder)])
    with pytest.raises(SystemExit, match="--reference and --inception-weights go together"):
        _train(tmp_path / "runs", "--generator", str(dit_dir), "--reference", str(image_folder))
    assert not (tmp_path / "runs").exists()  # every refusal came before a run directory


def test_inception_weights_are_read_without_unpickling(tmp_path, inception_weights) -> None:
    from adagen_env.metrics.inception import LocalInceptionV3, read_state

    assert set(read_state(inception_weights)) == set(torch.load(inception_weights, weights_only=True))
    net = LocalInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(inception_weights))
    assert not net.training
    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps(CheckpointError("a pickled object, not tensors")))
    with pytest.raises(InvalidArgument, match="not a state dict of tensors"):
        read_state(evil)
    with pytest.raises(InvalidArgument, match="do not exist"):
        read_state(tmp_path / "missing.pth")


def test_bench_on_a_diffusers_directory_runs_every_row_on_it(tmp_path, dit_dir) -> None:
    flags = ["--steps", "2", "--baseline-steps", "--no-hand-made", "--num-samples", "4", "--seeds", "0"]
    flags += ["--search-samples", "4", "--search-rounds", "0", "--batch-size", "4"]
    with pytest.raises(SystemExit, match="--generator needs --env"):
        main(["bench", "--generator", str(dit_dir), *flags])
    main(["bench", "--env", "AdaGen/DiT-v0", "--generator", str(dit_dir), "--out", str(tmp_path / "bench"), *flags])
    results = json.loads((tmp_path / "bench" / "bench.json").read_text())
    assert results["config"]["generator"] == str(dit_dir.resolve())
    assert [row["kind"] for row in results["rows"]] == ["baseline", "tuned"]

    from adagen_env.adapters.diffusers_dit import DiffusersDiT
    from adagen_env.zoo import weights_digest

    digest = weights_digest(DiffusersDiT.from_pretrained(dit_dir))
    assert {row["generator_digest"] for row in results["rows"]} == {digest}
