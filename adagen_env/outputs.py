"""Result files: output folders checked before any work, files written whole or not at all.

A long evaluation that fails on its output path after an hour of generation wastes the hour; a result file cut
short by a kill is worse than none. Every command that writes results checks its folder first
(`writable_dir`) and writes each file through a temporary name and one rename (`write_text`, `save_figure`).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from adagen_env.errors import InvalidArgument


def writable_dir(path: str | Path) -> Path:
    """Create `path` (and its parents) if needed and check that files can be written in it; raises
    `InvalidArgument` naming the path when it is a file or cannot be written."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InvalidArgument(f"output folder {str(path)!r} is an existing file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-check-"):
            pass
    except OSError as exc:
        raise InvalidArgument(f"cannot write results to {str(path)!r}: {exc.strerror or exc}") from exc
    return path


def write_text(path: str | Path, text: str) -> Path:
    """Write `text` to `path` atomically: a temporary file beside it, then one rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def save_figure(figure: Any, path: str | Path, **kwargs: Any) -> Path:
    """`figure.savefig(path)` atomically (matplotlib picks the format from `path`'s suffix)."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    figure.savefig(tmp, **kwargs)
    os.replace(tmp, path)
    return path


__all__ = ["save_figure", "writable_dir", "write_text"]
