"""The Model Openness Framework class of a model, computed exactly as the Model Openness Tool computes it.

The Model Openness Tool (MOT, LF AI & Data, github.com/lfai/model_openness_tool) publishes one YAML file per model
(``models/*.yml``) and classifies each into Class III (Open Model), II (Open Tooling) or I (Open Science), or 0
(Unclassified). This module reads its rules (``mof.settings.yml``: the 17 components; ``licenses.json`` and
``mof-licenses.json``: the licenses it knows) and its model files, and reproduces the PHP of its Drupal module
``web/modules/mof`` (``ModelEvaluator``, ``LicenseHandler``, ``LicenseImporter``, ``ModelUpdater``) at commit
:data:`MOT_COMMIT`: :func:`classify` returns the ``classification`` object of the tool's REST API, and
:func:`component_evidence` says, per component, which license the tool judged and why it counted or not.
docs/mot-classification.md describes the algorithm and its quirks.

Only the standard library and PyYAML: this module sits below kaiyuan.hub.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import yaml

from kaiyuan.errors import KaiyuanError

MOT_REPOSITORY = "https://github.com/lfai/model_openness_tool"
MOT_COMMIT = "8b5d30e90a7c62d7d6ece48b91e69ff495920a4d"  # the source this module reproduces

SETTINGS_FILE = "mof.settings.yml"
LICENSE_FILES = ("licenses.json", "mof-licenses.json")  # imported in this order; a later entry replaces an earlier
CONTENT_TYPES = ("code", "data", "document")
GLOBAL_LICENSE_KEYS = ("distribution", "code", "data", "document")  # release.license.*
CLASSES = (3, 2, 1)  # the tool evaluates from Class III down; each lower class adds to the one above

# ModelEvaluator: the technical report MAY be omitted if a research paper is provided.
TECHNICAL_REPORT_CID = 11
RESEARCH_PAPER_CID = 21

# LicenseHandler::OPEN_DATA_LICENSES: license IDs open for data (they are in no license file, only in the PHP).
OPEN_DATA_LICENSES = frozenset({
    "CC0-1.0", "CC-BY-1.0", "CC-BY-2.0", "CC-BY-2.5", "CC-BY-2.5-AU", "CC-BY-3.0", "CC-BY-3.0-AT", "CC-BY-3.0-AU",
    "CC-BY-3.0-DE", "CC-BY-3.0-IGO", "CC-BY-3.0-NL", "CC-BY-3.0-US", "CC-BY-4.0", "CC-BY-SA-1.0", "CC-BY-SA-2.0",
    "CC-BY-SA-2.0-UK", "CC-BY-SA-2.1-JP", "CC-BY-SA-2.5", "CC-BY-SA-3.0", "CC-BY-SA-3.0-AT", "CC-BY-SA-4.0",
    "CDLA-Permissive-1.0", "CDLA-Permissive-2.0", "CDLA-Sharing-1.0", "ODC-PDDL-1.0", "ODC-By-1.0", "ODbL-1.0",
    "GFDL-1.3", "OGL-Canada-2.0", "OGL-UK-2.0", "OGL-UK-3.0",
})
# LicenseHandler::OPEN_LICENSES: further license IDs the tool holds open.
OPEN_LICENSES = frozenset({"OpenMDW-1.0"})

# ModelEvaluator::getClassLabel (API.md's example abbreviates "Class I - Open Science"; the code is what it returns).
CLASS_LABELS = {0: "Unclassified", 1: "Class I - Open Science Model", 2: "Class II - Open Tooling Model",
                3: "Class III - Open Model"}

# The 17 component names of mof.settings.yml at MOT_COMMIT, in its order: what load_mot_model accepts by default.
MOF_COMPONENT_NAMES = (
    "Datasets", "Data preprocessing code", "Model architecture", "Model parameters (Final)", "Model metadata",
    "Model parameters (Intermediate)", "Training code", "Inference code", "Evaluation code", "Evaluation data",
    "Evaluation results", "Supporting libraries and tools", "Model card", "Data card", "Technical report",
    "Research paper", "Sample model outputs",
)

UNLICENSED = "unlicensed"  # what the tool calls a component that has no license (and what a model file writes)

# schema/mof_schema.json: the enums and the one format the tool validates a model file against before loading it.
FRAMEWORK_NAME = "Model Openness Framework"
TYPES = ("", "language", "vision", "image", "audio", "video", "3d", "code", "multimodal", "other")
ARCHITECTURES = ("", "transformer", "transformer decoder", "transformer encoder-decoder", "decoder", "encoder",
                 "diffusion", "RNN", "CNN", "LSTM", "NeRF", "hybrid", "undisclosed", "other")
TREATMENTS = ("pre-trained", "instruct fine-tuned", "chat fine-tuned")
MAX_COMPONENTS = 17
DATE = re.compile(r"\d{4}-\d{2}-\d{2}")

# Statuses of a component in component_evidence().
MISSING = "missing"  # not in the model file
OPEN = "open"  # open license, type-appropriate: counts
OPEN_NOT_TYPE_APPROPRIATE = "open-not-type-appropriate"  # open, not listed for its content type: counts all the same
NOT_OPEN = "not-open"  # a license the tool does not hold open (the tool's "invalid")


@dataclass(frozen=True)
class MOTComponent:
    """One of the framework's components, as mof.settings.yml defines it."""

    id: int
    name: str
    description: str
    content_type: str  # code | data | document
    mof_class: int  # 3, 2 or 1
    weight: int
    required: bool


@dataclass(frozen=True)
class MOTLicense:
    """A license the tool knows, after its importer merged licenses.json and mof-licenses.json."""

    license_id: str
    name: str
    osi_approved: bool
    fsf_libre: bool
    deprecated: bool
    content_types: tuple[str, ...]  # the types it is appropriate for; empty for most SPDX entries

    @property
    def open(self) -> bool:
        """LicenseHandler::isOpenSourceLicense: FSF libre, OSI approved, an open data license or OpenMDW."""
        return (self.fsf_libre or self.osi_approved or self.license_id in OPEN_DATA_LICENSES
                or self.license_id in OPEN_LICENSES)


@dataclass(frozen=True, eq=False)
class MOTRules:
    """The components and the licenses the tool judges a model against."""

    components: tuple[MOTComponent, ...]  # in mof.settings.yml order
    licenses: Mapping[str, MOTLicense]  # by exact license ID, in import order

    def component(self, cid: int) -> MOTComponent:
        for component in self.components:
            if component.id == cid:
                return component
        raise KaiyuanError(f"no MOF component with id {cid}")

    def component_named(self, name: str) -> MOTComponent | None:
        return next((c for c in self.components if c.name == name), None)

    def required(self, mof_class: int) -> list[int]:
        """ComponentManager::getRequired: the IDs a class requires (itself, not the classes above it)."""
        return [c.id for c in self.components if c.mof_class == mof_class and c.required]

    def optional(self, mof_class: int) -> list[int]:
        return [c.id for c in self.components if c.mof_class == mof_class and not c.required]

    def is_open(self, license_id: str) -> bool:
        """LicenseHandler::isOpenSourceLicense, matching the exact (case-sensitive) license ID."""
        known = self.licenses.get(license_id)
        return known.open if known else license_id in OPEN_DATA_LICENSES or license_id in OPEN_LICENSES

    def is_type_appropriate(self, license_id: str, content_type: str) -> bool:
        """LicenseHandler::isTypeAppropriate: the license is listed for the content type (mof-licenses.json)."""
        known = self.licenses.get(license_id)
        return bool(known and content_type in known.content_types)


@dataclass(frozen=True)
class MOTGlobalLicense:
    """release.license.<distribution|code|data|document>: the license that components without their own inherit."""

    name: str | None
    path: str | None


@dataclass(frozen=True)
class MOTModelComponent:
    """One entry of release.components. ``license`` is None when the entry has no license key (it inherits)."""

    name: str
    description: str | None
    license: str | None
    license_path: str | None
    component_path: str | None
    line: int  # where the entry starts in the model file


@dataclass(frozen=True)
class MOTModel:
    """A model file's release section."""

    path: str
    name: str
    version: str | None
    date: str | None
    type: str | None
    architecture: str | None
    origin: str | None
    producer: str
    repository: str | None
    huggingface: str | None
    license: Mapping[str, MOTGlobalLicense]  # keys among GLOBAL_LICENSE_KEYS
    components: tuple[MOTModelComponent, ...]  # as written (a repeated name: the tool keeps the last entry)


@dataclass(frozen=True)
class ComponentEvidence:
    """How the tool judged one component of a model."""

    component_id: int
    name: str
    content_type: str
    mof_class: int
    required: bool
    included: bool  # the model file lists it
    license: str | None  # the license the tool judged (None: missing or unlicensed)
    license_source: str | None  # "component", "license.<type>" or "license.distribution" (field in the release)
    status: str  # MISSING | OPEN | OPEN_NOT_TYPE_APPROPRIATE | UNLICENSED | NOT_OPEN
    counted: bool  # counts towards its class's progress
    reason: str
    line: int | None  # the component's entry in the model file


# ---------------------------------------------------------------------------------------------------------- YAML


class _Reader:
    """Reads a composed YAML document node by node, so that every error names the file, the line and the field."""

    def __init__(self, where: str, text: str):
        self.where = where
        self.loader = yaml.SafeLoader(text)
        try:
            try:
                self.root = self.loader.get_single_node()
            except yaml.MarkedYAMLError as exc:
                mark = exc.problem_mark or exc.context_mark
                line = f" line {mark.line + 1}" if mark else ""
                problem = ": ".join(str(p) for p in (exc.context, exc.problem) if p)
                raise KaiyuanError(f"{where}{line}: not valid YAML: {problem}") from None
            except yaml.YAMLError as exc:
                raise KaiyuanError(f"{where}: not valid YAML: {exc}") from None
        finally:
            self.loader.dispose()
        if self.root is None:
            raise KaiyuanError(f"{where} line 1: document: the file is empty")

    def fail(self, node: yaml.Node, field: str, problem: str) -> NoReturn:
        raise KaiyuanError(f"{self.where} line {node.start_mark.line + 1}: {field}: {problem}")

    def describe(self, node: yaml.Node) -> str:
        if isinstance(node, yaml.MappingNode):
            return "a mapping"
        if isinstance(node, yaml.SequenceNode):
            return "a list"
        try:
            value = self.loader.construct_object(node, deep=True)
        except yaml.YAMLError:
            return f"{node.value!r}"
        return "null" if value is None else f"{type(value).__name__} {node.value}"

    def mapping(self, node: yaml.Node, field: str, keys: str | None = None) -> dict[str, yaml.Node]:
        """The mapping at ``field``; its keys are named ``keys.KEY`` (``keys`` defaults to ``field``)."""
        keys = field if keys is None else keys
        if not isinstance(node, yaml.MappingNode):
            self.fail(node, field, f"must be a mapping, got {self.describe(node)}")
        seen: set[str] = set()
        for key, _ in node.value:
            if isinstance(key, yaml.ScalarNode) and key.tag == "tag:yaml.org,2002:str":
                if key.value in seen:
                    self.fail(key, _join(keys, key.value), "duplicate key")
                seen.add(key.value)
        try:
            self.loader.flatten_mapping(node)  # merge keys (<<)
        except yaml.MarkedYAMLError as exc:
            self.fail(node, field, str(exc.problem))
        out: dict[str, yaml.Node] = {}
        for key, value in node.value:
            if not (isinstance(key, yaml.ScalarNode) and key.tag == "tag:yaml.org,2002:str"):
                self.fail(key, field, f"keys must be strings, got {self.describe(key)}")
            out[key.value] = value
        return out

    def sequence(self, node: yaml.Node, field: str) -> list[yaml.Node]:
        if not isinstance(node, yaml.SequenceNode):
            self.fail(node, field, f"must be a list, got {self.describe(node)}")
        return list(node.value)

    def string(self, node: yaml.Node, field: str, *, nullable: bool = False) -> str | None:
        if isinstance(node, yaml.ScalarNode):
            if node.tag == "tag:yaml.org,2002:str":
                return str(node.value)
            if nullable and node.tag == "tag:yaml.org,2002:null":
                return None
        hint = " (quote it)" if isinstance(node, yaml.ScalarNode) and node.tag != "tag:yaml.org,2002:null" else ""
        self.fail(node, field, f"must be a string{' or null' if nullable else ''}, got {self.describe(node)}{hint}")

    def integer(self, node: yaml.Node, field: str) -> int:
        if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:int":
            return int(self.loader.construct_object(node))
        self.fail(node, field, f"must be an integer, got {self.describe(node)}")

    def boolean(self, node: yaml.Node, field: str) -> bool:
        if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:bool":
            return bool(self.loader.construct_object(node))
        self.fail(node, field, f"must be true or false, got {self.describe(node)}")

    def required(self, fields: dict[str, yaml.Node], owner: yaml.Node, parent: str, key: str) -> yaml.Node:
        if key not in fields:
            self.fail(owner, _join(parent, key), "missing")
        return fields[key]

    def one_of(self, node: yaml.Node, field: str, allowed: Iterable[str]) -> str:
        value = self.string(node, field)
        assert value is not None
        allowed = tuple(allowed)
        if value not in allowed:
            self.fail(node, field, f"{value!r} is not one of: {', '.join(repr(a) for a in allowed)}")
        return value

    def date(self, node: yaml.Node, field: str) -> str:
        value = self.string(node, field)
        assert value is not None
        try:
            if not DATE.fullmatch(value):
                raise ValueError
            datetime.date.fromisoformat(value)
        except ValueError:
            self.fail(node, field, f"{value!r} is not a date (YYYY-MM-DD)")
        return value


def _join(parent: str, key: str) -> str:
    return f"{parent}.{key}" if parent else key


def _read_text(path: Path, where: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KaiyuanError(f"{where}: no such file") from None
    except UnicodeDecodeError as exc:
        raise KaiyuanError(f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise KaiyuanError(f"{where}: cannot read: {exc.strerror or exc}") from None


# --------------------------------------------------------------------------------------------------------- rules


def load_mot_rules(directory: str | Path) -> MOTRules:
    """The tool's rules from a folder holding mof.settings.yml, licenses.json and mof-licenses.json."""
    directory = Path(directory)
    components = _load_components(directory / SETTINGS_FILE)
    licenses: dict[str, MOTLicense] = {}
    ids: dict[str, str] = {}  # lower-cased ID → ID
    for name in LICENSE_FILES:
        for entry in _load_license_file(directory / name):
            # LicenseImporter::import loads the entity by license_id (a case-insensitive entity query) and overwrites
            # every field, so an entry of mof-licenses.json replaces licenses.json's (and a repeated one, the first).
            key = entry.license_id.lower()
            if key in ids:
                del licenses[ids[key]]
            ids[key] = entry.license_id
            licenses[entry.license_id] = entry
    return MOTRules(components=components, licenses=licenses)


def _load_components(path: Path) -> tuple[MOTComponent, ...]:
    where = str(path)
    reader = _Reader(where, _read_text(path, where))
    root = reader.mapping(reader.root, "document", keys="")
    nodes = reader.sequence(reader.required(root, reader.root, "", "components"), "components")
    components: list[MOTComponent] = []
    for i, node in enumerate(nodes):
        field = f"components[{i}]"
        fields = reader.mapping(node, field)

        def get(key: str, fields: dict[str, yaml.Node] = fields, node: yaml.Node = node, field: str = field):
            return reader.required(fields, node, field, key)

        cid = reader.integer(get("id"), f"{field}.id")
        name = reader.string(get("name"), f"{field}.name")
        content_type = reader.one_of(get("content_type"), f"{field}.content_type", CONTENT_TYPES)
        mof_class = reader.integer(get("class"), f"{field}.class")
        if mof_class not in CLASSES:
            reader.fail(get("class"), f"{field}.class", f"must be 1, 2 or 3, got {mof_class}")
        description = reader.string(fields["description"], f"{field}.description") if "description" in fields else ""
        weight = reader.integer(fields["weight"], f"{field}.weight") if "weight" in fields else 0
        required = reader.boolean(get("required"), f"{field}.required")
        assert name is not None and description is not None
        for other in components:
            if other.id == cid or other.name == name:
                reader.fail(node, field, f"repeats component {other.name!r} (id {other.id})")
        components.append(MOTComponent(cid, name, description, content_type, mof_class, weight, required))
    for mof_class in CLASSES:
        if not any(c.mof_class == mof_class and c.required for c in components):
            reader.fail(reader.root, "components", f"class {mof_class} requires no component")
    return tuple(components)


def _load_license_file(path: Path) -> list[MOTLicense]:
    where = str(path)
    try:
        data = json.loads(_read_text(path, where))
    except json.JSONDecodeError as exc:
        raise KaiyuanError(f"{where} line {exc.lineno}: not valid JSON: {exc.msg}") from None
    entries = data.get("licenses") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise KaiyuanError(f"{where}: licenses: missing (expected a list of SPDX license entries)")
    out = []
    for i, entry in enumerate(entries):
        field = f"licenses[{i}]"
        if not isinstance(entry, dict):
            raise KaiyuanError(f"{where}: {field}: must be an object")
        for key in ("licenseId", "name"):
            if not isinstance(entry.get(key), str) or not entry[key]:
                raise KaiyuanError(f"{where}: {field}.{key}: missing (a non-empty string)")
        types = entry.get("ContentType") or []  # LicenseImporter: a string becomes a list of one; empty values drop
        types = [types] if isinstance(types, str) else types
        if not isinstance(types, list) or any(t not in CONTENT_TYPES for t in types if t):
            raise KaiyuanError(f"{where}: {field}.ContentType: must be code, data or document (or a list of them)")
        out.append(MOTLicense(
            license_id=entry["licenseId"], name=entry["name"], osi_approved=bool(entry.get("isOsiApproved")),
            fsf_libre=bool(entry.get("isFsfLibre")), deprecated=bool(entry.get("isDeprecatedLicenseId")),
            content_types=tuple(t for t in types if t)))
    return out


# -------------------------------------------------------------------------------------------------------- models


def load_mot_model(path: str | Path, rules: MOTRules | None = None) -> MOTModel:
    """One model file, checked against the tool's schema (schema/mof_schema.json) and its component names (those of
    ``rules``, else :data:`MOF_COMPONENT_NAMES`)."""
    path = Path(path)
    where = str(path)
    known = tuple(c.name for c in rules.components) if rules else MOF_COMPONENT_NAMES
    reader = _Reader(where, _read_text(path, where))
    root = reader.mapping(reader.root, "document", keys="")

    framework_node = reader.required(root, reader.root, "", "framework")
    framework = reader.mapping(framework_node, "framework")
    reader.one_of(reader.required(framework, framework_node, "framework", "name"), "framework.name",
                  (FRAMEWORK_NAME,))
    reader.string(reader.required(framework, framework_node, "framework", "version"), "framework.version")
    reader.date(reader.required(framework, framework_node, "framework", "date"), "framework.date")

    release_node = reader.required(root, reader.root, "", "release")
    release = reader.mapping(release_node, "release", keys="")  # fields of the release are named without prefix

    def need(key: str) -> yaml.Node:
        return reader.required(release, release_node, "", key)

    def text(key: str) -> str | None:
        return reader.string(release[key], key) if key in release else None

    name = reader.string(need("name"), "name")
    assert name is not None
    if not name:
        reader.fail(release["name"], "name", "must not be empty")
    producer = reader.string(need("producer"), "producer")
    assert producer is not None
    version, origin = text("version"), text("origin")
    text("contact")
    date = reader.date(release["date"], "date") if "date" in release else None
    model_type = reader.one_of(release["type"], "type", TYPES) if "type" in release else None
    architecture = reader.one_of(release["architecture"], "architecture", ARCHITECTURES) \
        if "architecture" in release else None
    if "treatment" in release:
        reader.one_of(release["treatment"], "treatment", TREATMENTS)
    repository = reader.string(release["repository"], "repository", nullable=True) if "repository" in release else None
    huggingface = reader.string(release["huggingface"], "huggingface", nullable=True) \
        if "huggingface" in release else None

    license_node = need("license")
    licenses = reader.mapping(license_node, "license")
    global_licenses: dict[str, MOTGlobalLicense] = {}
    for key in GLOBAL_LICENSE_KEYS:
        if key in licenses:
            entry = reader.mapping(licenses[key], f"license.{key}")
            global_licenses[key] = MOTGlobalLicense(*(
                reader.string(entry[k], f"license.{key}.{k}", nullable=True) if k in entry else None
                for k in ("name", "path")))

    component_nodes = reader.sequence(need("components"), "components")
    if len(component_nodes) > MAX_COMPONENTS:
        reader.fail(component_nodes[MAX_COMPONENTS], f"components[{MAX_COMPONENTS}]",
                    f"a model has at most {MAX_COMPONENTS} components, this one lists {len(component_nodes)}")
    components = []
    for i, node in enumerate(component_nodes):
        field = f"components[{i}]"
        entry = reader.mapping(node, field)
        component_name = reader.string(reader.required(entry, node, field, "name"), f"{field}.name")
        assert component_name is not None
        if component_name not in known:
            reader.fail(entry["name"], f"{field}.name",
                        f"unknown component {component_name!r}; the known components are: {', '.join(known)}")
        values = {k: reader.string(entry[k], f"{field}.{k}") if k in entry else None
                  for k in ("description", "license", "license_path", "component_path")}
        components.append(MOTModelComponent(name=component_name, line=node.start_mark.line + 1, **values))

    return MOTModel(path=where, name=name, version=version, date=date, type=model_type, architecture=architecture,
                    origin=origin, producer=producer, repository=repository, huggingface=huggingface,
                    license=global_licenses, components=tuple(components))


def load_mot_models(directory: str | Path, rules: MOTRules | None = None) -> tuple[MOTModel, ...]:
    """Every ``*.yml`` model file of a folder, by file name; raises on the first bad one (nothing half-loaded).

    Several files may name the same model (release.name): the tool keeps one model per name, updated by whichever
    file its sync reads last; here every file is its own entry."""
    directory = Path(directory)
    if not directory.is_dir():
        raise KaiyuanError(f"{directory}: no such folder")
    paths = sorted(p for p in directory.iterdir() if p.suffix == ".yml" and p.is_file())
    return tuple(load_mot_model(p, rules) for p in paths)


# ---------------------------------------------------------------------------------------------------- evaluation


@dataclass
class _Evaluation:
    """ModelEvaluator::evaluate's array: per class, the component IDs by status and the licenses judged."""

    components: dict[int, dict[str, list[int]]]
    licenses: dict[int, dict[int, str]]
    not_type_appropriate: list[int]
    entries: dict[int, MOTModelComponent]  # the model's components by ID
    sources: dict[int, str | None]  # where each listed component's license came from
    technical_report_replaced: bool = False  # handleTechnicalReportOmission ran


def _php_truthy(value: str | None) -> bool:
    """PHP's truthiness of a string (empty() and ?: treat "" and "0" as empty)."""
    return value not in (None, "", "0")


def _entries(model: MOTModel, rules: MOTRules) -> dict[int, MOTModelComponent]:
    """ModelUpdater::processComponentLicenses: component ID → entry; a repeated name keeps its first position and
    its last entry."""
    entries: dict[int, MOTModelComponent] = {}
    for i, entry in enumerate(model.components):
        component = rules.component_named(entry.name)
        if component is None:
            known = ", ".join(c.name for c in rules.components)
            raise KaiyuanError(f"{model.path} line {entry.line}: components[{i}].name: unknown component "
                               f"{entry.name!r}; the known components are: {known}")
        entries[component.id] = entry
    return entries


def _resolve_license(component: MOTComponent, entry: MOTModelComponent,
                     model: MOTModel) -> tuple[str | None, str | None]:
    """ModelEvaluator::resolveLicense: the component's own license, else release.license.<its content type>, else
    release.license.distribution. (license, where it came from); license None means unlicensed."""
    if entry.license is not None:  # isset(): the key is there. "unlicensed" was stored as ""; "" and "0" are falsy
        value = "" if entry.license == UNLICENSED else entry.license
        return (value if _php_truthy(value) else None), "component"
    for key in (component.content_type, "distribution"):
        inherited = model.license.get(key)
        if inherited is not None and _php_truthy(inherited.name):
            return inherited.name, f"license.{key}"
    return None, None


def _status(components: dict[str, list[int]], cid: int) -> str | None:
    """ModelEvaluator::getComponentStatus."""
    for status in ("included", "invalid", UNLICENSED):
        if cid in components[status]:
            return status
    return None


def _evaluate(model: MOTModel, rules: MOTRules) -> _Evaluation:
    entries = _entries(model, rules)
    evaluation = _Evaluation(
        components={c: {"missing": [], "included": [], "invalid": [], UNLICENSED: [], "optional": []} for c in CLASSES},
        licenses={c: {} for c in CLASSES}, not_type_appropriate=[], entries=entries, sources={})
    required: list[int] = []
    optional: list[int] = []
    for mof_class in CLASSES:  # 3, 2, 1: each class also requires what the classes above it require
        required += rules.required(mof_class)
        optional += rules.optional(mof_class)
        for cids, status in ((required, "included"), (optional, "optional")):
            for cid in cids:
                lists = evaluation.components[mof_class]
                if cid not in entries:
                    if status == "included":
                        lists["missing"].append(cid)
                    continue
                component = rules.component(cid)
                resolved, source = _resolve_license(component, entries[cid], model)
                license_id = resolved if resolved is not None else UNLICENSED
                evaluation.sources[cid] = source
                type_appropriate = rules.is_type_appropriate(license_id, component.content_type)
                if rules.is_open(license_id):
                    lists[status].append(cid)
                    if not type_appropriate and cid not in evaluation.not_type_appropriate:
                        evaluation.not_type_appropriate.append(cid)
                elif license_id == UNLICENSED:
                    lists[UNLICENSED].append(cid)
                else:
                    lists["invalid"].append(cid)
                evaluation.licenses[mof_class][cid] = license_id
    _omit_technical_report(evaluation)
    return evaluation


def _omit_technical_report(evaluation: _Evaluation) -> None:
    """ModelEvaluator::handleTechnicalReportOmission: unless the technical report counts in Class III, a research
    paper the model lists (whatever its license) takes the report's place in Classes II and III, with the paper's
    status and license, and the report is no longer missing anywhere."""
    if _status(evaluation.components[3], TECHNICAL_REPORT_CID) == "included":
        return
    paper = _status(evaluation.components[1], RESEARCH_PAPER_CID)
    if paper is None:
        return
    for mof_class in CLASSES:
        missing = evaluation.components[mof_class]["missing"]
        if TECHNICAL_REPORT_CID in missing:
            missing.remove(TECHNICAL_REPORT_CID)
    license_id = evaluation.licenses[1].get(RESEARCH_PAPER_CID, "")
    for mof_class in (2, 3):
        evaluation.components[mof_class][paper].append(RESEARCH_PAPER_CID)
        evaluation.licenses[mof_class][RESEARCH_PAPER_CID] = license_id
    evaluation.technical_report_replaced = True


def _progress(evaluation: _Evaluation, rules: MOTRules, mof_class: int) -> float:
    """ModelEvaluator::getProgress, line by line: the share of the required components (of this class and those
    above it) that count; 0 when a class above is not met."""
    total = included = 0
    i = 3
    while i >= mof_class:
        total += len(rules.required(i))
        included = len(evaluation.components[i]["included"])
        if included < total:  # stop here if class isn't met
            break
        i -= 1
    if i > mof_class:  # a class above is not met
        return 0.0
    # Class I requires one component fewer when the research paper counts and the technical report does not.
    if (mof_class == 1 and _status(evaluation.components[1], TECHNICAL_REPORT_CID) != "included"
            and _status(evaluation.components[1], RESEARCH_PAPER_CID) == "included"):
        total -= 1
    progress = (included / total) * 100
    return min(progress, 100.0)


def _json_number(value: float) -> int | float:
    """A PHP float as json_encode writes it and a JSON reader reads it back: 100.0 → 100, 0.0 → 0."""
    return int(value) if value.is_integer() else value


def classify(model: MOTModel, rules: MOTRules) -> dict[str, Any]:
    """The ``classification`` object of the tool's REST API (/api/v1/model/{id}), as JSON decodes it:
    ``{"class": 0-3, "label": ..., "progress": {"1": p1, "2": p2, "3": p3}}``, progress in percent, unrounded."""
    evaluation = _evaluate(model, rules)
    progress = {c: _progress(evaluation, rules, c) for c in (1, 2, 3)}
    achieved = 0
    for mof_class in CLASSES:  # getClassification: the lowest class whose progress is exactly 100
        if progress[mof_class] == 100.0:
            achieved = mof_class
    return {"class": achieved, "label": CLASS_LABELS[achieved],
            "progress": {str(c): _json_number(progress[c]) for c in (1, 2, 3)}}


def component_evidence(model: MOTModel, rules: MOTRules) -> list[ComponentEvidence]:
    """Per framework component (Class III first, required before optional, then by the tool's weight): the license
    the tool judged, whether it counted towards the class, and why."""
    evaluation = _evaluate(model, rules)
    paper_counts = _status(evaluation.components[1], RESEARCH_PAPER_CID) == "included"
    out = []
    for component in sorted(rules.components, key=lambda c: (-c.mof_class, not c.required, c.weight, c.id)):
        cid, lists = component.id, evaluation.components[component.mof_class]
        entry = evaluation.entries.get(cid)
        license_id = evaluation.licenses[component.mof_class].get(cid)
        source = evaluation.sources.get(cid)
        counted = False
        judged = f"{license_id} (from release {source})" if source and source != "component" else f"{license_id}"
        if entry is None:
            status = MISSING
            reason = f"not in the model file; Class {component.mof_class} requires it" if component.required \
                else "not in the model file (optional)"
        elif cid in lists["included"] or cid in lists["optional"]:
            appropriate = cid not in evaluation.not_type_appropriate
            status = OPEN if appropriate else OPEN_NOT_TYPE_APPROPRIATE
            counted = component.required
            reason = f"{judged}: open, and a license the tool lists for {component.content_type}" if appropriate else (
                f"{judged}: open, though not a license the tool lists for {component.content_type}; it counts all "
                "the same (the tool asks for a type-appropriate license)")
            if not component.required:
                reason += "; optional, so it does not count towards progress"
        elif cid in lists[UNLICENSED]:
            status = UNLICENSED
            reason = "listed as unlicensed" if source else \
                f"listed without a license, and the release names none for {component.content_type} or distribution"
        else:
            status = NOT_OPEN
            reason = f"{judged}: not a license the tool holds open (OSI approved, FSF libre or open data)"
        if cid == TECHNICAL_REPORT_CID and evaluation.technical_report_replaced:
            reason += "; the research paper takes its place" + ("" if paper_counts else ", but does not count either")
        if cid == RESEARCH_PAPER_CID and evaluation.technical_report_replaced and counted:
            reason += "; it also stands in for the technical report in Classes II and III"
        out.append(ComponentEvidence(
            component_id=cid, name=component.name, content_type=component.content_type,
            mof_class=component.mof_class, required=component.required, included=entry is not None,
            license=None if license_id in (None, UNLICENSED) else license_id, license_source=source, status=status,
            counted=counted, reason=reason,
            line=entry.line if entry else None))
    return out
