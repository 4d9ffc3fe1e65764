"""Where a generator forward's time goes on this CPU: top operators, DiT attention SDPA vs MultiheadAttention, sgemm.

    python benchmarks/forward_profile.py --threads 1 --out benchmarks/results/forward_profile/forward_profile

For every zoo generator with weights, one float32 network forward at `--batch` (the conditional pass of a sampler's
first step: DiT at t = 1, MaskGIT on a fully masked grid, VAR over all its scales), and the diffusion DiT's under
bfloat16 autocast, profiled with `torch.profiler` after a warm-up: the operators with the most self CPU time. The shipped DiT's forward with its `SelfAttention`
(SDPA) and with `nn.MultiheadAttention` on the same weights, alternating, median of `--repeats`. And the
single-thread GFLOP/s of a 2048 x 2048 float32 matrix product, the most these cores reach in the library's matmuls.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from common import write_results
from throughput import cpu_name, with_mha

from adagen_env import zoo

TOP = 8
"""Operators listed per generator."""


def forward_fn(name: str, batch: int, model: torch.nn.Module | None = None) -> Callable[[], object]:
    """One float32 conditional forward of generator `name` at `batch`, as its sampler's first pass makes it."""
    model = (model or zoo.load(name)).eval().requires_grad_(False)
    labels = torch.arange(batch) % model.config.num_classes
    paradigm = zoo.entry(name).paradigm
    if paradigm in ("diffusion", "flow"):
        side = model.config.resolution
        x = torch.randn(batch, 3, side, side, generator=torch.Generator().manual_seed(0))
        t = torch.ones(batch)
        return lambda: model(x, t, labels)
    if paradigm == "maskgit":
        ids = torch.full((batch, model.num_tokens), model.mask_id)
        return lambda: model(ids, labels)
    inputs = torch.randn(batch, model.seq_len - 1, model.config.tokenizer.code_dim)
    return lambda: model(labels, inputs)


def seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    with torch.no_grad():
        fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/forward_profile/forward_profile")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    rows, lines = (
        [],
        [
            "# Where a generator forward's time goes",
            "",
            f"Command: `python benchmarks/forward_profile.py --threads {args.threads} --out {{out}}`; {{date}}, "
            f"{cpu_name()} ({torch.backends.cpu.get_cpu_capability()}), {{threads}} torch thread(s), batch {{batch}}. "
            "Another process (a single-thread zoo training run) occupied the machine's other core.",
            "",
        ],
    )

    a = torch.randn(2048, 2048)
    b = torch.randn(2048, 2048)
    gemm = statistics.median(seconds(lambda: a @ b) for _ in range(args.repeats))
    gemm_gflops = 2 * 2048**3 / gemm / 1e9
    rows.append({"what": "sgemm 2048", "seconds_median": gemm, "gflops": gemm_gflops})
    lines += [f"sgemm 2048 x 2048 x 2048, float32: {gemm_gflops:.1f} GFLOP/s (median of {args.repeats}).", ""]

    sdpa, mha = forward_fn("diffusion", args.batch), forward_fn("diffusion", args.batch, with_mha("diffusion"))
    sdpa(), mha()
    times = {"sdpa": [], "mha": []}
    for _ in range(args.repeats):
        times["sdpa"].append(seconds(sdpa))
        times["mha"].append(seconds(mha))
    s, m = statistics.median(times["sdpa"]), statistics.median(times["mha"])
    rows.append({"what": "diffusion DiT forward, SDPA vs MultiheadAttention", "seconds": times})
    lines += [
        f"Diffusion DiT forward, alternating, median of {args.repeats}: SelfAttention (SDPA) {s:.3f} s, "
        f"nn.MultiheadAttention {m:.3f} s (SDPA x{m / s:.2f}).",
        "",
    ]

    names = [n for n in zoo.GENERATORS if zoo.weights_path(n).exists()]
    for name, precision in [(n, "float32") for n in names] + [("diffusion", "bfloat16")]:
        fn = forward_fn(name, args.batch)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bfloat16"):
            fn()
            with torch.profiler.profile() as prof:
                fn()
        events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
        total = sum(e.self_cpu_time_total for e in events)
        top = [
            {
                "op": e.key,
                "self_ms": e.self_cpu_time_total / 1e3,
                "share": e.self_cpu_time_total / total,
                "calls": e.count,
            }
            for e in events[:TOP]
        ]
        rows.append({"what": f"{name} {precision} forward profile", "total_ms": total / 1e3, "top": top})
        lines += [
            f"## {name}, {precision}: one forward, {total / 1e3:.0f} ms of self CPU time",
            "",
            "| operator | self ms | share | calls |",
            "|---|---|---|---|",
        ]
        lines += [f"| `{t['op']}` | {t['self_ms']:.1f} | {t['share']:.1%} | {t['calls']} |" for t in top]
        lines.append("")
    write_results(args, rows, lines)
    print(f"wrote {args.out}.json and {args.out}.md")


if __name__ == "__main__":
    main()
