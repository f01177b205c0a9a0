"""The local stack's per-thread Powertools router state: concurrent requests each see their own event."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response

from asyncgate_dev import routerfix
from asyncgate_dev.apigw import http_event, read_response


def _resolver(seen: threading.Barrier) -> APIGatewayHttpResolver:
    app = APIGatewayHttpResolver()

    @app.post("/echo")
    def echo() -> Response[str]:
        first = app.current_event.json_body
        seen.wait(timeout=5)  # every request is in flight at once before any reads again
        return Response(200, "application/json", json.dumps([first, app.current_event.json_body]))

    return app


def test_concurrent_requests_through_separate_resolvers_each_see_their_own_event() -> None:
    routerfix.install()
    routerfix.install()  # idempotent
    count = 8
    barrier = threading.Barrier(count)
    apps = [_resolver(barrier) for _ in range(count)]

    def call(number: int) -> Any:
        event = http_event("POST", "/echo", route_key="POST /echo", body=json.dumps({"n": number}).encode())
        return read_response(apps[number].resolve(event, None)).json()  # type: ignore[arg-type]

    with ThreadPoolExecutor(count) as pool:
        answers = list(pool.map(call, range(count)))
    assert answers == [[{"n": number}, {"n": number}] for number in range(count)]
