"""``--json`` output of every command, in one place. Command modules import it from here, not from
``kaiyuan.cli``: ``python -m kaiyuan.cli`` runs that module as ``__main__``, so importing it would load it twice."""

from __future__ import annotations

import json
import sys
from typing import Any


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")
