"""API keys: only their sha256 is kept, a request's key is compared in constant time (:mod:`kaiyuan.serve.guard`),
and an empty key is never usable. Light on purpose: the CLI reads keys before anything heavy loads."""

from __future__ import annotations

import hashlib


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def check_api_key(key: str, where: str) -> str:
    """``key`` if it is usable: never empty or blank (an empty key would let every request in)."""
    if not key.strip():
        raise ValueError(f"an empty API key ({where}) would let anyone in: give a non-empty key")
    return key
