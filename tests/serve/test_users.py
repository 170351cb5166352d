"""Users of the web UI: scrypt hashes, constant-time checks, the `kaiyuan users` commands."""

from __future__ import annotations

import hashlib
import io
import json
import stat
import sys

from kaiyuan.errors import KaiyuanError
from kaiyuan.serve.users import USERS_FILE, UserStore, hash_password, password_matches
from tests.conftest import run_cli


def test_a_password_is_stored_as_a_salted_scrypt_hash():
    salt = bytes(range(16))
    encoded = hash_password("correct horse", salt)
    expected = hashlib.scrypt(b"correct horse", salt=salt, n=2**14, r=8, p=1, dklen=32).hex()
    assert encoded == f"scrypt$16384$8$1${salt.hex()}${expected}"
    assert password_matches("correct horse", encoded)
    assert not password_matches("correct horsE", encoded)
    assert not password_matches("correct horse", encoded.replace("scrypt$", "md5$"))
    assert not password_matches("correct horse", "not a hash")
    assert hash_password("correct horse") != hash_password("correct horse")  # a fresh salt each time


def test_the_store_keeps_hashes_only_and_answers_unknown_names_like_wrong_passwords(home):
    store = UserStore()
    alice = store.add("alice", "s3cret-pass", admin=True)
    assert (alice.name, alice.admin) == ("alice", True)
    assert store.authenticate("alice", "s3cret-pass") == alice
    assert store.authenticate("alice", "wrong-pass") is None
    assert store.authenticate("mallory", "s3cret-pass") is None
    raw = (home / USERS_FILE).read_bytes()
    assert b"s3cret-pass" not in raw and b"scrypt$16384$8$1$" in raw
    assert stat.S_IMODE((home / USERS_FILE).stat().st_mode) == 0o600
    for bad, message in [(("alice", "another-pass"), "user 'alice' already exists (remove it first: kaiyuan users "
                                                     "rm alice)"),
                         (("bob", "short"), "the password is too short: use at least 8 characters"),
                         (("-bob", "long-enough"), "user name '-bob': use 1–64 letters, digits, '.', '_' or '-', "
                                                   "starting with a letter or digit")]:
        try:
            store.add(*bad)
        except KaiyuanError as exc:
            assert str(exc) == message
        else:
            raise AssertionError(f"{bad} was accepted")


def test_users_commands_read_the_password_from_stdin_and_never_print_hashes(home, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("s3cret-pass\n"))
    assert run_cli(monkeypatch, capsys, "users", "add", "alice", "--admin") == (0, "added user alice (admin)\n", "")
    monkeypatch.setattr(sys, "stdin", io.StringIO("an0ther-pass\n"))
    assert run_cli(monkeypatch, capsys, "users", "add", "bob")[0] == 0
    code, out, _ = run_cli(monkeypatch, capsys, "users", "list", "--json")
    assert code == 0 and "scrypt" not in out
    assert [(u["name"], u["admin"]) for u in json.loads(out)] == [("alice", True), ("bob", False)]
    assert UserStore().authenticate("bob", "an0ther-pass") is not None
    assert run_cli(monkeypatch, capsys, "users", "rm", "bob") == (0, "removed user bob\n", "")
    assert run_cli(monkeypatch, capsys, "users", "rm", "bob") == (2, "", "error: no user 'bob'\n")
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert run_cli(monkeypatch, capsys, "users", "add", "carol") == (
        2, "", "error: no password: type it at the prompt, or pipe it on stdin (one line)\n")
    monkeypatch.setattr(sys, "stdin", io.StringIO("s3cret-pass\n"))
    code, _, err = run_cli(monkeypatch, capsys, "users", "add", "bad name")
    assert code == 2 and err.startswith("error: user name 'bad name': ")
    assert sys.stdin.read() == "s3cret-pass\n"  # the name was refused before a password was asked for
