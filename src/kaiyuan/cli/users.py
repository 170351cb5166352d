"""``kaiyuan users add|list|rm``: who may sign in to the web UI (names and scrypt password hashes)."""

from __future__ import annotations

import getpass
import sys
from dataclasses import dataclass, field

import typer
from rich.table import Table

from kaiyuan.cli.from_config import command_from_config
from kaiyuan.cli.output import console, print_json
from kaiyuan.errors import KaiyuanError
from kaiyuan.serve.users import UserStore, check_name, check_password

users_app = typer.Typer(rich_markup_mode=None, help="Users of the web UI (passwords stored as scrypt hashes).",
                        no_args_is_help=True)


@dataclass
class UsersAddConfig:
    name: str = field(metadata={"argument": True, "help": "User name: letters, digits, '.', '_' or '-'."})
    admin: bool = field(default=False, metadata={"flags": ("--admin",), "help": "May manage other users."})


@dataclass
class UsersListConfig:
    pass


@dataclass
class UsersRmConfig:
    name: str = field(metadata={"argument": True, "help": "User to remove."})


def read_password() -> str:
    """The new password: typed twice at a terminal (not echoed), else the first line of stdin. Never a flag: a
    flag would end up in the shell's history and in the process list."""
    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            raise KaiyuanError("the two passwords differ; nothing was changed")
        return check_password(password)
    line = sys.stdin.readline()
    if not line:
        raise KaiyuanError("no password: type it at the prompt, or pipe it on stdin (one line)")
    return check_password(line.rstrip("\r\n"))


def users_add(cfg: UsersAddConfig, json_output: bool) -> None:
    check_name(cfg.name)  # before asking for a password
    user = UserStore().add(cfg.name, read_password(), admin=cfg.admin)
    if json_output:
        print_json(user.to_dict())
    else:
        console.print(f"added user {user.name}" + (" (admin)" if user.admin else ""), markup=False, highlight=False)


def users_list(cfg: UsersListConfig, json_output: bool) -> None:
    users = UserStore().list()
    if json_output:
        print_json([u.to_dict() for u in users])
        return
    table = Table(title="users")
    for column in ("name", "admin", "created"):
        table.add_column(column, no_wrap=True)
    for user in users:
        table.add_row(user.name, "yes" if user.admin else "", user.created_at.replace("T", " ")[:16])
    console.print(table)


def users_rm(cfg: UsersRmConfig, json_output: bool) -> None:
    UserStore().remove(cfg.name)
    if json_output:
        print_json({"removed": cfg.name})
    else:
        console.print(f"removed user {cfg.name}", markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(users_app, name="users")
    command_from_config(users_app, "add", UsersAddConfig, users_add,
                        help="Add a user; the password is asked twice at a terminal, or read as one line from stdin.")
    command_from_config(users_app, "list", UsersListConfig, users_list, help="The users (never their hashes).")
    command_from_config(users_app, "rm", UsersRmConfig, users_rm, help="Remove a user.")
