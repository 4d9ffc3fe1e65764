"""How much each token generator uses the class it is given: its loss on real token maps with the true class,
the null class (unconditional) and a wrong class.

MaskGIT: cross-entropy of the masked tokens at mask ratios 0.3, 0.6 and 0.9 (the same random masks for the
three labels, `--repeats` draws). VAR: teacher-forced cross-entropy of each scale's map. A generator that draws
the requested shape predicts real tokens better with the true class than with none; the gap (null - true, in
nats per token) is how much it uses the class. `--batch` real shapes (class-balanced) are tokenized once: their
clean renderings for a generator whose transformer learned those (`VQConfig.grain_sigma` > 0).

    python benchmarks/class_use.py --batch 512 --out benchmarks/results/class_use/class_use
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from common import parse_args, write_results

from adagen_env import zoo
from adagen_env.metrics import balanced_labels
from adagen_env.models.vq import clean_pair

MASK_RATIOS = (0.3, 0.6, 0.9)
DATA_SEED = 11


def label_sets(labels: torch.Tensor, null_class: int, num_classes: int) -> dict[str, torch.Tensor]:
    """(B,) true labels -> the three conditions: true, null (unconditional) and wrong (the next class)."""
    return {"true": labels, "null": torch.full_like(labels, null_class), "wrong": (labels + 1) % num_classes}


def learned_images(tokenizer: torch.nn.Module, batch: int, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(images (B, 3, 32, 32), labels (B,)): `batch` class-balanced real scenes (seed `DATA_SEED`) as the transformer
    learned their tokens: the images themselves, or their clean renderings for a tokenizer of clean renderings."""
    labels = balanced_labels(batch, num_classes)
    generator = torch.Generator().manual_seed(DATA_SEED)
    images, clean, _ = clean_pair(batch, tokenizer.config, num_classes, generator, labels)
    return (clean if tokenizer.config.grain_sigma > 0 else images), labels


@torch.no_grad()
def maskgit_rows(batch: int, repeats: int) -> list[dict]:
    model = zoo.load("maskgit")
    images, labels = learned_images(model.tokenizer, batch, model.config.num_classes)
    ids = model.tokenizer.encode(images).flatten(1)  # (B, N)
    conditions = label_sets(labels, model.null_class, model.config.num_classes)
    generator = torch.Generator().manual_seed(0)
    rows = []
    for ratio in MASK_RATIOS:
        losses = {name: 0.0 for name in conditions}
        for _ in range(repeats):
            ranks = torch.rand(ids.shape, generator=generator).argsort(dim=1).argsort(dim=1)
            masked = ranks < round(ratio * ids.shape[1])  # (B, N)
            inputs = torch.where(masked, torch.full_like(ids, model.mask_id), ids)
            for name, lab in conditions.items():
                logits, _ = model(inputs, lab)
                losses[name] += F.cross_entropy(logits[masked], ids[masked]).item() / repeats
        rows.append({"generator": "maskgit", "where": f"mask ratio {ratio}", **losses})
    return rows


@torch.no_grad()
def var_rows(batch: int) -> list[dict]:
    model = zoo.load("var")
    images, labels = learned_images(model.tokenizer, batch, model.config.num_classes)
    ids = model.tokenizer.encode(images)  # S maps [(B, pn*pn)]
    _, inputs = model.tokenizer.ids_to_fhat(ids)
    losses = {}
    for name, lab in label_sets(labels, model.null_class, model.config.num_classes).items():
        logits, _ = model(lab, inputs)  # (B, L, V)
        losses[name] = [
            F.cross_entropy(logits[:, model.scale_slice(si)].flatten(0, 1), target.flatten()).item()
            for si, target in enumerate(ids)
        ]
    return [
        {"generator": "var", "where": f"scale {pn}x{pn}", **{name: losses[name][si] for name in losses}}
        for si, pn in enumerate(model.scales)
    ]


def main() -> None:
    args = parse_args(__doc__, "benchmarks/results/class_use/class_use")
    rows = maskgit_rows(args.batch, args.repeats) + var_rows(args.batch)
    for row in rows:
        row["gap"] = row["null"] - row["true"]
        print(row, flush=True)
    write_results(
        args,
        rows,
        [
            "# How much the token generators use the class",
            "",
            "Cross-entropy (nats per token) of real token maps (of the clean renderings where the generator learned those), "
            "{batch} class-balanced real shapes (seed "
            f"{DATA_SEED}), {{threads}} CPU threads, {{date}}. "
            "Command: `python benchmarks/class_use.py --batch {batch} --out {out}`. "
            "MaskGIT: masked tokens, the same {repeats} random masks per label; VAR: teacher-forced, per scale. "
            "gap = null - true: what the true class is worth to the generator.",
            "",
            "| generator | where | true class | null class | wrong class | gap |",
            "|---|---|---|---|---|---|",
        ]
        + [
            f"| {r['generator']} | {r['where']} | {r['true']:.3f} | {r['null']:.3f} | {r['wrong']:.3f} | {r['gap']:.3f} |"
            for r in rows
        ],
    )


if __name__ == "__main__":
    main()
