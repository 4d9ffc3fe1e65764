"""First look at every shipped generator: FID and class agreement of 256 baseline samples per setting,
and each tokenizer's reconstruction FID. A quick check after `adagen zoo train`, before the full
`adagen zoo eval` (2000 samples, all NFE) covers a generator:

    python benchmarks/first_look.py

Prints one line per (generator, setting).
"""

from __future__ import annotations

import torch

from adagen_env import zoo
from adagen_env.data import ShapesDataset
from adagen_env.metrics import compute_metrics
from adagen_env.samplers import DiffusionSampler, FlowSampler, make_generator
from adagen_env.samplers.maskgit import MaskGITSampler
from adagen_env.samplers.var import VARSampler

SETTINGS = {
    "diffusion": [("NFE 32, CFG 3", lambda m: DiffusionSampler(m, num_steps=32, cfg_scale=3.0))],
    "flow": [("NFE 32, CFG 3", lambda m: FlowSampler(m, num_steps=32, cfg_scale=3.0))],
    "maskgit": [("8 steps, baseline", lambda m: MaskGITSampler(m, num_steps=8))],
    "var": [("6 scales, baseline", lambda m: VARSampler(m))],
}


def main() -> None:
    labels = torch.arange(8).repeat(32)  # 256, class-balanced
    for name, settings in SETTINGS.items():
        if not zoo.weights_path(name).exists():
            print(f"{name}: no shipped weights")
            continue
        model = zoo.load(name)
        for what, make in settings:
            images = make(model).sample(labels, make_generator(0))
            result = compute_metrics(images, labels, metrics=("fid",))
            print(
                f"{name} ({what}): FID@256 {result['fid']:.2f}, class agreement {result['class_agreement']:.3f}",
                flush=True,
            )
        if hasattr(model, "tokenizer"):
            real, real_labels = ShapesDataset(model.tokenizer.config.resolution).sample(1000, seed=3)
            with torch.no_grad():
                recon = torch.cat([model.tokenizer.decode(model.tokenizer.encode(x)) for x in real.split(250)])
            result = compute_metrics(recon.clamp(0, 1), real_labels, metrics=("fid",))
            print(f"{name} tokenizer: reconstruction FID@1000 {result['fid']:.2f}", flush=True)


if __name__ == "__main__":
    main()
