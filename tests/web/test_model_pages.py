"""The registry pages on a small demo-shaped pipeline: tiny-llama → SFT adapter (on dates-train) → merged model,
both models evaluated (exact match) on dates-heldout, cards written for the merged model.

``/models`` lists the registry; ``/models/{id}`` draws the lineage, states the license verdict and the openness
grade exactly as the library reports them, renders the card, lists the evaluations; files download byte for byte,
and nothing outside a manifest can be fetched."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from markupsafe import escape

from kaiyuan.data.datasets import register_dataset
from kaiyuan.data.synthetic import SyntheticConfig, run_synthetic
from kaiyuan.evaluate.generation import ExactMatchConfig, run_exact_match
from kaiyuan.hub.card import write_cards
from kaiyuan.hub.licenses import license_report
from kaiyuan.hub.openness import openness_report
from kaiyuan.hub.registry import Artifact, Registry
from kaiyuan.models import resolve_model
from kaiyuan.serve.routes import create_app
from kaiyuan.serve.server import BackgroundServer
from kaiyuan.train.sft import SFTConfig, run_sft
from kaiyuan.web.app import mount_ui
from tests.web.conftest import screenshot


@dataclass
class Demo:
    home: Path
    base: Artifact
    train: Artifact
    heldout: Artifact
    adapter: Artifact
    merged: Artifact
    base_eval: Artifact
    merged_eval: Artifact
    card: Artifact


def build_demo(home: Path) -> Demo:
    """The pipeline, registered in ``home`` (KAIYUAN_HOME while it runs: training writes its run folder there)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KAIYUAN_HOME", str(home))
        registry = Registry(home)
        base = resolve_model("tiny-llama", registry)
        data = run_synthetic(SyntheticConfig(n_train=8, n_heldout=4, seed=1), registry)
        trained = run_sft(SFTConfig(model="tiny-llama", data="dates-train", max_steps=2, batch_size=4, merge=True,
                                    seed=3), registry)
        assert trained is not None and trained.merged is not None
        evals = [run_exact_match(ExactMatchConfig(model=model.id, data=data["heldout"].id, max_new_tokens=8),
                                 registry).artifact for model in (base, trained.merged)]
        cards = write_cards(trained.merged.id, registry)
    assert cards.model is not None
    return Demo(home, base, data["train"], data["heldout"], trained.artifact, trained.merged, *evals,
                cards.model.card)


_BUILT: list[Demo] = []


def demo_pipeline(factory: pytest.TempPathFactory) -> Demo:
    """Built once per test session (test_compare.py uses it too)."""
    if not _BUILT:
        _BUILT.append(build_demo(factory.mktemp("web-demo") / "home"))
    return _BUILT[0]


def ui_app(home: Path):
    app = create_app({}, with_ui=True)
    mount_ui(app, {}, home=home)
    return app


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Demo:
    return demo_pipeline(tmp_path_factory)


@pytest.fixture(scope="module")
def client(demo) -> TestClient:
    return TestClient(ui_app(demo.home))


def node_ids(html: str) -> list[str]:
    return re.findall(r'<g class="node[^"]*" data-id="([^"]+)"', html)


def edges(html: str) -> set[tuple[str, str]]:
    return set(re.findall(r'<g class="link" data-parent="([^"]+)" data-child="([^"]+)"', html))


# ------------------------------------------------------------------------------------------------ /models


def test_models_lists_the_registry_and_filters_by_kind(client, demo):
    registry = Registry(demo.home)
    response = client.get("/models")
    assert response.status_code == 200
    rows = re.findall(r'<tr data-id="([^"]+)" data-kind="([^"]+)">', response.text)
    assert sorted(rows) == sorted((a.id, a.kind) for a in registry.list())
    assert rows[0][0] == registry.list()[-1].id  # newest first
    assert f'<a href="/models/{demo.adapter.id}">{demo.adapter.name}</a>' in response.text  # a parent, linked
    assert "merge" in response.text and escape(demo.merged.license) in response.text

    datasets = client.get("/models", params={"kind": "dataset"})
    kept = re.findall(r'<tr data-id="([^"]+)" data-kind="([^"]+)">', datasets.text)
    assert sorted(kept) == sorted((a.id, "dataset") for a in registry.list("dataset"))
    assert '<option value="dataset" selected>' in datasets.text


# ------------------------------------------------------------------------------------------------ one artifact


def test_model_page_draws_the_lineage_and_states_license_and_openness(client, demo):
    registry = Registry(demo.home)
    response = client.get(f"/models/{demo.merged.id}")
    assert response.status_code == 200
    html = response.text
    assert '<svg class="lineage"' in html
    # one node per ancestor (and the model itself: nothing is made from it but its evals and card, not drawn)
    ancestors = {step["id"] for step in registry.lineage(demo.merged.id)}
    assert ancestors == {demo.base.id, demo.train.id, demo.adapter.id}
    ids = node_ids(html)
    assert sorted(ids) == sorted(ancestors | {demo.merged.id})
    assert f'<g class="node model current" data-id="{demo.merged.id}"' in html
    assert f'<g class="node dataset" data-id="{demo.train.id}"' in html
    assert edges(html) == {(s["id"], s["child"]) for s in registry.lineage(demo.merged.id)}
    for ancestor in ancestors:
        assert f'<a href="/models/{ancestor}" class="node-link">' in html

    report = license_report(demo.merged.id, registry)
    assert f'data-verdict="{report.verdict}"' in html
    assert f'<p class="verdict">{escape(report.summary)}</p>' in html
    assert report.obligations and all(f"<li>{escape(o)}</li>" in html for o in report.obligations)
    assert all(str(escape(e["path_text"])) in html for e in report.evidence)

    openness = openness_report(demo.merged.id, registry)
    grade = openness.mof_class or ""
    assert f'MOF class: <strong data-mof-class="{grade}">{openness.mof_class or "none"}</strong>' in html
    assert f"Openness index: {openness.index_score} / {openness.index_max}" in html
    for name, step in openness.progress.items():
        assert f'<tr data-class="{name}"><td>{name}</td><td class="num">{step["met"]} / {step["required"]}</td>' in html
    assert all(str(escape(d["evidence"])) in html for d in openness.index)

    # the registered card, rendered from markdown (its YAML metadata shown as text)
    assert f'<a href="/models/{demo.card.id}"><code>{demo.card.id}</code></a>' in html
    assert f"<h1>{demo.merged.name}</h1>" in html and '<pre class="card-metadata">' in html


def test_model_page_lists_its_evaluations_with_a_link_to_compare(client, demo):
    html = client.get(f"/models/{demo.merged.id}").text
    row = html.split(f'<tr data-eval="{demo.merged_eval.id}">', 1)[1].split("</tr>", 1)[0]
    metrics = demo.merged_eval.manifest["metrics"]
    assert f"{metrics['exact_match']:.3f}" in row and f'<td class="num">{metrics["n"]}</td>' in row
    assert "exact_match" in row and demo.heldout.name in row
    assert f'href="/compare?eval={demo.merged_eval.id}&amp;eval={demo.base_eval.id}"' in row
    assert f'data-eval="{demo.base_eval.id}"' not in html  # the base model's eval is not this model's


def test_adapter_page_draws_its_descendants_too(client, demo):
    html = client.get(f"/models/{demo.adapter.id}").text
    assert sorted(node_ids(html)) == sorted([demo.base.id, demo.train.id, demo.adapter.id, demo.merged.id])
    assert (demo.adapter.id, demo.merged.id) in edges(html)
    assert "Openness index" in html  # adapters are graded too


def test_a_dataset_page_has_no_openness_grade_but_a_lineage(client, demo):
    html = client.get(f"/models/{demo.heldout.id}").text
    assert "Openness is assessed for models, adapters and exports; this is a dataset." in html
    assert demo.heldout.id in node_ids(html)


def test_a_name_redirects_to_the_id_and_an_unknown_id_is_a_404_page(client, demo):
    moved = client.get(f"/models/{demo.merged.name}", follow_redirects=False)
    assert (moved.status_code, moved.headers["location"]) == (303, f"/models/{demo.merged.id}")
    missing = client.get("/models/model-000000000000")
    assert missing.status_code == 404
    assert "No such artifact" in missing.text and "model-000000000000" in missing.text


# ------------------------------------------------------------------------------------------------ downloads


def test_a_file_downloads_byte_for_byte(client, demo):
    html = client.get(f"/models/{demo.merged.id}").text
    assert f'href="/models/{demo.merged.id}/files/model.safetensors"' in html
    response = client.get(f"/models/{demo.merged.id}/files/model.safetensors")
    assert response.status_code == 200
    assert response.content == (demo.merged.path / "model.safetensors").read_bytes()
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["content-disposition"] == 'attachment; filename="model.safetensors"'
    predictions = client.get(f"/models/{demo.merged_eval.id}/files/predictions.jsonl")
    assert predictions.content == (demo.merged_eval.path / "predictions.jsonl").read_bytes()


@pytest.mark.parametrize("path", [
    "..%2F..%2Fregistry.sqlite",  # out of the artifact, and out of the artifacts folder
    "%2E%2E/%2E%2E/ui-secret",
    "..%2F{other}%2Fconfig.json",  # a listed file, but of another artifact
    "manifest.json",  # in the folder, not listed in the manifest
    "nope.bin",
    "%2Fetc%2Fpasswd",
])
def test_traversal_and_unlisted_files_are_404(client, demo, path):
    url = f"/models/{demo.merged.id}/files/" + path.format(other=demo.base.id)
    response = client.get(url)
    assert response.status_code == 404, url
    assert "No such file" in response.text


def test_files_of_an_unknown_artifact_are_404(client):
    assert client.get("/models/model-000000000000/files/config.json").status_code == 404


def test_names_from_the_registry_are_escaped(home):
    """A dataset named like markup stays text in the table, on its page and in the lineage drawing."""
    evil = '<img src=x onerror="alert(1)">'
    dataset = register_dataset([{"messages": [{"role": "user", "content": "hi"},
                                              {"role": "assistant", "content": "hello"}]}], evil, "CC0-1.0",
                               "a test", registry=Registry(home))
    client = TestClient(ui_app(home))
    for url in ("/models", f"/models/{dataset.id}"):
        html = client.get(url).text
        assert "<img src=x" not in html and str(escape(evil)) in html


# ------------------------------------------------------------------------------------------------ browser


def test_model_page_in_chromium(page, demo):
    from playwright.sync_api import expect  # here, not at the top: without playwright the `page` fixture skips

    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    with BackgroundServer(ui_app(demo.home)) as server:
        page.goto(f"{server.url}/models")
        expect(page.locator(f'tr[data-id="{demo.merged.id}"]')).to_be_visible()
        screenshot(page, "models")

        page.goto(f"{server.url}/models/{demo.merged.id}")
        lineage = page.locator("svg.lineage")
        expect(lineage).to_be_visible()
        expect(lineage.locator("g.node")).to_have_count(4)
        grade = openness_report(demo.merged.id, Registry(demo.home)).mof_class or "none"
        expect(page.locator("p.mof")).to_be_visible()
        expect(page.locator("p.mof")).to_contain_text(f"MOF class: {grade}")
        screenshot(page, "model-page")

        page.locator(f'svg.lineage g.node[data-id="{demo.adapter.id}"]').click()  # a node is a link
        expect(page).to_have_url(f"{server.url}/models/{demo.adapter.id}")

        page.goto(f"{server.url}/compare?eval={demo.base_eval.id}&eval={demo.merged_eval.id}")
        expect(page.locator("tr.item")).to_have_count(demo.heldout.manifest["metrics"]["records"])
        page.locator('input[name="disagree"]').check()  # compare.js submits the filter on change
        expect(page).to_have_url(re.compile(r"disagree=1"))
        page.goto(f"{server.url}/compare?eval={demo.base_eval.id}&eval={demo.merged_eval.id}")
        screenshot(page, "compare")
    assert problems == []  # no script error, nothing the Content-Security-Policy refused
