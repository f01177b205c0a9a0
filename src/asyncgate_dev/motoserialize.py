"""DynamoDB attribute values serialized by moto (moto 5.2.5) without the generic walk, patched in place.

Written as it would be offered to moto:

    core/serialize: serialize DynamoDB AttributeValues that are already in wire form directly

    The JSON response serializer walks the botocore shape of every value: for a structure it visits
    each of the shape's members and asks the attribute picker for it, which instantiates every alias
    provider and tries each key and its `xform_name`. An `AttributeValue` has ten members, so every
    attribute of every item costs ten such look-ups, nested maps and lists again for each element:
    serializing a query's or a GetItem's items was the largest single cost of a DynamoDB call (more
    than the operation itself for an item with a few nested maps).

    The DynamoDB backends hand the serializer attribute values that are already dicts in wire form
    (`{"S": "..."}`, `{"M": {...}}`). A value whose members are all S, N, SS, NS, M, L, NULL or BOOL,
    with the Python types the generic path passes through unchanged (str, bool, lists of str, and
    nested values of the same kind), is now copied as it is; anything else (B and BS are
    base64-encoded, unexpected types are converted) still takes the generic path. The output is
    the same JSON.

`install()` is idempotent; `asyncgate_dev.motofix.install()` calls it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

_lock = threading.Lock()
_MARK = "_asyncgate_attribute_values"
_originals: dict[str, Callable[..., Any]] = {}
# The members of DynamoDB's AttributeValue shape (the same in the DynamoDB Streams model).
ATTRIBUTE_VALUE_MEMBERS = frozenset({"S", "N", "B", "SS", "NS", "BS", "M", "L", "NULL", "BOOL"})


def install() -> None:
    from moto.core.serialize import BaseJSONSerializer  # noqa: PLC0415 - only where moto runs

    with _lock:
        if getattr(BaseJSONSerializer, _MARK, False):
            return
        _originals["structure"] = BaseJSONSerializer._serialize_type_structure
        setattr(BaseJSONSerializer, "_serialize_type_structure", _serialize_type_structure)  # noqa: B010
        setattr(BaseJSONSerializer, _MARK, True)


def _serialize_type_structure(
    serializer: Any, serialized: dict[str, Any], value: Any, shape: Any, key: str
) -> None:
    if shape.name == "AttributeValue" and set(shape.members) == ATTRIBUTE_VALUE_MEMBERS:
        wire = wire_form(value)
        if wire is not None:
            if key:
                serialized[shape.serialization.get("name", key)] = wire
            else:
                serialized.update(wire)
            return
    _originals["structure"](serializer, serialized, value, shape, key)


def wire_form(value: Any) -> dict[str, Any] | None:
    """A copy of an attribute value that the generic serializer would write unchanged, else None."""
    if not isinstance(value, dict):
        return None
    wire: dict[str, Any] = {}
    for member, inner in value.items():
        if (member in {"S", "N"} and isinstance(inner, str)) or (
            member in {"NULL", "BOOL"} and isinstance(inner, bool)
        ):
            wire[member] = inner
        elif (
            member in {"SS", "NS"} and isinstance(inner, list) and all(isinstance(one, str) for one in inner)
        ):
            wire[member] = list(inner)
        elif member == "M" and isinstance(inner, dict):
            entries = {name: wire_form(entry) for name, entry in inner.items()}
            if any(entry is None for entry in entries.values()):
                return None
            wire[member] = entries
        elif member == "L" and isinstance(inner, list):
            elements = [wire_form(element) for element in inner]
            if any(element is None for element in elements):
                return None
            wire[member] = elements
        else:
            return None
    return wire
