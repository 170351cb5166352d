"""Repo names and file paths of the team hub, validated and normalized before anything touches storage.

A repo is ``namespace/name`` (Hugging Face's rule: letters, digits, ``-``, ``_``, ``.``; no ``--`` or ``..``; at
most 96 characters each); its type is ``model`` or ``dataset``. A file path is relative and POSIX: no ``..``, no
absolute path, no NUL, no backslash, no empty segment, nothing under ``.git/``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kaiyuan.errors import KaiyuanError

REPO_TYPES = ("model", "dataset")
PART = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?$")
MAX_PATH = 1024


class NameError_(KaiyuanError):  # noqa: N801 (not the builtin NameError)
    """A repo name or file path that is not allowed."""


@dataclass(frozen=True)
class RepoId:
    repo_type: str
    namespace: str
    name: str

    @property
    def id(self) -> str:
        return f"{self.namespace}/{self.name}"

    def __str__(self) -> str:
        return self.id if self.repo_type == "model" else f"{self.repo_type}s/{self.id}"


def check_part(part: str, what: str) -> str:
    if not PART.fullmatch(part) or "--" in part or ".." in part:
        raise NameError_(f"{what} {part!r}: use 1–96 letters, digits, '-', '_' or '.', starting and ending with a "
                         "letter or digit, without '--' or '..'")
    return part


def repo_id(repo: str, repo_type: str = "model") -> RepoId:
    """``namespace/name`` of type ``repo_type``, checked."""
    if repo_type not in REPO_TYPES:
        raise NameError_(f"repo type {repo_type!r}: expected one of {', '.join(REPO_TYPES)}")
    namespace, sep, name = repo.partition("/")
    if not sep or "/" in name:
        raise NameError_(f"repo {repo!r}: expected namespace/name")
    return RepoId(repo_type, check_part(namespace, "namespace"), check_part(name, "repo name"))


def check_path(path: str) -> str:
    """``path`` normalized (no leading ``./``), or :class:`NameError_` saying what is wrong with it."""
    if not path or len(path) > MAX_PATH:
        raise NameError_(f"path {path[:80]!r}: expected 1–{MAX_PATH} characters")
    if "\x00" in path or "\\" in path:
        raise NameError_(f"path {path!r}: NUL and backslash are not allowed")
    if path.startswith("/"):
        raise NameError_(f"path {path!r}: must be relative")
    parts = [p for p in path.split("/") if p != "."]
    if any(p == "" for p in parts) or not parts:
        raise NameError_(f"path {path!r}: empty segment")
    if any(p == ".." for p in parts):
        raise NameError_(f"path {path!r}: '..' is not allowed")
    if parts[0] == ".git":
        raise NameError_(f"path {path!r}: nothing may be stored under .git/")
    return "/".join(parts)
