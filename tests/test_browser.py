"""End to end in a real browser: Debian's chromium, driven headless by Playwright, against `pixsearch serve`.

Needs `apt-get install -y chromium` and `pip install playwright` (never `playwright install`:
the system browser is used). Skipped, with the reason, when either is missing.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pixsearch.pageview import short_name

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
    assert captions(page)[0].startswith("1.000 · ") and captions(page)[0].endswith(short_name(photo.name))
    first.click()
    page.wait_for_selector(f"#details :text('{photo.name}')")
    page.locator("#more").click()
    status_says(page, f"results for the uploaded image {photo.name} + 1 liked image")


def score_of(page, name: str) -> float | None:
    """The score the gallery shows for the file *name*, or None when it is not shown."""
    for caption in captions(page):
        if caption.splitlines()[-1] == short_name(name):
            return float(caption.split("·")[0])
    return None


@pytest.mark.parametrize("viewport", [{"width": 1400, "height": 1000}, {"width": 390, "height": 844}],
                         ids=["desktop", "phone"])
def test_combine_text_image_examples_and_page_on(browser, site, viewport):
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    try:
        page.goto(site[0] + "/")
        page.wait_for_selector("#facts :text('images in')")
        results = page.locator("#k input[type=number]")
        results.fill("6")
        results.press("Enter")
        search(page, "a red dress")
        status_says(page, "6 results for “a red dress”, best match first")
        page.wait_for_function("document.querySelectorAll('#results img').length === 6")
        photo = sorted((site[1] / "shoes").glob("*.jpg"))[0]
        page.locator("#upload input[type=file]").set_input_files(str(photo))
        status_says(page, f"results for “a red dress” + the uploaded image {photo.name}")
        # A result as a negative example: it is listed, and its score drops (or it leaves the top results).
        page.locator("#results img").nth(1).click()
        page.wait_for_selector("#details :text('score')")
        name = page.inner_text("#details").split("·")[0].strip()
        before = score_of(page, name)
        page.locator("#less").click()
        status_says(page, "− 1 disliked image")
        page.wait_for_selector(f"#examples :text('less like {name}')")
        after = score_of(page, name)
        assert after is None or after < before - 0.05, (before, after)
        # More results appends the next page of the same ranking.
        page.locator("#more-results").click()
        page.wait_for_function("document.querySelectorAll('#results img').length === 12")
        status_says(page, "12 results for")
        shown = captions(page)
        assert len(set(shown)) == 12, shown
        page.wait_for_function("[...document.querySelectorAll('#results img')].every(i => i.complete)")
        right = page.evaluate("Math.max(...[...document.querySelectorAll('#results img')]"
                              ".map(i => i.getBoundingClientRect().right))")
        assert right <= viewport["width"], f"gallery tiles run off the screen ({right} > {viewport['width']} px)"
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"combined-{viewport['width']}.png"), full_page=True)
        # Unticking the example removes it from the query.
        page.locator("#examples input[type=checkbox]").first.uncheck()
        status_says(page, f"6 results for “a red dress” + the uploaded image {photo.name}, best")
        assert page.locator("#examples").is_hidden()
    finally:
        context.close()


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
