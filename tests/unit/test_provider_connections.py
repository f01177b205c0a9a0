"""Where provider keys come from: the provider's own variable, or (in AWS) the SSM parameter or Secrets
Manager secret its `_PARAMETER` variable names, read through Powertools parameters."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from asyncgate.providers.connections import CONNECTIONS

FAL = CONNECTIONS["fal"]


@pytest.fixture
def aws() -> Iterator[None]:
    # Each test reads a name of its own, so Powertools' cache never answers for another test.
    with mock_aws():
        yield


def test_the_providers_own_variable_wins() -> None:
    environ = {"FAL_KEY": "from-env", "FAL_KEY_PARAMETER": "/asyncgate/fal"}
    assert FAL.configured(environ)
    assert FAL.api_key(environ) == "from-env"


def test_no_key_no_configuration() -> None:
    assert not FAL.configured({})
    assert FAL.api_key({}) is None
    assert FAL.base_url({}) == "https://queue.fal.run"
    assert FAL.base_url({"ASYNCGATE_FAL_URL": "http://127.0.0.1:9"}) == "http://127.0.0.1:9"


def test_a_secure_string_parameter(aws: None) -> None:
    boto3.client("ssm").put_parameter(Name="/asyncgate/fal", Value="from-ssm", Type="SecureString")
    environ = {"FAL_KEY_PARAMETER": "/asyncgate/fal"}
    assert FAL.configured(environ)
    assert FAL.api_key(environ) == "from-ssm"


def test_a_secrets_manager_secret(aws: None) -> None:
    arn = boto3.client("secretsmanager").create_secret(Name="asyncgate/fal", SecretString="from-secret")[
        "ARN"
    ]
    assert FAL.api_key({"FAL_KEY_PARAMETER": arn}) == "from-secret"
