"""Results of evaluation requests in SQLite, keyed by (model content hash, request): a re-run is instant."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

from kaiyuan.home import kaiyuan_home


class RequestCache:
    def __init__(self, model_hash: str, path: Path | None = None) -> None:
        self.path = path or kaiyuan_home() / "cache" / "eval_requests.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.model_hash = model_hash
        self.db = sqlite3.connect(self.path)
        self.db.execute("CREATE TABLE IF NOT EXISTS requests (model TEXT, kind TEXT, request TEXT, result TEXT, "
                        "PRIMARY KEY (model, kind, request))")
        self.hits = 0

    @staticmethod
    def key(request: Any) -> str:
        return hashlib.sha256(json.dumps(request, ensure_ascii=False).encode()).hexdigest()

    def get_many(self, kind: str, requests: list[Any]) -> list[Any | None]:
        keys = [self.key(r) for r in requests]
        found: dict[str, Any] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start: start + 500]
            marks = ",".join("?" * len(chunk))
            for request, result in self.db.execute(
                    # nosec B608: only "?" placeholders are formatted in; every value is a bound parameter
                    f"SELECT request, result FROM requests WHERE model = ? AND kind = ? AND request IN ({marks})",  # nosec B608
                    [self.model_hash, kind, *chunk]):
                found[request] = json.loads(result)
        self.hits += len(found)
        return [found.get(k) for k in keys]

    def put_many(self, kind: str, requests: list[Any], results: list[Any]) -> None:
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO requests VALUES (?, ?, ?, ?)",
                                [(self.model_hash, kind, self.key(r), json.dumps(v))
                                 for r, v in zip(requests, results, strict=True)])

    def close(self) -> None:
        self.db.close()
