"""The $default route: any path or method the API does not serve gets 404 NOT_FOUND in the envelope."""

from __future__ import annotations

from asyncgate.api.http import build_resolver, http_handler

# No routes: every request falls through to the resolver's contract-shaped not-found answer.
app = build_resolver()

lambda_handler = http_handler(app)
