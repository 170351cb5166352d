"""Quiet by default: library chatter goes to KAIYUAN_HOME/logs, kaiyuan's own messages to stderr; --verbose
shows the chatter live."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

CHATTER = ("Writing model shards", "WARNING", "Warning")


def kaiyuan(home, *args):
    env = {**os.environ, "KAIYUAN_HOME": str(home)}
    env.pop("KAIYUAN_VERBOSE", None)
    return subprocess.run([sys.executable, "-m", "kaiyuan.cli", *args], capture_output=True, text=True, env=env)


def test_create_tiny_is_quiet_by_default_and_logs_the_chatter(tmp_path):
    home = tmp_path / "home"
    quiet = kaiyuan(home, "models", "create-tiny")
    assert quiet.returncode == 0, quiet.stderr
    assert "tiny-llama" in quiet.stdout
    assert not any(word in quiet.stderr for word in CHATTER), quiet.stderr
    logs = list((home / "logs").iterdir())
    assert [p.name.startswith("models-create-tiny-") and p.suffix == ".log" for p in logs] == [True]
    assert "Writing model shards" in logs[0].read_text(encoding="utf-8")
    assert not any(p.name.endswith(".log") for p in (home / "artifacts").rglob("*"))  # artifacts untouched


def test_create_tiny_with_verbose_shows_the_chatter_live(tmp_path):
    home = tmp_path / "home"
    loud = kaiyuan(home, "--verbose", "models", "create-tiny")
    assert loud.returncode == 0, loud.stderr
    assert "tiny-llama" in loud.stdout
    assert "Writing model shards" in loud.stderr
    assert not (home / "logs").exists()


def test_own_messages_reach_stderr_and_library_chatter_the_log(tmp_path, monkeypatch, capsys):
    from kaiyuan.cli.output import err_console, quiet_library_chatter
    from kaiyuan.progress import progress_bar, stderr_console
    from kaiyuan.train.common import last_complete_checkpoint

    monkeypatch.setenv("KAIYUAN_HOME", str(tmp_path / "home"))
    library = logging.getLogger("transformers.some_module")
    handler = logging.StreamHandler(sys.stderr)  # bound before the command starts, like transformers' own
    library.addHandler(handler)
    try:
        restore = quiet_library_chatter("models")
        log = restore.log
        try:
            library.warning("a transformers deprecation line")
            print("{'loss': 1.25}")  # a trainer's raw dict (stdout)
            (tmp_path / "run" / "checkpoint-2").mkdir(parents=True)
            last_complete_checkpoint(str(tmp_path / "run"))  # kaiyuan's own note, printed to stderr
            err_console.print("error: kaiyuan's own message")
            stderr_console.print("a kaiyuan progress line")
            with progress_bar() as progress:
                progress.add_task("judging", total=1)
        finally:
            restore()
    finally:
        library.removeHandler(handler)
    out, err = capsys.readouterr()
    assert "checkpoint-2: an incomplete checkpoint" in err
    assert "error: kaiyuan's own message" in err and "a kaiyuan progress line" in err and "judging" in err
    for chatter in ("a transformers deprecation line", "{'loss': 1.25}"):
        assert chatter not in out + err
    text = log.path.read_text(encoding="utf-8")
    assert log.path.parent == tmp_path / "home" / "logs"
    assert "a transformers deprecation line" in text
    assert "{'loss': 1.25}" in text and "incomplete checkpoint" not in text
    assert handler.stream is sys.stderr  # restored


WARNS = """
import sys, warnings
from kaiyuan.cli.output import quiet_library_chatter
restore = quiet_library_chatter("eval")
warnings.warn("a library FutureWarning", FutureWarning)
restore()
print(restore.log.path)
"""


def test_warnings_go_to_the_log(tmp_path):
    env = {**os.environ, "KAIYUAN_HOME": str(tmp_path / "home")}
    done = subprocess.run([sys.executable, "-W", "default", "-c", WARNS], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert "FutureWarning" not in done.stderr
    assert "a library FutureWarning" in open(done.stdout.strip(), encoding="utf-8").read()
