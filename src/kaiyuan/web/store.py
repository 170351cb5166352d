"""What the web UI keeps: sessions, conversations and arena battles with their votes, in ``KAIYUAN_HOME/ui.sqlite``.

One SQLite file (created readable by its owner only: it holds people's conversations), versioned schema
(``PRAGMA user_version``; :data:`MIGRATIONS` are applied in order on open). Every read is scoped by user: a
conversation or battle of someone else is "not found", never "forbidden", so ids tell nothing.

A battle keeps FastChat's per-side state (``conv_id``, ``model_name``, ``offset``, ``messages`` as ``[role,
text]`` pairs); a vote keeps FastChat's log fields (``tstamp``, ``type``, ``models``, ``states``) plus ``user``.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kaiyuan.errors import KaiyuanError
from kaiyuan.home import kaiyuan_home

UI_FILE = "ui.sqlite"
VOTE_TYPES = {"leftvote": "model_a", "rightvote": "model_b", "tievote": "tie", "bothbad_vote": "tie (bothbad)"}

MIGRATIONS: tuple[str, ...] = (
    # 1: sessions, conversations, messages, battles, votes
    """
    CREATE TABLE sessions (
        token_hash TEXT PRIMARY KEY,
        user TEXT NOT NULL,
        created REAL NOT NULL,
        expires REAL NOT NULL
    );
    CREATE TABLE conversations (
        id TEXT PRIMARY KEY,
        user TEXT NOT NULL,
        title TEXT NOT NULL,
        model TEXT NOT NULL,
        system TEXT NOT NULL DEFAULT '',
        created REAL NOT NULL,
        updated REAL NOT NULL
    );
    CREATE INDEX conversations_by_user ON conversations (user, updated);
    CREATE TABLE messages (
        conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        role TEXT NOT NULL,
        content TEXT NOT NULL,
        model TEXT,
        status TEXT NOT NULL DEFAULT 'done',
        created REAL NOT NULL,
        PRIMARY KEY (conversation_id, position)
    );
    CREATE TABLE battles (
        id TEXT PRIMARY KEY,
        user TEXT NOT NULL,
        mode TEXT NOT NULL,
        states TEXT NOT NULL,
        created REAL NOT NULL
    );
    CREATE TABLE votes (
        id INTEGER PRIMARY KEY,
        battle_id TEXT NOT NULL UNIQUE REFERENCES battles (id),
        user TEXT NOT NULL,
        type TEXT NOT NULL,
        tstamp REAL NOT NULL,
        anony INTEGER NOT NULL,
        leaked_identity INTEGER NOT NULL,
        models TEXT NOT NULL,
        states TEXT NOT NULL
    );
    """,
)


@dataclass
class Message:
    role: str
    content: str
    model: str | None = None
    status: str = "done"  # done | stopped | error


@dataclass
class Conversation:
    id: str
    user: str
    title: str
    model: str
    system: str
    updated: float
    messages: list[Message] = field(default_factory=list)

    def chat(self) -> list[dict[str, str]]:
        """The conversation as OpenAI chat messages (system prompt first, failed replies left out)."""
        head = [{"role": "system", "content": self.system}] if self.system.strip() else []
        return head + [{"role": m.role, "content": m.content} for m in self.messages if m.status != "error"]


@dataclass
class Battle:
    """An arena battle: ``states[0]`` is Model A's side, ``states[1]`` Model B's (FastChat's State dicts)."""

    id: str
    user: str
    mode: str  # anony | named
    states: list[dict[str, Any]]
    created: float
    vote: dict[str, Any] | None = None

    @property
    def models(self) -> tuple[str, str]:
        return self.states[0]["model_name"], self.states[1]["model_name"]

    def turns(self) -> int:
        return sum(1 for role, _ in self.states[0]["messages"] if role == "user")

    def answered(self) -> bool:
        """Both sides have answered the latest prompt (so the user has seen both replies)."""
        return all(s["messages"] and s["messages"][-1][0] == "assistant" and s["messages"][-1][1] is not None
                   for s in self.states)

    def chat(self, side: int) -> list[dict[str, str]]:
        return [{"role": role, "content": text} for role, text in self.states[side]["messages"] if text is not None]


def new_id() -> str:
    return secrets.token_hex(8)


class UIStore:
    """The web UI's data in one KAIYUAN_HOME (``home``; default the environment's)."""

    def __init__(self, home: Path | None = None) -> None:
        self.home = Path(home).expanduser().resolve() if home is not None else kaiyuan_home()
        self.path = self.home / UI_FILE
        with self._db():  # create and migrate now, not in the middle of a request
            pass

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        self.home.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        conn = sqlite3.connect(self.path, timeout=30)
        conn.row_factory = sqlite3.Row
        try:
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA synchronous = NORMAL")  # with WAL: durable at checkpoints, no fsync per message
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > len(MIGRATIONS):
                raise KaiyuanError(f"{self.path}: written by a newer kaiyuan (schema {version}, this one knows "
                                   f"{len(MIGRATIONS)})")
            if version < len(MIGRATIONS):
                conn.execute("PRAGMA journal_mode = WAL")  # readers never wait for a writer (and it persists)
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                conn.executescript(f"BEGIN; {script}; PRAGMA user_version = {number}; COMMIT;")
            with conn:
                yield conn
        except sqlite3.DatabaseError as exc:
            raise KaiyuanError(f"{self.path}: the web UI's database is damaged ({exc})") from exc
        finally:
            conn.close()

    # -- sessions ------------------------------------------------------------------------------------------

    def add_session(self, token_hash: str, user: str, lifetime_s: float) -> None:
        now = time.time()
        with self._db() as conn:
            conn.execute("DELETE FROM sessions WHERE expires < ?", (now,))
            conn.execute("INSERT INTO sessions VALUES (?, ?, ?, ?)", (token_hash, user, now, now + lifetime_s))

    def session_user(self, token_hash: str) -> str | None:
        with self._db() as conn:
            row = conn.execute("SELECT user FROM sessions WHERE token_hash = ? AND expires >= ?",
                               (token_hash, time.time())).fetchone()
        return row["user"] if row else None

    def end_session(self, token_hash: str) -> None:
        with self._db() as conn:
            conn.execute("DELETE FROM sessions WHERE token_hash = ?", (token_hash,))

    # -- conversations -------------------------------------------------------------------------------------

    def conversations(self, user: str) -> list[Conversation]:
        with self._db() as conn:
            rows = conn.execute("SELECT * FROM conversations WHERE user = ? ORDER BY updated DESC",
                                (user,)).fetchall()
        return [Conversation(r["id"], r["user"], r["title"], r["model"], r["system"], r["updated"]) for r in rows]

    def conversation(self, user: str, conversation_id: str) -> Conversation | None:
        with self._db() as conn:
            row = conn.execute("SELECT * FROM conversations WHERE id = ? AND user = ?",
                               (conversation_id, user)).fetchone()
            if row is None:
                return None
            messages = conn.execute("SELECT role, content, model, status FROM messages WHERE conversation_id = ? "
                                    "ORDER BY position", (conversation_id,)).fetchall()
        return Conversation(row["id"], row["user"], row["title"], row["model"], row["system"], row["updated"],
                            [Message(m["role"], m["content"], m["model"], m["status"]) for m in messages])

    def append(self, conversation_id: str, message: Message) -> int:
        """Append ``message``; returns its position."""
        now = time.time()
        with self._db() as conn:
            position = conn.execute("SELECT COALESCE(MAX(position) + 1, 0) FROM messages WHERE conversation_id = ?",
                                    (conversation_id,)).fetchone()[0]
            conn.execute("INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?)",
                         (conversation_id, position, message.role, message.content, message.model, message.status,
                          now))
            conn.execute("UPDATE conversations SET updated = ? WHERE id = ?", (now, conversation_id))
        return position

    def record_turn(self, conversation: Conversation, new: bool, keep: int, message: Message | None) -> None:
        """In one transaction (one commit before the reply starts): create ``conversation`` (``new``) or update its
        model and system prompt, keep its first ``keep`` messages, then append ``message`` (if any)."""
        now = time.time()
        with self._db() as conn:
            if new:
                conn.execute("INSERT INTO conversations VALUES (?, ?, ?, ?, ?, ?, ?)",
                             (conversation.id, conversation.user, conversation.title, conversation.model,
                              conversation.system, now, now))
            else:
                conn.execute("UPDATE conversations SET model = ?, system = ?, updated = ? WHERE id = ?",
                             (conversation.model, conversation.system, now, conversation.id))
                conn.execute("DELETE FROM messages WHERE conversation_id = ? AND position >= ?",
                             (conversation.id, keep))
            if message is not None:
                conn.execute("INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?)",
                             (conversation.id, keep, message.role, message.content, message.model, message.status,
                              now))

    def delete_conversation(self, user: str, conversation_id: str) -> bool:
        with self._db() as conn:
            conn.execute("DELETE FROM messages WHERE conversation_id IN "
                         "(SELECT id FROM conversations WHERE id = ? AND user = ?)", (conversation_id, user))
            return conn.execute("DELETE FROM conversations WHERE id = ? AND user = ?",
                                (conversation_id, user)).rowcount > 0

    # -- arena ---------------------------------------------------------------------------------------------

    def new_battle(self, user: str, mode: str, model_a: str, model_b: str) -> Battle:
        battle_id = new_id()
        states = [{"conv_id": f"{battle_id}-{side}", "model_name": model, "offset": 0, "messages": []}
                  for side, model in (("a", model_a), ("b", model_b))]
        battle = Battle(battle_id, user, mode, states, time.time())
        with self._db() as conn:
            conn.execute("INSERT INTO battles VALUES (?, ?, ?, ?, ?)",
                         (battle.id, user, mode, json.dumps(states), battle.created))
        return battle

    def battle(self, user: str, battle_id: str) -> Battle | None:
        with self._db() as conn:
            row = conn.execute("SELECT * FROM battles WHERE id = ? AND user = ?", (battle_id, user)).fetchone()
            vote = conn.execute("SELECT * FROM votes WHERE battle_id = ?", (battle_id,)).fetchone()
        if row is None:
            return None
        return Battle(row["id"], row["user"], row["mode"], json.loads(row["states"]), row["created"],
                      _vote_record(vote) if vote else None)

    def save_states(self, battle: Battle) -> None:
        with self._db() as conn:
            conn.execute("UPDATE battles SET states = ? WHERE id = ?", (json.dumps(battle.states), battle.id))

    def add_vote(self, battle: Battle, vote_type: str, leaked_identity: bool) -> dict[str, Any]:
        """Store the vote on ``battle`` (one per battle: a second raises KaiyuanError)."""
        record = {"tstamp": time.time(), "type": vote_type, "anony": battle.mode == "anony",
                  "leaked_identity": leaked_identity, "models": list(battle.models), "states": battle.states,
                  "user": battle.user}
        with self._db() as conn:
            if conn.execute("SELECT 1 FROM votes WHERE battle_id = ?", (battle.id,)).fetchone():
                raise KaiyuanError("this battle already has a vote: one vote per battle")
            conn.execute("INSERT INTO votes (battle_id, user, type, tstamp, anony, leaked_identity, models, "
                         "states) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         (battle.id, battle.user, vote_type, record["tstamp"], int(record["anony"]),
                          int(leaked_identity), json.dumps(record["models"]), json.dumps(battle.states)))
        return record

    def vote_count(self) -> int:
        """How many votes there are, without reading them (they carry whole conversations)."""
        with self._db() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM votes").fetchone()[0])

    def votes(self) -> list[dict[str, Any]]:
        """Every vote, oldest first, as FastChat's vote log records (+ ``battle_id``, ``anony``, ``leaked_identity``,
        ``user``)."""
        with self._db() as conn:
            rows = conn.execute("SELECT * FROM votes ORDER BY id").fetchall()
        return [_vote_record(row) for row in rows]


def _vote_record(row: sqlite3.Row) -> dict[str, Any]:
    return {"battle_id": row["battle_id"], "tstamp": row["tstamp"], "type": row["type"], "user": row["user"],
            "anony": bool(row["anony"]), "leaked_identity": bool(row["leaked_identity"]),
            "models": json.loads(row["models"]), "states": json.loads(row["states"])}


def battle_record(vote: dict[str, Any]) -> dict[str, Any]:
    """A vote as a clean battle record (FastChat's ``clean_battle_data`` output): what ``kaiyuan arena ratings``
    reads. Leaked-identity votes keep ``leaked_identity: true`` (the ratings leave them out)."""
    states = vote["states"]

    def conversation(state: dict[str, Any]) -> list[dict[str, str]]:
        return [{"role": role, "content": text or ""} for role, text in state["messages"][state["offset"]:]]

    conversation_a, conversation_b = conversation(states[0]), conversation(states[1])
    return {"question_id": states[0]["conv_id"].rsplit("-", 1)[0], "model_a": vote["models"][0],
            "model_b": vote["models"][1], "winner": VOTE_TYPES[vote["type"]], "judge": f"arena_user_{vote['user']}",
            "conversation_a": conversation_a, "conversation_b": conversation_b, "turn": len(conversation_a) // 2,
            "anony": vote["anony"], "leaked_identity": vote["leaked_identity"], "tstamp": vote["tstamp"]}
