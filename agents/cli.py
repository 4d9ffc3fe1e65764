"""The `adagen` command line: `adagen zoo train NAME`, `adagen zoo eval`, `adagen train`, `adagen eval`, `adagen export`, `adagen export-schedule`, `adagen bench`.

It sits on the RL side (`agents`), the top floor: the library (`adagen_env`) never imports it. Each command
imports what it runs when it runs.
"""

from __future__ import annotations

import argparse
import sys


def _zoo_train(args: argparse.Namespace) -> None:
    from adagen_env import zoo

    for name in args.names:
        path = zoo.train_and_export(name, workdir=args.workdir, device=args.device, steps=args.steps)
        print(f"wrote {path}")


def _zoo_eval(args: argparse.Namespace) -> None:
    from adagen_env.evaluation.zoo_eval import evaluate_zoo

    evaluate_zoo(args.names, args.num_samples, args.out, args.device, quick=args.quick, reuse=args.reuse)


def _train(args: argparse.Namespace) -> None:
    import json

    from adagen_env.errors import AdaGenError
    from agents.train import args_from_namespace

    try:
        parsed = args_from_namespace(args)
        if parsed.engine == "rllib":
            try:
                from agents.rllib import train
            except ModuleNotFoundError as exc:
                if (exc.name or "").split(".")[0] != "ray":
                    raise
                raise SystemExit(
                    f"adagen train --engine rllib needs Ray RLlib ({exc}); install it with "
                    "pip install 'adagen-env[rllib]'"
                ) from exc
        else:
            from agents.train import train
        summary = train(parsed)
    except AdaGenError as exc:
        raise SystemExit(f"adagen train: error: {exc}") from exc
    print(json.dumps(summary, indent=2, default=str))


def _eval(args: argparse.Namespace) -> None:
    from adagen_env.errors import AdaGenError
    from agents.evaluate import evaluate, markdown
    from agents.scoring import Scoring

    try:
        results = evaluate(
            policies=args.policy or [],
            baseline=args.schedule == "baseline",
            env_id=args.env,
            num_samples=args.num_samples,
            seeds=args.seeds,
            batch_size=args.batch_size,
            num_steps=args.num_steps,
            knobs=args.knobs,
            out_dir=args.out,
            device=args.device,
            best_of=args.best_of,
            lookahead=args.lookahead,
            generator=args.generator,
            scoring=Scoring(args.reference, args.inception_weights),
        )
    except AdaGenError as exc:
        raise SystemExit(f"adagen eval: error: {exc}") from exc
    print(markdown(results))


def _export(args: argparse.Namespace) -> None:
    from adagen_env.errors import AdaGenError
    from agents.checkpoint import export_policy

    try:
        out = export_policy(args.policy, args.out)
    except AdaGenError as exc:
        raise SystemExit(f"adagen export: error: {exc}") from exc
    print(f"wrote {out}")


def _export_schedule(args: argparse.Namespace) -> None:
    from adagen_env.errors import AdaGenError
    from agents.export import export_schedule

    given = {
        name: getattr(args, name) for name in ("num_samples", "seed", "batch_size") if getattr(args, name) is not None
    }
    try:
        out = export_schedule(args.policy, args.out, device=args.device, **given)
    except AdaGenError as exc:
        raise SystemExit(f"adagen export-schedule: error: {exc}") from exc
    print(f"wrote {out}")


def _bench(args: argparse.Namespace) -> None:
    from adagen_env.errors import AdaGenError
    from agents.bench import bench, config_from_args, markdown

    try:
        config = config_from_args(args)
        out = args.out or ("runs/bench_quick" if args.quick else "runs/bench")
        command = args.command_line if args.out else f"{args.command_line} --out {out}"  # the record names its folder
        results = bench(
            config,
            policies=args.policy or [],
            out_dir=out,
            device=args.device,
            command=command,
            schedules=args.schedule or [],
            blends=[tuple(pair) for pair in args.blend or []],
        )
    except AdaGenError as exc:
        raise SystemExit(f"adagen bench: error: {exc}") from exc
    print(markdown(results))


def _ablation(args: argparse.Namespace) -> None:
    from adagen_env.errors import AdaGenError
    from agents.ablation import run_ablation, section

    try:
        report = run_ablation(
            args.name,
            budget_minutes=args.budget_minutes,
            num_samples=args.num_samples,
            seeds=tuple(args.seeds),
            logdir=args.logdir,
            out=args.out,
            device=args.device,
        )
    except AdaGenError as exc:
        raise SystemExit(f"adagen bench ablation: error: {exc}") from exc
    print(section(report))


def _add_args_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per `agents.args.Args` field but `NOT_FLAGS`: `--field-name`, the field's type, default and
    `CHOICES`, and its docstring as the help (see `agents.args`)."""
    import json
    import types
    import typing
    from dataclasses import MISSING, fields

    from agents.args import CHOICES, NOT_FLAGS, Args, field_docs

    docs, hints = field_docs(), typing.get_type_hints(Args)
    for spec in fields(Args):
        if spec.name in NOT_FLAGS:
            continue
        flag, text = "--" + spec.name.replace("_", "-"), docs.get(spec.name, "").replace("%", "%%")
        default = spec.default if spec.default is not MISSING else spec.default_factory()  # type: ignore[misc]
        kind = hints[spec.name]
        if isinstance(kind, types.UnionType):  # `X | None`: None is the default, X the flag's type
            kind = next(a for a in typing.get_args(kind) if a is not type(None))
        if kind is bool:
            if default:
                parser.add_argument(
                    "--no-" + flag[2:], dest=spec.name, action="store_false", help=f"{text} (this flag turns it off)"
                )
            else:
                parser.add_argument(flag, action="store_true", help=text)
            continue
        kwargs: dict[str, typing.Any] = {"type": kind, "default": default, "choices": CHOICES.get(spec.name)}
        if typing.get_origin(kind) is list:
            kwargs.update(type=typing.get_args(kind)[0], nargs="+")
        elif typing.get_origin(kind) is dict:  # a JSON object, parsed by `agents.train.args_from_namespace`
            kwargs.update(type=str, default=json.dumps(default), metavar="JSON")
        parser.add_argument(flag, help=f"{text} (default: %(default)s)", **kwargs)


def _add_real_flags(parser: argparse.ArgumentParser, generator_help: str) -> None:
    """`--generator`, `--reference` and `--inception-weights` of `adagen eval` and `adagen bench`."""
    parser.add_argument("--generator", default=None, metavar="DIR", help=generator_help)
    parser.add_argument(
        "--reference",
        default=None,
        metavar="DIR",
        help="score against this folder of real images (read recursively, resized and centre-cropped to the "
        "generated side) in Inception-v3's space instead of the shapes data; needs --inception-weights",
    )
    parser.add_argument(
        "--inception-weights",
        default=None,
        metavar="FILE",
        help="torch-fidelity's Inception-v3 weights (weights-inception-2015-12-05-6726825d.pth), for --reference",
    )


def _add_agent_commands(commands: argparse._SubParsersAction) -> None:
    """`adagen train` (its flags are `agents.args.Args`), `adagen eval`, `adagen bench`, `adagen export` and
    `adagen export-schedule`."""
    from agents.names import ABLATION_NAMES, ENV_IDS

    envs = list(ENV_IDS)
    train = commands.add_parser("train", help="train a schedule policy with Stable-Baselines3 or RLlib (resumable)")
    _add_args_flags(train)
    train.set_defaults(func=_train)

    evaluate = commands.add_parser("eval", help="FID/KID/IS/PR and class agreement of policies vs the baseline")
    evaluate.add_argument("--policy", action="append", help="checkpoint.zip of `adagen train` (repeatable)")
    evaluate.add_argument(
        "--schedule",
        choices=["baseline"],
        default=None,
        help="also evaluate the baseline schedule (and the base schedule of a policy trained on one)",
    )
    evaluate.add_argument("--env", default=None, choices=envs, help="required without --policy; checked against it")
    evaluate.add_argument("--num-samples", type=int, default=1000, help="images per seed")
    evaluate.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    evaluate.add_argument("--batch-size", type=int, default=64)
    evaluate.add_argument("--num-steps", type=int, default=None, help="baseline-only: the env's step count")
    evaluate.add_argument("--knobs", nargs="+", default=None)
    evaluate.add_argument(
        "--best-of",
        type=int,
        default=1,
        metavar="K",
        help="also each policy's best of K candidates per label by its run's discriminator (and, "
        "with --schedule baseline, the baseline's): rows at K x NFE (agents.refine)",
    )
    evaluate.add_argument(
        "--lookahead",
        type=int,
        default=1,
        metavar="K",
        help="also each policy with value lookahead over K candidate actions per step (PPO / A2C): "
        "a row at K x NFE (agents.refine)",
    )
    _add_real_flags(
        evaluate,
        "a local diffusers model directory (docs/diffusers.md), .safetensors file or zoo name: the generator of "
        "--schedule baseline without --policy, and where a policy's generator is now instead of the path its "
        "checkpoint records (its weights must be the recorded ones)",
    )
    evaluate.add_argument("--out", default="runs/eval", help="where eval.json and eval.md go")
    evaluate.add_argument("--device", default="cpu")
    evaluate.set_defaults(func=_eval)

    bench = commands.add_parser("bench", help="learned policies vs baseline, hand-made and tuned static schedules")
    bench.add_argument(
        "--quick", action="store_true", help="a small table (one step count per env, 250 samples x 2 seeds)"
    )
    bench.add_argument("--env", nargs="+", default=None, choices=envs, help="envs to run (default: all four)")
    bench.add_argument(
        "--steps",
        type=int,
        nargs="+",
        default=None,
        help="step counts (default: the env's grid; VAR keeps its one step per scale)",
    )
    bench.add_argument(
        "--baseline-steps",
        type=int,
        nargs="*",
        default=None,
        help="larger step counts run with the baseline only (default: the env's; none when empty)",
    )
    bench.add_argument("--policy", action="append", help="checkpoint.zip of `adagen train` (repeatable)")
    bench.add_argument(
        "--schedule",
        nargs="+",
        action="extend",
        metavar="FILE",
        help="schedule files (`adagen export-schedule`, a bench's schedules/), each a static row at its "
        "env and step count",
    )
    bench.add_argument(
        "--blend",
        nargs=2,
        action="append",
        metavar=("FIDELITY", "DIVERSITY"),
        help="two policies of one env (the fidelity one trained with --reward-model "
        "adversarial-projected+classifier): a row per --lambdas value (agents.blend; repeatable)",
    )
    bench.add_argument(
        "--lambdas",
        type=float,
        nargs="+",
        default=None,
        help="blend weights of the fidelity policy, in [0, 1] (default: 0 0.25 0.5 0.75 1)",
    )
    bench.add_argument("--num-samples", type=int, default=None, help="images per seed")
    bench.add_argument("--seeds", type=int, nargs="+", default=None)
    bench.add_argument("--search-samples", type=int, default=None, help="images per candidate of the tuned search")
    bench.add_argument("--search-seed", type=int, default=None)
    bench.add_argument("--search-rounds", type=int, default=None, help="coordinate-search sweeps")
    bench.add_argument(
        "--cma-evaluations",
        type=int,
        default=None,
        help="also search the whole per-step table with CMA-ES, this many candidates (needs `cma`)",
    )
    bench.add_argument("--batch-size", type=int, default=None)
    bench.add_argument("--no-hand-made", dest="hand_made", action="store_false", help="baseline and tuned only")
    _add_real_flags(
        bench,
        "a local diffusers model directory (docs/diffusers.md), .safetensors file or zoo name: the generator of "
        "every row, on the one --env; policies must have been trained on its weights",
    )
    bench.add_argument("--out", default=None, help="output folder (default runs/bench, with --quick runs/bench_quick)")
    bench.add_argument("--device", default="cpu")
    bench.set_defaults(func=_bench)

    ablation = bench.add_subparsers(dest="bench_command").add_parser(
        "ablation", help="train the variants of one of the paper's ablations and compare them (resumable)"
    )
    ablation.add_argument("name", choices=sorted(ABLATION_NAMES))
    ablation.add_argument("--budget-minutes", type=float, default=10.0, help="training wall time per variant")
    ablation.add_argument("--num-samples", type=int, default=1000, help="evaluation images per seed")
    ablation.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ablation.add_argument("--logdir", default="runs/ablations", help="the variants' run directories (resumed)")
    ablation.add_argument("--out", default="runs/ablations", help="writes ablations.md and NAME/ (snake_case)")
    ablation.add_argument("--device", default="cpu")
    ablation.set_defaults(func=_ablation)

    export = commands.add_parser("export", help="a small copy of a trained policy for shipping (no optimiser moments)")
    export.add_argument("--policy", required=True, help="checkpoint.zip of `adagen train`")
    export.add_argument("--out", required=True, help="where the exported zip goes")
    export.set_defaults(func=_export)

    schedule = commands.add_parser("export-schedule", help="a trained policy's mean knob trajectory as a schedule file")
    schedule.add_argument("--policy", required=True, help="checkpoint.zip of `adagen train`")
    schedule.add_argument("--out", required=True, help="the schedule file (JSON) to write")
    schedule.add_argument("--num-samples", type=int, default=None, help="class-balanced images averaged (default 1000)")
    schedule.add_argument(
        "--seed",
        type=int,
        default=None,
        help="sampling seed (default agents.export.EXPORT_SEED, 3000, which no evaluation uses)",
    )
    schedule.add_argument("--batch-size", type=int, default=None, help="lanes per generator call (default 64)")
    schedule.add_argument("--device", default="cpu")
    schedule.set_defaults(func=_export_schedule)


def build_parser() -> argparse.ArgumentParser:
    """The whole command line; it imports no torch, SB3 or Gymnasium (the commands do, when they run)."""
    from agents.names import GENERATORS, ZOO_NAMES

    parser = argparse.ArgumentParser(prog="adagen", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    zoo_parser = commands.add_parser("zoo", help="train or evaluate the shipped generators")
    zoo_commands = zoo_parser.add_subparsers(dest="zoo_command", required=True)
    train = zoo_commands.add_parser("train", help="train zoo models on the shapes data (resumes from --workdir)")
    train.add_argument("names", nargs="+", choices=list(ZOO_NAMES))
    train.add_argument("--workdir", default="checkpoints/zoo", help="checkpoints and logs; a rerun resumes from here")
    train.add_argument("--device", default="cpu")
    train.add_argument("--steps", type=int, default=None, help="override the recipe's step count")
    train.set_defaults(func=_zoo_train)

    evaluate = zoo_commands.add_parser("eval", help="FID / class agreement of the shipped generators over NFE and CFG")
    evaluate.add_argument(
        "names", nargs="*", default=[], choices=[*GENERATORS, []], help="generators to evaluate (default: all)"
    )
    evaluate.add_argument("--num-samples", type=int, default=2000)
    evaluate.add_argument("--out", default="runs/zoo_eval", help="where zoo.json, zoo.md and the sample grids go")
    evaluate.add_argument("--device", default="cpu")
    evaluate.add_argument("--quick", action="store_true", help="a small grid, for a smoke run")
    evaluate.add_argument(
        "--reuse",
        action="store_true",
        help="keep the rows zoo.json holds for the shipped weights; sample only new grid points",
    )
    evaluate.set_defaults(func=_zoo_eval)

    _add_agent_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    args.command_line = "adagen " + " ".join(argv)
    args.func(args)


if __name__ == "__main__":
    sys.exit(main())
