"""``GET /api/duplicates``: the duplicate groups of the served collection (see ``duplicates``), bounded."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Query
from pydantic import BaseModel

from .apidocs import answers
from .duplicates import DuplicatesError, Limits, Rules, find
from .search import QueryError
from .service import SearchService

MAX_IMAGES = 20_000
"""Most images one request examines (id order); a larger library answers truncated: use ``folder``."""
MAX_GROUPS = 500


class DuplicateCopy(BaseModel):
    id: str
    path: str
    width: int
    height: int
    size: int
    hamming: int
    """Bits between this copy's hash and the original's (any orientation)."""
    orientation: int
    cosine: float
    kind: str
    """original, duplicate or similar."""
    thumbnail_url: str


class DuplicateGroup(BaseModel):
    members: list[DuplicateCopy]


class DuplicatesResponse(BaseModel):
    groups: list[DuplicateGroup]
    examined: int
    unhashed: int
    """Images without a perceptual hash yet: run pixsearch index on them (no re-embedding)."""
    truncated: bool


def add_duplicate_routes(app: FastAPI, service: SearchService, guard: list[Any], token: bool) -> None:
    settings = service.settings

    @app.get("/api/duplicates", response_model=DuplicatesResponse, dependencies=guard, tags=["collection"],
             responses=answers(400, 422, 503, token=token))
    def duplicates(
        folder: str = Query("", max_length=4096, description="Only images in or under this absolute folder."),
        max_hamming: int = Query(settings.dup_hamming, ge=0, le=32,
                                 description="Most differing bits of 64 between copies' perceptual hashes."),
        min_cosine: float = Query(settings.dup_cosine, ge=-1.0, le=1.0,
                                  description="Least CLIP cosine between copies."),
        similar: bool = Query(False, description="Also report similar-but-different photos (by the model)."),
        similar_cosine: float = Query(settings.similar_cosine, ge=-1.0, le=1.0,
                                      description="Least CLIP cosine of a similar pair."),
        limit: int = Query(50, ge=1, le=MAX_GROUPS, description=f"Most groups returned (1-{MAX_GROUPS})."),
    ) -> DuplicatesResponse:
        """Groups of images that are the same picture (copies, re-encodes, resizes, slight crops, rotations),
        each led by its largest copy, with the evidence: hash distance and cosine to it. Examines at most
        20,000 images per request (``truncated`` says when more were left out)."""
        rules = Rules(max_hamming=max_hamming, min_cosine=min_cosine, similar=similar, similar_cosine=similar_cosine)
        try:
            report = find(service.workspace.store, rules, Limits(max_images=MAX_IMAGES, max_groups=limit),
                          folder=folder)
        except DuplicatesError as exc:
            raise QueryError(str(exc)) from exc
        groups = [DuplicateGroup(members=[DuplicateCopy(**vars(m), thumbnail_url=f"/api/thumbnails/{m.id}")
                                          for m in g.members]) for g in report.groups]
        return DuplicatesResponse(groups=groups, examined=report.examined, unhashed=report.unhashed,
                                  truncated=report.truncated)
