"""Run directories: where a training run's files go, and which run `--resume` continues (both engines).

Torch-free, like `agents.args`.
"""

from __future__ import annotations

import time
from pathlib import Path

from adagen_env.errors import CheckpointError, InvalidArgument
from agents.args import Args


def find_run_dir(args: Args, checkpoint: str, tag: str) -> tuple[Path, bool]:
    """(run directory, whether it holds the file `checkpoint` to resume from).

    `--run-name` names the directory under `--logdir`; otherwise `--resume` continues `--logdir` itself when it holds
    a checkpoint, else the latest `<env>__<tag>__<seed>__*` run under it, and a new run gets
    `<env>__<tag>__<seed>__<date>-<time>`.

    Raises:
        CheckpointError: `--resume` found no checkpoint to continue.
        InvalidArgument: a new run would overwrite a run directory that already holds a run's files.
    """
    logdir = Path(args.logdir)
    if args.run_name:
        run_dir = logdir / args.run_name
        found = (run_dir / checkpoint).is_file()
        if args.resume and not found:
            raise CheckpointError(
                f"--resume: {str(run_dir / checkpoint)!r} does not exist, so there is nothing to "
                "resume; start the run without --resume"
            )
        if not args.resume and (found or (run_dir / "progress.csv").is_file()):
            raise InvalidArgument(
                f"{str(run_dir)!r} already holds a run; pass --resume to continue it, or choose "
                "another --run-name (or delete the directory) to start afresh"
            )
        return run_dir, found
    prefix = f"{args.env.replace('/', '-')}__{tag}__{args.seed}__"
    if args.resume:
        if (logdir / checkpoint).is_file():
            return logdir, True
        candidates = sorted(p for p in logdir.glob(f"{prefix}*") if (p / checkpoint).is_file())
        if candidates:
            return candidates[-1], True
        raise CheckpointError(
            f"--resume: no {checkpoint} in {str(logdir)!r} or its {prefix}* runs, so there is "
            "nothing to resume; start the run without --resume"
        )
    return logdir / f"{prefix}{time.strftime('%Y%m%d-%H%M%S')}", False


__all__ = ["find_run_dir"]
