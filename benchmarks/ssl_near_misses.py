"""Does the FD-SSL encoder see the class and the size if its near misses change one factor at a time?

The shipped `shapes-ssl` draws a near miss by redrawing one factor group (class, geometry = size + centre + angle,
colour, background). This trains a variant whose near misses redraw a single factor (class, size, centre, angle,
colour, background) into a folder of its own (the shipped weights are not touched), then scores FD in an encoder's
features on 2000 real 16x16 images under the sensitivity table's damages (`benchmarks/sensitivity.py`), with the
spread over 4 undamaged seeds and the share of the feature variance that the class explains.

    python benchmarks/ssl_near_misses.py train --steps 600 --workdir /tmp/ssl_per_factor
    python benchmarks/ssl_near_misses.py score --weights-dir /tmp/ssl_per_factor/weights   # the variant
    python benchmarks/ssl_near_misses.py score                                               # the shipped encoder
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sensitivity import DAMAGES, real_set  # noqa: E402

PER_FACTOR = {
    "class": (),
    "size": ("size",),
    "centre": ("centre",),
    "angle": ("angle",),
    "colour": ("fg",),
    "background": ("bg_a", "bg_b", "bg_dir"),
}


def train(steps: int, workdir: Path) -> None:
    import adagen_env.models.ssl as ssl
    from adagen_env import zoo

    ssl.FACTOR_GROUPS.clear()
    ssl.FACTOR_GROUPS.update(PER_FACTOR)
    print(zoo.train_and_export("shapes-ssl", workdir=workdir / "work", weights_dir=workdir / "weights", steps=steps))


def score(weights_dir: str | None, n: int = 2000, resolution: int = 16) -> None:
    from adagen_env import zoo
    from adagen_env.data.shapes import render_shapes
    from adagen_env.metrics import ssl as M

    if weights_dir:
        M._NETS["cpu"] = M.SSLFeatures(zoo.load("shapes-ssl", weights_dir=weights_dir)).eval()

    def feats(images):
        return M.ssl_features((images.clamp(0, 1) * 255).round().to(torch.uint8))

    lab_r, fac_r, data = real_set(n, resolution, 777)
    ref = feats(render_shapes(lab_r, fac_r, data.class_names))
    total = ref.var(0).sum()
    between = sum(((ref[lab_r == c].mean(0) - ref.mean(0)) ** 2).sum() * (lab_r == c).float().mean() for c in range(8))
    print("class share", float(between / total))
    none = []
    for s in range(4):
        labels, factors, d = real_set(n, resolution, 900 + s)
        none.append(M.frechet_distance(feats(render_shapes(labels, factors, d.class_names)), ref))
    print("none", [round(x, 2) for x in none], "std", round(float(torch.tensor(none).std()), 2))
    for name, (fn, strengths) in DAMAGES.items():
        values = []
        for strength in strengths:
            labels, factors, d = real_set(n, resolution, 900)
            images, _ = fn(labels, factors, d, strength, torch.Generator().manual_seed(1))
            values.append(round(M.frechet_distance(feats(images), ref), 2))
        print(name, strengths, values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    t = commands.add_parser("train")
    t.add_argument("--steps", type=int, default=600)
    t.add_argument("--workdir", type=Path, required=True)
    s = commands.add_parser("score")
    s.add_argument("--weights-dir", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    train(args.steps, args.workdir) if args.command == "train" else score(args.weights_dir)


if __name__ == "__main__":
    main()
