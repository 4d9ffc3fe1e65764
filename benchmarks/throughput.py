"""Generator throughput per optimisation, side by side: images/s, achieved GFLOP/s, and FID / FD-SSL at NFE 8.

    python benchmarks/throughput.py --threads 1 --out benchmarks/results/throughput/throughput.json

Variants of every zoo generator with weights, all at NFE 8 without guidance under the baseline schedule:
`float32` (the default), `bfloat16` (the samplers' `precision` option: autocast around each network forward) and,
for the DiTs, `float32-mha`: the same weights with `nn.MultiheadAttention` in place of the DiT's `SelfAttention`
(SDPA), the attention the DiT had before.

1. Batch `--batch-size`: `--num-samples` class-balanced images per variant (bfloat16: its first `--bfloat16-samples`);
   batch i of every variant is drawn with seed i (the same noise) and the variants alternate batch by batch, so a
   load change on the machine hits all of them. Each batch is timed (the median is reported) and the images are
   scored by `compute_metrics` (FID and FD-SSL against the shapes reference, class agreement); float32 also on its
   first `--bfloat16-samples`, to compare at equal count. float32 runs again once per extra `--seeds` entry s (batch
   seeds i + 1000 s), for the spread over seeds of its scores.
2. Batch `--small-batch`: `--repeats` timed episodes per variant, alternating.
3. `torch.compile` of the float32 generator (for `--compile` names): the first call's seconds (compilation) and the
   median of `--repeats` episodes, alternating with eager float32 episodes, at both batch sizes.
4. One PPO update of `AdaGen/DiT-v0` at `--ppo-lanes` lanes (a rollout of two episodes at NFE 8 with the env's
   default CFG, and the default projected-discriminator reward, then PPO's epochs) with the float32 DiT and with
   `float32-mha`, alternating, median of `--repeats` after one warm-up update each.

FLOPs per image are counted by `torch.utils.flop_counter.FlopCounterMode` on the float32 sampler (the variants do the
same arithmetic); GFLOP/s = FLOPs per image x images/s. Writes the JSON and a markdown table beside it (`.md`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from adagen_env import zoo
from adagen_env.evaluation.grids import PARADIGMS
from adagen_env.metrics import balanced_labels, compute_metrics
from adagen_env.models.dit import DiT
from adagen_env.samplers import Sampler, make_generator

METRICS = ("fid", "ssl")
SEED_STRIDE = 1000
"""Batch i of extra seed s is drawn with seed i + SEED_STRIDE * s."""


@dataclass
class Args:
    out: str = "benchmarks/results/throughput/throughput.json"
    """Where the JSON goes; the markdown table is written beside it with the `.md` suffix."""
    names: tuple[str, ...] = ()
    """Zoo generators to measure; every one with weights when empty."""
    batch_size: int = 256
    """Images per sampler call in part 1."""
    small_batch: int = 64
    """Images per sampler call in part 2."""
    num_samples: int = 2000
    """Images per float32 run scored in part 1."""
    bfloat16_samples: int = 512
    """Images of the bfloat16 run in part 1 (it is several times slower on a CPU without bfloat16 units)."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Sampling seeds of the float32 runs (the first is every variant's)."""
    nfe: int = 8
    """Conditional network evaluations per image (VAR: its scales)."""
    repeats: int = 3
    """Timed runs per point in parts 2-4."""
    compile: tuple[str, ...] = ("diffusion",)
    """Generators measured under torch.compile (part 3)."""
    ppo_lanes: int = 64
    """Lanes of the PPO update (part 4; 0 skips it)."""
    threads: int = 0
    """torch CPU threads; 0 keeps torch's default."""
    note: str = ""
    """A line about the machine's state during the run, copied into the markdown."""


def parse_args() -> Args:
    defaults = Args()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for name, value in vars(defaults).items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, tuple):
            kind = int if name == "seeds" else str
            parser.add_argument(flag, nargs="*", type=kind, default=list(value))
        else:
            parser.add_argument(flag, type=type(value), default=value)
    ns = parser.parse_args()
    return Args(**{k: tuple(v) if isinstance(v, list) else v for k, v in vars(ns).items()})


class _MultiheadAttention(nn.Module):
    """`nn.MultiheadAttention` holding a DiT `SelfAttention`'s weights, called as the DiT block calls it."""

    def __init__(self, attn: nn.Module) -> None:
        super().__init__()
        self.mha = nn.MultiheadAttention(attn.out_proj.in_features, attn.heads, batch_first=True)
        self.mha.load_state_dict(attn.state_dict())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mha(x, x, x, need_weights=False)[0]


def with_mha(name: str) -> DiT:
    """The zoo DiT `name` with `nn.MultiheadAttention` in every block."""
    model = zoo.load(name)
    for block in model.blocks:
        block.attn = _MultiheadAttention(block.attn).eval()
    return model


def variants(name: str, nfe: int | None) -> dict[str, Callable[[], Sampler]]:
    """Variant name -> sampler factory for the zoo generator `name` (NFE `nfe`, no guidance)."""
    spec = PARADIGMS[zoo.entry(name).paradigm]
    model = zoo.load(name)
    out = {
        "float32": lambda: spec.make_sampler(model, nfe, None, "cpu"),
        "bfloat16": lambda: spec.make_sampler(model, nfe, None, "cpu", precision="bfloat16"),
    }
    if isinstance(model, DiT):
        mha = with_mha(name)
        out["float32-mha"] = lambda: spec.make_sampler(mha, nfe, None, "cpu")
    return out


def timed(fn: Callable[[], torch.Tensor]) -> tuple[float, torch.Tensor]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def flops_per_image(sampler: Sampler, batch: int = 8) -> float:
    labels = torch.arange(batch) % sampler.num_classes
    with FlopCounterMode(display=False) as counter:
        sampler.sample(labels, make_generator(0))
    return counter.get_total_flops() / batch


def part_quality(name: str, samplers: dict[str, Sampler], args: Args) -> dict:
    """Part 1: alternating timed batches of every variant (and float32 at the extra seeds), then their metrics.

    bfloat16 makes only its first `--bfloat16-samples` images; the float32 runs are scored on their first as many
    too, so bfloat16 is compared at equal sample count and equal noise, beside float32's spread at that count."""
    runs = {variant: (variant, 0) for variant in samplers}
    runs |= {f"float32-seed{s}": ("float32", k) for k, s in enumerate(args.seeds[1:], start=1)}
    small = min(args.bfloat16_samples, args.num_samples)
    counts = {run: small if variant == "bfloat16" else args.num_samples for run, (variant, _) in runs.items()}
    labels = balanced_labels(args.num_samples, samplers["float32"].num_classes)
    images = {run: [] for run in runs}
    seconds = {run: [] for run in runs}
    for i, start in enumerate(range(0, args.num_samples, args.batch_size)):
        batch = labels[start : start + args.batch_size]
        for run, (variant, seed_index) in runs.items():
            if start >= counts[run]:
                continue
            seed = args.seeds[0] + i + SEED_STRIDE * seed_index
            dt, out = timed(lambda: samplers[variant].sample(batch, make_generator(seed)))
            images[run].append(out)
            if len(batch) == args.batch_size:
                seconds[run].append(dt)
        print(f"{name}: batch {i} done", flush=True)
    result = {}
    for run, (variant, _) in runs.items():
        made = torch.cat(images[run])[: counts[run]]
        sizes = {counts[run]} | ({small} if variant == "float32" else set())
        scores = {}
        for n in sorted(sizes):
            got = compute_metrics(made[:n], labels[:n], metrics=METRICS)
            scores[str(n)] = {key: got.get(key) for key in ("fid", "fd_ssl", "class_agreement")}
            print(f"{name} {run} ({n} samples): FID {got['fid']:.3f} FD-SSL {got['fd_ssl']:.3f}", flush=True)
        result[run] = {"variant": variant, "seconds": seconds[run], "num_samples": counts[run], "scores": scores}
    return result


def alternate(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Seconds of `repeats` calls of each run, the runs alternating."""
    seconds = {run: [] for run in runs}
    for _ in range(repeats):
        for run, fn in runs.items():
            seconds[run].append(timed(fn)[0])
    return seconds


def episode(sampler: Sampler, batch: int) -> Callable[[], torch.Tensor]:
    labels = torch.arange(batch) % sampler.num_classes
    return lambda: sampler.sample(labels, make_generator(0))


def part_small(samplers: dict[str, Sampler], args: Args) -> dict[str, list[float]]:
    """Part 2: alternating episodes at the small batch (after a warm-up episode of 8 images each)."""
    for sampler in samplers.values():
        episode(sampler, 8)()
    return alternate({v: episode(s, args.small_batch) for v, s in samplers.items()}, args.repeats)


def part_compile(name: str, nfe: int | None, args: Args) -> dict:
    """Part 3: torch.compile's first-call seconds and alternating episodes against eager float32, per batch size."""
    spec = PARADIGMS[zoo.entry(name).paradigm]
    eager = spec.make_sampler(zoo.load(name), nfe, None, "cpu")
    compiled = spec.make_sampler(torch.compile(zoo.load(name)), nfe, None, "cpu")
    result = {}
    for batch in (args.small_batch, args.batch_size):
        first, _ = timed(episode(compiled, batch))
        episode(eager, batch)()
        seconds = alternate(
            {"float32": episode(eager, batch), "float32-compiled": episode(compiled, batch)}, args.repeats
        )
        result[str(batch)] = {"first_call_seconds": first, "seconds": seconds}
        print(
            f"{name} compile batch {batch}: first call {first:.1f} s, "
            + ", ".join(f"{k} {statistics.median(v):.3f} s" for k, v in seconds.items()),
            flush=True,
        )
    return result


def part_ppo(args: Args) -> dict:
    """Part 4: one PPO update of AdaGen/DiT-v0 per DiT variant, alternating."""
    import gymnasium as gym

    from agents.presets import make_model, timesteps_per_update
    from agents.train import smooth
    from agents.vec_env import SB3VecEnv

    generators = {"float32": ("diffusion", {}), "float32-mha": (with_mha("diffusion"), {})}
    models = {}
    for variant, (generator, kwargs) in generators.items():
        envs = gym.make_vec("AdaGen/DiT-v0", num_envs=args.ppo_lanes, generator=generator, sampler_kwargs=kwargs)
        venv = SB3VecEnv(smooth(envs, envs.unwrapped.default_smoothing))
        model = make_model("ppo", venv, envs.unwrapped.horizon, seed=0)
        steps = timesteps_per_update(model, envs.unwrapped.horizon)
        model.learn(steps)  # warm-up update
        models[variant] = (model, steps)
    return alternate(
        {v: (lambda m=m, n=n: m.learn(n, reset_num_timesteps=False)) for v, (m, n) in models.items()}, args.repeats
    )


def _load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def cpu_name() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return f"{names[0]} x {len(names)}" if names else platform.machine()


def _median_rate(seconds: list[float], batch: int) -> float:
    return batch / statistics.median(seconds)


def to_markdown(payload: dict) -> str:
    meta = payload["meta"]
    lines = [
        "# Generator throughput per optimisation",
        "",
        f"Command: `{meta['command']}`; {meta['date']}, torch {meta['torch']}, {meta['cpu']} ({meta['cpu_capability']}), "
        f"{meta['cpu_threads']} torch thread(s). 1-minute load average {meta['load_average_1m']['start']} at the "
        f"start, {meta['load_average_1m']['end']} at the end.",
    ]
    if meta["note"]:
        lines += ["", meta["note"]]
    lines += [
        "",
        f"NFE {meta['nfe']}"
        + (f" (VAR: its {meta['var_scales']} scales)" if meta["var_scales"] else "")
        + ", no guidance, baseline schedule. `float32`: the "
        "default (DiT attention through SDPA); `float32-mha`: the DiT with `nn.MultiheadAttention` on the same weights "
        '(the attention before SDPA); `bfloat16`: `precision="bfloat16"` (autocast around each network forward). '
        f"Batch {meta['batch_size']}: median over the full batches of part 1's runs (the variants alternating batch "
        f"by batch; bfloat16 has fewer); batch {meta['small_batch']}: median of {meta['repeats']} alternating episodes. "
        "GFLOP/s = FLOPs per image (FlopCounterMode, float32) x images/s.",
        "",
        "## Speed",
        "",
        f"| generator | variant | GFLOP / image | images/s @{meta['small_batch']} | GFLOP/s @{meta['small_batch']} "
        f"| images/s @{meta['batch_size']} | GFLOP/s @{meta['batch_size']} | x float32 @{meta['batch_size']} |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, row in payload["generators"].items():
        gflop = row["flops_per_image"] / 1e9
        base = _median_rate(row["quality"]["float32"]["seconds"], meta["batch_size"])
        for variant in row["small"]:
            small = _median_rate(row["small"][variant], meta["small_batch"])
            large = _median_rate(row["quality"][variant]["seconds"], meta["batch_size"])
            lines.append(
                f"| {name} | {variant} | {gflop:.3f} | {small:.1f} | {small * gflop:.1f} | {large:.1f} "
                f"| {large * gflop:.1f} | {large / base:.2f} |"
            )
    lines += [
        "",
        f"## Quality at NFE {meta['nfe']}",
        "",
        "Class-balanced samples against the shapes reference (`compute_metrics`). Every variant's batch i has the same "
        f"noise; bfloat16 makes only the first {meta['bfloat16_samples']} images, and float32 is scored on its first "
        f"as many too. float32 runs at seeds {', '.join(map(str, meta['seeds']))}: its scores over them and their "
        "spread (max - min) are in the last two columns.",
        "",
        "| generator | variant | samples | FID | FD-SSL | class agreement | float32 FID over seeds (spread) "
        "| float32 FD-SSL over seeds (spread) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, row in payload["generators"].items():
        q = row["quality"]
        for run, r in q.items():
            if run.startswith("float32-seed"):
                continue
            for n, sc in r["scores"].items():
                agree = "-" if sc["class_agreement"] is None else f"{sc['class_agreement']:.3f}"
                extra = " | | |"
                if run == "float32":
                    fids = [q[k]["scores"][n]["fid"] for k in q if q[k]["variant"] == "float32"]
                    fds = [q[k]["scores"][n]["fd_ssl"] for k in q if q[k]["variant"] == "float32"]
                    extra = (
                        " | "
                        + " / ".join(f"{v:.2f}" for v in fids)
                        + f" ({max(fids) - min(fids):.2f}) | "
                        + " / ".join(f"{v:.2f}" for v in fds)
                        + f" ({max(fds) - min(fds):.2f}) |"
                    )
                lines.append(f"| {name} | {run} | {n} | {sc['fid']:.3f} | {sc['fd_ssl']:.3f} | {agree}{extra}")
    if payload["compile"]:
        lines += [
            "",
            "## torch.compile (float32)",
            "",
            "| generator | batch | first call s (compiles) | eager s / episode | compiled s / episode | speed-up |",
            "|---|---|---|---|---|---|",
        ]
        for name, by_batch in payload["compile"].items():
            for batch, r in by_batch.items():
                eager = statistics.median(r["seconds"]["float32"])
                comp = statistics.median(r["seconds"]["float32-compiled"])
                lines.append(
                    f"| {name} | {batch} | {r['first_call_seconds']:.1f} | {eager:.3f} | {comp:.3f} "
                    f"| {eager / comp:.2f} |"
                )
    if payload["ppo"]:
        lines += [
            "",
            f"## One PPO update of AdaGen/DiT-v0 at {meta['ppo_lanes']} lanes",
            "",
            "Rollout of two episodes (NFE 8, CFG 1.0: 16 evaluations each) with the projected-discriminator "
            f"reward, then PPO's epochs; median of {meta['repeats']} alternating updates after a warm-up each.",
            "",
            "| generator variant | s / update | x float32 |",
            "|---|---|---|",
        ]
        base = statistics.median(payload["ppo"]["float32"])
        for variant, secs in payload["ppo"].items():
            lines.append(f"| {variant} | {statistics.median(secs):.2f} | {base / statistics.median(secs):.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    args = parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    names = list(args.names) or [n for n in zoo.GENERATORS if zoo.weights_path(n).exists()]
    load_start = _load_average()
    generators, compiled, ppo = {}, {}, {}
    var_scales = None

    def write() -> None:
        """The results so far (after each generator, so a late failure keeps what was measured)."""
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "meta": {
                "command": "python benchmarks/throughput.py " + " ".join(sys.argv[1:]),
                **{k: list(v) if isinstance(v, tuple) else v for k, v in vars(args).items()},
                "var_scales": var_scales,
                "cpu": cpu_name(),
                "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                "cpu_threads": torch.get_num_threads(),
                "load_average_1m": {"start": load_start, "end": _load_average()},
                "torch": torch.__version__,
                "python": platform.python_version(),
                "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            },
            "generators": generators,
            "compile": compiled,
            "ppo": ppo,
        }
        out.write_text(json.dumps(payload, indent=2) + "\n")
        out.with_suffix(".md").write_text(to_markdown(payload))
        print(f"wrote {out} and {out.with_suffix('.md')}", flush=True)

    for name in names:
        spec = PARADIGMS[zoo.entry(name).paradigm]
        nfe = None if spec.fixed_nfe else args.nfe
        samplers = {variant: make() for variant, make in variants(name, nfe).items()}
        if spec.fixed_nfe:
            var_scales = samplers["float32"].horizon
        row = {
            "paradigm": zoo.entry(name).paradigm,
            "episode_nfe": samplers["float32"].episode_nfe,
            "flops_per_image": flops_per_image(samplers["float32"]),
        }
        row["quality"] = part_quality(name, samplers, args)
        row["small"] = part_small(samplers, args)
        generators[name] = row
        if name in args.compile:
            compiled[name] = part_compile(name, nfe, args)
        write()
    if args.ppo_lanes > 0:
        ppo.update(part_ppo(args))
        write()


if __name__ == "__main__":
    main()
