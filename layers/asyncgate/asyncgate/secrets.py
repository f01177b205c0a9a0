"""Secrets kept in AWS, read through Powertools parameters and cached for five minutes per container,
so a rotated value is picked up without a deploy. Values never reach logs or errors."""

from __future__ import annotations

SECRET_CACHE_SECONDS = 300


def secret_value(name: str) -> str:
    """The value of a Secrets Manager secret (an ARN or a name beginning `asyncgate/`) or of an SSM
    SecureString parameter (a name beginning `/`), without the whitespace a pasted value often ends with."""
    # Imported only where a secret is read: the parameters utility pulls in its own clients.
    from aws_lambda_powertools.utilities import parameters  # noqa: PLC0415

    if name.startswith("/"):
        value = parameters.get_parameter(name, decrypt=True, max_age=SECRET_CACHE_SECONDS)
    else:
        value = parameters.get_secret(name, max_age=SECRET_CACHE_SECONDS)
    return str(value).strip()
