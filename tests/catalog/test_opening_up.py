"""Opening up ChatGPT: every published project file, its df.csv table, and exact errors for malformed files."""

import csv

import pytest

from kaiyuan.catalog import opening_up as ou
from kaiyuan.errors import KaiyuanError
from kaiyuan.home import shared_data_dir

CATALOG = shared_data_dir() / "openness" / "opening-up"
needs_data = pytest.mark.skipif(not (CATALOG / "projects").is_dir(), reason=f"no Opening up ChatGPT data at {CATALOG}")


@pytest.fixture(scope="module")
def projects():
    return {p.key: p for p in ou.load_dir(CATALOG)}


def classes(project):
    return " ".join(project.dimensions[d].value for d in ou.DIMENSIONS)


@needs_data
def test_every_project_file_loads_and_only_the_unnamed_one_is_flagged(projects):
    assert len(projects) == 47 and "A_sample" not in projects
    assert len(list((CATALOG / "projects").glob("*.yaml"))) == 48
    assert all(list(p.dimensions) == list(ou.DIMENSIONS) for p in projects.values())
    assert ou.all_warnings(projects.values()) == [
        "projects/text-generation-webui.yaml line 3: project.name: empty: the catalog's own table (df.csv) leaves "
        "unnamed projects out"]
    assert sum(p.name is not None for p in projects.values()) == 46
    counts = {v: sum(classes(p).split().count(v) for p in projects.values()) for v in ou.RATING_VALUES}
    assert counts == {"open": 175, "partial": 193, "closed": 290}


@needs_data
def test_named_models_rate_exactly_as_published(projects):
    expected = {
        "alpaca": ("Stanford Alpaca", "open closed partial partial partial closed partial open closed closed closed "
                   "closed closed closed", 4.0),
        "dolly": ("dolly", "open open open open closed open open open partial closed closed closed open closed", 8.5),
        "vicuna13B-lmsys": ("Vicuna 13B v 1.3", "open partial open closed closed partial open closed open closed "
                            "partial closed open partial", 7.0),
        "llama-2-chat": ("LLaMA2 Chat", "closed closed partial closed partial closed closed partial partial closed "
                         "partial closed closed partial", 3.0),
        "Open-Assistant": ("Open Assistant", "open open open open closed open open open partial closed closed closed "
                           "open open", 9.5),
    }
    for key, (name, ratings, total) in expected.items():
        project = projects[key]
        assert (project.name, classes(project), ou.score(project), project.score) == (name, ratings, total, total)
    alpaca = projects["alpaca"]
    assert (alpaca.org_name, alpaca.org_link, alpaca.llm_base, alpaca.rl_base, alpaca.license_text) == (
        "Stanford University CRFM", "https://crfm.stanford.edu/", "LLaMA", "Self-Instruct (synthetic)",
        "LLaMA license agreement")
    assert alpaca.dimensions["rldata"] == ou.Rating(
        "rldata", "partial", ("https://github.com/tatsu-lab/stanford_alpaca#data-release",),
        "alpaca_data.json contains 52K instruction-following data we used for fine-tuning the Alpaca model.",
        "projects/alpaca.yaml", 32)
    assert alpaca.dimensions["opencode"].link is None and alpaca.dimensions["opencode"].notes is None
    assert projects["dolly"].license_text is None and projects["dolly"].llm_base == "EleutherAI pythia"
    assert projects["Open-Assistant"].dimensions["api"].link == "https://projects.laion.ai/Open-Assistant/api"
    assert alpaca.source_url.endswith("/blob/main/projects/alpaca.yaml")


@needs_data
def test_scores_and_fields_reproduce_the_published_table_exactly(projects):
    with (CATALOG / "df.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 46
    by_file = {p.file: p for p in projects.values()}
    for row in rows:
        project = by_file[row["source.file"].lstrip("/")]
        assert ou.score(project) == float(row["openness"]), project.file
        for d in ou.DIMENSIONS:
            rating = project.dimensions[d]
            assert (rating.value, rating.link or "", rating.notes or "") == (
                row[f"{d}.class"], row[f"{d}.link"], row[f"{d}.notes"]), (project.file, d)
        assert (project.link or "", project.llm_base or "", project.rl_base or "", project.license_text or "",
                project.org_name or "", project.org_link or "") == (
            row["project.link"], row["project.llmbase"], row["project.rlbase"], row["project.license"],
            row["org.name"], row["org.link"])
    assert [p.file for p in ou.ranked(projects.values())] == [r["source.file"].lstrip("/") for r in rows]


@needs_data
def test_the_template_is_skipped_but_loads_by_name():
    template = ou.load_file(CATALOG / "projects" / ou.TEMPLATE)
    assert template.name is None and ou.score(template) == 0
    assert ou.load_dir(CATALOG / "projects")[0].key == "BELLE"


def test_attribution_names_the_site_and_the_paper():
    assert "https://opening-up-chatgpt.github.io" in ou.ATTRIBUTION and "CC BY 4.0" in ou.ATTRIBUTION
    assert "Liesenfeld, Alianda Lopez, and Mark Dingemanse. 2023. Opening up ChatGPT: Tracking openness" in (
        ou.ATTRIBUTION)
    assert "CUI '23" in ou.ATTRIBUTION and "10.1145/3571884.3604316" in ou.ATTRIBUTION


# --- malformed and leniently read files (no shared data needed) ---

HEAD = """\
project:
    name: Demo
    link: https://example.org/demo
    notes:
    llmbase: Base
    rlbase: Tuning data
    license: MIT
org:
    name: Demo Org
    link: https://example.org
    notes:
"""


def project_text(classes=None, extra=""):
    """A valid project file: line 12 starts opencode (its class on line 13), each dimension 4 lines on."""
    classes = classes or {}
    blocks = [f"{d}:\n    class: {classes.get(d, 'open')}\n    link:\n    notes:\n" for d in ou.DIMENSIONS]
    return HEAD + "".join(blocks) + extra


def write(tmp_path, text, name="x.yaml"):
    folder = tmp_path / "projects"
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


def test_a_valid_file_loads(tmp_path):
    project = ou.load_file(write(tmp_path, project_text({"llmdata": "partial"})))
    assert project.file == "projects/x.yaml" and project.key == "x" and project.warnings == ()
    assert ou.score(project) == 13.5 and project.dimensions["llmdata"].line == 17


def without(dimension, line):
    return project_text().replace(f"{dimension}:\n    class: open\n", f"{dimension}:\n{line}")


@pytest.mark.parametrize(("text", "message"), [
    (project_text({"llmdata": "opne"}),
     "line 17: llmdata.class: 'opne' is not open, partial or closed"),
    (project_text({"api": "1"}),
     "line 65: api.class: '1' is not open, partial or closed"),
    (project_text().replace("rldata:\n    class: open\n    link:\n    notes:\n", ""),
     "line 1: rldata: missing"),
    (without("llmdata", ""),
     "line 16: llmdata.class: missing"),
    (without("llmdata", "    clas: open\n"),
     "line 17: llmdata.clas: not a field of a rating (class, link, notes)"),
    (project_text().replace("llmdata:\n    class: open\n    link:\n    notes:\n", "llmdata: open\n"),
     "line 16: llmdata: expected a mapping of class, link and notes, found text"),
    (project_text().replace("name: Demo\n", "name: [Demo, Other]\n"),
     "line 2: project.name: expected text, found a list"),
    (project_text().replace("    link: https://example.org\n", "    link: {url: x}\n"),
     "line 10: org.link: expected a URL or a list of URLs, found a mapping"),
    (project_text(extra="llmdata:\n    class: closed\n"),
     "line 68: llmdata: given twice (first on line 16)"),
    ("project: [\n",
     "line 2: not valid YAML: expected the node content, but found '<stream end>'"),
    ("project:\n  name: a\n name: b\n",
     "line 3: not valid YAML: expected <block end>, but found '<block mapping start>'"),
    ("",
     "line 1: the file is empty"),
    ("- a\n- b\n",
     "line 1: expected a mapping of fields (project, org and the 14 dimensions), found a list"),
    (project_text() + "---\nproject: {}\n",
     "line 68: not valid YAML: expected a single document in the stream, but found another document"),
    (b"project:\n  name: \xff\n",
     "line 2: not UTF-8 text"),
])
def test_malformed_files_name_file_line_and_field(tmp_path, text, message):
    with pytest.raises(KaiyuanError) as exc:
        ou.load_file(write(tmp_path, text))
    assert str(exc.value) == f"projects/x.yaml {message}"


def test_lenient_readings_are_kept_and_counted(tmp_path):
    text = project_text({"llmdata": "Open", "rldata": "", "api": "' closed '"}).replace(
        "    license: MIT\n", "    license: 2.0\n").replace("rlweights:\n    class: open\n    link:\n    notes:\n",
                                                            "rlweights:\n    class: open\n")
    project = ou.load_file(write(tmp_path, text + "tags: [a, b]\n"))
    assert [project.dimensions[d].value for d in ("llmdata", "rldata", "api")] == ["open", None, "closed"]
    assert project.license_text == "2.0" and project.extra == {"tags": ["a", "b"]}
    assert ou.score(project) == 12.0
    assert list(project.warnings) == [
        "projects/x.yaml line 7: project.license: a number read as the text '2.0'",
        "projects/x.yaml line 17: llmdata.class: 'Open' read as 'open' (the catalog's own scoring would count it 0: "
        "it matches the exact word only)",
        "projects/x.yaml line 25: rldata.class: empty: not assessed; it counts 0, as in the catalog's own scoring",
        "projects/x.yaml line 28: rlweights.link: missing; read as empty",
        "projects/x.yaml line 28: rlweights.notes: missing; read as empty",
        "projects/x.yaml line 63: api.class: ' closed ' read as 'closed' (the catalog's own scoring would count it 0: "
        "it matches the exact word only)",
        "projects/x.yaml line 66: tags: not a field of this catalog's format; kept in extra",
    ]


def test_a_folder_loads_all_or_nothing(tmp_path):
    write(tmp_path, project_text(), "a.yaml")
    write(tmp_path, project_text(), ou.TEMPLATE)
    assert [p.key for p in ou.load_dir(tmp_path)] == ["a"]
    write(tmp_path, project_text({"paper": "opne"}), "b.yaml")
    write(tmp_path, project_text(), "c.yaml")
    loaded = None
    with pytest.raises(KaiyuanError, match=r"^projects/b\.yaml line 49: paper\.class: 'opne' is not open"):
        loaded = ou.load_dir(tmp_path / "projects")
    assert loaded is None


def test_a_missing_or_empty_folder_is_an_error(tmp_path):
    with pytest.raises(KaiyuanError, match="not a folder of Opening up ChatGPT project files"):
        ou.load_dir(tmp_path / "nope")
    (tmp_path / "projects").mkdir()
    with pytest.raises(KaiyuanError, match=r"no project files \(\*\.yaml\)"):
        ou.load_dir(tmp_path)
