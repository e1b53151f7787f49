"""The web page: a Gradio Blocks app mounted at "/" of the FastAPI server.

It calls the same ``SearchService`` as the REST API (no HTTP round trip), shows
cached thumbnails in the gallery, and turns every expected failure into a line
of text on the page: a person using it never sees a stack trace.
"""

from __future__ import annotations

import hmac
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import gradio as gr
from fastapi import FastAPI

from .search import IdTerm, ImageTerm, NotFound, Query, QueryError, Term, TextTerm
from .service import SearchService, make_filters
from .store import Hit, StoreError
from .uploads import (
    NOT_ALLOWED,
    FileDataGuard,
    UploadError,
    enable_gradio_upload_check,
    private_upload_dir,
    read_upload,
)

Results = list[dict[str, Any]]
"""The hits shown in the gallery, in gallery order (JSON-safe, kept in a gr.State)."""
LastQuery = dict[str, str]
"""{"kind": "text" | "image" | "similar", "value": ...}: re-run when a control changes."""

DEFAULT_K = 24
ANY = "(any)"
"""The dropdown choice that means "no folder/label filter"."""
PAGE_CONCURRENCY = 4
"""Page events run at most this many at once, all events together (one Gradio concurrency group), so
the page never holds more than this many worker threads and the API and /health keep theirs."""
CSS = """
#status p { font-size: 1.05rem; margin: 0.2rem 0; }
#facts p { color: var(--body-text-color-subdued); margin: 0; }
#details p { margin: 0.1rem 0; word-break: break-all; }
footer { display: none !important; }
"""


def _when(timestamp: float | None) -> str:
    return datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M") if timestamp else "never"


def facts_markdown(service: SearchService) -> str:
    """One line of collection facts for the page header."""
    try:
        s = service.stats()
    except StoreError as exc:
        return f"Cannot read the collection: {exc}"
    return (f"**{s.count:,}** images in `{s.collection}` · model `{s.model_id}` · "
            f"last indexed {_when(s.last_indexed_at)}")


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


def _caption(hit: dict[str, Any]) -> str:
    return f"{hit['score']:.3f} · {os.path.basename(hit['path'])}"


def _to_results(hits: list[Hit], sort: str) -> Results:
    rows: Results = [{"id": h.id, "path": h.path, "score": h.score, "fields": {k: v for k, v in h.fields.items()
                                                                       if k not in ("id", "path")}} for h in hits]
    if sort == "date":
        rows.sort(key=lambda r: float(r["fields"].get("mtime") or 0.0), reverse=True)
    return rows


def run_query(service: SearchService, query: LastQuery, k: int, min_score: float, folder: str, label: str,
              sort: str, upload_dir: Path | None = None) -> tuple[list[tuple[str, str]], str, Results]:
    """Gallery items, a status message and the shown results for one query.

    An image query's path is read only if it is an upload in *upload_dir* (see uploads.py);
    without one, no image query is accepted.
    """
    empty = empty_index_message(service)
    if empty:
        return [], empty, []
    k = max(1, min(int(k), service.limits.max_k))  # a slider's value: clamped, not refused
    try:
        filters = make_filters("" if folder == ANY else folder or "", "" if label == ANY else label or "",
                               min_score if min_score and min_score > 0 else None)
        term: Term
        if query["kind"] == "text":
            term, what = TextTerm(query["value"]), f"“{' '.join(query['value'].split())}”"
        elif query["kind"] == "image":
            if upload_dir is None:
                raise UploadError(NOT_ALLOWED)
            term = ImageTerm(read_upload(query["value"], upload_dir, service.limits.max_upload_bytes + 1))
            what = f"the uploaded image {os.path.basename(query['value'])}"
        else:
            term, what = IdTerm(query["value"]), "the selected image"
        hits = service.searcher.search(Query.of(term, k, filters))
    except (QueryError, NotFound, UploadError) as exc:
        return [], f"⚠️ {exc}", []
    except StoreError as exc:
        return [], f"⚠️ The vector store failed: {exc}", []
    results, items = [], []
    for row in _to_results(hits, sort):
        try:
            items.append((str(service.thumbnail_path(row["id"])), _caption(row)))
            results.append(row)
        except NotFound:
            continue
    if not results:
        hint = " Try a lower minimum score or set folder and label to (any)." if filters.expression() or \
            filters.min_score else ""
        return [], f"No results for {what}.{hint}", []
    missing = len(hits) - len(results)
    note = f" ({missing} not shown: their files changed since indexing)" if missing else ""
    order = "newest first" if sort == "date" else "best match first"
    return items, f"{len(results)} results for {what}, {order}{note}. Click one to see it large.", results


def details_markdown(row: dict[str, Any]) -> str:
    """Path and stored fields of one result, for the large view."""
    f = row["fields"]
    lines = [f"**{os.path.basename(row['path'])}** · score {row['score']:.4f}", f"`{row['path']}`"]
    if f.get("label"):
        lines.append(f"label: **{f['label']}**")
    if f.get("width"):
        lines.append(f"{f['width']} × {f['height']} px · {int(f.get('size') or 0) / 1024:,.0f} KiB")
    lines.append(f"modified {_when(f.get('mtime'))} · indexed {_when(f.get('indexed_at'))} · id `{row['id']}`")
    return "\n\n".join(lines)


def build_ui(service: SearchService, upload_dir: Path) -> gr.Blocks:
    """The Blocks page; its handlers close over *service*. Build it after ``private_upload_dir``:
    Gradio fixes its upload folder when the Blocks are made."""

    def search(query: LastQuery | None, k: int, min_score: float, folder: str, label: str,
               sort: str) -> tuple[Any, ...]:
        if not query:
            return gr.update(), gr.update(), gr.update(), None, "", gr.update(interactive=False)
        items, message, results = run_query(service, query, k, min_score, folder, label, sort, upload_dir)
        return items, message, results, None, "", gr.update(interactive=False)

    def text_query(text: str) -> LastQuery:
        return {"kind": "text", "value": text or ""}

    def image_query(path: str | None) -> LastQuery | None:
        return {"kind": "image", "value": path} if path else None

    def similar_query(selected: str | None) -> LastQuery | None:
        return {"kind": "similar", "value": selected} if selected else None

    def select(results: Results, evt: gr.SelectData) -> tuple[Any, ...]:
        index = evt.index if isinstance(evt.index, int) else evt.index[0]
        if not results or index >= len(results):
            return None, "", None, gr.update(interactive=False)
        row = results[index]
        try:
            preview = service.preview(row["id"])
        except NotFound as exc:
            return None, f"⚠️ {exc}", None, gr.update(interactive=True)
        return preview, details_markdown(row), row["id"], gr.update(interactive=True)

    demo = gr.Blocks(title="pixsearch", analytics_enabled=False, delete_cache=(3600, 86400))
    with demo:
        last = gr.State(None)
        results = gr.State([])
        selected = gr.State(None)
        with gr.Row(equal_height=True):
            gr.Markdown("## pixsearch")
            facts = gr.Markdown(elem_id="facts")
        with gr.Row():
            with gr.Column(scale=3):
                with gr.Row():
                    query = gr.Textbox(placeholder="Describe the picture, e.g. “a red dress”, and press Enter",
                                       show_label=False, scale=5, elem_id="query", autofocus=True)
                    go = gr.Button("Search", variant="primary", scale=1, min_width=100)
                with gr.Row():
                    k = gr.Slider(1, service.limits.max_k, value=DEFAULT_K, step=1, label="Results", elem_id="k")
                    min_score = gr.Slider(0.0, 1.0, value=0.0, step=0.01, label="Minimum score (0 shows all)")
                    sort = gr.Radio(["relevance", "date"], value="relevance", label="Sort by")
                with gr.Row():
                    folder = gr.Dropdown([ANY], value=ANY, label="Folder (includes subfolders)",
                                         allow_custom_value=True)
                    label = gr.Dropdown([ANY], value=ANY, label="Label", allow_custom_value=True)
            upload = gr.File(label="Search by example: drop an image", file_count="single", type="filepath",
                             height=230, scale=1, min_width=220, elem_id="upload")
        status = gr.Markdown("Type a few words and press Enter, or drop an example image.", elem_id="status")
        with gr.Row():
            gallery = gr.Gallery(label="Results", columns=5, height="auto", object_fit="cover",
                                 allow_preview=False, scale=3, elem_id="results", buttons=[])
            with gr.Column(scale=2):
                large = gr.Image(label="Selected", type="numpy", format="jpeg", interactive=False,
                                 height=460, elem_id="large", buttons=["download", "fullscreen"])
                details = gr.Markdown(elem_id="details")
                more = gr.Button("More like this", interactive=False, elem_id="more")

        controls = [k, min_score, folder, label, sort]
        outputs = [gallery, status, results, large, details, more]
        group: dict[str, Any] = {"concurrency_id": "page", "concurrency_limit": PAGE_CONCURRENCY}
        for trigger, make, source in ((query.submit, text_query, query), (go.click, text_query, query),
                                      (upload.upload, image_query, upload), (more.click, similar_query, selected)):
            trigger(make, source, last, **group).then(search, [last, *controls], outputs, **group)
        for event in (k.release, min_score.release, sort.change, folder.change, label.change):
            event(search, [last, *controls], outputs, **group)
        gallery.select(select, results, [large, details, selected, more], **group)
        demo.load(lambda: page_facts(service), None, [facts, status, folder, label], **group)
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
                        theme=gr.themes.Soft(), css=CSS)
    enable_gradio_upload_check(demo)
    app.add_middleware(FileDataGuard, upload_dir=upload_dir)
