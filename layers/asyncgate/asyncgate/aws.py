"""boto3 clients, created once per container and shared by every invocation it serves.

The endpoint comes from boto3's own AWS_ENDPOINT_URL handling, so the same code talks to AWS in Lambda
and to the emulator in the local stack and the tests.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_stepfunctions import SFNClient

# Standard retry mode backs off on throttling; short timeouts keep a stuck call from eating the budget.
_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=2, read_timeout=5)


@cache
def dynamodb() -> DynamoDBClient:
    return boto3.client("dynamodb", config=_CONFIG)


@cache
def sqs() -> SQSClient:
    return boto3.client("sqs", config=_CONFIG)


@cache
def stepfunctions() -> SFNClient:
    return boto3.client("stepfunctions", config=_CONFIG)


def reset_clients() -> None:
    """Forget cached clients (tests swap the emulator between cases)."""
    dynamodb.cache_clear()
    sqs.cache_clear()
    stepfunctions.cache_clear()
