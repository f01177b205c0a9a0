"""Tenant webhook endpoints and the tenant's signing secret, in the one table.

| item | pk | sk |
| --- | --- | --- |
| tenant (signing secret, endpoint count) | `TENANT#<tenant>` | `TENANT` |
| webhook endpoint | `TENANT#<tenant>` | `WEBHOOK#<endpointId>` |

The tenant item is only ever updated attribute by attribute (never put whole), so writers of its other
attributes are not clobbered. Creating and deleting an endpoint is a transaction with the tenant item's
`webhookCount`, so the per-tenant bound holds under concurrent creates; like every transaction on the
tenant item, it is retried when it only collided with another (a submit's).
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from asyncgate.domain.clock import format_ts, parse_ts, utcnow
from asyncgate.domain.execution import EventType
from asyncgate.domain.webhooks import WebhookEndpoint, new_webhook_secret
from asyncgate.store.items import tenant_key
from asyncgate.store.transactions import TransactionCancelled, transact

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

    Item = dict[str, AttributeValueTypeDef]

WEBHOOK_SK_PREFIX = "WEBHOOK#"
MAX_ENDPOINTS_PER_TENANT = 20


class EndpointNotFound(Exception):
    """No such endpoint for this tenant (never created, deleted, or another tenant's)."""


class TooManyEndpoints(Exception):
    """The tenant already has MAX_ENDPOINTS_PER_TENANT endpoints."""


def endpoint_key(tenant: str, endpoint_id: str) -> Item:
    return {"pk": {"S": f"TENANT#{tenant}"}, "sk": {"S": WEBHOOK_SK_PREFIX + endpoint_id}}


def _endpoint_item(endpoint: WebhookEndpoint) -> Item:
    item: Item = {
        **endpoint_key(endpoint.tenant, endpoint.endpoint_id),
        "url": {"S": endpoint.url},
        "events": {"L": [{"S": event} for event in endpoint.events]},
        "secret": {"S": endpoint.secret},
        "createdAt": {"S": format_ts(endpoint.created_at)},
        "disabled": {"BOOL": endpoint.disabled},
    }
    if endpoint.description is not None:
        item["description"] = {"S": endpoint.description}
    if endpoint.previous_secret is not None and endpoint.previous_secret_expires_at is not None:
        item["previousSecret"] = {"S": endpoint.previous_secret}
        item["previousSecretExpiresAt"] = {"S": format_ts(endpoint.previous_secret_expires_at)}
    return item


def _endpoint_of(tenant: str, item: dict[str, AttributeValueTypeDef]) -> WebhookEndpoint:
    description = item.get("description")
    previous, expires = item.get("previousSecret"), item.get("previousSecretExpiresAt")
    return WebhookEndpoint.model_validate(
        {
            "endpoint_id": item["sk"]["S"].removeprefix(WEBHOOK_SK_PREFIX),
            "tenant": tenant,
            "url": item["url"]["S"],
            "events": [event["S"] for event in item["events"]["L"]],
            "description": description["S"] if description else None,
            "secret": item["secret"]["S"],
            "created_at": parse_ts(item["createdAt"]["S"]),
            "disabled": item.get("disabled", {}).get("BOOL", False),
            "previous_secret": previous["S"] if previous else None,
            "previous_secret_expires_at": parse_ts(expires["S"]) if expires else None,
        }
    )


class WebhookStore:
    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table = table_name

    # ------------------------------------------------------------------ the tenant's signing secret

    def get_secret(self, tenant: str) -> str | None:
        answer = self._client.get_item(
            TableName=self._table,
            Key=tenant_key(tenant),
            ConsistentRead=True,
            ProjectionExpression="webhookSecret",
        )
        secret = answer.get("Item", {}).get("webhookSecret")
        return secret["S"] if secret else None

    def get_or_create_secret(self, tenant: str) -> str:
        """The tenant's secret, made on first use. Of two concurrent first uses, both get the winner's."""
        existing = self.get_secret(tenant)
        if existing is not None:
            return existing
        candidate = new_webhook_secret()
        try:
            self._set_secret(tenant, candidate, only_if_missing=True)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            winner = self.get_secret(tenant)
            if winner is None:
                raise RuntimeError(
                    f"the webhook secret of {tenant!r} vanished during its creation"
                ) from error
            return winner
        return candidate

    def put_secret(self, tenant: str, secret: str) -> None:
        """Set the tenant's secret (seeding, rotation), whatever it was."""
        self._set_secret(tenant, secret, only_if_missing=False)

    def _set_secret(self, tenant: str, secret: str, *, only_if_missing: bool) -> None:
        update = "SET webhookSecret = :secret, createdAt = if_not_exists(createdAt, :now)"
        values: Item = {":secret": {"S": secret}, ":now": {"S": format_ts(utcnow())}}
        if only_if_missing:
            self._client.update_item(
                TableName=self._table,
                Key=tenant_key(tenant),
                UpdateExpression=update,
                ConditionExpression="attribute_not_exists(webhookSecret)",
                ExpressionAttributeValues=values,
            )
        else:
            self._client.update_item(
                TableName=self._table,
                Key=tenant_key(tenant),
                UpdateExpression=update,
                ExpressionAttributeValues=values,
            )

    # ------------------------------------------------------------------ endpoints

    def list_for_tenant(self, tenant: str) -> list[WebhookEndpoint]:
        """Every endpoint of the tenant, oldest id first (all pages; at most MAX_ENDPOINTS_PER_TENANT)."""
        endpoints: list[WebhookEndpoint] = []
        paginator = self._client.get_paginator("query")
        pages = paginator.paginate(
            TableName=self._table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
            ExpressionAttributeValues={":pk": {"S": f"TENANT#{tenant}"}, ":prefix": {"S": WEBHOOK_SK_PREFIX}},
            ConsistentRead=True,
        )
        for page in pages:
            endpoints.extend(_endpoint_of(tenant, item) for item in page.get("Items", []))
        return endpoints

    def get(self, tenant: str, endpoint_id: str) -> WebhookEndpoint | None:
        answer = self._client.get_item(
            TableName=self._table, Key=endpoint_key(tenant, endpoint_id), ConsistentRead=True
        )
        item = answer.get("Item")
        return _endpoint_of(tenant, item) if item else None

    def disable(self, tenant: str, endpoint_id: str) -> None:
        """Stop delivering to an endpoint (it answered 410 Gone); a deleted one stays deleted."""
        with contextlib.suppress(self._client.exceptions.ConditionalCheckFailedException):
            self._client.update_item(
                TableName=self._table,
                Key=endpoint_key(tenant, endpoint_id),
                UpdateExpression="SET disabled = :yes",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeValues={":yes": {"BOOL": True}},
            )

    def rotate_secret(
        self, tenant: str, endpoint_id: str, new_secret: str, previous_expires_at: datetime
    ) -> WebhookEndpoint:
        """Make `new_secret` the endpoint's secret and keep the one it replaces until
        `previous_expires_at`, in one write (the old value is read by DynamoDB, not by us, so two
        concurrent rotations cannot lose a secret in between). EndpointNotFound when there is none."""
        try:
            answer = self._client.update_item(
                TableName=self._table,
                Key=endpoint_key(tenant, endpoint_id),
                UpdateExpression=(
                    "SET previousSecret = secret, secret = :secret, previousSecretExpiresAt = :expires"
                ),
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeValues={
                    ":secret": {"S": new_secret},
                    ":expires": {"S": format_ts(previous_expires_at)},
                },
                ReturnValues="ALL_NEW",
            )
        except self._client.exceptions.ConditionalCheckFailedException as error:
            raise EndpointNotFound(f"webhook endpoint {endpoint_id!r} not found") from error
        return _endpoint_of(tenant, answer["Attributes"])

    def subscribed(self, tenant: str, event_type: EventType) -> list[WebhookEndpoint]:
        """The tenant's enabled endpoints that take `event_type` (what a delivery fans out to)."""
        return [endpoint for endpoint in self.list_for_tenant(tenant) if endpoint.receives(event_type)]

    def create(self, endpoint: WebhookEndpoint) -> None:
        """Store a new endpoint; TooManyEndpoints when the tenant is at its bound."""
        try:
            transact(
                self._client,
                [
                    {
                        "Update": {
                            "TableName": self._table,
                            "Key": tenant_key(endpoint.tenant),
                            "UpdateExpression": "SET #count = if_not_exists(#count, :zero) + :one",
                            "ConditionExpression": "attribute_not_exists(#count) OR #count < :max",
                            "ExpressionAttributeNames": {"#count": "webhookCount"},
                            "ExpressionAttributeValues": {
                                ":zero": {"N": "0"},
                                ":one": {"N": "1"},
                                ":max": {"N": str(MAX_ENDPOINTS_PER_TENANT)},
                            },
                        }
                    },
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": _endpoint_item(endpoint),
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                ],
            )
        except TransactionCancelled as cancelled:
            if cancelled.failed(0):
                raise TooManyEndpoints(
                    f"a tenant has at most {MAX_ENDPOINTS_PER_TENANT} webhook endpoints"
                ) from cancelled
            raise

    def delete(self, tenant: str, endpoint_id: str) -> None:
        """Remove the tenant's endpoint; EndpointNotFound when it has none by that id."""
        try:
            transact(
                self._client,
                [
                    {
                        "Delete": {
                            "TableName": self._table,
                            "Key": endpoint_key(tenant, endpoint_id),
                            "ConditionExpression": "attribute_exists(pk)",
                        }
                    },
                    {
                        "Update": {
                            "TableName": self._table,
                            "Key": tenant_key(tenant),
                            "UpdateExpression": "SET webhookCount = webhookCount - :one",
                            "ConditionExpression": "webhookCount > :zero",
                            "ExpressionAttributeValues": {":zero": {"N": "0"}, ":one": {"N": "1"}},
                        }
                    },
                ],
            )
        except TransactionCancelled as cancelled:
            if cancelled.failed(0):
                raise EndpointNotFound(f"webhook endpoint {endpoint_id!r} not found") from cancelled
            raise
