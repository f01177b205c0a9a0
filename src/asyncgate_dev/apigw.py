"""API Gateway HTTP API (payload format 2.0) events and responses, built and read the way API Gateway
does, for code that calls the API handlers outside AWS (the tests and the local stack)."""

from __future__ import annotations

import base64
import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, unquote

_PARAMETER = re.compile(r"\{(\w+)\}")


def match_route(route_path: str, raw_path: str) -> dict[str, str] | None:
    """The path parameters when `raw_path` matches the route template (e.g. /v1/executions/{id}), else
    None. `$default` matches nothing here: callers fall back to it themselves."""
    if route_path == "$default":
        return None
    route_parts, path_parts = route_path.strip("/").split("/"), raw_path.strip("/").split("/")
    if len(route_parts) != len(path_parts):
        return None
    parameters: dict[str, str] = {}
    for route_part, path_part in zip(route_parts, path_parts, strict=True):
        parameter = _PARAMETER.fullmatch(route_part)
        if parameter and path_part:
            parameters[parameter.group(1)] = unquote(path_part)
        elif route_part != path_part:
            return None
    return parameters


def http_event(
    method: str,
    raw_path: str,
    *,
    route_key: str,
    path_parameters: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    raw_query: str = "",
    body: bytes | None = None,
    source_ip: str = "127.0.0.1",
) -> dict[str, Any]:
    lowered = {name.lower(): value for name, value in (headers or {}).items()}
    now = datetime.now(UTC)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": raw_path,
        "rawQueryString": raw_query,
        "headers": lowered,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": lowered.get("host", "127.0.0.1"),
            "domainPrefix": "local",
            "http": {
                "method": method,
                "path": raw_path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": lowered.get("user-agent", ""),
            },
            "requestId": uuid.uuid4().hex[:16],
            "routeKey": route_key,
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "isBase64Encoded": False,
    }
    if raw_query:
        # API Gateway joins repeated parameters with commas.
        query: dict[str, str] = {}
        for name, value in parse_qsl(raw_query, keep_blank_values=True):
            query[name] = f"{query[name]},{value}" if name in query else value
        event["queryStringParameters"] = query
    if path_parameters:
        event["pathParameters"] = path_parameters
    if body:
        try:
            event["body"] = body.decode("utf-8")
        except UnicodeDecodeError:
            event["body"] = base64.b64encode(body).decode("ascii")
            event["isBase64Encoded"] = True
    return event


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    headers: dict[str, str]
    body: bytes
    cookies: tuple[str, ...] = ()

    def json(self) -> Any:
        return json.loads(self.body)


def read_response(result: Any) -> HttpAnswer:
    """A handler's result as API Gateway turns it into an HTTP answer (payload format 2.0 rules)."""
    if not isinstance(result, dict) or "statusCode" not in result:
        # A bare value is a 200 JSON answer.
        return HttpAnswer(200, {"content-type": "application/json"}, json.dumps(result).encode())
    headers = {name.lower(): str(value) for name, value in (result.get("headers") or {}).items()}
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers[name.lower()] = ",".join(str(value) for value in values)
    raw = result.get("body") or ""
    body = base64.b64decode(raw) if result.get("isBase64Encoded") else raw.encode("utf-8")
    return HttpAnswer(int(result["statusCode"]), headers, body, tuple(result.get("cookies") or ()))
