"""The web page: a Gradio Blocks app mounted at "/" of the FastAPI server.

It calls the same ``SearchService`` as the REST API (no HTTP round trip), shows
cached thumbnails in the gallery, and turns every expected failure into a line
of text on the page: a person using it never sees a stack trace.
"""

from __future__ import annotations

import hmac
import os
from pathlib import Path
from typing import Any

import gradio as gr
from fastapi import FastAPI

from . import pagequery
from .pagequery import PageQuery
from .pageview import (
    CSS,
    SHOW_PANEL_SCRIPT,
    caption,
    details_markdown,
    refused_upload_message,
    taken_span,
    upload_script,
    upload_thumbnail,
    when,
)
from .search import NotFound, Query, QueryError, with_dates
from .service import SearchService, make_filters
from .store import Hit, StoreError
from .uidups import duplicate_view
from .uploads import (
    FileDataGuard,
    UploadError,
    enable_gradio_upload_check,
    private_upload_dir,
)

Results = list[dict[str, Any]]
"""The hits shown in the gallery, in gallery order (JSON-safe, kept in a gr.State)."""
LastQuery = PageQuery
"""The text, the upload and the example results (pagequery.py): re-run when a control changes."""
Paging = dict[str, int | None]
"""{"next": offset of the next page, or None when the last search reached the end}."""

DEFAULT_K = 24
ANY = "(any)"
"""The dropdown choice that means "no folder/label filter"."""
PAGE_CONCURRENCY = 4
"""Page events run at most this many at once, all events together (one Gradio concurrency group), so
the page never holds more than this many worker threads and the API and /health keep theirs."""


def facts_markdown(service: SearchService) -> str:
    """One line of collection facts for the page header."""
    try:
        s = service.stats()
    except StoreError as exc:
        return f"Cannot read the collection: {exc}"
    return (f"**{s.count:,}** images in `{s.collection}` · model `{s.model_id}` · "
            f"last indexed {when(s.last_indexed_at)}")


def page_facts(service: SearchService) -> tuple[str, Any, Any, Any]:
    """What the page shows on load: facts, any empty-index message, the folder and label choices."""
    try:
        s = service.stats()
        folders, labels = [ANY, *s.folders], [ANY, *s.labels]
    except StoreError:
        folders, labels = [ANY], [ANY]
    return (facts_markdown(service), empty_index_message(service) or gr.update(),
            gr.update(choices=folders), gr.update(choices=labels))


def empty_index_message(service: SearchService) -> str | None:
    """The page's message when there is nothing to search, else None (a count(*): no row scan)."""
    try:
        count = service.count()
    except StoreError as exc:
        return f"⚠️ The vector store cannot be read: {exc}"
    if count == 0:
        return "The index is empty. Add pictures with `pixsearch index FOLDER`, then reload this page."
    return None


def _to_results(hits: list[Hit], sort: str) -> Results:
    rows: Results = [{"id": h.id, "path": h.path, "score": h.score, "fields": {k: v for k, v in h.fields.items()
                                                                       if k not in ("id", "path")}} for h in hits]
    if sort == "date":
        rows.sort(key=lambda r: float(r["fields"].get("taken_at") or 0.0), reverse=True)
    return rows


def run_query(service: SearchService, query: LastQuery, k: int, min_score: float, folder: str, label: str,
              sort: str, upload_dir: Path | None = None, after: str = "",
              before: str = "") -> tuple[list[tuple[str, str]], str, Results]:
    """Gallery items, a status message and the shown results for one query (its first page).

    An image query's path is read only if it is an upload in *upload_dir* (see uploads.py);
    without one, no image query is accepted.
    """
    items, message, results, _ = run_page(service, query, k, min_score, folder, label, sort, upload_dir,
                                          after=after, before=before)
    return items, message, results


def run_page(service: SearchService, query: LastQuery, k: int, min_score: float, folder: str, label: str,
             sort: str, upload_dir: Path | None = None, shown: Results | None = None,
             offset: int = 0, after: str = "", before: str = "",
             relevant: bool = False) -> tuple[list[tuple[str, str]], str, Results, int | None]:
    """``run_query`` for the page of *k* results from *offset*, appended to the *shown* ones; also
    the offset of the page after it (None at the end: fewer than k came, or the window is spent).
    *after*/*before*: capture-date bounds as typed (ISO; blank: open), checked here like the API's.
    *relevant*: only the results the automatic relevance cut keeps (relevance.py); the status says
    how many it cut."""
    empty = empty_index_message(service)
    if empty:
        return [], empty, [], None
    limits = service.limits
    k = max(1, min(int(k), limits.max_k))  # a slider's value: clamped, not refused
    shown = list(shown or [])
    try:
        filters = with_dates(make_filters("" if folder == ANY else folder or "", "" if label == ANY else label or "",
                                          min_score if min_score and min_score > 0 else None), after, before)
        what = pagequery.describe(query) + taken_span(after, before)
        terms = pagequery.terms(query, upload_dir, limits.max_upload_bytes + 1)
        found = service.searcher.results(Query(terms, k, filters, offset, cut="auto" if relevant else "none"))
        hits = found.hits
    except (QueryError, NotFound, UploadError) as exc:
        return ([], f"⚠️ {exc}", [], None) if not shown else (_items(service, shown)[0], f"⚠️ {exc}", shown, None)
    except StoreError as exc:
        return [], f"⚠️ The vector store failed: {exc}", [], None
    following = offset + len(hits) if len(hits) == k and offset + len(hits) + k <= limits.max_window and \
        (found.relevant is None or offset + len(hits) < found.relevant) else None
    cut = f" {found.cut} cut as not relevant." if found.relevant is not None else ""
    seen = {row["id"] for row in shown}
    fresh = [row for row in _to_results(hits, "relevance") if row["id"] not in seen]
    rows = shown + fresh
    if sort == "date":
        rows.sort(key=lambda r: float(r["fields"].get("taken_at") or 0.0), reverse=True)
    items, results = _items(service, rows)
    if not results:
        hint = " Try a lower minimum score or set folder and label to (any)." if filters.expression() or \
            filters.min_score else ""
        return [], f"No results for {what}.{hint}{cut}", [], None
    missing = len(rows) - len(results)
    note = f" ({missing} not shown: their files changed since indexing)" if missing else ""
    order = "newest first" if sort == "date" else "best match first"
    more = " More results below." if following is not None else ""
    return (items, f"{len(results)} results for {what}, {order}{note}. Click one to see it large.{more}{cut}",
            results,
            following)


def _items(service: SearchService, rows: Results) -> tuple[list[tuple[str, str]], Results]:
    """Gallery items (thumbnail, caption) of *rows*, and the rows whose thumbnails exist."""
    items, results = [], []
    for row in rows:
        try:
            items.append((str(service.thumbnail_path(row["id"])), caption(row)))
            results.append(row)
        except NotFound:
            continue
    return items, results


def build_ui(service: SearchService, upload_dir: Path) -> gr.Blocks:
    """The Blocks page; its handlers close over *service*. Build it after ``private_upload_dir``:
    Gradio fixes its upload folder when the Blocks are made."""
    idle = gr.update(interactive=False)

    def search(query: LastQuery | None, k: int, min_score: float, folder: str, label: str,
               sort: str, after: str = "", before: str = "", relevant: bool = False) -> tuple[Any, ...]:
        """A new search: the first page; the selection and the large view are cleared (and hidden)."""
        if not query:
            return (gr.update(), gr.update(), gr.update(), None, "", idle, idle, _examples(query), idle,
                    {"next": None}, gr.update(visible=False))
        items, message, results, following = run_page(service, query, k, min_score, folder, label, sort,
                                                      upload_dir, after=after, before=before, relevant=relevant)
        return (items, message, results, None, "", idle, idle, _examples(query),
                gr.update(interactive=following is not None), {"next": following}, gr.update(visible=False))

    def more_results(query: LastQuery | None, k: int, min_score: float, folder: str, label: str, sort: str,
                     after: str, before: str, relevant: bool, shown: Results,
                     paging: Paging | None) -> tuple[Any, ...]:
        """The next page, appended to the gallery (the selection stays)."""
        offset = (paging or {}).get("next")
        if not query or offset is None:
            return gr.update(), gr.update(), gr.update(), idle, {"next": None}
        items, message, results, following = run_page(service, query, k, min_score, folder, label, sort,
                                                      upload_dir, shown=shown, offset=offset, after=after,
                                                      before=before, relevant=relevant)
        return items, message, results, gr.update(interactive=following is not None), {"next": following}

    def _examples(query: LastQuery | None) -> Any:
        choices = pagequery.example_choices(query)
        return gr.update(choices=choices, value=[value for _, value in choices], visible=bool(choices))

    def text_query(text: str, query: LastQuery | None) -> LastQuery:
        return pagequery.with_text(query, text)

    def image_query(path: str | None, query: LastQuery | None) -> tuple[LastQuery | None, Any]:
        """The upload joins the query; its preview is shown (when it decodes; else the search says why)."""
        if not path:
            return query, gr.update(value=None, visible=False)
        preview = upload_thumbnail(path, upload_dir, service.limits.max_upload_bytes, service.settings.max_pixels)
        return pagequery.with_image(query, path), gr.update(value=preview, visible=preview is not None)

    def clear_image(query: LastQuery | None) -> tuple[LastQuery | None, Any]:
        return (pagequery.with_image(query, None) if query else None), gr.update(value=None, visible=False)

    def refused_upload(report: str) -> Any:
        """The browser kept back a file over the upload limit (the script in UPLOAD_SCRIPT): say so."""
        return refused_upload_message(report, service.limits.max_upload_bytes) if report else gr.update()

    def example(selected: str | None, query: LastQuery | None, shown: Results, weight: float) -> LastQuery | None:
        if not selected:
            return query
        name = next((os.path.basename(r["path"]) for r in shown or [] if r["id"] == selected), selected)
        return pagequery.with_example(query, selected, weight, name)

    def similar_query(selected: str | None, query: LastQuery | None, shown: Results) -> LastQuery | None:
        return example(selected, query, shown, 1.0)

    def dissimilar_query(selected: str | None, query: LastQuery | None, shown: Results) -> LastQuery | None:
        return example(selected, query, shown, -1.0)

    def keep_examples(kept: list[str] | None, query: LastQuery | None) -> LastQuery | None:
        return pagequery.keeping(query, kept) if query else None

    def select(results: Results, evt: gr.SelectData) -> tuple[Any, ...]:
        index = evt.index if isinstance(evt.index, int) else evt.index[0]
        if not results or index >= len(results):
            return None, "", None, idle, idle, gr.update(visible=False)
        row = results[index]
        shown, live = gr.update(visible=True), gr.update(interactive=True)
        try:
            preview = service.preview(row["id"])
        except NotFound as exc:
            return None, f"⚠️ {exc}", None, live, live, shown
        return preview, details_markdown(row), row["id"], live, live, shown

    demo = gr.Blocks(title="pixsearch", analytics_enabled=False, delete_cache=(3600, 86400))
    with demo:
        last = gr.State(None)
        results = gr.State([])
        selected = gr.State(None)
        paging = gr.State({"next": None})
        with gr.Row(elem_id="header"):
            gr.Markdown("## pixsearch", elem_id="title")
            facts = gr.Markdown(elem_id="facts")
        with gr.Row():
            with gr.Column(scale=3):
                with gr.Row():
                    query = gr.Textbox(placeholder="Describe the picture, e.g. “a red dress”, and press Enter",
                                       show_label=False, scale=5, elem_id="query", autofocus=True)
                    go = gr.Button("Search", variant="primary", scale=1, min_width=100)
                with gr.Row():
                    k = gr.Slider(1, service.limits.max_k, value=DEFAULT_K, step=1, label="Results", elem_id="k")
                    min_score = gr.Slider(0.0, 1.0, value=0.0, step=0.01, label="Minimum score",
                                          elem_id="min-score")
                    sort = gr.Radio(["relevance", "date"], value="relevance", label="Sort by", elem_id="sort")
                    relevant = gr.Checkbox(False, label="Only relevant results", elem_id="relevant")
                with gr.Row():
                    folder = gr.Dropdown([ANY], value=ANY, label="Folder (and subfolders)",
                                         allow_custom_value=True, elem_id="folder")
                    label = gr.Dropdown([ANY], value=ANY, label="Label", allow_custom_value=True, elem_id="label")
                    after = gr.Textbox(label="Taken from", placeholder="YYYY-MM-DD, Enter", max_length=64,
                                       elem_id="after")
                    before = gr.Textbox(label="Taken before", placeholder="YYYY-MM-DD, Enter", max_length=64,
                                        elem_id="before")
                examples = gr.CheckboxGroup([], label="Examples in the query (untick to remove)", visible=False,
                                            elem_id="examples")
            with gr.Column(scale=1, min_width=220):
                upload = gr.File(label="Example image (adds to the text)", file_count="single",
                                 type="filepath", height=110, elem_id="upload")
                upload_preview = gr.Image(label="In the query", type="numpy", format="jpeg", interactive=False,
                                          height=150, visible=False, elem_id="upload-preview", buttons=[])
                refused = gr.Textbox(visible="hidden", elem_id="upload-refused", max_length=400)
        status = gr.Markdown("Type a few words and press Enter, or drop an example image: the two combine.",
                             elem_id="status")
        with gr.Row():
            with gr.Column(scale=3):
                gallery = gr.Gallery(label="Results", columns=5, height="auto", object_fit="cover",
                                     allow_preview=False, elem_id="results", buttons=[])
                more_button = gr.Button("More results", interactive=False, elem_id="more-results")
            with gr.Column(scale=2, visible=False, elem_id="large-panel") as panel:
                large = gr.Image(label="Selected", type="numpy", format="jpeg", interactive=False,
                                 height=460, elem_id="large", buttons=["download", "fullscreen"])
                details = gr.Markdown(elem_id="details")
                with gr.Row():
                    more = gr.Button("+ More like this", interactive=False, elem_id="more")
                    less = gr.Button("− Less like this", interactive=False, elem_id="less")

        controls = [k, min_score, folder, label, sort, after, before, relevant]
        outputs = [gallery, status, results, large, details, more, less, examples, more_button, paging, panel]
        group: dict[str, Any] = {"concurrency_id": "page", "concurrency_limit": PAGE_CONCURRENCY}
        with_preview = [last, upload_preview]
        for trigger, make, sources, made in ((query.submit, text_query, [query, last], last),
                                             (go.click, text_query, [query, last], last),
                                             (upload.upload, image_query, [upload, last], with_preview),
                                             (more.click, similar_query, [selected, last, results], last),
                                             (less.click, dissimilar_query, [selected, last, results], last),
                                             (upload.clear, clear_image, [last], with_preview),
                                             (examples.input, keep_examples, [examples, last], last)):
            trigger(make, sources, made, **group).then(search, [last, *controls], outputs, **group)
        refused.change(refused_upload, refused, status, **group)
        for event in (k.release, min_score.release, sort.change, folder.change, label.change, after.submit,
                      before.submit, relevant.change):
            event(search, [last, *controls], outputs, **group)
        more_button.click(more_results, [last, *controls, results, paging],
                          [gallery, status, results, more_button, paging], **group)
        gallery.select(select, results, [large, details, selected, more, less, panel], **group).then(
            None, js=SHOW_PANEL_SCRIPT)
        demo.load(lambda: page_facts(service), None, [facts, status, folder, label], **group)
        duplicate_view(service, group)
    return demo


def mount_ui(app: FastAPI, service: SearchService) -> None:
    """Mount the page at "/" (after the API routes, which therefore keep precedence), walled so
    that no event can make the server read a file the client did not upload (see uploads.py)."""
    upload_dir = private_upload_dir(service.settings.cache_dir)
    demo = build_ui(service, upload_dir).queue(default_concurrency_limit=PAGE_CONCURRENCY)
    token = service.settings.api_token
    auth = None
    if token:
        def auth(_user: str, password: str) -> bool:
            return hmac.compare_digest(password.encode(), token.encode())
    gr.mount_gradio_app(app, demo, path="/", footer_links=[], run_history=False, ssr_mode=False,
                        mcp_server=False, allowed_paths=[str(service.thumbnail_dir)], auth=auth,
                        auth_message="Enter any user name and the server's API token as the password.",
                        max_file_size=service.limits.max_upload_bytes, show_error=False,
                        theme=gr.themes.Soft(), css=CSS, js=upload_script(service.limits.max_upload_bytes))
    enable_gradio_upload_check(demo)
    app.add_middleware(FileDataGuard, upload_dir=upload_dir)
