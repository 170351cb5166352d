"""License identifiers: normalize the strings found in model cards and GGUF metadata to SPDX ids.

(The license verdicts and their propagation along the lineage build on this.)
"""

from __future__ import annotations

import re

SPDX_IDS = {
    "apache-2.0": "Apache-2.0", "mit": "MIT", "bsd-2-clause": "BSD-2-Clause", "bsd-3-clause": "BSD-3-Clause",
    "cc0-1.0": "CC0-1.0", "cc-by-4.0": "CC-BY-4.0", "cc-by-sa-3.0": "CC-BY-SA-3.0", "cc-by-sa-4.0": "CC-BY-SA-4.0",
    "cc-by-nc-4.0": "CC-BY-NC-4.0", "cc-by-nc-sa-4.0": "CC-BY-NC-SA-4.0", "gpl-3.0": "GPL-3.0-only",
    "lgpl-3.0": "LGPL-3.0-only", "agpl-3.0": "AGPL-3.0-only", "mpl-2.0": "MPL-2.0", "unlicense": "Unlicense",
    "openrail": "LicenseRef-OpenRAIL", "llama2": "LicenseRef-Llama-2", "llama3": "LicenseRef-Llama-3",
    "llama3.1": "LicenseRef-Llama-3.1", "llama3.2": "LicenseRef-Llama-3.2", "gemma": "LicenseRef-Gemma",
}
UNKNOWN = "NOASSERTION"


def normalize_license(value: str | None) -> str:
    """An SPDX id (or ``LicenseRef-…``) for a license string; ``NOASSERTION`` when there is none."""
    if not value or not value.strip():
        return UNKNOWN
    text = value.strip()
    key = text.lower()
    if key in SPDX_IDS:
        return SPDX_IDS[key]
    for spdx in SPDX_IDS.values():
        if key == spdx.lower():
            return spdx
    if key in ("noassertion", "unknown", "other"):
        return UNKNOWN
    return "LicenseRef-" + re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-")
