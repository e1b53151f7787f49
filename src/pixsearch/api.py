"""The REST API (FastAPI) with the web page mounted at "/".

``create_app(settings)`` opens the model and the store once and shares them with
every request; nothing is created at import time, so tests and ``pixsearch serve``
each build their own app. Endpoints are plain ``def`` functions: FastAPI runs them
in its thread pool, which is what CPU-bound embedding and blocking Milvus calls need.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import Body, Depends, FastAPI, File, Path, Query, Request, UploadFile
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import __version__, search
from .apidocs import ETAG_HEADER, answers, drop_guessed_422s, image_answer, serve_docs
from .apidups import add_duplicate_routes
from .apiquery import CUT_HELP, EXAMPLES, CutName, SearchBody, json_body_limit, to_terms
from .config import Settings
from .indexer import IndexReport
from .search import IdTerm, ImageTerm, Limits, NotFound, QueryError, Term, TextTerm, UploadTooLarge
from .service import SearchService, make_filters
from .store import Filters, Hit, StoreError
from .watch import BackgroundSync
from .workspace import new_indexer

ID_PARAM = Path(..., description="An image id, as returned in search results (16 hex characters).")
log = logging.getLogger(__name__)
FORM_OVERHEAD_BYTES = 64 * 1024
"""What a multipart body may carry besides the image (boundaries, headers, the other fields)."""
IMAGE_HEADERS = {"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff"}


class Result(BaseModel):
    id: str
    path: str
    score: float
    fields: dict[str, Any]
    thumbnail_url: str
    image_url: str


class SearchResponse(BaseModel):
    count: int
    took_ms: float
    results: list[Result]
    offset: int = 0
    """Results skipped before these (the request's offset)."""
    next_offset: int | None = None
    """The offset of the next page (same k), or null when this page is the last one."""
    cut: int = 0
    """Results the relevance cut removed as not relevant (0 without ``cut``)."""
    relevant: int | None = None
    """Results that passed the relevance cut and min_score, over all pages (null without ``cut``)."""


class StatsResponse(BaseModel):
    model: str
    model_id: str
    collection: str
    count: int
    dim: int
    backend: str
    last_indexed: str | None
    """ISO-8601 UTC time of the most recently indexed image; null for an empty index."""
    folders: list[str]
    """Folders that hold indexed images (for the ``folder`` filter; at most 1000 listed)."""
    labels: list[str]


class PayloadTooLarge(Exception):
    """The request body is larger than the upload limit."""


class BodyLimit:
    """Refuse /api request bodies over *limit* bytes while they stream in, not after buffering."""

    def __init__(self, app: ASGIApp, limits: Limits):
        self.app = app
        self.limits = limits
        self.limit = limits.max_upload_bytes + FORM_OVERHEAD_BYTES
        self.json_limit = json_body_limit(limits)
        """A JSON search carries its images in base64, a third longer than the bytes."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/api/"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        limit = self.json_limit if headers.get(b"content-type", b"").startswith(b"application/json") \
            else self.limit
        declared = headers.get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > limit:
            await _too_large(self.limits)(scope, receive, send)
            return
        seen = 0
        exceeded = started = replaced = False

        async def counting_receive() -> Message:
            nonlocal seen, exceeded
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                exceeded = True
                raise PayloadTooLarge()
            return message

        async def guarded_send(message: Message) -> None:
            # FastAPI turns any error while parsing a form (ours included) into 400 "There was an error
            # parsing the body"; once the body went over the limit, whatever the app answers becomes 413.
            nonlocal started, replaced
            if replaced:
                return
            if exceeded and message["type"] == "http.response.start" and not started:
                replaced = started = True
                await _too_large(self.limits)(scope, receive, send)
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except PayloadTooLarge:
            if started:
                raise
            await _too_large(self.limits)(scope, receive, send)


def _too_large(limits: Limits) -> JSONResponse:
    return JSONResponse({"detail": f"request too large: {limits.upload_rule}"}, 413)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status)


def _install_error_handlers(app: FastAPI, limits: Limits) -> None:
    """Every failure becomes JSON {"detail": "..."} with a status code a client can act on."""

    async def query_error(_: Request, exc: Exception) -> JSONResponse:
        return _error(400, str(exc))

    async def not_found(_: Request, exc: Exception) -> JSONResponse:
        return _error(404, str(exc))

    async def store_error(_: Request, exc: Exception) -> JSONResponse:
        return _error(503, f"the vector store failed: {exc}")

    async def too_large(_: Request, __: Exception) -> JSONResponse:
        return _too_large(limits)

    async def upload_too_large(_: Request, exc: Exception) -> JSONResponse:
        return _error(413, str(exc))

    async def invalid(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = jsonable_encoder(exc.errors(), exclude={"input", "url", "ctx"})
        summary = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or e['loc'][0]}: {e['msg']}" for e in errors)
        return JSONResponse({"detail": summary or "invalid request", "errors": errors}, status_code=422)

    async def http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    app.add_exception_handler(QueryError, query_error)
    app.add_exception_handler(NotFound, not_found)
    app.add_exception_handler(UploadTooLarge, upload_too_large)
    app.add_exception_handler(StoreError, store_error)
    app.add_exception_handler(PayloadTooLarge, too_large)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(StarletteHTTPException, http_error)


def token_guard(api_token: str) -> Callable[[HTTPAuthorizationCredentials | None], None]:
    """A dependency that requires ``Authorization: Bearer <api_token>`` when a token is set."""
    bearer = HTTPBearer(auto_error=False, description="The server's --api-token, when it has one.")

    def check(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if not api_token:
            return
        given = credentials.credentials if credentials else ""
        if not hmac.compare_digest(given.encode(), api_token.encode()):
            raise StarletteHTTPException(401, "missing or wrong API token: send 'Authorization: Bearer <token>'",
                                         headers={"WWW-Authenticate": "Bearer"})

    return check


def result(hit: Hit, prefix: str = "") -> Result:
    """One search result as the API shows it: the stored fields, and where to fetch the image."""
    fields = {k: v for k, v in search.hit_fields(hit).items() if k not in ("id", "path")}
    return Result(id=hit.id, path=hit.path, score=round(hit.score, 6), fields=fields,
                  thumbnail_url=f"{prefix}/api/thumbnails/{hit.id}", image_url=f"{prefix}/api/images/{hit.id}")


@dataclass(frozen=True)
class Page:
    """What every search endpoint asks besides its terms: page size and offset, filters, order, cut."""

    k: int
    filters: Filters
    offset: int = 0
    sort: str = "relevance"
    cut: str = "none"


def _answer(service: SearchService, terms: tuple[Term, ...], page: Page, request: Request) -> SearchResponse:
    """Run one query through the service's Searcher and time it."""
    started = time.perf_counter()
    k, offset = page.k, page.offset
    found = service.searcher.results(search.Query(terms, k, page.filters, offset, page.sort, page.cut))
    hits = found.hits
    prefix = request.scope.get("root_path", "").rstrip("/")
    following = offset + len(hits)
    more = (len(hits) == k and following + k <= service.limits.max_window
            and (found.relevant is None or following < found.relevant))
    return SearchResponse(count=len(hits), took_ms=round((time.perf_counter() - started) * 1000, 2),
                          results=[result(h, prefix) for h in hits], offset=offset,
                          next_offset=following if more else None, cut=found.cut, relevant=found.relevant)


def add_api_routes(app: FastAPI, service: SearchService) -> None:
    """The /api endpoints; all bounded by ``service.limits`` and guarded by the API token."""
    limits = service.limits
    token = bool(service.settings.api_token)
    # Without a token there is no guard, so the schema declares no security scheme either.
    guard = [Depends(token_guard(service.settings.api_token))] if token else []
    id_statuses = (404, 503)
    k_param = Query(10, ge=1, le=limits.max_k, description=f"Number of results (1-{limits.max_k}).")
    min_param = Query(None, ge=-1.0, le=1.0, description="Hide results scoring below this cosine similarity.")
    folder_param = Query("", max_length=4096, description="Only images in or under this absolute folder.")
    label_param = Query("", max_length=512, description="Only images with this label.")
    offset_param = Query(0, ge=0, le=limits.max_window - 1, description=(
        f"Results to skip (page n from 0 of size k: offset n*k); offset + k at most {limits.max_window}. "
        "Pages continue each other exactly."))
    after_param = Query(None, max_length=64, description="Only images taken at or after this ISO date or date-time "
                        "(2024-05-01, 2024-05-01T12:00+02:00; no offset: UTC).")
    before_param = Query(None, max_length=64, description="Only images taken before this ISO date or date-time "
                         "(exclusive).")
    sort_param = Query("relevance", description="date: this page of results (after min_score) newest-taken "
                       "first; it orders the relevant set, not the whole library.")
    cut_param = Query("none", description=CUT_HELP)

    add_duplicate_routes(app, service, guard, token)

    @app.get("/api/stats", response_model=StatsResponse, dependencies=guard, tags=["collection"],
             responses=answers(503, token=token))
    def stats() -> StatsResponse:
        """Model, number of images and last indexed time of the served collection."""
        s = service.stats()
        return StatsResponse(model=s.model, model_id=s.model_id, collection=s.collection, count=s.count,
                             dim=s.dim, backend=s.backend, last_indexed=s.last_indexed, folders=list(s.folders),
                             labels=list(s.labels))

    def page_params(k: int = k_param, min_score: float | None = min_param, folder: str = folder_param,
                    label: str = label_param, offset: int = offset_param, after: str | None = after_param,
                    before: str | None = before_param, sort: Literal["relevance", "date"] = sort_param,
                    cut: CutName = cut_param) -> Page:
        """The query parameters the text, image and similar-image searches share (one declaration, so
        the three cannot drift apart in bounds or documentation)."""
        return Page(k, search.with_dates(make_filters(folder, label, min_score), after, before), offset, sort, cut)

    @app.get("/api/search", response_model=SearchResponse, dependencies=guard, tags=["search"],
             responses=answers(400, 422, 503, token=token))
    def search_text(request: Request, q: str = Query(..., description="Words describing the picture."),
                    page: Page = Depends(page_params)) -> SearchResponse:
        """Images that best match a text description."""
        return _answer(service, (TextTerm(q),), page, request)

    @app.post("/api/search", response_model=SearchResponse, dependencies=guard, tags=["search"],
              responses=answers(400, 404, 413, 422, 503, token=token))
    def search_terms(request: Request, body: SearchBody = Body(..., openapi_examples=EXAMPLES)) -> SearchResponse:
        """A combined query: the weighted sum of texts, base64 images and indexed images, with paging.

        Each term's vector is scaled to unit length, multiplied by its weight (negative: less like
        this), summed, and the sum scaled back to unit length. Errors name the bad term (1-based)."""
        filters = search.with_dates(make_filters(body.folder, body.label, body.min_score), body.after, body.before)
        return _answer(service, to_terms(body, limits), Page(body.k, filters, body.offset, body.sort, body.cut),
                       request)

    @app.post("/api/search/image", response_model=SearchResponse, dependencies=guard, tags=["search"],
              responses=answers(400, 413, 422, 503, token=token))
    def search_image(request: Request, file: UploadFile = File(..., description="An image file (JPEG, PNG, ...)."),
                     page: Page = Depends(page_params)) -> SearchResponse:
        """Images that look like an uploaded example image."""
        data = file.file.read(limits.max_upload_bytes + 1)  # one byte over is enough for the Searcher to refuse
        return _answer(service, (ImageTerm(data),), page, request)

    @app.get("/api/search/similar/{image_id}", response_model=SearchResponse, dependencies=guard, tags=["search"],
             responses=answers(400, 422, *id_statuses, token=token))
    def search_similar(request: Request, image_id: str = ID_PARAM, page: Page = Depends(page_params)) -> SearchResponse:
        """More like this: images close to an indexed image (which comes first, with score ~1)."""
        return _answer(service, (IdTerm(image_id),), page, request)

    @app.get("/api/images/{image_id}", dependencies=guard, tags=["images"], response_class=Response,
             responses={200: {**image_answer("image/*"), "headers": ETAG_HEADER},
                        **answers(304, *id_statuses, token=token)})
    def image(request: Request, image_id: str = ID_PARAM) -> Response:
        """The original file of an indexed image, exactly as it was indexed."""
        served = service.image(image_id)
        etag = f'"{served.etag}"'
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers={"ETag": etag, **IMAGE_HEADERS})
        return Response(served.data, media_type=served.media_type, headers={"ETag": etag, **IMAGE_HEADERS})

    @app.get("/api/thumbnails/{image_id}", dependencies=guard, tags=["images"], response_class=FileResponse,
             responses={200: image_answer("image/jpeg"), **answers(*id_statuses, token=token)})
    def thumbnail(image_id: str = ID_PARAM) -> FileResponse:
        """A small JPEG of an indexed image (made once, then served from the cache folder)."""
        return FileResponse(service.thumbnail_path(image_id), media_type="image/jpeg", headers=IMAGE_HEADERS)


def create_app(settings: Settings, limits: Limits = Limits(), with_ui: bool = True,
               index_paths: Sequence[str] = (), watch: bool = False,
               on_report: Callable[[IndexReport], None] = lambda report: None) -> FastAPI:
    """The pixsearch server: REST API under /api, docs at /docs, web page at /.

    The model and store are opened here, once, and closed when the app shuts down.
    *index_paths*: folders this process indexes in the background (and, with
    *watch*, keeps in sync) while it serves searches.
    """
    service = SearchService.open(settings, limits, create=bool(index_paths))
    service.warm_up()
    sync = None
    if index_paths:
        indexer = new_indexer(service.workspace, settings)
        sync = BackgroundSync(indexer, [str(p) for p in index_paths], follow=watch, on_report=on_report)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if sync is not None:
            sync.start()
        try:
            yield
        finally:
            if sync is not None:
                sync.stop()
            if sync is not None and sync.is_alive():
                # Closing the store under a running indexer would make it fail mid-batch; the process
                # is exiting anyway, which releases the store.
                log.warning("the background indexer did not stop in time; leaving the store open")
            else:
                service.close()

    app = FastAPI(title="pixsearch", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Search indexed pictures by text, by example image, or by similarity.")
    serve_docs(app)
    drop_guessed_422s(app)
    app.state.service = service
    _install_error_handlers(app, limits)
    app.add_middleware(BodyLimit, limits=limits)

    @app.get("/health", tags=["collection"])
    async def health() -> dict[str, str]:
        """Liveness: the process is up and the model and store are open.

        ``async``: it answers on the event loop itself, so it needs none of the worker threads
        that searches and page events hold, and stays honest while they are all busy."""
        return {"status": "ok"}

    add_api_routes(app, service)
    if with_ui:
        from .ui import mount_ui

        mount_ui(app, service)
    return app
