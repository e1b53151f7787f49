"""How the web page looks: its CSS, the gallery captions and the large view's text (pure; no Gradio).

Kept apart from ui.py (the events) so the layout can change without touching the handlers. The
page was tried as a new user at 1366x900 and on a 390 px phone; each rule below names what it fixes.
"""

from __future__ import annotations

import os
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from .exif import iso
from .images import ImageError, decode_image, shrink
from .uploads import UploadError, read_upload

NAME_CHARS = 18
"""A caption's file name is cut in the middle past this many characters (tiles are ~100-200 px wide)."""
UPLOAD_PREVIEW_SIDE = 320
"""The long side of the upload's preview: it only has to show which picture is in the query."""
TAKEN_FROM = {"exif": "EXIF", "exif-local": "EXIF, camera's local time", "mtime": "file time"}

CSS = """
#status p { font-size: 1.05rem; margin: 0.2rem 0; }
#facts p { color: var(--body-text-color-subdued); margin: 0; }
#facts code { overflow-wrap: anywhere; white-space: normal; }
#header { flex-wrap: wrap; align-items: baseline; gap: 0 1rem; }
#header > * { min-width: 0; }
#title { flex: 0 0 auto !important; }
#title h2 { margin: 0; }
#details p { margin: 0.1rem 0; overflow-wrap: anywhere; }
footer { display: none !important; }
/* The gallery grows with its rows (the page scrolls, not the gallery) and fills its width with tiles
   wide enough for a whole caption (two columns on a phone). */
#results .grid-wrap { overflow-y: visible !important; max-height: none !important; }
#results .grid-container { grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)) !important; }
/* Captions: score and capture date, then the file name, on two lines, never cut to "0.298 · 6b7e...". */
#results .caption-label { white-space: pre; max-width: calc(100% - 2 * var(--block-label-margin));
  left: var(--block-label-margin); line-height: 1.25; font-size: 0.72rem; opacity: 0.92; }
/* The upload's label stays whole beside Gradio's clear button. */
#upload label, #upload [data-testid="block-label"] { max-width: calc(100% - 2.5rem); white-space: normal; }
#upload-preview img { object-fit: contain; }
#large-panel { position: sticky; top: 0.5rem; align-self: flex-start; }
.hidden-input { display: none !important; }
@media (max-width: 640px) {
  #facts { flex-basis: 100% !important; }
  #large-panel { position: static; }
}
"""

SHOW_PANEL_SCRIPT = """() => { const panel = document.getElementById('large-panel');
  const box = panel && panel.getBoundingClientRect();
  if (box && box.bottom > innerHeight && box.top > innerHeight / 4) panel.scrollIntoView({block: 'start'});
}"""
"""After a click on a result: scroll the large view, its details and its buttons into sight when they
run past the window's bottom (on a phone the view lies under the gallery; on a desktop it starts
beside the gallery's first row and is sticky from then on)."""


def when(timestamp: float | None) -> str:
    return datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M") if timestamp else "never"


def short_name(name: str, at_most: int = NAME_CHARS) -> str:
    """*name* cut in the middle ("ebb7b9bb-…7456f40.jpg"): its start and its end (the extension,
    the distinctive tail of a camera number) both stay readable."""
    if len(name) <= at_most:
        return name
    tail = (at_most - 1) // 2
    return f"{name[:at_most - 1 - tail]}…{name[-tail:]}"


def taken_day(fields: dict[str, Any]) -> str:
    """The capture day as the results show it ("2024-05-01"), or "" when the row has none."""
    taken = fields.get("taken_at")
    if taken is None:
        return ""
    return iso(float(taken), str(fields.get("taken_from", "")))[:10]


def taken_span(after: str, before: str) -> str:
    """The date filter as the status line names it (" taken from 2019-01-01, before 2020-01-01")."""
    parts = [f"from {after.strip()}" if after and after.strip() else "",
             f"before {before.strip()}" if before and before.strip() else ""]
    shown = ", ".join(part for part in parts if part)
    return f" taken {shown}" if shown else ""


def caption(hit: dict[str, Any]) -> str:
    """A gallery caption: "0.862 · 2024-05-01" then the (shortened) file name on a second line."""
    day = taken_day(hit.get("fields") or {})
    first = f"{hit['score']:.3f} · {day}" if day else f"{hit['score']:.3f}"
    return f"{first}\n{short_name(os.path.basename(hit['path']))}"


def details_markdown(row: dict[str, Any]) -> str:
    """Path and stored fields of one result, for the large view."""
    f = row["fields"]
    lines = [f"**{os.path.basename(row['path'])}** · score {row['score']:.4f}", f"`{row['path']}`"]
    if f.get("label"):
        lines.append(f"label: **{f['label']}**")
    if f.get("width"):
        lines.append(f"{f['width']} × {f['height']} px · {int(f.get('size') or 0) / 1024:,.0f} KiB")
    if f.get("taken_at") is not None:
        lines.append(f"taken {iso(float(f['taken_at']), str(f.get('taken_from', '')))} "
                     f"({TAKEN_FROM.get(str(f.get('taken_from')), 'file time')})")
    if f.get("ocr_text"):
        lines.append("text in the image: " + highlight_text(str(f["ocr_text"]), f.get("ocr_matched") or []))
    lines.append(f"modified {when(f.get('mtime'))} · indexed {when(f.get('indexed_at'))} · id `{row['id']}`")
    return "\n\n".join(lines)


def highlight_text(text: str, matched: list[str]) -> str:
    """OCR text as Markdown, Markdown characters escaped, the query words it matched in **bold**."""
    wanted = {word.lower() for word in matched}
    parts = re.split(r"([^\W_]+)", " / ".join(line for line in text.splitlines() if line.strip())[:600])
    escaped = [re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~])", r"\\\1", part) for part in parts]
    return "".join(f"**{part}**" if part.lower() in wanted else part for part in escaped)


def upload_thumbnail(path: str, upload_dir: Path, limit_bytes: int, max_pixels: int) -> np.ndarray | None:
    """A small RGB preview of the uploaded image, read through the upload walls (uploads.py) and
    decoded by images.py like every other image; None when it cannot be shown (the search that
    follows says why in the status line)."""
    try:
        data = read_upload(path, upload_dir, limit_bytes + 1)
        if len(data) > limit_bytes:
            return None
        rgb = decode_image(data, min_side=UPLOAD_PREVIEW_SIDE // 2, max_pixels=max_pixels).rgb
    except (UploadError, ImageError):
        return None
    return shrink(rgb, UPLOAD_PREVIEW_SIDE)


def refused_upload_message(report: str, limit_bytes: int) -> str:
    """The status line for an upload the browser refused before sending it (too large).

    *report* is what the page's script wrote: ``"<counter> <size in bytes> <file name>"`` (the
    counter makes a second refusal of the same file a change too). It comes from the client, so
    it is only ever shown back, shortened and stripped of Markdown."""
    _, _, rest = report.strip().partition(" ")
    size_text, _, name = rest.partition(" ")
    size = int(size_text) if size_text.isdigit() else 0
    shown = short_name("".join(c for c in name if c.isprintable() and c not in "`*_[]<>\\#|"), 60) or "the file"
    limit = f"{limit_bytes / 2**20:,.0f} MiB"
    what = f"{shown} ({size / 2**20:,.1f} MiB)" if size else shown
    return (f"⚠️ {what} is larger than the page's upload limit of {limit}: it was not sent. "
            "Pick a smaller image, or resize it, and drop it again.")


def upload_script(limit_bytes: int) -> str:
    """The page's one script: a file over the upload limit is kept back before Gradio sees it (Gradio
    would only show a toast and leave the status line as it was), and reported to the server through
    the hidden ``#upload-refused`` box, whose change event writes the status line (``refused_upload``).
    The server's own limit on uploads (``max_file_size``) stays: this only speaks first."""
    return """() => {
  const limit = LIMIT; let count = 0;
  const tooBig = (files) => [...(files || [])].find((file) => file.size > limit);
  const tell = (file) => {
    const box = document.querySelector('#upload-refused textarea, #upload-refused input');
    if (!box) return false;
    box.value = `${++count} ${file.size} ${file.name}`;
    box.dispatchEvent(new Event('input', {bubbles: true}));
    return true;
  };
  document.addEventListener('change', (event) => {
    const input = event.target;
    if (!(input instanceof HTMLInputElement) || input.type !== 'file' || !input.closest('#upload')) return;
    const big = tooBig(input.files);
    if (big && tell(big)) { event.stopImmediatePropagation(); input.value = ''; }
  }, true);
  document.addEventListener('drop', (event) => {
    if (!(event.target instanceof Element) || !event.target.closest('#upload')) return;
    const big = tooBig(event.dataTransfer && event.dataTransfer.files);
    if (big && tell(big)) { event.preventDefault(); event.stopImmediatePropagation(); }
  }, true);
}""".replace("LIMIT", str(int(limit_bytes)))
