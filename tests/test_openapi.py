"""The OpenAPI schema is true: what it documents is what the server answers, checked by schemathesis,
and the docs page works offline."""

from __future__ import annotations

import html.parser
import urllib.parse
from datetime import timedelta
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from pixsearch.api import create_app
from pixsearch.search import Limits

from .serving import build_index

CONFORMANCE = ["not_a_server_error", "status_code_conformance", "content_type_conformance",
               "response_schema_conformance", "response_headers_conformance"]
ENDPOINTS = {("get", "/api/stats"), ("get", "/api/search"), ("post", "/api/search"), ("post", "/api/search/image"),
             ("get", "/api/search/similar/{image_id}"), ("get", "/api/images/{image_id}"),
             ("get", "/api/thumbnails/{image_id}"), ("get", "/api/duplicates"), ("get", "/health")}


@pytest.fixture(scope="module")
def library(tmp_path_factory, tiny_model):
    return build_index(tmp_path_factory.mktemp("openapi"), tiny_model)


@pytest.fixture(scope="module")
def open_app(library):
    with TestClient(create_app(library, limits=Limits(max_k=20, max_upload_bytes=64 * 1024))) as client:
        yield client.app


@pytest.fixture(scope="module")
def guarded_app(library):
    with TestClient(create_app(library.with_overrides({"api_token": "s3cret"}), with_ui=False)) as client:
        yield client.app


def operations(schema: dict) -> dict[tuple[str, str], dict]:
    return {(method, path): op for path, item in schema["paths"].items() for method, op in item.items()}


def test_security_is_declared_only_when_a_token_is_set(open_app, guarded_app):
    open_schema, guarded_schema = open_app.openapi(), guarded_app.openapi()
    assert set(operations(open_schema)) == ENDPOINTS == set(operations(guarded_schema))
    assert "securitySchemes" not in open_schema.get("components", {})
    assert not any("security" in op for op in operations(open_schema).values())
    assert "401" not in str([op["responses"] for op in operations(open_schema).values()])
    assert guarded_schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    for (_method, path), op in operations(guarded_schema).items():
        if path == "/health":
            assert "security" not in op and "401" not in op["responses"]
        else:
            assert op["security"] == [{"HTTPBearer": []}], path
            assert op["responses"]["401"]["headers"]["WWW-Authenticate"]["required"], path


def test_every_endpoint_documents_the_answers_it_gives(open_app):
    documented = {key: set(op["responses"]) for key, op in operations(open_app.openapi()).items()}
    assert documented == {
        ("get", "/api/stats"): {"200", "503"},
        ("get", "/api/duplicates"): {"200", "400", "422", "503"},
        ("get", "/api/search"): {"200", "400", "422", "503"},
        ("post", "/api/search"): {"200", "400", "404", "413", "422", "503"},
        ("post", "/api/search/image"): {"200", "400", "413", "422", "503"},
        ("get", "/api/search/similar/{image_id}"): {"200", "400", "404", "422", "503"},
        ("get", "/api/images/{image_id}"): {"200", "304", "404", "503"},
        ("get", "/api/thumbnails/{image_id}"): {"200", "404", "503"},
        ("get", "/health"): {"200"},
    }
    schema = open_app.openapi()
    images = schema["paths"]["/api/images/{image_id}"]["get"]["responses"]
    assert set(images["200"]["content"]) == {"image/*"} and "ETag" in images["304"]["headers"]
    error = schema["paths"]["/api/search"]["get"]["responses"]["400"]["content"]["application/json"]["schema"]
    assert error == {"$ref": "#/components/schemas/ErrorResponse"}
    assert schema["components"]["schemas"]["ErrorResponse"]["required"] == ["detail"]
    assert "HTTPValidationError" not in schema["components"]["schemas"]  # 422 is {"detail": str, "errors": [...]}
    body = schema["paths"]["/api/search"]["post"]["requestBody"]["content"]["application/json"]
    assert {"text", "combined", "page2"} <= set(body["examples"])
    offset = next(p for p in schema["paths"]["/api/search"]["get"]["parameters"] if p["name"] == "offset")
    assert offset["schema"]["maximum"] == Limits().max_window - 1


def lifespan_kept(app: Any) -> Any:
    """*app*, with lifespan events answered here: schemathesis ends an ASGI app's lifespan after each
    test, which would close the store under the module's other tests (the fixture's TestClient owns it)."""

    async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return
        while True:
            message = await receive()
            kind = message["type"].rsplit(".", 1)[-1]
            await send({"type": f"lifespan.{kind}.complete"})
            if kind == "shutdown":
                return

    return asgi


@pytest.fixture(scope="module")
def open_schema(open_app):
    return schemathesis.openapi.from_asgi("/openapi.json", lifespan_kept(open_app))


@pytest.fixture(scope="module")
def guarded_schema(guarded_app):
    return schemathesis.openapi.from_asgi("/openapi.json", lifespan_kept(guarded_app))


BOUNDED = settings(max_examples=15, deadline=timedelta(seconds=5), database=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def conform(schema: schemathesis.schemas.BaseSchema, method: str, path: str, mode: GenerationMode) -> list[int]:
    """Send generated requests to one endpoint; every answer must pass every conformance check."""
    statuses: list[int] = []
    operation = schema[path][method.upper()]

    @given(case=operation.as_strategy(generation_mode=mode))
    @BOUNDED
    def run(case: schemathesis.Case) -> None:
        response = case.call_and_validate(checks=[getattr(schemathesis.checks, name) for name in CONFORMANCE])
        statuses.append(response.status_code)

    run()
    return statuses


@pytest.mark.slow
@pytest.mark.parametrize(("method", "path"), sorted(ENDPOINTS))
def test_the_server_answers_as_its_schema_says(open_schema, method, path):
    assert conform(open_schema, method, path, GenerationMode.POSITIVE), "nothing was sent"


@pytest.mark.slow
@pytest.mark.parametrize(("method", "path"), sorted(key for key in ENDPOINTS if key[1].startswith("/api/search")))
def test_invalid_parameters_get_documented_refusals(open_schema, method, path):
    """Schemathesis breaks the documented constraints (k out of range, a missing query...)."""
    statuses = conform(open_schema, method, path, GenerationMode.NEGATIVE)
    assert statuses and all(400 <= status < 500 for status in statuses), statuses


@pytest.mark.slow
@pytest.mark.parametrize(("method", "path"), sorted(ENDPOINTS - {("get", "/health")}))
def test_without_the_token_every_answer_is_a_documented_401(guarded_schema, method, path):
    assert set(conform(guarded_schema, method, path, GenerationMode.POSITIVE)) == {401}


# ----------------------------------------------------------------------------- the docs page


class _Links(html.parser.HTMLParser):
    """Every src and href of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.links += [value for name, value in attrs if name in ("src", "href") and value]


def test_the_docs_page_references_no_other_host_and_its_assets_load(open_app):
    with TestClient(open_app) as client:
        page = client.get("/docs")
        assert page.status_code == 200 and "swagger-ui" in page.text
        parser = _Links()
        parser.feed(page.text)
        assert len(parser.links) >= 3, parser.links  # the script, the style sheet, the icon
        for link in parser.links:
            parts = urllib.parse.urlsplit(link)
            assert not parts.scheme and not parts.netloc, f"/docs loads {link} from another host"
            asset = client.get(urllib.parse.urljoin("/docs", link))
            assert asset.status_code == 200 and asset.content, link
        assert "http://" not in page.text and "https://" not in page.text
        assert "validatorUrl" in page.text  # Swagger UI sends nothing to validator.swagger.io
        assert client.get("/openapi.json").json()["info"]["title"] == "pixsearch"
        redirect = client.get("/docs/oauth2-redirect")
        assert redirect.status_code == 200 and "oauth2" in redirect.text.lower()
        for link in _links_of(redirect.text):
            assert not urllib.parse.urlsplit(link).netloc, link
        # ReDoc is not offered (it is not half-served from a CDN either).
        redoc = client.get("/redoc")
        assert "redoc" not in redoc.text.lower() or redoc.status_code == 404


def _links_of(text: str) -> list[str]:
    parser = _Links()
    parser.feed(text)
    return parser.links
