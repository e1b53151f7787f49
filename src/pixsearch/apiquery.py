"""The JSON form of a query for ``POST /api/search``: a list of weighted terms, paging and filters.

The models only describe shapes (they are in the OpenAPI schema, with examples); every bound that
depends on the server (k, offset + k, the number of terms, the upload size) is the Searcher's, from
``search.Limits``, so the API refuses exactly what the CLI and the page refuse (400, or 413 for an
image over the upload limit).
"""

from __future__ import annotations

import base64
import binascii
import math
from typing import Annotated, Any, Literal

from fastapi.openapi.models import Example
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from .search import ID_PATTERN, IdTerm, ImageTerm, Limits, QueryError, Term, TextTerm, UploadTooLarge

WEIGHT = Field(1.0, ge=-100.0, le=100.0, allow_inf_nan=False,
               description="How much this term counts; negative pushes results away from it.")


class TextTermIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(..., min_length=1, description="Words describing the picture (at most "
                      f"{Limits.max_query_chars} characters; the body as a whole is bounded too).")
    weight: float = WEIGHT


class ImageTermIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    image: str = Field(..., min_length=1, description="An example image file (JPEG, PNG, ...), base64-encoded. "
                       "All images of one request together are bounded by the upload limit.")
    weight: float = WEIGHT


class IdTermIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    image_id: str = Field(..., pattern=ID_PATTERN.pattern, description="An indexed image's id, from a search result.")
    weight: float = WEIGHT


TERM_KINDS = ("text", "image", "image_id")


def term_kind(value: Any) -> str | None:
    """Which form a term takes, from the one kind key it carries, so a bad text term is told about
    its text and weight, not also about the fields of the two forms it is not."""
    if isinstance(value, dict):
        kinds = [kind for kind in TERM_KINDS if kind in value]
        return kinds[0] if len(kinds) == 1 else None
    kinds_of_models: dict[type[BaseModel], str] = {TextTermIn: "text", ImageTermIn: "image", IdTermIn: "image_id"}
    return kinds_of_models.get(type(value))


TermIn = Annotated[
    Annotated[TextTermIn, Tag("text")] | Annotated[ImageTermIn, Tag("image")] | Annotated[IdTermIn, Tag("image_id")],
    Discriminator(term_kind, custom_error_type="term_kind",
                  custom_error_message="a term has exactly one of: text, image, image_id"),
]

CutName = Literal["none", "auto", "mixture", "otsu", "gap"]
"""relevance.CUTS as a type (tests/test_relevance.py keeps them equal)."""
CUT_HELP = ("Relevance cut: auto keeps only the results that stand out from this query's own score "
            "distribution, before paging (the response says how many it cut); mixture, otsu or gap name a "
            "method; none keeps all (only min_score applies).")

EXAMPLES: dict[str, Example] = {
    "text": {"summary": "Words only", "value": {"terms": [{"text": "a red dress"}], "k": 10}},
    "combined": {"summary": "Words, minus words, plus an indexed image", "value": {
        "terms": [{"text": "beach"}, {"text": "people", "weight": -1.0},
                  {"image_id": "0123456789abcdef", "weight": 0.5}], "k": 10, "min_score": 0.1}},
    "page2": {"summary": "The second page of 10", "value": {"terms": [{"text": "a hat"}], "k": 10, "offset": 10}},
}


class SearchBody(BaseModel):
    """A query: the weighted sum of its terms' unit vectors, scaled back to unit length."""

    model_config = ConfigDict(extra="forbid")
    terms: list[TermIn] = Field(..., min_length=1, description="Texts, base64 images and indexed ids, each with a "
                                "weight (default 1); the server bounds how many.")
    k: int = Field(10, ge=1, description="Number of results (at most the server's max, as GET /api/search says).")
    offset: int = Field(0, ge=0, description="Results to skip: page n (from 0) of size k is offset n*k; "
                        "offset + k is bounded by the server. Pages continue each other exactly.")
    min_score: float | None = Field(None, ge=-1.0, le=1.0, description="Hide results scoring below this.")
    folder: str = Field("", max_length=4096, description="Only images in or under this absolute folder.")
    label: str = Field("", max_length=512, description="Only images with this label.")
    after: str | None = Field(None, max_length=64, description="Only images taken at or after this ISO date or "
                              "date-time (2024-05-01, 2024-05-01T12:00+02:00; no offset: UTC).")
    before: str | None = Field(None, max_length=64, description="Only images taken before this ISO date or "
                               "date-time (exclusive).")
    sort: Literal["relevance", "date"] = Field("relevance", description="date: this page of results (after "
                                                "min_score) newest-taken first; the relevant set, not the library.")
    cut: CutName = Field("none", description=CUT_HELP)


def base64_chars(size: int) -> int:
    """Characters of the base64 form of *size* bytes."""
    return 4 * math.ceil(size / 3)


def json_body_limit(limits: Limits) -> int:
    """The most bytes a JSON search body may carry: one upload's worth of base64, plus the rest."""
    return base64_chars(limits.max_upload_bytes) + 64 * 1024


def to_terms(body: SearchBody, limits: Limits) -> tuple[Term, ...]:
    """The Searcher's terms; a bad image names its term (1-based, as the Searcher's errors do)."""
    limits.check_terms(len(body.terms))
    terms: list[Term] = []
    budget = limits.max_upload_bytes
    for number, term in enumerate(body.terms, start=1):
        if isinstance(term, TextTermIn):
            terms.append(TextTerm(term.text, term.weight))
        elif isinstance(term, IdTermIn):
            terms.append(IdTerm(term.image_id, term.weight))
        else:
            if len(term.image) > base64_chars(budget) + 4:
                raise UploadTooLarge(f"term {number} (image): {limits.upload_rule}, all images of a query together")
            try:
                data = base64.b64decode(term.image, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise QueryError(f"term {number} (image): not valid base64 ({exc})") from exc
            budget -= len(data)
            terms.append(ImageTerm(data, term.weight))
    return tuple(terms)
