"""What the REST API tells its clients: the answers each endpoint documents, and the docs page.

The OpenAPI schema is a contract that clients generate code from and that ``tests/test_openapi.py``
checks with schemathesis: every status an endpoint really answers is listed with its body, and the
bearer scheme appears only on a server that has a token. The Swagger UI page at /docs loads its
script and style from the installed ``fastapi_offline`` package, not from a CDN, so it works on a
machine without internet (FastAPI's "self-hosting JavaScript and CSS for docs" recipe).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

DOCS_ASSETS = Path(fastapi_offline.__file__).parent / "static"
"""swagger-ui-bundle.js, swagger-ui.css and favicon.png, as the fastapi_offline wheel ships them."""
DOCS_ASSETS_URL = "/docs-assets"
SWAGGER_PARAMETERS: dict[str, Any] = {"validatorUrl": None}
"""Swagger UI would otherwise send the schema to validator.swagger.io for a badge."""


class ErrorResponse(BaseModel):
    """What every refusal answers: one line saying what failed and what to do."""

    detail: str


class ValidationErrorResponse(BaseModel):
    """A parameter that is missing, malformed or out of range: the summary and each error."""

    detail: str
    errors: list[dict[str, Any]]


_REASONS = {
    304: "Not modified: the client's copy (If-None-Match) is current.",
    400: "The query is refused (empty or too long text, not a usable image, a relative folder...).",
    401: "Missing or wrong API token.",
    404: "No indexed image has this id, or its file changed since indexing.",
    413: "The upload is over the server's limit.",
    422: "A parameter is missing, malformed or out of range.",
    503: "The vector store failed.",
}
ETAG_HEADER = {"ETag": {"description": "The content hash recorded at indexing, quoted.", "required": True,
                  "schema": {"type": "string"}}}
_CHALLENGE = {"WWW-Authenticate": {"description": "Bearer", "required": True, "schema": {"type": "string"}}}


def answers(*statuses: int, token: bool) -> dict[int | str, dict[str, Any]]:
    """The documented non-200 answers of an endpoint: *statuses*, plus 401 when a token guards it."""
    documented: dict[int | str, dict[str, Any]] = {}
    for status in sorted({*statuses, *((401,) if token else ())}):
        entry: dict[str, Any] = {"description": _REASONS[status]}
        if status == 422:
            entry["model"] = ValidationErrorResponse
        elif status == 304:
            entry["headers"] = ETAG_HEADER
        else:
            entry["model"] = ErrorResponse
        if status == 401:
            entry["headers"] = _CHALLENGE
        documented[status] = entry
    return documented


def image_answer(media_type: str) -> dict[str, Any]:
    """The 200 answer of an endpoint that sends image bytes."""
    return {"description": "The image's bytes.", "content": {media_type: {"schema": {"type": "string",
                                                                                      "format": "binary"}}}}


def serve_docs(app: FastAPI) -> None:
    """Swagger UI at /docs (and its OAuth2 redirect page) with every asset served by this server.

    The app must be made with ``docs_url=None``. ReDoc stays off (``redoc_url=None``), as before:
    one docs page is enough."""
    app.mount(DOCS_ASSETS_URL, StaticFiles(directory=DOCS_ASSETS), name="docs-assets")
    redirect_url = app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - API docs",
            oauth2_redirect_url=f"{root}{redirect_url}",
            swagger_js_url=f"{root}{DOCS_ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_ASSETS_URL}/favicon.png", swagger_ui_parameters=SWAGGER_PARAMETERS)

    @app.get(redirect_url, include_in_schema=False)
    async def oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()


def drop_guessed_422s(app: FastAPI) -> None:
    """Remove the 422 answers FastAPI adds by itself to every endpoint with parameters.

    pixsearch documents 422 (with its own body, ``ValidationErrorResponse``) where a parameter can
    fail validation; FastAPI's guess adds it, with a body this server never sends, also where none
    can (an image id is any string: a wrong one is a 404)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        guessed = {"$ref": "#/components/schemas/HTTPValidationError"}
        for item in schema.get("paths", {}).values():
            for operation in item.values():
                answer = operation.get("responses", {}).get("422", {})
                if answer.get("content", {}).get("application/json", {}).get("schema") == guessed:
                    del operation["responses"]["422"]
        if "HTTPValidationError" not in str(schema.get("paths")):
            for name in ("HTTPValidationError", "ValidationError"):
                schema.get("components", {}).get("schemas", {}).pop(name, None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
