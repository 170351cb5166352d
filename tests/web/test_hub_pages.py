"""The team hub's web pages (``kaiyuan hub serve``), on a hub seeded as ``kaiyuan push`` would fill it: a small
registry (tiny-llama → a fine-tune on dates-train) whose license and openness reports are computed by the library
and written into each revision's ``.kaiyuan/reports.json``, next to plain Hugging Face uploads, a private repo,
and revisions whose reports are malformed or hostile.

``/`` lists what ``db.search`` finds (plus plain uploads when only the name is filtered); private repos show only
to a session whose token may read them, and stop showing when the token is removed; a repo page lists files
(pickle flagged), renders the card with raw HTML escaped, and states the pushed verdict and MOF class exactly as
the JSON says; sign-in is CSRF-protected, rate-limited and keeps only the token's hash."""

from __future__ import annotations

import hashlib
import json
import re
import stat
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from itsdangerous import URLSafeTimedSerializer
from markupsafe import escape

from kaiyuan import __version__
from kaiyuan.data.datasets import register_dataset
from kaiyuan.hub.licenses import license_report
from kaiyuan.hub.manifest import MANIFEST_NAME, Parent
from kaiyuan.hub.openness import openness_report
from kaiyuan.hub.registry import Artifact, ArtifactWriter, Registry
from kaiyuan.models import create_tiny_llama
from kaiyuan.serve.server import BackgroundServer, free_port
from kaiyuan.teamhub.app import create_hub_app
from kaiyuan.teamhub.names import repo_id
from kaiyuan.teamhub.search import index_revision, parse_mof_class
from kaiyuan.teamhub.share import LINEAGE_FILE, REPORTS_FILE
from kaiyuan.web.hub_auth import SESSION_COOKIE
from kaiyuan.web.hub_pages import mount_hub_pages
from tests.conftest import run_cli
from tests.teamhub.seed import seed
from tests.web.conftest import screenshot

HOSTILE_README = """---
license: apache-2.0
tags:
- dates
---
# tiny-dates

Fine-tuned <script>window.__pwned = 1</script> on dates <img src=x onerror="window.__pwned = 2"> and
[click me](javascript:window.__pwned=3).

| metric | value |
|---|---|
| exact match | 0.5 |
"""
EVIL = '<script>window.__pwned = 4</script><img src=x onerror="window.__pwned = 5">'


@dataclass
class Made:
    """The registry that "pushed": the artifacts and what the library reports about them."""

    registry: Registry
    tiny: Artifact
    data: Artifact
    tuned: Artifact
    reports: dict[str, tuple[dict, dict]]  # artifact id → (license report, openness report), as dicts


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Made:
    home = tmp_path_factory.mktemp("hub-pages") / "home"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KAIYUAN_HOME", str(home))
        registry = Registry(home)
        tiny = create_tiny_llama(registry=registry)
        data = register_dataset([{"prompt": "March 3, 1999", "response": "1999-03-03"}], "dates-train", "CC0-1.0",
                                "test", config={"task": "dates"}, registry=registry)
        with ArtifactWriter("model", "tiny-dates", license="Apache-2.0", source="test fine-tune",
                            parents=[Parent(tiny.id, "finetune"), Parent(data.id, "dataset")],
                            config={"task": "dates"}, stage="sft", registry=registry) as writer:
            (writer.path / "config.json").write_text('{"hidden_size": 8}\n')
            (writer.path / "model.safetensors").write_bytes(bytes(range(256)) * 8)
            (writer.path / "pytorch_model.bin").write_bytes(b"\x80\x04pickled")  # a pickle: flagged
            (writer.path / "README.md").write_text(HOSTILE_README)
        tuned = writer.artifact
        assert tuned is not None
        reports = {a.id: (license_report(a.id, registry).to_dict(), openness_report(a.id, registry).to_dict())
                   for a in (tiny, tuned)}
    return Made(registry, tiny, data, tuned, reports)


def artifact_files(artifact: Artifact) -> dict[str, bytes]:
    """What ``kaiyuan push`` uploads of an artifact: its files and its manifest."""
    files = {name: (artifact.path / name).read_bytes() for name in artifact.manifest["files"]}
    files[MANIFEST_NAME] = (artifact.path / MANIFEST_NAME).read_bytes()
    return files


def reports_json(made: Made, artifact: Artifact, pushed: dict[str, tuple[str, str]]) -> dict:
    """``.kaiyuan/reports.json`` as the contract says ``kaiyuan push`` writes it."""
    license, openness = made.reports[artifact.id]
    nodes = {artifact.id: {"id": artifact.id, "kind": artifact.kind, "name": artifact.name, "repo": None,
                           "revision": None}}
    edges = []
    for link in made.registry.lineage(artifact.id):
        repo, revision = pushed.get(link["id"], (None, None))
        nodes.setdefault(link["id"], {"id": link["id"], "kind": link["kind"], "name": link["name"], "repo": repo,
                                      "revision": revision})
        edges.append({"parent": link["id"], "child": link["child"], "relation": link["relation"]})
    return {"id": artifact.id, "computed_at": "2026-01-02T03:04:05+00:00", "kaiyuan": __version__,
            "license": license, "openness": openness, "lineage": {"nodes": list(nodes.values()), "edges": edges}}


def lineage_json(artifact: Artifact, ancestors: list[tuple[Artifact, str, str]]) -> bytes:
    return json.dumps({"id": artifact.id, "ancestors": [
        {"id": a.id, "kind": a.kind, "name": a.name, "repo": repo, "revision": revision}
        for a, repo, revision in ancestors]}).encode()


@dataclass
class Seeded:
    app: object
    hub: object
    made: Made
    revisions: dict[str, str]  # repo → sha of main (and "team/tiny-dates@v1")
    reader: str  # a read token for namespace "secret"
    team: str  # a read token for namespace "team"


def push_like(hub, made: Made, repo: str, artifact: Artifact, ancestors: list[tuple[Artifact, str, str]],
              reports: dict | bytes | None = None, extra: dict[str, bytes] | None = None, private: bool = False) -> str:
    files = {**artifact_files(artifact), LINEAGE_FILE: lineage_json(artifact, ancestors), **(extra or {})}
    if reports is not None:
        files[REPORTS_FILE] = reports if isinstance(reports, bytes) else json.dumps(reports, indent=1).encode()
    commit = seed(hub, repo, files, private=private, message=f"kaiyuan {artifact.kind} {artifact.id}")
    index_revision(hub, hub.db.repo(repo_id(repo)), commit.sha)  # what the commit route does
    return commit.sha


def seed_hub(storage: Path, made: Made) -> Seeded:
    app = create_hub_app(storage)
    mount_hub_pages(app)
    hub = app.state.hub
    sha: dict[str, str] = {}
    sha["team/tiny-llama"] = push_like(hub, made, "team/tiny-llama", made.tiny, [],
                                       reports_json(made, made.tiny, {}))
    sha["team/dates-train"] = push_like(hub, made, "team/dates-train", made.data, [])  # datasets get no reports
    pushed = {made.tiny.id: ("team/tiny-llama", sha["team/tiny-llama"]),
              made.data.id: ("team/dates-train", sha["team/dates-train"])}
    ancestors = [(made.tiny, *pushed[made.tiny.id]), (made.data, *pushed[made.data.id])]
    tuned_reports = reports_json(made, made.tuned, pushed)
    first = push_like(hub, made, "team/tiny-dates", made.tuned, ancestors, tuned_reports)
    repo = hub.db.repo(repo_id("team/tiny-dates"))
    hub.db.tag(repo, "v1", first)
    seed(hub, "team/tiny-dates", dict(artifact_files(made.tuned), **{"NOTES.md": b"later\n"}), branch="dev")
    sha["team/tiny-dates@v1"] = first
    sha["team/tiny-dates"] = push_like(hub, made, "team/tiny-dates", made.tuned, ancestors, tuned_reports,
                                       extra={"NOTES.md": b"second revision\n"})
    open_reports = reports_json(made, made.tiny, {})
    open_reports["openness"] = {**open_reports["openness"], "mof_class": "Class II"}  # as a pusher may claim
    sha["team/open-tiny"] = push_like(hub, made, "team/open-tiny", made.tiny, [], open_reports)
    sha["secret/tiny-secret"] = push_like(hub, made, "secret/tiny-secret", made.tuned, ancestors, tuned_reports,
                                          private=True)
    sha["team/broken-report"] = push_like(hub, made, "team/broken-report", made.tiny, [],
                                          b'{"id": "model-x", "license": {"verdict": ')
    sha["team/odd-report"] = push_like(hub, made, "team/odd-report", made.tiny, [], {
        "id": made.tiny.id, "license": "yes", "openness": {"mof_class": ["Class I"]},
        "lineage": {"nodes": "many", "edges": []}})
    hostile = reports_json(made, made.tiny, {})
    hostile["license"] = {**hostile["license"], "summary": EVIL, "verdict": EVIL}
    hostile["openness"] = {**hostile["openness"], "mof_class": EVIL}
    hostile["lineage"]["nodes"][0]["name"] = EVIL
    hostile["lineage"]["nodes"].append({"id": "model-evil", "kind": '"><script>', "name": EVIL,
                                        "repo": "javascript:alert(1)", "revision": "x"})
    hostile["lineage"]["edges"].append({"parent": "model-evil", "child": made.tiny.id, "relation": EVIL})
    sha["team/hostile-report"] = push_like(hub, made, "team/hostile-report", made.tiny, [], hostile)
    sha["team/plain-upload"] = seed(hub, "team/plain-upload", {"README.md": b"# A plain upload\n",
                                                               "model.safetensors": b"\0" * 64}).sha
    sha["datasets/team/hf-data"] = seed(hub, "team/hf-data", {"data.csv": b"a,b\n1,2\n"}, repo_type="dataset").sha
    reader = hub.db.create_token("reader", "read", "secret")
    team = hub.db.create_token("team-reader", "read", "team")
    return Seeded(app, hub, made, sha, reader, team)


@pytest.fixture
def seeded(made, tmp_path) -> Seeded:
    return seed_hub(tmp_path / "hub", made)


@pytest.fixture
def client(seeded) -> TestClient:
    return TestClient(seeded.app)


# ------------------------------------------------------------------------------------------------ helpers


def listed(html: str) -> list[str]:
    return re.findall(r'<tr data-repo="([^"]+)"', html)


def part(html: str, section_id: str) -> str:
    found = re.search(rf'<(section|div) class="[^"]*" id="{section_id}"|<(section|div) id="{section_id}"', html)
    assert found, f"no #{section_id}"
    end = html.find(f"</{found.group(1) or found.group(2)}>", found.end())
    return html[found.start():end]


def sign_in(client: TestClient, token: str) -> object:
    form = client.get("/login")
    csrf = re.search(r'name="csrf_token" value="([0-9a-f]+)"', form.text).group(1)
    return client.post("/login", data={"token": token, "csrf_token": csrf, "next": "/"}, follow_redirects=False)


def public_repos(seeded: Seeded) -> list[str]:
    return sorted(r for r in seeded.revisions if "@" not in r and not r.startswith("secret/"))


def anonymous(can_read_namespace: str | None = None):
    return lambda namespace: namespace == can_read_namespace


# ------------------------------------------------------------------------------------------------ the list


def test_the_list_shows_every_public_repo_with_its_card(client, seeded):
    response = client.get("/")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY" and "<script" not in response.text
    assert sorted(listed(response.text)) == public_repos(seeded)
    row = re.search(r'<tr data-repo="team/tiny-dates".*?</tr>', response.text, re.S).group(0)
    verdict = seeded.made.reports[seeded.made.tuned.id][0]["verdict"]
    commercial = {"yes": "yes", "no": "no"}.get(verdict, "?")
    assert '<a href="/team/tiny-dates">team/tiny-dates</a>' in row and ">tiny-dates<" in row
    assert "kind-model" in row and "Apache-2.0" in row and ">dates<" in row
    assert f">{commercial}</span>" in row  # commercial use, from the pushed verdict
    assert re.search(r'<td class="nowrap mof">\?</td>', row)  # no MOF class reached: unknown, as the card says
    plain = re.search(r'<tr data-repo="team/plain-upload".*?</tr>', response.text, re.S).group(0)
    assert "model, no manifest" in plain
    dataset = re.search(r'<tr data-repo="datasets/team/hf-data".*?</tr>', response.text, re.S).group(0)
    assert '<a href="/datasets/team/hf-data">' in dataset and "dataset, no manifest" in dataset
    assert '<td class="nowrap mof">Class II</td>' in re.search(r'<tr data-repo="team/open-tiny".*?</tr>',
                                                                response.text, re.S).group(0)


@pytest.mark.parametrize("filters", [
    {"license_allows": "commercial"}, {"min_mof_class": "II"}, {"min_mof_class": "I"}, {"min_mof_class": "3"},
    {"task": "dates"}, {"task": "DATES", "license_allows": "commercial"}, {"q": "tiny", "min_mof_class": "III"},
])
def test_filters_list_exactly_what_db_search_finds(client, seeded, filters):
    response = client.get("/", params=filters)
    assert response.status_code == 200
    found = seeded.hub.db.search(filters.get("q", ""), filters.get("license_allows"),
                                 parse_mof_class(filters.get("min_mof_class")), filters.get("task"), anonymous())
    assert listed(response.text) == [str(c.repo_id) for c in found]
    for name, value in filters.items():  # the form keeps the filters
        kept = f'name="{name}" value="{value}"' if name in ("q", "task") else f'value="{value}" selected'
        assert kept in response.text or value == "3", name


def test_the_name_and_type_filters_include_plain_uploads(client, seeded):
    by_name = listed(client.get("/", params={"q": "PLAIN"}).text)
    assert by_name == ["team/plain-upload"]
    tiny = listed(client.get("/", params={"q": "tiny"}).text)
    carded = [str(c.repo_id) for c in seeded.hub.db.search("tiny", can_read=anonymous())]
    assert sorted(tiny) == sorted(carded) and "team/tiny-dates" in tiny  # every tiny repo has a card
    assert listed(client.get("/", params={"type": "dataset"}).text) == ["datasets/team/hf-data"]
    models = listed(client.get("/", params={"type": "model"}).text)
    assert "datasets/team/hf-data" not in models and "team/plain-upload" in models
    assert listed(client.get("/", params={"license_allows": "commercial"}).text).count("team/plain-upload") == 0
    empty = client.get("/", params={"q": "no-such-repo"})
    assert empty.status_code == 200 and 'id="none"' in empty.text and "No repo matches" in empty.text


@pytest.mark.parametrize("filters, message", [
    ({"min_mof_class": "IV"}, "expected I, II or III"), ({"license_allows": "free"}, "expected commercial"),
    ({"type": "space"}, "expected model or dataset"),
])
def test_an_invalid_filter_is_a_400_page_saying_why(client, filters, message):
    response = client.get("/", params=filters)
    assert response.status_code == 400 and response.headers["content-type"].startswith("text/html")
    assert message in response.text and listed(response.text) == []
    assert 'id="problem"' in response.text


# ------------------------------------------------------------------------------------------------ sign-in


def test_a_private_repo_shows_only_to_a_session_that_may_read_it(client, seeded):
    assert "secret/tiny-secret" not in listed(client.get("/").text)
    hidden = client.get("/secret/tiny-secret")
    unknown = client.get("/secret/no-such-repo")
    assert hidden.status_code == unknown.status_code == 404
    assert hidden.text.replace("tiny-secret", "X") == unknown.text.replace("no-such-repo", "X")  # no tell

    assert sign_in(client, seeded.team).status_code == 303  # a token for another namespace
    assert "secret/tiny-secret" not in listed(client.get("/").text)
    assert client.get("/secret/tiny-secret").status_code == 404

    client.cookies.clear()
    answer = sign_in(client, seeded.reader)
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    listing = client.get("/")
    assert "secret/tiny-secret" in listing.text and 'data-private="true"' in listing.text
    assert 'data-token="reader"' in listing.text and 'id="sign-out"' in listing.text
    assert listed(client.get("/", params={"task": "dates"}).text) == [
        str(c.repo_id) for c in seeded.hub.db.search("", None, None, "dates", anonymous("secret"))]
    page = client.get("/secret/tiny-secret")
    assert page.status_code == 200 and 'class="pill private"' in page.text and "HF_TOKEN=kyh_…" in page.text
    # the page's download links work for the session: it reads as its token, and only reads
    download = client.get("/secret/tiny-secret/resolve/main/config.json")
    assert download.status_code == 200 and download.headers["x-repo-commit"] == seeded.revisions["secret/tiny-secret"]
    write = client.post("/api/repos/create", json={"name": "tiny-2", "organization": "secret"})
    assert write.status_code == 401  # a cookie never writes (and no form of these pages posts there)

    seeded.hub.db.remove_token("reader")  # revoking the token ends the session
    assert "secret/tiny-secret" not in listed(client.get("/").text)
    assert client.get("/secret/tiny-secret").status_code == 404
    assert client.get("/secret/tiny-secret/resolve/main/config.json").status_code == 404
    assert 'id="sign-in"' in client.get("/").text


def test_the_session_cookie_holds_the_tokens_hash_never_the_token(client, seeded):
    answer = sign_in(client, seeded.reader)
    cookie = answer.cookies[SESSION_COOKIE]
    assert seeded.reader not in cookie
    header = answer.headers["set-cookie"].lower()
    assert "httponly" in header and "samesite=lax" in header
    secret_file = seeded.hub.storage / "ui-secret"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    serializer = URLSafeTimedSerializer(secret_file.read_bytes(), salt="kaiyuan-hub-session")
    assert serializer.loads(cookie) == hashlib.sha256(seeded.reader.encode()).hexdigest()
    forged = URLSafeTimedSerializer(b"another secret" * 3, salt="kaiyuan-hub-session").dumps(
        hashlib.sha256(seeded.reader.encode()).hexdigest())
    client.cookies.clear()
    client.cookies.set(SESSION_COOKIE, forged)
    assert "secret/tiny-secret" not in listed(client.get("/").text)


def test_a_wrong_token_is_a_401_page_and_failures_are_rate_limited(client, seeded):
    wrong = sign_in(client, "kyh_not-a-token")
    assert wrong.status_code == 401 and "That token is not valid on this hub." in wrong.text
    assert SESSION_COOKIE not in wrong.cookies
    for _ in range(9):
        assert sign_in(client, "kyh_still-wrong").status_code == 401
    limited = sign_in(client, seeded.reader)  # even the right token waits once the window is full
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 0
    assert "Too many failed sign-ins" in limited.text


def test_both_forms_need_their_csrf_token(client, seeded):
    client.get("/login")  # the pre-session cookie, but no token in the form
    assert client.post("/login", data={"token": seeded.reader}).status_code == 403
    other = TestClient(seeded.app)
    foreign = re.search(r'name="csrf_token" value="([0-9a-f]+)"', other.get("/login").text).group(1)
    refused = client.post("/login", data={"token": seeded.reader, "csrf_token": foreign})
    assert refused.status_code == 403 and "CSRF" in refused.text and SESSION_COOKIE not in refused.cookies

    assert sign_in(client, seeded.reader).status_code == 303
    assert client.post("/logout").status_code == 403
    assert client.post("/logout", data={"csrf_token": foreign}).status_code == 403
    assert "secret/tiny-secret" in listed(client.get("/").text)  # still signed in
    csrf = re.search(r'action="/logout".*?name="csrf_token" value="([0-9a-f]+)"', client.get("/").text, re.S).group(1)
    out = client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/"
    assert "secret/tiny-secret" not in listed(client.get("/").text)


# ------------------------------------------------------------------------------------------------ a repo


def test_a_repo_page_lists_refs_and_files_and_flags_pickles(client, seeded):
    response = client.get("/team/tiny-dates")
    assert response.status_code == 200
    html = response.text
    main = seeded.revisions["team/tiny-dates"]
    refs = part(html, "refs")
    assert re.search(rf'data-ref="main" class="current">.*?{main}', refs, re.S)
    assert re.search(rf'data-ref="v1".*?>tag<.*?{seeded.revisions["team/tiny-dates@v1"]}', refs, re.S)
    assert 'href="/team/tiny-dates?revision=dev"' in refs
    files = part(html, "files")
    paths = re.findall(r'<tr data-path="([^"]+)"', files)
    assert paths == [e.path for e in seeded.hub.db.files(seeded.hub.db.repo(repo_id("team/tiny-dates")), main)]
    assert re.findall(r'<tr data-path="([^"]+)" class="pickle"', files) == ["pytorch_model.bin"]
    assert "can run code when loaded" in files and "--allow-pickle" in files
    weights = (seeded.made.tuned.path / "model.safetensors").read_bytes()
    assert f'<code class="small sha">{hashlib.sha256(weights).hexdigest()}</code>' in files  # LFS: its sha256
    link = re.search(r'<a href="([^"]+/pytorch_model.bin)" download>', files).group(1)
    assert link == f"/team/tiny-dates/resolve/{main}/pytorch_model.bin"
    download = client.get(link)
    assert download.status_code == 200 and download.content == b"\x80\x04pickled"
    pull = part(html, "pull")
    assert "kaiyuan pull team/tiny-dates --hub http://testserver" in pull
    assert "HF_ENDPOINT=http://testserver hf download team/tiny-dates" in pull


def test_the_card_is_rendered_with_hostile_html_escaped(client):
    card = part(client.get("/team/tiny-dates").text, "card")
    assert "<h1>tiny-dates</h1>" in card and "<table>" in card
    assert "<script" not in card and "<img" not in card and 'href="javascript:' not in card
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in card and "&lt;img src=x onerror=" in card
    assert "<th>license</th><td>apache-2.0</td>" in card and "<th>tags</th><td>- dates</td>" in card
    assert "---" not in card.split("</details>")[1]  # the front matter is not part of the rendered body


def test_the_pushed_reports_are_shown_as_computed(client, seeded):
    html = client.get("/team/tiny-dates").text
    license, openness = seeded.made.reports[seeded.made.tuned.id]
    reports = part(html, "reports")
    assert "Computed by the pushing registry at push time" in reports and "2026-01-02T03:04:05+00:00" in reports
    assert f'data-verdict="{license["verdict"]}">commercial use: {license["verdict"]}<' in reports
    assert str(escape(license["summary"])) in reports
    for risk in license["risks"]:
        assert str(escape(risk["message"])) in reports
    grade = openness["mof_class"] or "none"  # exactly what the JSON says
    assert f'data-mof-class="{openness["mof_class"] or ""}">{grade}</strong>' in reports
    assert re.findall(r'<tr data-class="([^"]+)">', reports) == list(openness["progress"])
    for name, step in openness["progress"].items():
        assert re.search(rf'data-class="{name}"><td>{name}</td><td class="num">{step["met"]} / {step["required"]}',
                         reports)
    svg = part(html, "lineage")
    nodes = re.findall(r'<g class="node[^"]*" data-id="([^"]+)" data-kind="([^"]+)"', svg)
    assert sorted(nodes) == sorted((a.id, a.kind) for a in (seeded.made.tiny, seeded.made.data, seeded.made.tuned))
    assert 'data-nodes="3"' in svg and f'class="node model current" data-id="{seeded.made.tuned.id}"' in svg
    assert f'<a href="/team/tiny-llama?revision={seeded.revisions["team/tiny-llama"]}" class="node-link">' in svg
    assert f'<a href="/team/dates-train?revision={seeded.revisions["team/dates-train"]}" class="node-link">' in svg
    assert set(re.findall(r'data-parent="([^"]+)" data-child="([^"]+)"', svg)) == {
        (seeded.made.tiny.id, seeded.made.tuned.id), (seeded.made.data.id, seeded.made.tuned.id)}
    ancestors = part(html, "ancestors")
    assert re.findall(r'<tr data-id="([^"]+)">', ancestors) == [seeded.made.tiny.id, seeded.made.data.id]
    assert f'<a href="/team/tiny-llama?revision={seeded.revisions["team/tiny-llama"]}">team/tiny-llama</a>' \
        in ancestors

    open_tiny = part(client.get("/team/open-tiny").text, "openness")
    assert 'data-mof-class="Class II">Class II</strong>' in open_tiny


def test_a_revision_is_shown_as_it_was(client, seeded):
    now = client.get("/team/tiny-dates").text
    then = client.get("/team/tiny-dates", params={"revision": "v1"})
    assert then.status_code == 200
    assert 'data-path="NOTES.md"' in part(now, "files") and 'data-path="NOTES.md"' not in part(then.text, "files")
    assert f'<code class="revision">{seeded.revisions["team/tiny-dates@v1"]}</code>' in then.text
    assert "kaiyuan pull team/tiny-dates@v1 --hub" in then.text
    by_sha = client.get("/team/tiny-dates", params={"revision": seeded.revisions["team/tiny-dates@v1"][:10]})
    assert by_sha.status_code == 200 and 'data-path="NOTES.md"' not in part(by_sha.text, "files")
    missing = client.get("/team/tiny-dates", params={"revision": "no-such-branch"})
    assert missing.status_code == 404 and "no branch, tag or commit" in missing.text


def test_a_revision_without_reports_says_so(client):
    plain = client.get("/team/plain-upload")
    assert plain.status_code == 200
    assert "No license or openness report: this revision was pushed without <code>kaiyuan push</code>" in plain.text
    assert "No <code>.kaiyuan/lineage.json</code>" in plain.text and "kaiyuan pull team" not in plain.text
    data = client.get("/datasets/team/hf-data")
    assert data.status_code == 200 and 'data-path="data.csv"' in data.text
    assert "hf download team/hf-data --repo-type dataset" in data.text
    assert '<a href="/datasets/team/hf-data/resolve/' in data.text
    assert client.get("/team/hf-data").status_code == 404  # a dataset is not a model


def test_malformed_reports_are_unreadable_not_an_error(client):
    broken = client.get("/team/broken-report")
    assert broken.status_code == 200
    assert "report unreadable" in part(broken.text, "reports") and "not valid JSON" in broken.text
    odd = client.get("/team/odd-report")
    assert odd.status_code == 200
    reports = part(odd.text, "reports")
    assert reports.count("report unreadable") == 3  # license, openness and lineage each
    assert 'data-path="manifest.json"' in odd.text  # the rest of the page is there


def test_hostile_reports_are_escaped(client, seeded):
    html = client.get("/team/hostile-report").text
    reports = part(html, "reports")
    assert "<script" not in reports and "<img" not in reports and "javascript:" not in reports.split("<svg")[1]
    assert str(escape(EVIL)) in reports
    assert 'data-kind="unknown"' in reports  # a kind that is not a plain word
    assert reports.count('<g class="node') == 2 and 'href="javascript' not in reports


def test_unknown_repos_are_404_pages_and_hf_routes_still_answer(client, seeded):
    for path in ("/team/no-such-repo", "/datasets/team/no-such", "/bad--name/x", "/team/x..y"):
        response = client.get(path)
        assert response.status_code == 404 and response.headers["content-type"].startswith("text/html"), path
        assert "No such repo" in response.text
    api = client.get("/api/whoami-not-a-route")
    assert api.status_code == 404 and api.json()["error"].startswith("Not found")
    info = client.get("/api/models/team/tiny-dates")
    assert info.status_code == 200 and info.json()["sha"] == seeded.revisions["team/tiny-dates"]
    file = client.get("/team/tiny-dates/resolve/main/config.json")
    assert file.status_code == 200 and file.content == b'{"hidden_size": 8}\n'
    assert client.get("/-/static/hub.css").status_code == 200
    seeded.hub.db.create_repo(repo_id("team/empty"))  # no revision yet
    empty = client.get("/team/empty")
    assert empty.status_code == 200 and "nothing was committed to main" in empty.text


def test_a_report_about_another_artifact_is_flagged(client, seeded):
    html = client.get("/team/odd-report").text  # its reports.json names the same artifact: no warning
    assert 'id="reports-mismatch"' not in html
    other = reports_json(seeded.made, seeded.made.tuned, {})
    push_like(seeded.hub, seeded.made, "team/mismatch", seeded.made.tiny, [], other)
    flagged = client.get("/team/mismatch").text
    assert 'id="reports-mismatch"' in flagged and seeded.made.tuned.id in flagged


def test_hub_serve_mounts_the_pages(monkeypatch, capsys, home, tmp_path):
    import uvicorn

    calls: list[dict] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append({"app": app, **kwargs}))
    code, _, err = run_cli(monkeypatch, capsys, "hub", "serve", "--port", free_port(), "--storage", tmp_path / "hub")
    assert code == 0, err
    with TestClient(calls[0]["app"]) as served:
        assert served.get("/").status_code == 200 and "<h1>Repos</h1>" in served.get("/").text
        assert served.get("/login").status_code == 200
        assert served.get("/health").json()["status"] == "ok"


# ------------------------------------------------------------------------------------------------ browser


def test_the_hub_pages_in_chromium(page, seeded):
    from playwright.sync_api import expect  # here, not at the top: without playwright the `page` fixture skips

    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    with BackgroundServer(seeded.app) as server:
        page.goto(f"{server.url}/")
        expect(page.locator("tr[data-repo]")).to_have_count(len(public_repos(seeded)))
        expect(page.locator('tr[data-repo="team/tiny-dates"]')).to_be_visible()

        page.fill('input[name="q"]', "tiny")
        page.select_option('select[name="license_allows"]', "commercial")
        page.click('#search button[type="submit"]')
        expect(page).to_have_url(re.compile(r"license_allows=commercial"))
        wanted = [str(c.repo_id) for c in seeded.hub.db.search("tiny", "commercial", can_read=anonymous())]
        assert wanted, "the filter should keep some repos"
        expect(page.locator("tr[data-repo]")).to_have_count(len(wanted))
        assert page.locator("tr[data-repo]").evaluate_all("rows => rows.map(r => r.dataset.repo)") == wanted
        screenshot(page, "hub_repos")

        page.click('a[href="/team/tiny-dates"]')
        expect(page).to_have_url(f"{server.url}/team/tiny-dates")
        reports = json.loads(b"".join(seeded.hub.blobs.read(next(
            e.blob for e in seeded.hub.db.files(seeded.hub.db.repo(repo_id("team/tiny-dates")),
                                                seeded.revisions["team/tiny-dates"]) if e.path == REPORTS_FILE))))
        lineage = page.locator("svg.lineage")
        expect(lineage).to_be_visible()
        expect(lineage.locator("g.node")).to_have_count(len(reports["lineage"]["nodes"]))
        expect(page.locator("p.mof")).to_contain_text(f"MOF class: {reports['openness']['mof_class'] or 'none'}")
        expect(page.locator('tr[data-path="pytorch_model.bin"] .pickle-warning')).to_be_visible()
        assert page.evaluate("window.__pwned") is None  # nothing in the card ran
        screenshot(page, "hub_repo")

        page.locator(f'svg.lineage g.node[data-id="{seeded.made.tiny.id}"]').click()  # a node links to its repo
        expect(page).to_have_url(f"{server.url}/team/tiny-llama?revision={seeded.revisions['team/tiny-llama']}")

        page.goto(f"{server.url}/")
        page.click("#sign-in")
        page.fill("#token", seeded.reader)
        page.click('form[action="/login"] button[type="submit"]')
        expect(page.locator('tr[data-repo="secret/tiny-secret"]')).to_be_visible()
        page.click("#sign-out")
        expect(page.locator('tr[data-repo="secret/tiny-secret"]')).to_have_count(0)
    assert problems == []  # no script error, nothing the Content-Security-Policy refused
