"""The page's "Duplicates" view: an accordion that lists duplicate groups with their evidence.

Self-contained (its own components and event), so the page layout around it can change freely.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from .duplicates import DuplicatesError, Limits, Rules, find
from .search import NotFound
from .service import SearchService

PAGE_GROUPS = 30
"""Groups one click shows."""
PAGE_IMAGES = 20_000
"""Images one click examines (as the API's bound)."""


def duplicate_view(service: SearchService, concurrency: dict[str, Any]) -> None:
    """Add the accordion to the Blocks being built: a --similar box, a button, a gallery and a summary."""
    with gr.Accordion("Duplicates", open=False, elem_id="duplicates"):
        similar = gr.Checkbox(label="also similar photos (bursts, re-framed shots)", value=False)
        find_button = gr.Button("Find duplicates", size="sm")
        summary = gr.Markdown()
        gallery = gr.Gallery(columns=6, height="auto", allow_preview=True, show_label=False)
        find_button.click(lambda wanted: find_groups(service, wanted), similar, [gallery, summary], **concurrency)


def find_groups(service: SearchService, similar: bool) -> tuple[list[tuple[str, str]], str]:
    """Gallery items (each copy's thumbnail, captioned with its group and evidence) and a summary line."""
    settings = service.settings
    rules = Rules(max_hamming=settings.dup_hamming, min_cosine=settings.dup_cosine, similar=similar,
                  similar_cosine=settings.similar_cosine)
    try:
        report = find(service.workspace.store, rules, Limits(max_images=PAGE_IMAGES, max_groups=PAGE_GROUPS))
    except DuplicatesError as exc:
        return [], str(exc)
    items = []
    for n, group in enumerate(report.groups, 1):
        for copy in group.members:
            try:
                thumb = str(service.thumbnail_path(copy.id))
            except NotFound:
                continue
            evidence = "original" if copy.kind == "original" else (
                f"{copy.kind}: {copy.hamming} bits, cos {copy.cosine:.2f}")
            items.append((thumb, f"#{n} {copy.width}x{copy.height} · {evidence}"))
    text = f"{len(report.groups)} groups among {report.examined} images"
    if report.unhashed:
        text += f"; {report.unhashed} not hashed yet (run `pixsearch index`: no re-embedding)"
    if report.truncated:
        text += "; more left out"
    return items, text
