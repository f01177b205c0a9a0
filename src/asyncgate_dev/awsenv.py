"""The environment for running asyncgate's handlers against an emulator instead of an AWS account."""

from __future__ import annotations

import os
from collections.abc import MutableMapping

# Dummy credentials (the emulator accepts any), one region, and no real traces.
DUMMY_AWS_ENV = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "POWERTOOLS_TRACE_DISABLED": "1",
    "POWERTOOLS_METRICS_NAMESPACE": "Asyncgate",
    "POWERTOOLS_SERVICE_NAME": "asyncgate",
    "POWERTOOLS_DEV": "false",
}


def use_dummy_aws_env(environ: MutableMapping[str, str] = os.environ) -> None:
    """Point boto3 away from any real account: set the dummy values, drop profile and endpoint."""
    environ.update(DUMMY_AWS_ENV)
    for variable in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        environ.pop(variable, None)
