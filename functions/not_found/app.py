"""The $default route: any path or method the API does not serve gets 404 NOT_FOUND in the envelope."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from asyncgate.api.http import build_resolver
from asyncgate.observability import logger

# No routes: every request falls through to the resolver's contract-shaped not-found answer.
app = build_resolver()


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
