"""Shared fixtures: a dummy AWS environment, the template, and its resources provisioned on moto."""

from __future__ import annotations

from asyncgate_dev.awsenv import use_dummy_aws_env

# Before anything imports boto3 or Powertools: never reach a real account, never emit real traces.
use_dummy_aws_env()

import os  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from typing import Any  # noqa: E402

import boto3  # noqa: E402
import pytest  # noqa: E402
from moto import mock_aws  # noqa: E402

from asyncgate_dev import motofix  # noqa: E402
from asyncgate_dev.handlers import REPO_ROOT, TEMPLATE_PATH  # noqa: E402
from asyncgate_dev.lambda_runtime import LambdaContext  # noqa: E402
from asyncgate_dev.template import Stack, load_template, provision  # noqa: E402

__all__ = ["TEMPLATE_PATH"]

# DynamoDB's atomic conditional writes and transactions, which threaded tests rely on.
motofix.install()


@pytest.fixture(scope="session")
def template() -> dict[str, Any]:
    """template.yaml, parsed once per session (treat it as read-only)."""
    return load_template(TEMPLATE_PATH)


@pytest.fixture
def aws_stack(monkeypatch: pytest.MonkeyPatch, template: dict[str, Any]) -> Iterator[Stack]:
    """The template's table and queues on moto, and the functions' environment in os.environ."""
    from asyncgate.aws import reset_clients  # noqa: PLC0415 - the layer's clients must be made in the mock
    from asyncgate.settings import get_settings  # noqa: PLC0415

    with mock_aws():
        stack = provision(
            template,
            boto3.client("dynamodb"),
            boto3.client("sqs"),
            stepfunctions=boto3.client("stepfunctions"),
            s3=boto3.client("s3"),
            secretsmanager=boto3.client("secretsmanager"),
            base_dir=REPO_ROOT,
        )
        # One process holds every function, as in the local stack: their environments together.
        for logical_id in stack.functions():
            for name, value in stack.function_environment(logical_id).items():
                if name == "SIM_PROVIDER_URL" and name in os.environ:
                    continue
                monkeypatch.setenv(name, value)
        reset_clients()
        get_settings.cache_clear()
        yield stack
        reset_clients()
        get_settings.cache_clear()


@pytest.fixture
def lambda_context() -> LambdaContext:
    """A Lambda context with a real deadline (the function's 30 s), a fresh request id each test."""
    return LambdaContext(function_name="asyncgate-test", timeout_seconds=30.0)
