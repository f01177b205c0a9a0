"""API keys, stored only as SHA-256 hashes: the table never holds a usable key."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from asyncgate.domain.clock import format_ts, parse_ts, utcnow

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

KEY_SK = "APIKEY"


class Scope(StrEnum):
    EXECUTION_WRITE = "execution:write"
    EXECUTION_READ = "execution:read"
    EXECUTION_CANCEL = "execution:cancel"
    WEBHOOK_MANAGE = "webhook:manage"


ALL_SCOPES = frozenset(Scope)


class Principal(BaseModel):
    """Who is calling: the tenant a key belongs to and what the key may do."""

    tenant: str
    scopes: frozenset[Scope]


class ApiKeyInfo(BaseModel):
    """What may be shown of a key after it was issued: never the key itself."""

    key_id: str
    tenant: str
    scopes: frozenset[Scope]
    created_at: datetime
    revoked: bool = False
    name: str | None = None


def hash_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()


def new_api_key() -> str:
    return "ag_" + secrets.token_urlsafe(32)


def key_id_of(key_hash: str) -> str:
    """A key's public name: a prefix of its hash, enough to tell a tenant's keys apart."""
    return "key_" + key_hash[:16]


def _key(key_hash: str) -> dict[str, AttributeValueTypeDef]:
    return {"pk": {"S": f"APIKEY#{key_hash}"}, "sk": {"S": KEY_SK}}


def _keys_partition(tenant: str) -> str:
    # A tenant's keys share one partition of the ByTenant index, so they can be listed and revoked.
    return f"KEYS#{tenant}"


class ApiKeyStore:
    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def lookup(self, api_key: str) -> Principal | None:
        answer = self._client.get_item(TableName=self._table, Key=_key(hash_key(api_key)))
        item = answer.get("Item")
        if not item or item.get("revoked", {}).get("BOOL"):
            return None
        return Principal(tenant=item["tenant"]["S"], scopes=frozenset(Scope(s) for s in item["scopes"]["SS"]))

    def put(
        self, api_key: str, tenant: str, scopes: frozenset[Scope], *, name: str | None = None
    ) -> ApiKeyInfo:
        """Store a key (its hash only) for `tenant`; the same key put again is replaced."""
        digest = hash_key(api_key)
        info = ApiKeyInfo(
            key_id=key_id_of(digest), tenant=tenant, scopes=scopes, created_at=utcnow(), name=name
        )
        item: dict[str, AttributeValueTypeDef] = {
            **_key(digest),
            "tenant": {"S": tenant},
            "scopes": {"SS": sorted(scope.value for scope in scopes)},
            "createdAt": {"S": format_ts(info.created_at)},
            "keyId": {"S": info.key_id},
            "tenantShard": {"S": _keys_partition(tenant)},
            "createdKey": {"S": f"{format_ts(info.created_at)}#{info.key_id}"},
        }
        if name:
            item["name"] = {"S": name}
        self._client.put_item(TableName=self._table, Item=item)
        return info

    def list(self, tenant: str) -> list[ApiKeyInfo]:
        """The tenant's keys, oldest first (from the index: a key issued a moment ago may be missing)."""
        return [_info(item) for item in self._items(tenant)]

    def revoke(self, tenant: str, key_id: str) -> bool:
        """Revoke the tenant's key named `key_id`; False if the tenant has no such key."""
        for item in self._items(tenant):
            if item["keyId"]["S"] == key_id:
                self._client.update_item(
                    TableName=self._table,
                    Key={"pk": item["pk"], "sk": item["sk"]},
                    UpdateExpression="SET revoked = :yes",
                    ExpressionAttributeValues={":yes": {"BOOL": True}},
                )
                return True
        return False

    def _items(self, tenant: str) -> Iterator[dict[str, AttributeValueTypeDef]]:
        request: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": "ByTenant",
            "KeyConditionExpression": "tenantShard = :keys",
            "ExpressionAttributeValues": {":keys": {"S": _keys_partition(tenant)}},
        }
        while True:
            answer = self._client.query(**request)
            for entry in answer.get("Items", []):
                # The index holds only keys: the item itself, read consistently, has the rest.
                item = self._client.get_item(
                    TableName=self._table, Key={"pk": entry["pk"], "sk": entry["sk"]}, ConsistentRead=True
                ).get("Item")
                if item:
                    yield item
            if "LastEvaluatedKey" not in answer:
                return
            request["ExclusiveStartKey"] = answer["LastEvaluatedKey"]


def _info(item: dict[str, AttributeValueTypeDef]) -> ApiKeyInfo:
    name = item.get("name")
    return ApiKeyInfo(
        key_id=item["keyId"]["S"],
        tenant=item["tenant"]["S"],
        scopes=frozenset(Scope(scope) for scope in item["scopes"]["SS"]),
        created_at=parse_ts(item["createdAt"]["S"]),
        revoked=item.get("revoked", {}).get("BOOL", False),
        name=name["S"] if name else None,
    )
