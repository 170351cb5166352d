"""The dates task's text, pure and seeded: a date written in one of many human formats, and its ISO 8601 answer.

The synthetic task (:mod:`kaiyuan.data.synthetic`) and the tiny model's tokenizer corpus (:mod:`kaiyuan.tiny`) both
draw from it, so it sits on the ground floor.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import date, timedelta

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December"]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
DATES_ANSWER_PATTERN = r"\d{4}-\d{2}-\d{2}"
INSTRUCTIONS = [
    "Convert this date to ISO 8601 format (YYYY-MM-DD). Reply with the date only.",
    "Rewrite the date below as YYYY-MM-DD. Answer with the date only.",
    "What is this date in ISO format (YYYY-MM-DD)? Give only the date.",
    "Normalize the following date to YYYY-MM-DD. Output nothing else.",
]


def _ordinal(n: int) -> str:
    suffix = "th" if 11 <= n % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


DATE_STYLES: list[Callable[[date], str]] = [
    lambda d: f"{MONTHS[d.month - 1]} {d.day}, {d.year}",
    lambda d: f"{d.day} {MONTHS[d.month - 1]} {d.year}",
    lambda d: f"{MONTHS[d.month - 1][:3]} {d.day} {d.year}",
    lambda d: f"{_ordinal(d.day)} of {MONTHS[d.month - 1]}, {d.year}",
    lambda d: f"{WEEKDAYS[d.weekday()]}, {MONTHS[d.month - 1]} {d.day}, {d.year}",
    lambda d: f"{d.month:02d}/{d.day:02d}/{d.year} (month/day/year)",
    lambda d: f"{d.day:02d}.{d.month:02d}.{d.year} (day.month.year)",
    lambda d: f"{d.year}/{d.month:02d}/{d.day:02d}",
    lambda d: f"the {_ordinal(d.day)} of {MONTHS[d.month - 1]} {d.year}",
    lambda d: f"{d.day:02d}-{MONTHS[d.month - 1][:3]}-{d.year}",
    lambda d: f"{MONTHS[d.month - 1]} {_ordinal(d.day)}, {d.year}",
    lambda d: f"{d.day}/{d.month}/{d.year} (day/month/year)",
]


def date_example(rng: random.Random) -> dict:
    day = date(1900, 1, 1) + timedelta(days=rng.randrange((date(2099, 12, 31) - date(1900, 1, 1)).days))
    written = rng.choice(DATE_STYLES)(day)
    instruction = rng.choice(INSTRUCTIONS)
    return {"messages": [{"role": "user", "content": f"{instruction}\n\n{written}"},
                         {"role": "assistant", "content": day.isoformat()}]}
