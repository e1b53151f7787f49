"""End to end in a real browser: Debian's chromium, driven headless by Playwright, against `pixsearch serve`.

Needs `apt-get install -y chromium` and `pip install playwright` (never `playwright install`:
the system browser is used). Skipped, with the reason, when either is missing.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .conftest import ROOT
from .serving import SAMPLE_COUNT, build_index, running_server

CHROMIUM = Path(os.environ.get("PIXSEARCH_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = ROOT / "test-artifacts"
TIMEOUT_MS = 30_000

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"no browser at {CHROMIUM}: apt-get install -y chromium"),
]


@pytest.fixture(scope="module")
def site(tmp_path_factory, tiny_model):
    root = tmp_path_factory.mktemp("browser")
    settings = build_index(root / "lib", tiny_model, in_process=False)
    with running_server(settings, root / "serve.log") as url:
        yield url, root / "lib" / "samples" / "clothing"


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the Python package)")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, site):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(site[0] + "/")
    page.wait_for_selector("#facts :text('images in')")
    yield page
    context.close()


def status_says(page, text: str) -> None:
    page.wait_for_selector(f"#status :text('{text}')")


def search(page, words: str) -> None:
    box = page.locator("#query textarea, #query input").first
    box.fill(words)
    box.press("Enter")


def captions(page) -> list[str]:
    return page.locator("#results .caption-label, #results figcaption, #results [class*=caption]").all_inner_texts()


def test_type_a_query_and_see_the_gallery_fill(page):
    assert f"{SAMPLE_COUNT} images" in page.inner_text("#facts")
    results = page.locator("#k input[type=number]")
    results.fill("7")
    results.press("Enter")
    search(page, "a red dress")
    status_says(page, "7 results for “a red dress”")
    page.wait_for_function("document.querySelectorAll('#results img').length === 7")
    page.locator("#results img").first.click()
    page.wait_for_selector("#details :text('score')")
    page.wait_for_selector("#large img")
    assert "/clothing/" in page.inner_text("#details")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "serve-page.png"), full_page=True)


def test_upload_an_image_and_see_itself_first(page, site):
    photo = sorted((site[1] / "shoes").glob("*.jpg"))[0]
    page.locator("#upload input[type=file]").set_input_files(str(photo))
    status_says(page, f"results for the uploaded image {photo.name}")
    first = page.locator("#results img").first
    first.wait_for()
    assert f"1.000 · {photo.name}" in page.inner_text("#results")
    first.click()
    page.wait_for_selector(f"#details :text('{photo.name}')")
    page.locator("#more").click()
    status_says(page, "results for the selected image")


def test_bad_upload_and_too_long_query_show_a_message(page, tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_text("these are notes, not a picture")
    page.locator("#upload input[type=file]").set_input_files(str(bad))
    status_says(page, "not a usable image")
    assert page.locator("#results img").count() == 0
    search(page, "dress " * 300)
    status_says(page, "query too long")


def test_api_docs_render_offline_from_this_server_alone(browser, site):
    """Swagger UI at /docs draws the API with every request answered by this server (no CDN)."""
    url = site[0]
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    requested: list[str] = []
    failed: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.on("requestfailed", lambda request: failed.append(request.url))
    try:
        page.goto(url + "/docs")
        page.wait_for_selector(".swagger-ui .info .title:has-text('pixsearch')")
        page.wait_for_selector(".opblock-summary-path:has-text('/api/search')")
    finally:
        context.close()
    assert requested and all(r.startswith(url + "/") for r in requested), requested
    assert not failed, failed
