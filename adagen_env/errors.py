"""Typed exceptions of adagen-env, in one place like Gymnasium's `error.py`."""

from __future__ import annotations


class AdaGenError(Exception):
    """Base class of every error this package raises on purpose."""


class InvalidArgument(AdaGenError, ValueError):
    """A constructor or function argument is out of its valid range or of the wrong kind."""


class UnknownArgument(InvalidArgument, TypeError):
    """A keyword the function does not take: a `TypeError`, as Python raises for unexpected keywords (consumers such
    as TorchRL probe keywords and catch exactly that), and an `InvalidArgument` like every other bad argument."""


class InvalidKnobValue(AdaGenError, ValueError):
    """A knob value (or raw action) is NaN, infinite or of the wrong shape."""


class CheckpointError(AdaGenError, ValueError):
    """A checkpoint is missing, corrupt, or does not match the model it is loaded into."""


class DatasetError(AdaGenError, ValueError):
    """An image folder is missing, empty, or holds an unreadable file."""
