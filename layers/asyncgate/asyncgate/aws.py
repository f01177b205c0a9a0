"""boto3 clients, created once per container and shared by every invocation it serves.

The endpoint comes from boto3's own AWS_ENDPOINT_URL handling, so the same code talks to AWS in Lambda
and to the emulator in the local stack and the tests.
"""

from __future__ import annotations

import os
from functools import cache
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_stepfunctions import SFNClient

# Standard retry mode backs off on throttling; short timeouts keep a stuck call from eating the budget.
# One client serves every thread of a container (notify's first attempts, the sharded list queries):
# a pool smaller than those threads drops and reopens connections under load.
_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 3},
    connect_timeout=2,
    read_timeout=5,
    max_pool_connections=32,
)


@cache
def dynamodb() -> DynamoDBClient:
    return boto3.client("dynamodb", config=_CONFIG)


@cache
def sqs() -> SQSClient:
    return boto3.client("sqs", config=_CONFIG)


@cache
def stepfunctions() -> SFNClient:
    return boto3.client("stepfunctions", config=_CONFIG)


def _s3_config() -> Config:
    """SigV4 always (botocore still presigns with SigV2 by default). In AWS, virtual-host addressing:
    the bucket's own regional host (`bucket.s3.<region>.amazonaws.com`), never the global endpoint that
    redirects a new bucket outside us-east-1 and breaks the signature. On an emulator's endpoint
    (AWS_ENDPOINT_URL, e.g. http://127.0.0.1:PORT in the local stack), path-style, so a presigned URL
    points at that endpoint itself."""
    custom_endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    return _CONFIG.merge(
        Config(
            signature_version="s3v4",
            s3={"addressing_style": "path" if custom_endpoint else "virtual"},
            # A copy streams up to 8 MiB parts; the transfer's own retries cover a slow part.
            read_timeout=30,
        )
    )


@cache
def s3() -> S3Client:
    return boto3.client("s3", config=_s3_config())


def reset_clients() -> None:
    """Forget cached clients (tests swap the emulator between cases)."""
    dynamodb.cache_clear()
    sqs.cache_clear()
    stepfunctions.cache_clear()
    s3.cache_clear()
