"""API keys, stored only as SHA-256 hashes: the table never holds a usable key."""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import TYPE_CHECKING

from pydantic import BaseModel

from asyncgate.domain.clock import format_ts, utcnow

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

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


def hash_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()


def _key(key_hash: str) -> dict[str, dict[str, str]]:
    return {"pk": {"S": f"APIKEY#{key_hash}"}, "sk": {"S": KEY_SK}}


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

    def put(self, api_key: str, tenant: str, scopes: frozenset[Scope]) -> None:
        self._client.put_item(
            TableName=self._table,
            Item={
                **_key(hash_key(api_key)),
                "tenant": {"S": tenant},
                "scopes": {"SS": sorted(scope.value for scope in scopes)},
                "createdAt": {"S": format_ts(utcnow())},
            },
        )
