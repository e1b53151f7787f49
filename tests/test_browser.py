"""End to end in a real browser: Debian's chromium, driven headless by Playwright, against `pixsearch serve`.

Needs `apt-get install -y chromium` and `pip install playwright` (never `playwright install`:
the system browser is used). Skipped, with the reason, when either is missing.

Screenshots (1366x900 desktop, 390x844 phone) go to the test's temporary folder and are copied to
``$PIXSEARCH_TEST_SCREENS`` (default ``test-artifacts/``) to be looked at.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from pixsearch.pageview import short_name

from .conftest import ROOT
from .serving import SAMPLE_COUNT, build_index, running_server
from .test_dates import _with_app1
from .test_exif import OFFSET_ORIGINAL, ORIGINAL, tiff_block

CHROMIUM = Path(os.environ.get("PIXSEARCH_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENS = Path(os.environ.get("PIXSEARCH_TEST_SCREENS", ROOT / "test-artifacts"))
TIMEOUT_MS = 30_000
DESKTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}
SHOE_DAY, HAT_DAY = "2019-07-14", "2022-03-05"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"no browser at {CHROMIUM}: apt-get install -y chromium"),
]


def date_some_photos(samples: Path) -> None:
    """Real EXIF capture dates in the copies of the shoe photos (with an offset) and of the hats (the
    camera's wall clock); the other photos keep their file time (today's checkout)."""
    for folder, tags in (("shoes", {ORIGINAL: b"2019:07:14 10:30:00\x00", OFFSET_ORIGINAL: b"+02:00\x00"}),
                         ("hat", {ORIGINAL: b"2022:03:05 16:00:00\x00"})):
        for photo in (samples / "clothing" / folder).glob("*.jpg"):
            photo.write_bytes(_with_app1(photo.read_bytes(), tiff_block({}, "<", tags)))


@pytest.fixture(scope="module")
def site(tmp_path_factory, tiny_model):
    root = tmp_path_factory.mktemp("browser")
    settings = build_index(root / "lib", tiny_model, in_process=False, prepare=date_some_photos)
    with running_server(settings, root / "serve.log") as url:
        yield url, root / "lib" / "samples" / "clothing"


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    """Where screenshots go; at the end they are copied to SCREENS, a stable place to look at them."""
    folder = tmp_path_factory.mktemp("screens")
    yield folder
    SCREENS.mkdir(parents=True, exist_ok=True)
    for png in folder.glob("*.png"):
        shutil.copy2(png, SCREENS / png.name)


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the Python package)")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, site):
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(site[0] + "/")
    page.wait_for_selector("#facts :text('images in')")
    yield page
    context.close()


def status_says(page, text: str) -> None:
    page.locator("#status").filter(has_text=text).wait_for()


def search(page, words: str) -> None:
    box = page.locator("#query textarea, #query input").first
    box.fill(words)
    box.press("Enter")


def captions(page) -> list[str]:
    return page.locator("#results .caption-label").all_inner_texts()


def thumbnails_loaded(page, count: int) -> None:
    """*count* tiles, each image decoded (lazy ones below the fold are scrolled to first)."""
    page.wait_for_function(f"document.querySelectorAll('#results img').length === {count}")
    page.locator("#results img").last.scroll_into_view_if_needed()
    page.wait_for_function("[...document.querySelectorAll('#results img')].every(i => i.complete && i.naturalWidth)")


def cut_off(page, selector: str) -> list[str]:
    """Texts of the elements matching *selector* that do not fit their box (cut, or past the screen)."""
    return page.evaluate("""s => [...document.querySelectorAll(s)]
        .filter(e => e.scrollWidth > e.clientWidth + 1 || e.getBoundingClientRect().right > innerWidth)
        .map(e => e.innerText)""", selector)


def assert_fits_the_screen(page) -> None:
    """No horizontal scrolling, the header whole, the upload label whole, no gallery scrollbar."""
    width = page.evaluate("[document.scrollingElement.scrollWidth, innerWidth]")
    assert width[0] <= width[1], f"the page scrolls sideways: {width[0]} px wide in a {width[1]} px window"
    assert not cut_off(page, "#facts p, #facts code"), cut_off(page, "#facts p, #facts code")
    assert not cut_off(page, "#upload [data-testid=block-label]"), "the upload's label is cut"
    inner = page.evaluate("(e => e && e.scrollHeight - e.clientHeight)(document.querySelector('#results .grid-wrap'))")
    assert not inner or inner <= 1, f"the gallery scrolls inside itself ({inner} px hidden)"


def shoot(page, shots: Path, name: str) -> None:
    page.screenshot(path=str(shots / f"{name}.png"), full_page=True)


def test_type_a_query_and_see_the_gallery_fill(page, shots):
    assert f"{SAMPLE_COUNT} images" in page.inner_text("#facts")
    results = page.locator("#k input[type=number]")
    results.fill("7")
    results.press("Enter")
    search(page, "a red dress")
    status_says(page, "7 results for “a red dress”")
    assert page.locator("#large-panel").is_hidden(), "the empty Selected panel is shown before a choice"
    thumbnails_loaded(page, 7)
    assert not cut_off(page, "#results .caption-label"), cut_off(page, "#results .caption-label")
    assert_fits_the_screen(page)
    page.locator("#results img").first.click()
    page.wait_for_selector("#details :text('score')")
    page.wait_for_selector("#large img")
    assert "/clothing/" in page.inner_text("#details")
    shoot(page, shots, "desktop-selected")


def test_upload_an_image_and_see_itself_first(page, site):
    photo = sorted((site[1] / "shoes").glob("*.jpg"))[0]
    page.locator("#upload input[type=file]").set_input_files(str(photo))
    status_says(page, f"results for the uploaded image {photo.name}")
    page.wait_for_selector("#upload-preview img")
    first = page.locator("#results img").first
    first.wait_for()
    assert captions(page)[0] == f"1.000 · {SHOE_DAY}\n{short_name(photo.name)}"
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


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_combine_text_image_examples_and_page_on(browser, site, shots, viewport):
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    try:
        page.goto(site[0] + "/")
        page.wait_for_selector("#facts :text('images in')")
        assert_fits_the_screen(page)
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
        page.wait_for_selector("#upload-preview img")
        page.locator("#results img").nth(1).click()
        page.wait_for_selector("#details :text('score')")
        top = page.evaluate("document.getElementById('large-panel').getBoundingClientRect().top")
        # Scrolled into view, its top lands on the viewport's edge give or take a device pixel's fraction
        # (-0.3125 px seen on a phone-sized page): in sight is within a pixel of the edge or below it.
        assert -1 <= top <= viewport["height"] / 4, f"the large view is out of sight after a click (top {top} px)"
        name = page.inner_text("#details").split("·")[0].strip()
        before = score_of(page, name)
        page.locator("#less").click()
        status_says(page, "− 1 disliked image")
        page.wait_for_selector(f"#examples :text('less like {name}')")
        after = score_of(page, name)
        assert after is None or after < before - 0.05, (before, after)
        assert page.locator("#query textarea, #query input").first.input_value() == "a red dress"
        assert page.locator("#large-panel").is_hidden(), "a new search keeps showing the old selection"
        # More results appends the next page of the same ranking.
        page.locator("#more-results").click()
        status_says(page, "12 results for")
        thumbnails_loaded(page, 12)
        shown = captions(page)
        assert len(set(shown)) == 12, shown
        assert not cut_off(page, "#results .caption-label"), cut_off(page, "#results .caption-label")
        right = page.evaluate("Math.max(...[...document.querySelectorAll('#results img')]"
                              ".map(i => i.getBoundingClientRect().right))")
        assert right <= viewport["width"], f"gallery tiles run off the screen ({right} > {viewport['width']} px)"
        assert_fits_the_screen(page)
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(shots / f"combined-{viewport['width']}x{viewport['height']}.png"))
        shoot(page, shots, f"combined-{viewport['width']}-full")
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


def test_a_date_filter_typed_into_the_date_boxes(page, shots):
    search(page, "black leather shoes")
    status_says(page, "results for “black leather shoes”")
    before = page.locator("#before input, #before textarea").first
    before.fill("2020-01-01")
    before.press("Enter")
    status_says(page, "2 results for “black leather shoes” taken before 2020-01-01")
    assert [c.splitlines()[0].split(" · ")[1] for c in captions(page)] == [SHOE_DAY, SHOE_DAY]
    after = page.locator("#after input, #after textarea").first
    after.fill("2020-01-01")
    before.fill("2023-01-01")
    before.press("Enter")
    status_says(page, "2 results for “black leather shoes” taken from 2020-01-01, before 2023-01-01")
    page.locator("#results img").first.click()
    page.wait_for_selector("#details :text('taken 2022-03-05T16:00:00 (EXIF, camera')")
    shoot(page, shots, "desktop-dates")
    after.fill("2022-13-01")
    after.press("Enter")
    status_says(page, "is not an ISO date")


def test_an_oversized_upload_is_named_in_the_status_line(page, site, tmp_path):
    search(page, "a red dress")
    status_says(page, "results for “a red dress”")
    big = tmp_path / "huge.jpg"
    photo = sorted((site[1] / "shoes").glob("*.jpg"))[0]
    big.write_bytes(photo.read_bytes() + bytes(20 * 1024 * 1024))
    page.locator("#upload input[type=file]").set_input_files(str(big))
    status_says(page, "huge.jpg (20.0 MiB) is larger than the page's upload limit of 20 MiB")
    toasts = page.evaluate("[...document.querySelectorAll('.toast-wrap')].map(t => t.innerText).join(' ')")
    assert "exceed" not in toasts, f"Gradio's own toast is shown as well: {toasts!r}"
    assert page.locator("#results img").count() > 0, "the results before the refused upload are gone"
    page.locator("#upload input[type=file]").set_input_files(str(photo))
    status_says(page, f"results for “a red dress” + the uploaded image {photo.name}")


def test_only_relevant_results_says_how_many_were_cut(page):
    search(page, "black leather shoes")
    status_says(page, f"{SAMPLE_COUNT} results for “black leather shoes”")
    page.locator("#relevant input[type=checkbox]").check()
    status_says(page, "cut as not relevant")
    found = re.search(r"(\d+) results? for .* (\d+) cut as not relevant", page.inner_text("#status"))
    assert found, page.inner_text("#status")
    kept, cut = int(found[1]), int(found[2])
    assert kept + cut == SAMPLE_COUNT and cut > 0, (kept, cut)
    page.wait_for_function(f"document.querySelectorAll('#results img').length === {kept}")


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
