"""The zoo's training loop: seeded, with a progress bar, EMA, periodic checkpoints and resume after a kill.

Each zoo recipe supplies a model and a loss `loss_fn(model, images, labels, generator) -> scalar`;
this loop draws fresh shapes every step (the data is unlimited), so a run is fully determined by
its seed and step count. A run may span many sittings: each sitting (a segment) is recorded in the checkpoint
with its steps, wall time and the git commit it ran at, and `train` returns the list.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from adagen_env.data import ShapesDataset
from adagen_env.errors import CheckpointError

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]
SEGMENTS = "segments.json"
"""The run's sittings: start and end step, wall seconds, the git commit and the UTC start of each."""


@dataclass
class TrainConfig:
    """Hyper-parameters of one zoo training run."""

    steps: int = 4000
    """Optimiser steps."""
    batch_size: int = 128
    """Images per step."""
    lr: float = 3e-4
    """Peak AdamW learning rate (linear warm-up, then cosine decay to 10%)."""
    warmup: int = 200
    """Warm-up steps."""
    stages: tuple[int, ...] = ()
    """Steps at which a new training stage starts (a token model's transformer after its tokenizer): the learning
    rate warms up again there and decays from there to the end."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    ema_decay: float = 0.999
    """Decay of the exponential moving average of the weights that gets shipped."""
    resolution: int = 16
    """Side of the training images."""
    seed: int = 0
    """Seeds the model init, the data stream and the loss's noise."""
    checkpoint_every: int = 250
    """Steps between checkpoints."""

    def __post_init__(self) -> None:
        self.stages = tuple(int(s) for s in self.stages)  # JSON gives a list


def _lr_factor(step: int, config: TrainConfig) -> float:
    """Linear warm-up over `warmup` steps from the start of the step's stage, then cosine decay to 10% at the end
    (at the next stage's start for every stage but the last)."""
    bounds = [0, *(s for s in config.stages if 0 < s < config.steps), config.steps]
    start, end = next((a, b) for a, b in zip(bounds, bounds[1:]) if a <= step < b)
    step, length = step - start, end - start
    if step < config.warmup:
        return (step + 1) / config.warmup
    progress = (step - config.warmup) / max(1, length - config.warmup)
    return 0.1 + 0.9 * 0.5 * (1 + torch.cos(torch.tensor(progress * torch.pi)).item())


def _continues(saved: dict, config: TrainConfig, step: int) -> bool:
    """Whether `config` would have trained a checkpoint's first `step` steps exactly as its own config `saved` did:
    equal in all but `steps` and `stages`, with the same learning rate at every past step. So a longer run that
    starts a new stage where the saved one ended continues it; any other change (or another schema) does not."""
    try:
        old = TrainConfig(**saved)
    except TypeError:  # fields this version does not know, or lacks
        return False
    if asdict(replace(old, steps=config.steps, stages=config.stages)) != asdict(config) or config.steps < step:
        return False
    return all(_lr_factor(s, old) == _lr_factor(s, config) for s in range(step))


def _commit() -> str | None:
    """The git commit of the library's checkout (None outside one), recorded with each training segment."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def train(
    model: nn.Module,
    loss_fn: LossFn,
    config: TrainConfig,
    workdir: str | Path,
    device: str | torch.device = "cpu",
    desc: str = "train",
) -> nn.Module:
    """Train `model` (resuming from `workdir/checkpoint.pt` if present) and return its EMA copy.

    Args:
        model: freshly initialised network (its init must come from `torch.manual_seed(config.seed)`).
        loss_fn: scalar loss of a batch; gets a generator on `device` for its own noise.
        config: the run's hyper-parameters; a checkpoint made with other ones is refused unless they would have
            trained its steps alike (`steps` raised, with a new stage at the checkpoint's end, continues it).
        workdir: folder for `checkpoint.pt`, `log.jsonl` and `segments.json` (`SEGMENTS`: one entry per sitting).
        device: where to train.
        desc: progress-bar label.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    model = model.to(device)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    data = ShapesDataset(config.resolution, num_classes=getattr(getattr(model, "config", None), "num_classes", 8))
    data_rng = torch.Generator().manual_seed(config.seed)
    noise_rng = torch.Generator(device=device).manual_seed(config.seed + 1)
    start, segments = 0, []
    checkpoint = workdir / "checkpoint.pt"
    if checkpoint.exists():
        try:
            state = torch.load(checkpoint, map_location=device, weights_only=True)  # tensors and numbers only
        except Exception as exc:  # a file cut short by a kill, not a checkpoint, or one holding pickled objects
            raise CheckpointError(
                f"cannot read checkpoint {str(checkpoint)!r}: {exc}; delete it to start over"
            ) from exc
        if state["config"] != asdict(config) and not _continues(state["config"], config, state["step"]):
            raise CheckpointError(
                f"checkpoint {str(checkpoint)!r} was made with {state['config']}, not {asdict(config)}, and those "
                f"would not have trained its {state['step']} steps alike (a longer run continues one only with a "
                "new stage where it ended); use another workdir or delete it"
            )
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        data_rng.set_state(state["data_rng"])
        noise_rng.set_state(state["noise_rng"].to(noise_rng.get_state().device))
        start, segments = state["step"], list(state.get("segments", []))
    segment = {
        "start_step": start,
        "end_step": start,
        "seconds": 0.0,
        "commit": _commit(),
        "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    segments.append(segment)
    began = time.monotonic()

    def save(step: int) -> None:
        segment.update(end_step=step, seconds=round(time.monotonic() - began, 1))
        state = {
            "model": model.state_dict(),
            "ema": ema.state_dict(),
            "optimizer": optimizer.state_dict(),
            "data_rng": data_rng.get_state(),
            "noise_rng": noise_rng.get_state(),
            "step": step,
            "config": asdict(config),
            "segments": segments,
        }
        tmp = checkpoint.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, checkpoint)  # atomic: a kill never leaves a half-written checkpoint
        tmp = workdir / f".{SEGMENTS}.tmp"
        tmp.write_text(json.dumps(segments, indent=2) + "\n")
        os.replace(tmp, workdir / SEGMENTS)

    model.train()
    bar = tqdm(range(start, config.steps), initial=start, total=config.steps, desc=desc, mininterval=5)
    with open(workdir / "log.jsonl", "a") as log:
        for step in bar:
            for group in optimizer.param_groups:
                group["lr"] = config.lr * _lr_factor(step, config)
            images, labels = data.sample(config.batch_size, generator=data_rng)
            loss = loss_fn(model, images.to(device), labels.to(device), noise_rng)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            with torch.no_grad():
                decay = min(config.ema_decay, (1 + step) / (10 + step))
                for p_ema, p in zip(ema.parameters(), model.parameters()):
                    p_ema.lerp_(p, 1 - decay)
                for b_ema, b in zip(ema.buffers(), model.buffers()):  # e.g. BatchNorm statistics
                    b_ema.copy_(b)
            if step % 50 == 0:
                bar.set_postfix(loss=f"{loss.item():.4f}")
                log.write(json.dumps({"step": step, "loss": loss.item()}) + "\n")
                log.flush()
            if (step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps:
                save(step + 1)
    return ema
