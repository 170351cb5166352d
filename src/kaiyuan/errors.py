"""Errors a user can act on. The CLI prints their message and exits with code 2."""

from __future__ import annotations


class KaiyuanError(Exception):
    """A problem with the user's input or environment, explained in the message."""


class NotFoundError(KaiyuanError):
    """A reference (model, dataset, artifact) that cannot be resolved."""
