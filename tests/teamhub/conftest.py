"""Fixtures of the team hub's tests: a real PostgreSQL 15 (Debian's binaries, started once per session on a temp
dir) next to SQLite, so that every metadata test runs on both databases.

``postgres_url`` is the server's ``postgresql://`` URL (as a person would type it); ``database_url`` is a fresh,
empty database for one test, as a SQLAlchemy URL (``sqlite:///…`` or ``postgresql+psycopg://…``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

PG_BIN = Path(os.environ.get("KAIYUAN_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_postgres(*args: str) -> list[str]:
    """``args`` run as the ``postgres`` user when we are root (PostgreSQL refuses to run as root)."""
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else list(args)


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    done = subprocess.run(_as_postgres(*args), capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done


@pytest.fixture(scope="session")
def postgres_url():
    """A PostgreSQL 15 server of its own for this session (trust auth, 127.0.0.1 only), with an empty database
    ``kaiyuan_test``; stopped and removed at the end."""
    missing = [tool for tool in ("initdb", "pg_ctl", "createdb") if not (PG_BIN / tool).is_file()]
    if missing:
        pytest.skip(f"PostgreSQL tests need Debian's postgresql-15 ({', '.join(missing)} not in {PG_BIN}; "
                    "apt-get install postgresql-15, or set KAIYUAN_TEST_PG_BIN)")
    if os.geteuid() == 0:
        try:
            import pwd

            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("PostgreSQL tests run the server as the 'postgres' user, and there is none")
    # not under pytest's tmp_path: its parents are private to root, and the server runs as postgres
    root = Path(tempfile.mkdtemp(prefix="kaiyuan-pg-"))
    if os.geteuid() == 0:
        os.chown(root, owner.pw_uid, owner.pw_gid)
    data = root / "data"
    port = _free_port()
    started = time.monotonic()
    try:
        _run(str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
        # -l: the server's output goes to a file, never to our pipes (else capturing pg_ctl's output would wait
        # for the server to exit)
        _run(str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w", "-t", "60",
             "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
        _run(str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "kaiyuan_test")
    except Exception:
        log = root / "server.log"
        detail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        subprocess.run(_as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "stop", "-m", "immediate"),
                       capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"could not start PostgreSQL for the tests; server log:\n{detail}") from None
    os.environ["KAIYUAN_TEST_PG_START_S"] = f"{time.monotonic() - started:.2f}"
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/kaiyuan_test"
    finally:
        subprocess.run(_as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "stop", "-m", "fast"),
                       capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """A fresh, empty database for one test: a SQLite file in tmp_path, or a new PostgreSQL database (dropped
    afterwards, even if the test left connections open)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'hub.sqlite'}"
        return
    import sqlalchemy as sa

    server = request.getfixturevalue("postgres_url").replace("postgresql://", "postgresql+psycopg://", 1)
    name = f"t_{uuid.uuid4().hex[:16]}"
    admin = sa.create_engine(server.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        yield server.rsplit("/", 1)[0] + "/" + name
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
