"""Write one section of benchmarks/RESULTS.md, replacing an older copy of the same section."""

from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")


def write_section(heading: str, text: str) -> None:
    existing = RESULTS.read_text() if RESULTS.is_file() else "# Benchmark results\n"
    if heading in existing:
        head, _, rest = existing.partition(heading)
        tail = rest[rest.find("\n## ") + 1:] if "\n## " in rest else ""
        existing = head.rstrip() + "\n\n" + tail
    RESULTS.write_text(existing.rstrip() + "\n\n" + text.rstrip() + "\n")
