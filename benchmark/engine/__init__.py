"""Shared training machinery: written once, used by every method."""


class TrainingError(RuntimeError):
    """Training cannot go on (for example a non-finite loss); the message says where and why."""
