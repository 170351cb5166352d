"""European Open Source AI Index: every published system file, the site's scoring, and exact errors for bad files."""

import pytest
import yaml

from kaiyuan.catalog import osai_index as oi
from kaiyuan.catalog.opening_up import Rating
from kaiyuan.errors import KaiyuanError
from kaiyuan.home import shared_data_dir

CATALOG = shared_data_dir() / "openness" / "eu-open-source-ai-index"
needs_data = pytest.mark.skipif(not (CATALOG / "systems").is_dir(), reason=f"no OSAI index data at {CATALOG}")


@pytest.fixture(scope="module")
def systems():
    return {s.key: s for s in oi.load_dir(CATALOG)}


def classes(system):
    return " ".join(system.dimensions[d].value for d in oi.DIMENSIONS)


@needs_data
def test_every_system_file_loads_and_the_odd_ones_are_flagged(systems):
    assert len(systems) == 193 and oi.TEMPLATE[:-5] not in systems
    assert len(list((CATALOG / "systems").glob("*.yaml"))) == 194
    assert oi.all_warnings(systems.values()) == [
        "systems/GANSynth.yaml line 25: system.endmodel license: read as system.endmodellicense",
        "systems/MusicLDM.yaml line 25: system.endmodel license: read as system.endmodellicense",
        "systems/Rave.yaml line 25: system.endmodel license: read as system.endmodellicense",
        "systems/StableAudio.yaml line 25: system.endmodel license: read as system.endmodellicense",
        "systems/Zephyr.yaml line 90: licenses.link: missing; read as empty",
        "systems/koala.yaml line 23: system.datasources_endmodel: not a field of this catalog's format; kept in extra",
    ]
    assert systems["GANSynth"].end_model_license == "Apache 2.0"
    assert systems["koala"].extra == {"system.datasources_endmodel": "HC3, ShareGPT, alpaca (synthetic)"}
    counts = {v: sum(classes(s).split().count(v) for s in systems.values()) for v in ("open", "partial", "closed")}
    assert counts == {"open": 908, "partial": 439, "closed": 969}
    assert {t for s in systems.values() for t in s.types} == set(oi.TYPES)
    assert sum(s.type == "text,code" for s in systems.values()) == 3 and systems["MobileLLM"].types == ("text", "code")
    assert all(len(s.release_date) == 7 for s in systems.values())
    assert sum(len(s.org_links) > 1 for s in systems.values()) == 6
    assert sum(len(r.links) > 1 for s in systems.values() for r in s.dimensions.values()) == 125


@needs_data
def test_named_systems_rate_exactly_as_published(systems):
    expected = {
        "alpaca": ("Stanford Alpaca", "Llama-7B", "Alpaca-7B", "LLaMA license agreement", "2023-03",
                   "closed partial partial partial open partial open closed closed closed closed partial", 4.5),
        "dolly": ("Dolly", "Pythia-12B", "Dolly-V2-12B", "MIT License", "2023-03",
                  "open open open closed open open open partial closed closed closed partial", 7),
        "Vicuna": ("Vicuna", "Vicuna-13B", "Vicuna-13B-v1.5", "Non-commercial license", "2023-03",
                   "partial closed open open open open closed open open partial closed partial", 7.5),
        "llama-2-chat": ("Llama 2", "Llama-2-70B", "Llama-2-70B-Chat", "Unclear", "2023-08",
                         "closed closed partial partial closed closed open partial closed partial closed closed", 3),
        "Open-Assistant": ("Open Assistant", "Pythia-12B", "Pythia-12B-SFT-v8-7K-Steps", "Apache-2.0", "2023-02",
                           "open open open open open open partial partial partial open partial open", 10),
    }
    for key, (name, base, end, license_, released, ratings, points) in expected.items():
        system = systems[key]
        assert (system.name, system.base_model_name, system.end_model_name, system.end_model_license,
                system.release_date, classes(system)) == (name, base, end, license_, released, ratings)
        assert oi.score(system) == system.score == points / 12
    assert oi.category_scores(systems["alpaca"]) == {"availability": 0.5, "documentation": 0.25, "access": 0.5}
    assert oi.category_scores(systems["Open-Assistant"]) == {"availability": 1.0, "documentation": 4 / 6,
                                                             "access": 1.0}
    alpaca = systems["alpaca"]
    assert (alpaca.org_name, alpaca.org_link, alpaca.type, alpaca.performance_class) == (
        "Stanford University CRFM", "https://crfm.stanford.edu/", "text", "full")
    assert alpaca.dimensions["licenses"].links == (
        "https://docs.google.com/forms/d/e/1FAIpQLSfqNECQnMkycAp2jP4Z9TFX0cGR4uf7b_fBxjY_OjhJILlKGA/viewform",
        "https://github.com/tatsu-lab/stanford_alpaca", "https://github.com/tatsu-lab/stanford_alpaca#data-release")
    assert systems["Open-Assistant"].dimensions["weights_endmodel"] == Rating(
        "weights_endmodel", "open", ("https://huggingface.co/OpenAssistant/pythia-12b-sft-v8-7k-steps",),
        "Model weights available via HuggingFace.", "systems/Open-Assistant.yaml", 49)
    assert systems["Stable Beluga"].index_url == "https://osai-index.eu/model/Stable%20Beluga"


@needs_data
def test_parameters_match_the_published_parameter_list():
    published = yaml.safe_load((CATALOG / "systems" / "_parameters.yml").read_text(encoding="utf-8"))
    assert {c["ref"]: tuple(p["ref"] for p in c["params"]) for c in published} == oi.CATEGORIES
    params = [p for c in published for p in c["params"]]
    assert {p["ref"]: tuple(p["types"]) for p in params} == oi.PARAMETER_TYPES
    assert {p["ref"]: p["name"].strip() for p in params} == oi.DIMENSION_NAMES


@needs_data
def test_ranking_follows_the_site(systems):
    top = oi.ranked(systems.values())
    assert [(s.key, s.score) for s in top[:4]] == [("YuLan", 1.0), ("Mustango", 1.0), ("bloomz", 23 / 24),
                                                   ("OLMo", 23 / 24)]
    assert top[-1].key == "lumo" and top[-1].score == 0


def test_attribution_names_the_site_the_database_and_the_paper():
    assert "https://osai-index.eu" in oi.ATTRIBUTION and "CC BY 4.0" in oi.ATTRIBUTION
    assert "10.5281/zenodo.15386042" in oi.ATTRIBUTION
    assert "Rethinking open source generative AI: open-washing and the EU AI Act" in oi.ATTRIBUTION
    assert "FAccT '24" in oi.ATTRIBUTION and "10.1145/3630106.3659005" in oi.ATTRIBUTION


# --- malformed and leniently read files (no shared data needed) ---

HEAD = """\
system:
    name: Demo
    link: https://example.org/demo
    type: text
    performanceclass: full
    basemodelname: Base-7B
    endmodelname: Demo-7B-Chat
    endmodellicense: Apache-2.0
    releasedate: 2024-05
    notes:
org:
    name: Demo Org
    link: [https://example.org, https://example.com]
    notes:
"""


def system_text(classes=None, extra=""):
    """A valid system file: line 15 starts datasources_basemodel (its class on line 16), each parameter 4 lines on."""
    classes = classes or {}
    blocks = [f"{d}:\n    class: {classes.get(d, 'open')}\n    link:\n    notes:\n" for d in oi.DIMENSIONS]
    return HEAD + "".join(blocks) + extra


def write(tmp_path, text, name="x.yaml"):
    folder = tmp_path / "systems"
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_valid_file_loads(tmp_path):
    system = oi.load_file(write(tmp_path, system_text({"licenses": "partial"})))
    assert (system.file, system.key, system.warnings, system.org_links) == (
        "systems/x.yaml", "x", (), ("https://example.org", "https://example.com"))
    assert system.score == 11.5 / 12 and system.dimensions["licenses"].line == 60


@pytest.mark.parametrize(("text", "message"), [
    (system_text({"trainingcode": "opne"}),
     "line 32: trainingcode.class: 'opne' is not open, partial or closed"),
    (system_text().replace("releasedate: 2024-05", "releasedate: soon"),
     "line 9: system.releasedate: 'soon' is not a month (YYYY-MM or YYYY MMM)"),
    (system_text().replace("releasedate: 2024-05", "releasedate: 2024-13"),
     "line 9: system.releasedate: '2024-13' is not a month (YYYY-MM or YYYY MMM)"),
    (system_text().replace("releasedate: 2024-05", "releasedate: 2024-02-30"),
     "line 9: system.releasedate: cannot read '2024-02-30': day is out of range for month"),
    (system_text().replace("    endmodellicense: Apache-2.0\n",
                           "    endmodellicense: Apache-2.0\n    endmodel license: MIT\n"),
     "line 9: system.endmodel license: given twice, also as system.endmodellicense"),
    (system_text().replace("link: [https://example.org, https://example.com]", "link: [https://example.org, 3]"),
     "line 13: org.link[1]: expected a URL, found a number"),
    (system_text().replace("licenses:\n    class: open\n    link:\n    notes:\n", ""),
     "line 1: licenses: missing"),
    (system_text().replace("system:\n", "system: text\nsystem_:\n"),
     "line 1: system: expected a mapping, found text"),
])
def test_malformed_files_name_file_line_and_field(tmp_path, text, message):
    with pytest.raises(KaiyuanError) as exc:
        oi.load_file(write(tmp_path, text))
    assert str(exc.value) == f"systems/x.yaml {message}"


@pytest.mark.parametrize(("written", "month"), [
    ("2024 NOV", "2024-11"), ("2024 November", "2024-11"), ("2024/3", "2024-03"), ("2024-11-05", "2024-11"),
    ("'2024-11-05'", "2024-11"),
])
def test_release_dates_in_other_formats_read_as_their_month(tmp_path, written, month):
    system = oi.load_file(write(tmp_path, system_text().replace("releasedate: 2024-05", f"releasedate: {written}")))
    raw = written.strip("'")
    assert system.release_date == month
    assert system.warnings == (f"systems/x.yaml line 9: system.releasedate: {raw!r} read as {month!r}",)


def test_lenient_readings_are_kept_and_counted(tmp_path):
    text = system_text({"paper": "PARTIAL"}).replace("    endmodellicense:", "    endmodel license:").replace(
        "    type: text\n", "    type: text, music\n").replace(
        "    performanceclass: full\n", "    performanceclass: full\n    parameters: 7B\n")
    system = oi.load_file(write(tmp_path, text + "package:\n    class: open\n"))
    assert (system.end_model_license, system.types, system.dimensions["paper"].value) == (
        "Apache-2.0", ("text", "music"), "partial")
    assert system.extra == {"system.parameters": "7B", "package": {"class": "open"}}
    assert system.score == 11.5 / 12
    assert list(system.warnings) == [
        "systems/x.yaml line 6: system.parameters: not a field of this catalog's format; kept in extra",
        "systems/x.yaml line 9: system.endmodel license: read as system.endmodellicense",
        "systems/x.yaml line 4: system.type: 'music' is not one of text, image, code, video, audio: no openness "
        "parameter applies to it",
        "systems/x.yaml line 49: paper.class: 'PARTIAL' read as 'partial' (the catalog's own scoring would count it "
        "0: it matches the exact word only)",
        "systems/x.yaml line 64: package: not a field of this catalog's format; kept in extra",
    ]


def test_a_system_of_no_known_type_has_no_score(tmp_path):
    system = oi.load_file(write(tmp_path, system_text().replace("    type: text\n", "    type: music\n")))
    with pytest.raises(KaiyuanError, match=r"^systems/x\.yaml: system\.type: no openness parameter applies to type "
                                           r"'music', so it has no score$"):
        oi.score(system)


def test_a_folder_loads_all_or_nothing_and_skips_what_the_site_skips(tmp_path):
    write(tmp_path, system_text(), "a.yaml")
    write(tmp_path, system_text(), oi.TEMPLATE)
    write(tmp_path, "- name: Availability\n", "_parameters.yml")
    write(tmp_path, "- name: Availability\n", "_parameters-extra.yaml")
    assert [s.key for s in oi.load_dir(tmp_path)] == ["a"]
    write(tmp_path, system_text({"datasheet": "opne"}), "b.yaml")
    write(tmp_path, system_text(), "c.yaml")
    loaded = None
    with pytest.raises(KaiyuanError, match=r"^systems/b\.yaml line 56: datasheet\.class: 'opne' is not open"):
        loaded = oi.load_dir(tmp_path / "systems")
    assert loaded is None
