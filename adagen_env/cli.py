"""The `adagen` command line: `adagen zoo train NAME`, `adagen zoo eval`, and (later) train / eval / bench."""

from __future__ import annotations

import argparse
import sys


def _zoo_train(args: argparse.Namespace) -> None:
    from adagen_env import zoo

    for name in args.names:
        path = zoo.train_and_export(name, workdir=args.workdir, device=args.device, steps=args.steps)
        print(f"wrote {path}")


def _zoo_eval(args: argparse.Namespace) -> None:
    from adagen_env.zoo.evaluate import evaluate_zoo

    evaluate_zoo(names=args.names, num_samples=args.num_samples, out_dir=args.out, device=args.device, quick=args.quick)


def build_parser() -> argparse.ArgumentParser:
    from adagen_env.zoo import GENERATORS, ZOO

    parser = argparse.ArgumentParser(prog="adagen", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    zoo_parser = commands.add_parser("zoo", help="train or evaluate the shipped generators")
    zoo_commands = zoo_parser.add_subparsers(dest="zoo_command", required=True)
    train = zoo_commands.add_parser("train", help="train zoo models on the shapes data (resumes from --workdir)")
    train.add_argument("names", nargs="+", choices=list(ZOO))
    train.add_argument("--workdir", default="checkpoints/zoo", help="checkpoints and logs; a rerun resumes from here")
    train.add_argument("--device", default="cpu")
    train.add_argument("--steps", type=int, default=None, help="override the recipe's step count")
    train.set_defaults(func=_zoo_train)

    evaluate = zoo_commands.add_parser("eval", help="FID / class agreement of the shipped generators over NFE and CFG")
    evaluate.add_argument("names", nargs="*", default=[], choices=[*GENERATORS, []], help="generators to evaluate (default: all)")
    evaluate.add_argument("--num-samples", type=int, default=2000)
    evaluate.add_argument("--out", default="benchmarks/results")
    evaluate.add_argument("--device", default="cpu")
    evaluate.add_argument("--quick", action="store_true", help="a small grid, for a smoke run")
    evaluate.set_defaults(func=_zoo_eval)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    sys.exit(main())
