"""What the web page is searching for: the text box, the uploaded image and the example results.

The page keeps one JSON-safe dict per browser session (a ``gr.State``, held by the server)::

    {"text": "a red dress", "image": "<upload path>" | None,
     "examples": [["<id>", 1.0, "<file name>"], ["<id>", -1.0, "<file name>"]]}

The text and the upload combine into one query; "More like this" / "Less like this" add a result
as a +1 / -1 example, shown as removable choices. The older one-kind form
``{"kind": "text" | "image" | "similar", "value": ...}`` still reads the same way.

An image path is read only through ``uploads.read_upload`` (a regular file inside the page's
private upload folder): the state names it, but only an upload can have put it there.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .search import IdTerm, ImageTerm, Term, TextTerm
from .uploads import NOT_ALLOWED, UploadError, read_upload

PageQuery = dict[str, Any]
MAX_EXAMPLES = 12
"""Examples one page query keeps (the oldest goes first); the Searcher bounds terms anyway."""


def normal(query: PageQuery | None) -> PageQuery:
    """*query* in the combined form (a legacy one-kind query converted; None: nothing yet)."""
    query = query or {}
    kind, value = query.get("kind"), query.get("value")
    if kind == "text":
        return {"text": str(value or ""), "image": None, "examples": []}
    if kind == "image":
        return {"text": "", "image": value or None, "examples": []}
    if kind == "similar":
        return {"text": "", "image": None, "examples": [[str(value), 1.0, str(value)]] if value else []}
    examples = [[str(e[0]), 1.0 if float(e[1]) >= 0 else -1.0, str(e[2]) if len(e) > 2 else str(e[0])]
                for e in query.get("examples") or []]
    return {"text": str(query.get("text") or ""), "image": query.get("image") or None, "examples": examples}


def with_text(query: PageQuery | None, text: str | None) -> PageQuery:
    return {**normal(query), "text": text or ""}


def with_image(query: PageQuery | None, path: str | None) -> PageQuery:
    return {**normal(query), "image": path or None}


def with_example(query: PageQuery | None, image_id: str | None, weight: float, name: str = "") -> PageQuery:
    """*query* plus *image_id* as a +1/-1 example (replacing its earlier sign, if any)."""
    current = normal(query)
    if not image_id:
        return current
    examples = [e for e in current["examples"] if e[0] != image_id] + [[image_id, weight, name or image_id]]
    return {**current, "examples": examples[-MAX_EXAMPLES:]}


def keeping(query: PageQuery | None, kept: list[str] | None) -> PageQuery:
    """*query* with only the examples whose choice values (see ``example_choices``) are in *kept*."""
    current = normal(query)
    wanted = set(kept or [])
    return {**current, "examples": [e for e in current["examples"] if _choice_value(e) in wanted]}


def is_empty(query: PageQuery | None) -> bool:
    current = normal(query)
    return not current["text"].strip() and not current["image"] and not current["examples"]


def terms(query: PageQuery, upload_dir: Path | None, at_most: int) -> tuple[Term, ...]:
    """The Searcher's terms: the text, the upload (read only from *upload_dir*), the examples."""
    current = normal(query)
    out: list[Term] = []
    if current["text"].strip() or not (current["image"] or current["examples"]):
        out.append(TextTerm(current["text"]))
    if current["image"]:
        if upload_dir is None:
            raise UploadError(NOT_ALLOWED)
        out.append(ImageTerm(read_upload(str(current["image"]), upload_dir, at_most), 1.0,
                             name=os.path.basename(str(current["image"]))))
    out += [IdTerm(image_id, weight) for image_id, weight, _ in current["examples"]]
    return tuple(out)


def describe(query: PageQuery) -> str:
    """The query as the status line names it ("“beach” + the uploaded image x.jpg + 1 liked image")."""
    current = normal(query)
    parts = []
    if current["text"].strip():
        parts.append(f"“{' '.join(current['text'].split())}”")
    if current["image"]:
        parts.append(f"the uploaded image {os.path.basename(str(current['image']))}")
    liked = sum(1 for e in current["examples"] if e[1] > 0)
    disliked = len(current["examples"]) - liked
    if liked == 1 and not parts and not disliked:
        return "the selected image"
    if liked:
        parts.append(f"{liked} liked image{'s' if liked > 1 else ''}")
    shown = " + ".join(parts) or "nothing"
    if disliked:
        shown += f" − {disliked} disliked image{'s' if disliked > 1 else ''}"
    return shown


def _choice_value(example: list[Any]) -> str:
    return f"{'+' if float(example[1]) > 0 else '-'}{example[0]}"


def example_choices(query: PageQuery | None) -> list[tuple[str, str]]:
    """(label, value) of each example for a checkbox group: unticking one removes it."""
    out = []
    for example in normal(query)["examples"]:
        sign = "+ more like" if float(example[1]) > 0 else "− less like"
        out.append((f"{sign} {example[2]}", _choice_value(example)))
    return out
