"""Standard Webhooks secrets: the ones asyncgate makes, and the ones a tenants file may give."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import standardwebhooks

from asyncgate.domain.webhooks import (
    ROTATION_OVERLAP,
    WebhookEndpoint,
    check_webhook_secret,
    is_endpoint_id,
    new_endpoint_id,
    new_webhook_secret,
)
from asyncgate_dev.localstack import StackError, TenantSeed, load_tenants, tenant_secrets

GIVEN = "whsec_" + base64.b64encode(b"x" * 24).decode()


def test_new_secrets_are_standard_webhooks_secrets() -> None:
    made = {new_webhook_secret() for _ in range(200)}
    assert len(made) == 200
    for secret in made:
        assert check_webhook_secret(secret) == secret
        assert len(standardwebhooks.Webhook(secret)._whsecret) == 24


def test_endpoint_ids() -> None:
    endpoint_id = new_endpoint_id()
    assert is_endpoint_id(endpoint_id)
    assert len(endpoint_id) == len("wh_") + 24
    for bad in ("secret", "wh_", "wh_" + "g" * 24, endpoint_id.upper(), endpoint_id + "0", " " + endpoint_id):
        assert not is_endpoint_id(bad)


@pytest.mark.parametrize(
    "secret",
    [
        "",
        "whsec_",
        base64.b64encode(b"x" * 24).decode(),  # no prefix
        "whsec_" + base64.urlsafe_b64encode(b"\xfb" * 24).decode(),  # URL-safe: decoded leniently elsewhere
        "whsec_" + base64.b64encode(b"x" * 16).decode(),  # too short
        "whsec_" + base64.b64encode(b"x" * 65).decode(),  # too long
        "whsec_not base64!",
    ],
)
def test_bad_secrets_are_refused(secret: str) -> None:
    with pytest.raises(ValueError, match="webhook secret"):
        check_webhook_secret(secret)


def test_a_tenants_file_secret_must_be_a_standard_one(tmp_path: Path) -> None:
    tenants = tmp_path / "tenants.json"
    tenants.write_text(json.dumps([{"tenant": "a", "apiKey": "k", "webhookSecret": GIVEN}]))
    assert load_tenants(tenants)[0].webhook_secret == GIVEN
    tenants.write_text(json.dumps([{"tenant": "a", "apiKey": "k", "webhookSecret": "whsec_dGVuYW50"}]))
    with pytest.raises(StackError, match="--tenants"):
        load_tenants(tenants)


def test_one_secret_per_tenant_whatever_its_entries() -> None:
    reader = TenantSeed(tenant="a", api_key="reader")
    writer = TenantSeed(tenant="a", api_key="writer", webhook_secret=GIVEN)
    other = TenantSeed(tenant="b", api_key="other")
    assert tenant_secrets([reader, writer, other]) == {"a": GIVEN, "b": other.webhook_secret}
    assert tenant_secrets([reader, TenantSeed(tenant="a", api_key="again")]) == {"a": reader.webhook_secret}
    clash = TenantSeed(tenant="a", api_key="clash", webhook_secret=new_webhook_secret())
    with pytest.raises(ValueError, match="different webhookSecrets"):
        tenant_secrets([writer, clash])


def test_a_tenants_file_with_clashing_secrets_is_refused(tmp_path: Path) -> None:
    tenants = tmp_path / "tenants.json"
    entries = [
        {"tenant": "a", "apiKey": "k1", "webhookSecret": GIVEN},
        {"tenant": "a", "apiKey": "k2", "webhookSecret": new_webhook_secret()},
    ]
    tenants.write_text(json.dumps(entries))
    with pytest.raises(StackError, match="different webhookSecrets"):
        load_tenants(tenants)


def test_the_previous_secret_signs_until_its_expiry_only() -> None:
    rotated_at = datetime(2026, 11, 23, 12, tzinfo=UTC)
    endpoint = WebhookEndpoint(
        endpoint_id=new_endpoint_id(),
        tenant="t",
        url="https://hooks.example.com/in",
        events=("execution.failed",),
        description=None,
        secret="whsec_new",
        created_at=rotated_at,
        previous_secret="whsec_old",
        previous_secret_expires_at=rotated_at + ROTATION_OVERLAP,
    )
    assert timedelta(hours=24) == ROTATION_OVERLAP
    assert endpoint.signing_secrets(rotated_at) == ["whsec_new", "whsec_old"], "the new one first"
    last_moment = rotated_at + ROTATION_OVERLAP - timedelta(milliseconds=1)
    assert endpoint.signing_secrets(last_moment) == ["whsec_new", "whsec_old"]
    assert endpoint.signing_secrets(rotated_at + ROTATION_OVERLAP) == ["whsec_new"]
    never_rotated = endpoint.model_copy(update={"previous_secret": None, "previous_secret_expires_at": None})
    assert never_rotated.signing_secrets(rotated_at) == ["whsec_new"]
