"""Licenses: normalize license strings to SPDX ids, know what each license allows, and derive a model's
terms from its lineage.

* :func:`normalize_license` — Hub ids (``llama3.1``), SPDX ids and free text ("Apache License 2.0",
  "CC BY-NC 4.0", "Gemma Terms of Use") to an SPDX id or ``LicenseRef-…``.
* :func:`license_properties` — the table below: commercial use, share-alike, attribution, notice and
  naming obligations, acceptable-use policy, user cap, OSI approval, open data license.
* :func:`license_report` — walks the lineage (base models, adapters, merges, quantizations, datasets,
  reward / reference models, the models that generated data) and intersects the inputs' terms into a
  verdict on commercial use (``yes`` / ``no`` / ``risk``), the obligations and the chain of evidence.

The verdict is an engineering reading of recorded licenses, not legal advice: a non-commercial license on
weights in the chain means "no"; non-commercial *training data* is a "risk" (whether a model is a derivative
of its training data is unsettled), reported with the path of artifacts that causes it.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

from kaiyuan.hub.registry import Artifact, Registry

UNKNOWN = "NOASSERTION"
MAU_700M = 700_000_000

# --------------------------------------------------------------------------------------------- table


@dataclass(frozen=True)
class LicenseProperties:
    """What a license allows and asks for. ``commercial_use`` / ``derivatives`` are None when unknown."""

    spdx: str
    name: str
    known: bool = True
    commercial_use: bool | None = True
    derivatives: bool | None = True
    share_alike: bool = False
    attribution: bool = False
    osi_approved: bool = False
    fsf_libre: bool = False
    open_data: bool = False
    acceptable_use_policy: str | None = None
    user_cap: int | None = None
    no_improving_other_models: bool = False
    name_prefix: str | None = None
    display_notice: str | None = None
    obligations: tuple[str, ...] = ()
    notes: str = ""
    url: str | None = None

    @property
    def open_license(self) -> bool:
        """OSI-approved, or an open data license (CC0, CC-BY, CC-BY-SA, CDLA, ODC-By, ODbL, PDDL)."""
        return self.osi_approved or self.open_data

    @property
    def restricts_use(self) -> bool:
        return self.acceptable_use_policy is not None or self.user_cap is not None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["obligations"] = list(self.obligations)
        data["open_license"] = self.open_license
        return data


def _license(spdx: str, name: str, **kwargs: Any) -> LicenseProperties:
    return LicenseProperties(spdx=spdx, name=name, **kwargs)


CC_CREDIT = "give appropriate credit, link to the license and indicate changes"


def _permissive(spdx: str, name: str, *obligations: str, attribution: bool = True) -> LicenseProperties:
    return _license(spdx, name, attribution=attribution, osi_approved=True, fsf_libre=True,
                    obligations=tuple(f"{spdx}: {o}" for o in obligations))


def _copyleft(spdx: str, name: str, obligation: str) -> LicenseProperties:
    return _license(spdx, name, share_alike=True, attribution=True, osi_approved=True, fsf_libre=True,
                    obligations=(f"{spdx}: {obligation}",))


def _creative_commons(version: str, parts: str) -> LicenseProperties:
    """CC-BY[-NC][-ND|-SA]-<version>: credit always; NC = no commercial use; SA = share alike; ND = no
    derivatives (may not share adaptations). NC and ND are restrictions (``commercial_use`` / ``derivatives``),
    reported as risks rather than obligations."""
    spdx = f"CC-{parts}-{version}"
    nc, sa, nd = "NC" in parts, "SA" in parts, "ND" in parts
    words = {"BY": "Attribution", "NC": "NonCommercial", "SA": "ShareAlike", "ND": "NoDerivatives"}
    obligations = [f"{spdx}: {CC_CREDIT}"]
    if sa:
        obligations.append(f"{spdx}: share adaptations under the same license")
    return _license(spdx, f"Creative Commons {'-'.join(words[p] for p in parts.split('-'))} {version}",
                    commercial_use=not nc, derivatives=not nd, share_alike=sa, attribution=True,
                    open_data=not (nc or nd), fsf_libre=not (nc or nd), obligations=tuple(obligations),
                    url=f"https://creativecommons.org/licenses/{parts.lower()}/{version}/")


def _open_data(spdx: str, name: str, *obligations: str, share_alike: bool = False,
               attribution: bool = True) -> LicenseProperties:
    return _license(spdx, name, share_alike=share_alike, attribution=attribution, open_data=True,
                    obligations=tuple(f"{spdx}: {o}" for o in obligations))


def _llama(version: str, notice: str, *, display: str | None, prefix: str | None, no_improving: bool = False,
           notes: str = "") -> LicenseProperties:
    spdx = f"LicenseRef-Llama-{version}"
    aup = f"Llama {version} Acceptable Use Policy"
    obligations = [f"{spdx}: give recipients a copy of the Llama {version} Community License",
                   f'{spdx}: keep the notice "{notice}" in a "Notice" text file distributed with copies']
    if display:
        obligations.append(f'{spdx}: display "{display}" prominently on a related website, user interface, '
                           "blog post, about page or product documentation")
    if prefix:
        obligations.append(f'{spdx}: a model created, trained, fine-tuned or improved with these materials or '
                           f'their outputs must have a name beginning with "{prefix}"')
    if no_improving:
        obligations.append(f"{spdx}: do not use the materials or their outputs to improve any other large "
                           "language model (Llama 2 and its derivatives excepted)")
    obligations += [f"{spdx}: products or services with more than 700 million monthly active users need a "
                    "separate license from Meta", f"{spdx}: comply with the {aup}"]
    return _license(spdx, f"Llama {version} Community License", attribution=True, acceptable_use_policy=aup,
                    user_cap=MAU_700M, no_improving_other_models=no_improving, name_prefix=prefix,
                    display_notice=display, obligations=tuple(obligations), notes=notes,
                    url=f"https://www.llama.com/llama{version.replace('.', '_')}/license/")


def _rail(spdx: str, name: str) -> LicenseProperties:
    aup = f"{name} use-based restrictions (Attachment A)"
    return _license(spdx, name, attribution=True, acceptable_use_policy=aup, obligations=(
        f"{spdx}: include the use-based restrictions as an enforceable provision in any license of derivatives, "
        "and give recipients a copy of the license", f"{spdx}: comply with the {aup}"))


LLAMA_31_NOTICE = "Llama {v} is licensed under the Llama {v} Community License, Copyright © Meta Platforms, Inc. " \
                  "All Rights Reserved."
EU_MULTIMODAL = ("Rights to multimodal Llama models are not granted to individuals domiciled in, or companies with "
                 "a principal place of business in, the European Union (end users of products are not affected).")

_TABLE: tuple[LicenseProperties, ...] = (
    # permissive and copyleft software licenses (OSI-approved)
    _permissive("Apache-2.0", "Apache License 2.0", "give recipients a copy of the license and keep the NOTICE "
                "file's attributions", "state significant changes in modified files"),
    _permissive("MIT", "MIT License", "keep the copyright and permission notice in all copies"),
    _permissive("BSD-2-Clause", "BSD 2-Clause License", "keep the copyright notice, conditions and disclaimer"),
    _permissive("BSD-3-Clause", "BSD 3-Clause License", "keep the copyright notice, conditions and disclaimer",
                "do not use the contributors' names to endorse derived products"),
    _permissive("ISC", "ISC License", "keep the copyright and permission notice in all copies"),
    _permissive("BSL-1.0", "Boost Software License 1.0", "keep the license text in source distributions"),
    _permissive("AFL-3.0", "Academic Free License 3.0", "keep the attribution notices"),
    _permissive("Unlicense", "The Unlicense", attribution=False),
    _copyleft("MPL-2.0", "Mozilla Public License 2.0", "make the source of modified MPL files available under MPL"),
    _copyleft("LGPL-2.1-only", "GNU Lesser General Public License v2.1", "share modifications of the library under "
              "the LGPL"),
    _copyleft("LGPL-3.0-only", "GNU Lesser General Public License v3", "share modifications of the library under "
              "the LGPL"),
    _copyleft("GPL-2.0-only", "GNU General Public License v2", "distribute derived works with source under the GPL"),
    _copyleft("GPL-3.0-only", "GNU General Public License v3", "distribute derived works with source under the GPL"),
    _copyleft("AGPL-3.0-only", "GNU Affero General Public License v3", "offer the source of derived works, also to "
              "users over a network, under the AGPL"),
    _copyleft("EPL-2.0", "Eclipse Public License 2.0", "make the source of modified EPL code available under EPL"),
    _copyleft("EUPL-1.2", "European Union Public License 1.2", "distribute derived works under the EUPL or a "
              "compatible license"),
    # open data and content licenses
    _license("CC0-1.0", "Creative Commons Zero v1.0 Universal", open_data=True, fsf_libre=True),
    _creative_commons("3.0", "BY"), _creative_commons("4.0", "BY"),
    _creative_commons("3.0", "BY-SA"), _creative_commons("4.0", "BY-SA"),
    _creative_commons("3.0", "BY-NC"), _creative_commons("4.0", "BY-NC"),
    _creative_commons("3.0", "BY-NC-SA"), _creative_commons("4.0", "BY-NC-SA"),
    _creative_commons("4.0", "BY-NC-ND"), _creative_commons("4.0", "BY-ND"),
    _open_data("CDLA-Permissive-1.0", "Community Data License Agreement Permissive 1.0",
               "make the text of the agreement available with shared data"),
    _open_data("CDLA-Permissive-2.0", "Community Data License Agreement Permissive 2.0",
               "make the text of the agreement available with shared data"),
    _open_data("CDLA-Sharing-1.0", "Community Data License Agreement Sharing 1.0",
               "share the data and enhancements under CDLA-Sharing", share_alike=True),
    _open_data("ODC-By-1.0", "Open Data Commons Attribution License v1.0", "attribute the database as the license "
               "requires"),
    _open_data("ODbL-1.0", "Open Data Commons Open Database License v1.0", "attribute the database",
               "share adapted databases under the ODbL", share_alike=True),
    _open_data("PDDL-1.0", "Open Data Commons Public Domain Dedication and License v1.0", attribution=False),
    # responsible-AI and community licenses (published terms with use restrictions)
    _rail("LicenseRef-OpenRAIL", "OpenRAIL"),
    _rail("LicenseRef-OpenRAIL-M", "OpenRAIL-M"),
    _rail("LicenseRef-CreativeML-OpenRAIL-M", "CreativeML OpenRAIL-M"),
    _rail("LicenseRef-CreativeML-OpenRAIL-plus-plus-M", "CreativeML OpenRAIL++-M"),
    _rail("LicenseRef-BigScience-OpenRAIL-M", "BigScience OpenRAIL-M"),
    _rail("LicenseRef-BigScience-BLOOM-RAIL-1.0", "BigScience BLOOM RAIL 1.0"),
    _rail("LicenseRef-BigCode-OpenRAIL-M", "BigCode OpenRAIL-M"),
    _rail("LicenseRef-DeepSeek", "DeepSeek License Agreement"),
    _llama("2", "Llama 2 is licensed under the LLAMA 2 Community License, Copyright (c) Meta Platforms, Inc. "
                "All Rights Reserved.", display=None, prefix=None, no_improving=True),
    _llama("3", "Meta Llama 3 is licensed under the Meta Llama 3 Community License, Copyright © Meta Platforms, "
                "Inc. All Rights Reserved.", display="Built with Meta Llama 3", prefix="Llama 3"),
    _llama("3.1", LLAMA_31_NOTICE.format(v="3.1"), display="Built with Llama", prefix="Llama"),
    _llama("3.2", LLAMA_31_NOTICE.format(v="3.2"), display="Built with Llama", prefix="Llama", notes=EU_MULTIMODAL),
    _llama("3.3", LLAMA_31_NOTICE.format(v="3.3"), display="Built with Llama", prefix="Llama"),
    _llama("4", LLAMA_31_NOTICE.format(v="4"), display="Built with Llama", prefix="Llama", notes=EU_MULTIMODAL),
    _license("LicenseRef-Gemma", "Gemma Terms of Use", attribution=True,
             acceptable_use_policy="Gemma Prohibited Use Policy", url="https://ai.google.dev/gemma/terms",
             notes="Model Derivatives include models trained on Gemma's outputs (distillation, synthetic data).",
             obligations=(
                 "LicenseRef-Gemma: distribute Gemma and Model Derivatives with the use restrictions of section 3.2 "
                 "as an enforceable provision, and give recipients a copy of the Gemma Terms of Use",
                 'LicenseRef-Gemma: keep the notice "Gemma is provided under and subject to the Gemma Terms of Use '
                 'found at ai.google.dev/gemma/terms" in a "Notice" text file',
                 "LicenseRef-Gemma: mark modified files with a prominent notice that you modified them",
                 "LicenseRef-Gemma: comply with the Gemma Prohibited Use Policy")),
    _license("LicenseRef-Tongyi-Qianwen", "Tongyi Qianwen License Agreement", attribution=True,
             user_cap=100_000_000, obligations=(
                 "LicenseRef-Tongyi-Qianwen: give recipients a copy of the license and keep the notice "
                 '"Qwen is licensed under the Tongyi Qianwen LICENSE AGREEMENT, Copyright (c) Alibaba Cloud. All '
                 'Rights Reserved."',
                 "LicenseRef-Tongyi-Qianwen: products or services with more than 100 million monthly active users "
                 "need a license from Alibaba Cloud")),
    # model licenses and service terms of the well-known models in kaiyuan/catalog/data/models.yaml
    _license("LicenseRef-LLaMA-1", "LLaMA non-commercial research license", commercial_use=False,
             url="https://github.com/facebookresearch/llama/blob/llama_v1/MODEL_CARD.md",
             notes="Meta's first LLaMA (7B-65B, February 2023): weights given on request under a non-commercial "
                   "bespoke license (the code was GPL-3.0). Models tuned from LLaMA 1 or released as diffs against it "
                   "(Alpaca, Vicuna up to v1.3, Koala, GPT4All, StableVicuna) carry it. Its further use restrictions "
                   "are not recorded here: read the agreement.",
             obligations=("LicenseRef-LLaMA-1: use the LLaMA weights and models derived from them for non-commercial "
                          "research only",)),
    _license("LicenseRef-OpenAI-Terms", "OpenAI Terms of Use", no_improving_other_models=True,
             acceptable_use_policy="OpenAI Usage Policies", url="https://openai.com/policies/terms-of-use",
             notes="Terms of service, not a license on weights or data: they bind the user who generated the outputs. "
                   "They assign that user OpenAI's rights in the outputs, commercial use included (so commercial_use "
                   "is True), but forbid using outputs to develop models that compete with OpenAI — recorded as "
                   "no_improving_other_models, reported as a risk for any model trained on them. Whether the terms "
                   "bind third parties who only receive a data set of outputs (Alpaca, ShareGPT) is unsettled.",
             obligations=("LicenseRef-OpenAI-Terms: do not use outputs of OpenAI's services to develop models that "
                          "compete with OpenAI",
                          "LicenseRef-OpenAI-Terms: comply with the OpenAI Usage Policies")),
    _license("LicenseRef-Baichuan-2", "Community License for Baichuan 2 Model", commercial_use=None,
             url="https://huggingface.co/baichuan-inc/Baichuan2-7B-Base/blob/main/Community%20License%20for%20Baichuan2"
                 "%20Model.pdf",
             notes="Academic use is open; commercial use is granted only in writing, after an application by email "
                   "that Baichuan reviews, and only to licensees whose services have under 1 million daily active "
                   "users (user_cap is not set: it counts monthly users), who are not software or cloud service "
                   "providers and who will not sublicense. Hence commercial_use None: a report marks it a risk. The "
                   "code is Apache-2.0.",
             obligations=(
                 "LicenseRef-Baichuan-2: apply to Baichuan (opensource@baichuan-inc.com) and obtain written "
                 "authorization before any commercial use of Baichuan 2 or its derivatives",
                 "LicenseRef-Baichuan-2: commercial use only for services or products with fewer than 1 million daily "
                 "active users, by licensees that are not software or cloud service providers, without sublicensing "
                 "the commercial license to third parties")),
    _license("LicenseRef-ChatGLM-6B", "The ChatGLM-6B License", attribution=True,
             acceptable_use_policy="ChatGLM-6B License restrictions (section 3)",
             url="https://github.com/THUDM/ChatGLM-6B/blob/main/MODEL_LICENSE",
             notes="Covers the ChatGLM-6B weights only (not ChatGLM2-6B and later). Its first version (March 2023) "
                   "granted use solely for non-commercial research; the current one has no such limit, and the README "
                   "allows free commercial use after registering through a questionnaire. Chinese law, Haidian court. "
                   "The code is Apache-2.0.",
             obligations=(
                 "LicenseRef-ChatGLM-6B: include the copyright notice and the license in all copies or substantial "
                 "portions of the weights",
                 "LicenseRef-ChatGLM-6B: register through the questionnaire linked from the README before commercial "
                 "use (free)",
                 "LicenseRef-ChatGLM-6B: comply with the ChatGLM-6B License restrictions (section 3): no military or "
                 "illegal use, nothing that undermines China's national security and unity, harms the public interest "
                 "or infringes personal rights")),
    _license("LicenseRef-Yi", "Yi Series Models Community License Agreement", attribution=True,
             acceptable_use_policy="Yi Series Models License restrictions (section 2)",
             url="https://github.com/01-ai/Yi/blob/main/MODEL_LICENSE_AGREEMENT.txt",
             notes="Version 2.1 (2023-11-23) allows free commercial use once 01.AI's commercial license is applied for "
                   "(granted on application); version 1.0 (2023-11-01) allowed non-commercial use only, commercial use "
                   "needing 01.AI's written authorization. Derivatives include models trained on Yi's outputs "
                   "(synthetic data, distillation). 01.AI later re-released the code and weights of the Yi models "
                   "under Apache-2.0. Chinese law.",
             obligations=(
                 "LicenseRef-Yi: attribute the Yi Series Models to 01.AI and give third-party users of the models and "
                 "their derivatives a copy of the agreement",
                 "LicenseRef-Yi: state the substantial modifications made in derivatives",
                 "LicenseRef-Yi: apply to 01.AI for the free commercial license before commercial use",
                 "LicenseRef-Yi: comply with the Yi Series Models License restrictions (section 2): lawful use only, "
                 "no military use, no infringement of third parties' rights")),
    _license("LicenseRef-Falcon-180B", "Falcon 180B TII License 1.0", attribution=True,
             acceptable_use_policy="Falcon 180B Acceptable Use Policy",
             url="https://huggingface.co/tiiuae/falcon-180B/blob/main/LICENSE.txt",
             notes="Based on Apache-2.0 with modifications: use for hosted services may need a separate license from "
                   "TII, and the acceptable use policy may be updated by TII at any time (licensees must follow the "
                   "current one). Falcon-7B and Falcon-40B are Apache-2.0.",
             obligations=(
                 "LicenseRef-Falcon-180B: give recipients a copy of the license and keep the attribution notices",
                 "LicenseRef-Falcon-180B: offering Falcon 180B or a derivative as a hosted service (Hosting Use, e.g. "
                 "an API or a managed service) may need a separate license from TII",
                 "LicenseRef-Falcon-180B: comply with the current Falcon 180B Acceptable Use Policy")),
    _license("LicenseRef-Qwen", "Qwen License Agreement", attribution=True, user_cap=100_000_000,
             display_notice="Built with Qwen", url="https://huggingface.co/Qwen/Qwen2.5-72B-Instruct/blob/main/LICENSE",
             notes="The September 2024 agreement of Qwen2.5-72B (most other Qwen2.5 sizes are Apache-2.0); it succeeds "
                   "the Tongyi Qianwen License Agreement of Qwen, Qwen1.5 and Qwen2-72B.",
             obligations=(
                 "LicenseRef-Qwen: give recipients a copy of the agreement and mark modified files",
                 'LicenseRef-Qwen: keep the notice "Qwen is licensed under the Qwen LICENSE AGREEMENT, Copyright (c) '
                 'Alibaba Cloud. All Rights Reserved." in a "Notice" text file distributed with copies',
                 'LicenseRef-Qwen: a distributed model created, trained, fine-tuned or improved with the materials or '
                 'their outputs must display "Built with Qwen" or "Improved using Qwen" in its documentation',
                 "LicenseRef-Qwen: products or services with more than 100 million monthly active users need a "
                 "license from Alibaba Cloud")),
    _license("LicenseRef-Qwen-Research", "Qwen Research License Agreement", commercial_use=False, attribution=True,
             display_notice="Built with Qwen", url="https://huggingface.co/Qwen/Qwen2.5-3B-Instruct/blob/main/LICENSE",
             notes="Non-commercial (research or evaluation) use only; commercial use needs a license from Alibaba "
                   "Cloud. Used by Qwen2.5-3B. The earlier Tongyi Qianwen Research License Agreement (Hub license "
                   "name tongyi-qianwen-research: Qwen-1.8B, small Qwen1.5 sizes) is recorded under this id too: both "
                   "allow non-commercial use only.",
             obligations=(
                 "LicenseRef-Qwen-Research: use the materials for non-commercial research or evaluation only",
                 "LicenseRef-Qwen-Research: give recipients a copy of the agreement, mark modified files and keep the "
                 'attribution notice the agreement gives in a "Notice" text file',
                 'LicenseRef-Qwen-Research: a distributed model created, trained, fine-tuned or improved with the '
                 'materials or their outputs must display "Built with Qwen" or "Improved using Qwen" in its '
                 "documentation")),
    _license("LicenseRef-Apple-ASCL", "Apple Sample Code License", attribution=True,
             url="https://huggingface.co/apple/DCLM-7B",
             notes="Permissive (use, modification and redistribution, commercial included) but not OSI-approved, and "
                   "it grants no patent rights. Used by apple/DCLM-7B (Hub license id apple-ascl).",
             obligations=(
                 "LicenseRef-Apple-ASCL: keep Apple's notice, text and disclaimers when redistributing the software "
                 "unmodified",
                 "LicenseRef-Apple-ASCL: do not use Apple's names, trademarks or logos to endorse or promote derived "
                 "products without Apple's written permission")),
)
LICENSES: dict[str, LicenseProperties] = {p.spdx: p for p in _TABLE}

# Hugging Face Hub license ids (model and dataset cards) → SPDX ids (or LicenseRef-…)
SPDX_IDS = {
    "apache-2.0": "Apache-2.0", "mit": "MIT", "bsd-2-clause": "BSD-2-Clause", "bsd-3-clause": "BSD-3-Clause",
    "isc": "ISC", "bsl-1.0": "BSL-1.0", "afl-3.0": "AFL-3.0", "unlicense": "Unlicense", "mpl-2.0": "MPL-2.0",
    "lgpl-2.1": "LGPL-2.1-only", "lgpl-3.0": "LGPL-3.0-only", "gpl-2.0": "GPL-2.0-only", "gpl-3.0": "GPL-3.0-only",
    "agpl-3.0": "AGPL-3.0-only", "epl-2.0": "EPL-2.0", "eupl-1.2": "EUPL-1.2",
    "cc0-1.0": "CC0-1.0", "cc-by-3.0": "CC-BY-3.0", "cc-by-4.0": "CC-BY-4.0", "cc-by-sa-3.0": "CC-BY-SA-3.0",
    "cc-by-sa-4.0": "CC-BY-SA-4.0", "cc-by-nc-3.0": "CC-BY-NC-3.0", "cc-by-nc-4.0": "CC-BY-NC-4.0",
    "cc-by-nc-sa-3.0": "CC-BY-NC-SA-3.0", "cc-by-nc-sa-4.0": "CC-BY-NC-SA-4.0", "cc-by-nc-nd-4.0": "CC-BY-NC-ND-4.0",
    "cc-by-nd-4.0": "CC-BY-ND-4.0", "cdla-permissive-1.0": "CDLA-Permissive-1.0",
    "cdla-permissive-2.0": "CDLA-Permissive-2.0", "cdla-sharing-1.0": "CDLA-Sharing-1.0", "odc-by": "ODC-By-1.0",
    "odbl": "ODbL-1.0", "pddl": "PDDL-1.0",
    "openrail": "LicenseRef-OpenRAIL", "openrail-m": "LicenseRef-OpenRAIL-M",
    "creativeml-openrail-m": "LicenseRef-CreativeML-OpenRAIL-M",
    "openrail++": "LicenseRef-CreativeML-OpenRAIL-plus-plus-M",
    "bigscience-openrail-m": "LicenseRef-BigScience-OpenRAIL-M",
    "bigscience-bloom-rail-1.0": "LicenseRef-BigScience-BLOOM-RAIL-1.0",
    "bigcode-openrail-m": "LicenseRef-BigCode-OpenRAIL-M", "deepseek": "LicenseRef-DeepSeek",
    "llama2": "LicenseRef-Llama-2", "llama3": "LicenseRef-Llama-3", "llama3.1": "LicenseRef-Llama-3.1",
    "llama3.2": "LicenseRef-Llama-3.2", "llama3.3": "LicenseRef-Llama-3.3", "llama4": "LicenseRef-Llama-4",
    "gemma": "LicenseRef-Gemma", "tongyi-qianwen": "LicenseRef-Tongyi-Qianwen",
    "qwen": "LicenseRef-Qwen", "qwen-research": "LicenseRef-Qwen-Research",
    "tongyi-qianwen-research": "LicenseRef-Qwen-Research", "apple-ascl": "LicenseRef-Apple-ASCL",
}
_BY_LOWER = {spdx.lower(): spdx for spdx in LICENSES}

# ------------------------------------------------------------------------------------- normalization


def normalize_license(value: str | None) -> str:
    """An SPDX id (or ``LicenseRef-…``) for a license string; ``NOASSERTION`` when there is none.

    Accepts Hub ids, SPDX ids in any case, and common free text; anything else becomes
    ``LicenseRef-<the text>`` (which :func:`license_properties` reports as an unknown license)."""
    if not value or not value.strip():
        return UNKNOWN
    text = value.strip()
    key = text.lower()
    if key in SPDX_IDS:
        return SPDX_IDS[key]
    if key in _BY_LOWER:
        return _BY_LOWER[key]
    if key in ("noassertion", "unknown", "other"):
        return UNKNOWN
    return _from_text(key) or "LicenseRef-" + re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-")


_LLAMA = re.compile(r"\bllama[\s_-]*(\d(?:\.\d)?)\b")
_CC_WORDS = (("creative commons", " cc "), ("attribution", " by "), ("non-commercial", " nc "),
             ("noncommercial", " nc "), ("share-alike", " sa "), ("sharealike", " sa "), ("share alike", " sa "),
             ("noderivatives", " nd "), ("no derivatives", " nd "), ("noderivs", " nd "))
_FREE_TEXT = (  # (pattern on lower-case text, SPDX id), first match wins
    (r"\bgemma\b", "LicenseRef-Gemma"),
    # model licenses first: "Apache-2.0 and Community License for Baichuan2 Model" is the model license's text
    (r"baichuan\s*2.*(licen|许可)|(licen|许可).*baichuan\s*2", "LicenseRef-Baichuan-2"),
    (r"\bchatglm[\s-]*6b\b.*licen", "LicenseRef-ChatGLM-6B"),
    (r"\byi series\b.*licen", "LicenseRef-Yi"),
    (r"falcon[\s-]*180b\b.*licen", "LicenseRef-Falcon-180B"),
    (r"(qwen|tongyi qianwen) research licen", "LicenseRef-Qwen-Research"),
    (r"\bqwen license agreement\b", "LicenseRef-Qwen"),
    (r"(?<!code )\bllama licen[cs]e\b", "LicenseRef-LLaMA-1"),  # no version: the first LLaMA
    (r"\bopenai\b.*\bterms\b", "LicenseRef-OpenAI-Terms"),
    (r"apple sample code licen", "LicenseRef-Apple-ASCL"),
    (r"apache", "Apache-2.0"),
    (r"\bmit\b", "MIT"),
    (r"\bbsd\b.*\b3\b|new bsd|modified bsd", "BSD-3-Clause"),
    (r"\bbsd\b.*\b2\b|simplified bsd|freebsd", "BSD-2-Clause"),
    (r"affero|\bagpl", "AGPL-3.0-only"),
    (r"lesser general public license.*2\.1|\blgpl[\s-]*v?2", "LGPL-2.1-only"),
    (r"lesser general public license|\blgpl", "LGPL-3.0-only"),
    (r"general public license.*\b(v|version\s*)?2\b|\bgpl[\s-]*v?2", "GPL-2.0-only"),
    (r"general public license|\bgpl", "GPL-3.0-only"),
    (r"mozilla public license|\bmpl", "MPL-2.0"),
    (r"cdla[\s-]*permissive[\s-]*(v|version\s*)?2|community data license agreement.*permissive.*2",
     "CDLA-Permissive-2.0"),
    (r"cdla[\s-]*permissive|community data license agreement.*permissive", "CDLA-Permissive-1.0"),
    (r"cdla[\s-]*sharing|community data license agreement.*sharing", "CDLA-Sharing-1.0"),
    (r"open database license|\bodbl\b", "ODbL-1.0"),
    (r"open data commons attribution|\bodc[\s-]*by\b", "ODC-By-1.0"),
    (r"public domain dedication and license|\bpddl\b", "PDDL-1.0"),
    (r"bloom rail", "LicenseRef-BigScience-BLOOM-RAIL-1.0"),
    (r"bigcode.*openrail", "LicenseRef-BigCode-OpenRAIL-M"),
    (r"bigscience.*openrail", "LicenseRef-BigScience-OpenRAIL-M"),
    (r"creativeml.*openrail", "LicenseRef-CreativeML-OpenRAIL-M"),
    (r"openrail[\s-]*m\b", "LicenseRef-OpenRAIL-M"),
    (r"openrail", "LicenseRef-OpenRAIL"),
    (r"deepseek license", "LicenseRef-DeepSeek"),
    (r"tongyi qianwen|qwen license", "LicenseRef-Tongyi-Qianwen"),
    (r"\bunlicense\b", "Unlicense"),
)


def _from_text(text: str) -> str | None:
    """A license named in free text ("Llama 2 Community License", "CC BY-NC 4.0"); None if not recognised."""
    llama = _LLAMA.search(text)
    if llama:
        return _BY_LOWER.get(f"licenseref-llama-{llama.group(1)}")  # "LLaMA 1" is LicenseRef-LLaMA-1
    creative = _creative_commons_id(text)
    if creative:
        return creative
    for pattern, spdx in _FREE_TEXT:
        if re.search(pattern, text):
            return spdx
    return None


def _creative_commons_id(text: str) -> str | None:
    spaced = f" {text.replace('_', ' ')} "
    for words, token in _CC_WORDS:
        spaced = spaced.replace(words, token)
    tokens = re.findall(r"[a-z0-9]+(?:\.\d)?", spaced)
    if "cc0" in tokens or ("cc" in tokens and "zero" in tokens):
        return "CC0-1.0"
    if "cc" not in tokens or "by" not in tokens:
        return None
    parts = ["BY", *[p.upper() for p in ("nc", "nd", "sa") if p in tokens]]
    if "ND" in parts and "SA" in parts:
        return None
    version = next((t if "." in t else f"{t}.0" for t in tokens if re.fullmatch(r"\d(\.\d)?", t)), "4.0")
    spdx = f"CC-{'-'.join(parts)}-{version}"
    return spdx if spdx in LICENSES else None


def license_properties(spdx_or_text: str | None) -> LicenseProperties:
    """The properties of a license (SPDX id, Hub id or free text); an unknown license has ``known=False`` and
    ``commercial_use=None``."""
    spdx = normalize_license(spdx_or_text)
    if spdx in LICENSES:
        return LICENSES[spdx]
    name = "no license recorded" if spdx == UNKNOWN else spdx.removeprefix("LicenseRef-").replace("-", " ")
    return _license(spdx, name, known=False, commercial_use=None, derivatives=None)


# ----------------------------------------------------------------------------------------- lineage

# Relations through which an input's *weights* end up in the artifact; every other relation feeds it data or a
# training signal (datasets, reward and reference models, the model that generated data).
WEIGHT_RELATIONS = frozenset({"base_model", "finetune", "adapter", "merge", "quantized"})
# Relations that are not inputs at all: an evaluation's model and its judge do not make the evaluated model.
NOT_INPUTS = frozenset({"evaluated_model", "judge", "documented"})


@dataclass
class LineageInput:
    """One input of an artifact: how it got there (``path`` of ids from the artifact, ``relations`` along it)."""

    id: str
    artifact: Artifact | None
    path: list[str]
    relations: list[str]
    names: list[str]

    @property
    def role(self) -> str:
        """``weights`` when every step is a weight relation (its parameters are in the artifact), else ``data``."""
        return "weights" if all(r in WEIGHT_RELATIONS for r in self.relations) else "data"

    @property
    def via(self) -> str:
        """The first relation that is not a weight relation (how the input fed training), or the last one."""
        return next((r for r in self.relations if r not in WEIGHT_RELATIONS), self.relations[-1])

    @property
    def name(self) -> str:
        return self.names[-1]

    @classmethod
    def itself(cls, artifact: Artifact) -> LineageInput:
        return cls(artifact.id, artifact, [artifact.id], [], [artifact.name])

    def path_text(self, license: str | None = None) -> str:
        text = self.names[0]
        for relation, name in zip(self.relations, self.names[1:], strict=True):
            text += f" ←{relation}— {name}"
        return text + (f" ({license})" if license else "")


def _by_id(registry: Registry, artifact_id: str, cache: dict[str, Artifact | None]) -> Artifact | None:
    if artifact_id not in cache:
        found = registry.find(artifact_id)
        cache[artifact_id] = found if found is not None and found.id == artifact_id else None
    return cache[artifact_id]


def lineage_inputs(artifact: Artifact, registry: Registry) -> list[LineageInput]:
    """Every input of ``artifact`` (nearest first), each once: by a path of weight relations when there is one,
    else by its shortest path. Evaluations' models and judges are not inputs."""
    cache: dict[str, Artifact | None] = {artifact.id: artifact}
    found: dict[str, LineageInput] = {}
    queue = deque([LineageInput.itself(artifact)])
    seen = {(artifact.id, True)}
    while queue:
        node = queue.popleft()
        for parent_id, relation in registry.parents(node.id):
            if relation in NOT_INPUTS or parent_id in node.path:
                continue
            parent = _by_id(registry, parent_id, cache)
            entry = LineageInput(parent_id, parent, [*node.path, parent_id], [*node.relations, relation],
                                 [*node.names, parent.name if parent else parent_id])
            state = (parent_id, entry.role == "weights")
            if state in seen:
                continue
            seen.add(state)
            previous = found.get(parent_id)
            if previous is None or (entry.role == "weights" and previous.role != "weights"):
                found[parent_id] = entry
            if parent is not None:
                queue.append(entry)
    return list(found.values())


# ------------------------------------------------------------------------------------------ report


@dataclass
class LicenseReport:
    model_id: str
    name: str
    kind: str
    license: str
    verdict: str  # "yes" | "no" | "risk": may the model be used commercially?
    summary: str
    obligations: list[str] = field(default_factory=list)
    use_policies: list[str] = field(default_factory=list)
    user_cap: int | None = None
    risks: list[dict[str, Any]] = field(default_factory=list)
    evidence: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def license_report(ref: str, registry: Registry | None = None) -> LicenseReport:
    """The terms of an artifact (usually a model): the intersection of its own license and every input's."""
    registry = registry or Registry()
    artifact = registry.get(ref)
    inputs = lineage_inputs(artifact, registry)
    own = license_properties(artifact.license)
    evidence = [_evidence(LineageInput.itself(artifact), own, "self")]
    risks: list[dict[str, Any]] = [*_own_risks(artifact, own)]
    terms = [own]
    for item in inputs:
        if item.artifact is None:
            risks.append(_risk("risk", "missing-input", item, None, f"input {item.id} ({item.relations[-1]}) is not "
                               "in the registry: its terms are unknown"))
            evidence.append(_evidence(item, None, item.role))
            continue
        props = license_properties(item.artifact.license)
        terms.append(props)
        evidence.append(_evidence(item, props, item.role))
        risks += _input_risks(artifact, own, item, props)
    risks += _llama2_risks(artifact, registry, inputs)
    risks += _naming_flags(artifact, inputs)
    verdict = "no" if any(r["level"] == "blocker" for r in risks) else (
        "risk" if any(r["level"] == "risk" for r in risks) else "yes")
    caps = [t.user_cap for t in terms if t.user_cap]
    return LicenseReport(
        model_id=artifact.id, name=artifact.name, kind=artifact.kind, license=own.spdx, verdict=verdict,
        summary=_summary(verdict, risks), obligations=_unique(o for t in terms for o in t.obligations),
        use_policies=_unique(t.acceptable_use_policy for t in terms if t.acceptable_use_policy),
        user_cap=min(caps) if caps else None, risks=risks, evidence=evidence)


def _unique(items: Any) -> list[Any]:
    return list(dict.fromkeys(items))


def _evidence(item: LineageInput, props: LicenseProperties | None, role: str) -> dict[str, Any]:
    artifact = item.artifact
    return {"id": item.id, "name": item.name, "kind": artifact.kind if artifact else None, "role": role,
            "via": item.via if item.relations else None, "relation": item.relations[-1] if item.relations else None,
            "depth": len(item.relations), "path": item.path, "path_text": item.path_text(props.spdx if props else None),
            "license": props.spdx if props else None, "license_recorded": artifact.license if artifact else None,
            "properties": props.to_dict() if props else None}


def _risk(level: str, kind: str, item: LineageInput, props: LicenseProperties | None, message: str) -> dict[str, Any]:
    return {"level": level, "kind": kind, "message": message, "license": props.spdx if props else None,
            "path": item.path, "path_text": item.path_text(props.spdx if props else None)}


def _own_risks(artifact: Artifact, own: LicenseProperties) -> list[dict[str, Any]]:
    item = LineageInput.itself(artifact)
    if not own.known:
        return [_risk("risk", "unknown-license", item, own, f"{artifact.name}: its own license {own.spdx} is unknown "
                      "— commercial rights cannot be established")]
    if own.commercial_use is False:
        return [_risk("blocker", "non-commercial", item, own, f"{artifact.name} is licensed {own.spdx}: no "
                      "commercial use")]
    if own.commercial_use is None:
        return [_risk("risk", "commercial-conditions", item, own, f"{artifact.name} is licensed {own.spdx}: "
                      "commercial use needs the licensor's separate approval")]
    if own.derivatives is False:
        return [_risk("flag", "no-derivatives", item, own, f"{artifact.name} is licensed {own.spdx}: it may not be "
                      "shared once modified")]
    return []


def _input_risks(artifact: Artifact, own: LicenseProperties, item: LineageInput,
                 props: LicenseProperties) -> list[dict[str, Any]]:
    name, how, weights = item.name, item.relations[-1], item.role == "weights"
    risks = []
    upstream = item.artifact.manifest.get("catalog") if item.artifact is not None else None
    if not props.known and isinstance(upstream, dict) and (upstream.get("role") == "pretraining"
                                                           or not upstream.get("generated_by")):
        # data a catalog model's producer trained it on (kaiyuan's catalog): web crawls and in-house data rarely carry
        # one license; what the producer grants for the weights governs them, so this is noted, not a risk (data
        # generated by another model keeps the risk: those are someone else's outputs)
        what = "no single license" if props.spdx == UNKNOWN else f"the unknown license {props.spdx}"
        role = "pretraining corpus" if upstream.get("role") == "pretraining" else "training data"
        risks.append(_risk("flag", "producer-data-terms", item, props, f"{name} ({role} of {item.names[-2]}) has "
                           f"{what}: the license its producer gives the weights governs them"))
    elif not props.known:
        what = "no license recorded" if props.spdx == UNKNOWN else f"unknown license {props.spdx}"
        risks.append(_risk("risk", "unknown-license", item, props, f"{name} ({how}) has {what} — its terms "
                           "cannot be checked"))
    elif props.commercial_use is False and weights:
        risks.append(_risk("blocker", "non-commercial", item, props, f"non-commercial license on weights in the "
                           f"chain: {name} is {props.spdx} — no commercial use of models built from it"))
    elif props.commercial_use is False:
        risks.append(_risk("risk", "non-commercial-data", item, props, f"non-commercial risk: {name} ({how}) is "
                           f"{props.spdx} — whether a model trained on it may be used commercially is legally "
                           "unsettled"))
    elif props.commercial_use is None:
        risks.append(_risk("risk", "commercial-conditions", item, props, f"{name} ({how}) is {props.spdx}: "
                           "commercial use needs the licensor's separate approval"))
    if props.derivatives is False:
        risks.append(_risk("risk", "no-derivatives", item, props, f"{name} ({how}) is {props.spdx}: adapted "
                           "material may not be shared"))
    if props.share_alike and not weights:
        risks.append(_risk("flag", "share-alike-data", item, props, f"share-alike data: {name} is {props.spdx} — if "
                           "the model is an adaptation of it, it must be shared under the same license"))
    if weights and own.known and props.known and props.spdx != own.spdx:
        risks.append(_risk("flag", "license-mismatch", item, props, f"{artifact.name} declares {own.spdx} but is "
                           f"built from {name} ({props.spdx}): the obligations of both apply"))
    return risks


def _weight_roots(artifact: Artifact, registry: Registry, inputs: list[LineageInput]) -> list[Artifact]:
    """The weights the artifact starts from: itself and weight inputs that have no weight parents."""
    chain = [artifact] + [i.artifact for i in inputs if i.role == "weights" and i.artifact is not None]
    return [a for a in chain if not any(r in WEIGHT_RELATIONS for _, r in registry.parents(a.id))]


_IMPROVING = {  # terms that forbid using their materials or outputs to improve other models: the risk's message
    "LicenseRef-Llama-2": "Llama 2 materials or outputs ({input}) improve a model not derived from Llama 2 ({roots}) — "
                          "the Llama 2 license forbids this",
    "LicenseRef-OpenAI-Terms": "OpenAI outputs ({input}) train a model not made by OpenAI ({roots}) — OpenAI's terms "
                               "forbid using outputs to develop models that compete with OpenAI",
}


def _llama2_risks(artifact: Artifact, registry: Registry, inputs: list[LineageInput]) -> list[dict[str, Any]]:
    """Terms that forbid using their materials or outputs to improve other models: Llama 2 (its derivatives
    excepted) and OpenAI's terms (models that compete with OpenAI). Weights under the same terms are exempt."""
    flagged = [(i, license_properties(i.artifact.license)) for i in inputs if i.artifact]
    flagged = [(i, p) for i, p in flagged if p.no_improving_other_models]
    if not flagged:
        return []
    roots = _weight_roots(artifact, registry, inputs)
    risks = []
    for item, props in flagged:
        others = [r for r in roots if normalize_license(r.license) != props.spdx]
        if not others:
            continue
        names = ", ".join(f"{r.name} ({normalize_license(r.license)})" for r in others)
        template = _IMPROVING.get(props.spdx, props.name + " materials or outputs ({input}) improve another model "
                                  "({roots}) — its terms forbid this")
        risks.append(_risk("risk", "improves-other-model", item, props, template.format(
            input=f"{item.name}, {item.relations[-1]}", roots=names)))
    return risks


def _words(name: str) -> str:
    """``Llama-3_8B`` → ``llama 3 8b``: names compared without case and separators."""
    return re.sub(r"[\s_-]+", " ", name.lower())


def _naming_flags(artifact: Artifact, inputs: list[LineageInput]) -> list[dict[str, Any]]:
    flags, seen = [], set()
    for item in [LineageInput.itself(artifact), *inputs]:
        if item.artifact is None:
            continue
        props = license_properties(item.artifact.license)
        prefix = props.name_prefix
        if prefix and prefix not in seen and not _words(artifact.name).startswith(_words(prefix)):
            seen.add(prefix)
            flags.append(_risk("flag", "naming", item, props, f'the name "{artifact.name}" must begin with "{prefix}" '
                               f"before the model is distributed ({props.spdx}, from {item.name})"))
    return flags


def _summary(verdict: str, risks: list[dict[str, Any]]) -> str:
    if verdict == "yes":
        return "commercial use: yes, with the obligations listed"
    level = "blocker" if verdict == "no" else "risk"
    reasons = "; ".join(r["message"] for r in risks if r["level"] == level)
    return f"commercial use: {verdict} — {reasons}"
