"""A tenant's account (credits, reservations, the live-execution counter and its limit), the ledger
that explains every movement of its balance, and the rules that move credits with an execution.

Credits live in two pots: `credits` is spendable, `reserved_credits` is held by live executions.
Submit moves the model's price from the first to the second; the terminal transition releases it,
keeping what the execution cost and giving back the rest. Each movement is one ledger entry, so the sum
of the ledger's `credits` deltas is the spendable balance and the sum of its `reserved` deltas is what is
held: every balance can be explained line by line.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from asyncgate.domain.catalog import Number

# Lower-case letters, digits, `-` and `_`: a tenant id is part of keys whose other parts are upper case,
# so it can never be mistaken for one of them.
TENANT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
DEFAULT_QUEUE_LIMIT = 100_000

LedgerKind = Literal["grant", "reserve", "settle", "refund"]


class Account(BaseModel):
    tenant: str
    credits: Number = 0
    reserved_credits: Number = 0
    queue_limit: int = DEFAULT_QUEUE_LIMIT
    live_executions: int = 0
    created_at: datetime | None = None
    updated_at: datetime | None = None


class LedgerEntry(BaseModel):
    """One movement. `credits` and `reserved` are the changes to the two pots; `charged` is what a
    settlement kept (the execution's cost)."""

    at: datetime
    kind: LedgerKind
    credits: Number
    reserved: Number = 0
    charged: Number = 0
    execution_id: str | None = None
    note: str | None = None


def is_tenant_id(value: str) -> bool:
    return TENANT_ID.fullmatch(value) is not None


def reservation_entry(execution_id: str, price: Number, now: datetime) -> LedgerEntry:
    return LedgerEntry(at=now, kind="reserve", credits=-price, reserved=price, execution_id=execution_id)


def release_entry(execution_id: str, reserved: Number, cost: Number, now: datetime) -> LedgerEntry:
    """The terminal transition's movement: the reservation leaves the reserved pot, what was not
    spent goes back to the spendable one. A cost above the reservation is never charged (the balance
    could go negative): the reservation is the most an execution can cost."""
    charged = min(cost, reserved)
    return LedgerEntry(
        at=now,
        kind="settle" if charged else "refund",
        credits=_exact(reserved - charged),
        reserved=-reserved,
        charged=charged,
        execution_id=execution_id,
    )


def grant_entry(amount: Number, now: datetime, note: str | None) -> LedgerEntry:
    return LedgerEntry(at=now, kind="grant", credits=amount, note=note)


def _exact(value: Number) -> Number:
    """Float arithmetic on decimal prices (10.1 - 0.1) is rounded to what a price can hold."""
    rounded = round(value, 6)
    return int(rounded) if float(rounded).is_integer() else rounded


class Totals(BaseModel):
    credits: Number = Field(default=0)
    reserved: Number = Field(default=0)


def ledger_totals(entries: list[LedgerEntry]) -> Totals:
    return Totals(
        credits=_exact(sum(entry.credits for entry in entries)),
        reserved=_exact(sum(entry.reserved for entry in entries)),
    )
