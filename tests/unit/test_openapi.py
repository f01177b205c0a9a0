"""docs/openapi.json: what the code generates, template.yaml's routes and no others, valid OpenAPI 3.1."""

from __future__ import annotations

import json
from typing import Any

from openapi_spec_validator import validate

from asyncgate.api.openapi import openapi_document, render
from asyncgate.errors import AsyncgateError
from asyncgate_dev.handlers import REPO_ROOT
from asyncgate_dev.template import Resolver, Stack

COMMITTED = REPO_ROOT / "docs" / "openapi.json"


def test_the_committed_document_is_the_generated_one() -> None:
    assert COMMITTED.read_text(encoding="utf-8") == render(), (
        "docs/openapi.json differs from the document the code generates: run `make openapi`"
    )


def test_the_document_has_exactly_the_template_routes(template: dict[str, Any]) -> None:
    routes = Stack(template, Resolver(template)).http_routes()
    served = {(route.method, route.path) for route in routes if route.path != "$default"}
    documented = {
        (method.upper(), path) for path, item in openapi_document()["paths"].items() for method in item
    }
    assert documented == served
    # Every other path and method reaches the $default route's 404 NOT_FOUND, which the document states.
    assert [route.route_key for route in routes if route.path == "$default"] == ["$default"]


def test_the_document_is_valid_openapi_3_1() -> None:
    document = json.loads(render())
    assert document["openapi"] == "3.1.0"
    validate(document)


def _subclasses(cls: type[AsyncgateError]) -> set[type[AsyncgateError]]:
    return {cls} | {grand for sub in cls.__subclasses__() for grand in _subclasses(sub)}


def _error_codes(response: dict[str, Any]) -> list[str]:
    narrowed = response["content"]["application/json"]["schema"]["allOf"][1]
    codes: list[str] = narrowed["properties"]["error"]["properties"]["code"]["enum"]
    return codes


def test_every_error_code_is_answered_by_some_operation() -> None:
    documented = {
        code
        for item in openapi_document()["paths"].values()
        for operation in item.values()
        for status, response in operation["responses"].items()
        if int(status) >= 400
        for code in _error_codes(response)
    }
    assert {error.code for error in _subclasses(AsyncgateError)} == documented
