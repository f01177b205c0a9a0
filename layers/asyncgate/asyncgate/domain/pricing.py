"""What a job costs, from its input.

A catalog price is a base (`credits`, what every job costs) and per-input terms: each term adds its
credits for every `per` units of one input (images, seconds of video, a token cap), started units counted
whole. The price of a submit is evaluated against its validated input; an input left out counts at its
schema's `default` (what the provider does without it). When the catalog loads, every term is checked
against the model's input schema: the input must be a number or a numeric string that the schema bounds,
inside objects the schema closes, so the catalog can never offer an unbounded price, nor one that an
input it does not see can change.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

# Whole numbers stay whole on the wire (`"credits": 10`, as the contract writes them), fractions stay.
Number = int | float

_STRICT = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True, extra="forbid")


class UnboundedPrice(ValueError):
    """A price term that the model's input schema does not bound."""


class PriceTerm(BaseModel):
    model_config = _STRICT

    # The input's path, dotted into nested objects (`sim.outputs`).
    input: str = Field(pattern=r"^[^.]+(\.[^.]+)*$")
    credits: Number = Field(ge=0)
    # Units per charge: `"credits": 2.5, "per": 1000` on a token cap charges 5 for 1 500 tokens.
    per: Number = Field(default=1, gt=0)

    @property
    def path(self) -> tuple[str, ...]:
        return tuple(self.input.split("."))


class Price(BaseModel):
    model_config = _STRICT

    # What every job costs: the whole price of a model without terms.
    credits: Number = Field(ge=0)
    per_input: tuple[PriceTerm, ...] = ()

    def of(self, input: Mapping[str, Any], schema: Mapping[str, Any] | None) -> Number:
        """The price of an input that `schema` (the model's input schema) has validated."""
        total = _decimal(self.credits)
        for term in self.per_input:
            value = _value_at(input, term.path)
            if value is None:
                value = _priced_property(schema, term)["default"]
            total += _decimal(term.credits) * math.ceil(_units(value) / _decimal(term.per))
        return _number(total)

    def check_bounded(self, schema: Mapping[str, Any] | None) -> None:
        """Raises UnboundedPrice unless `schema` bounds every term (a price without terms always is)."""
        for term in self.per_input:
            node = _priced_property(schema, term)
            low, high = _bounds(term, node)
            if low < 0:
                raise UnboundedPrice(f"perInput {term.input!r}: the schema lets it go below 0 ({low})")
            if "default" not in node:
                raise UnboundedPrice(
                    f"perInput {term.input!r}: the schema gives no default (what the provider does "
                    "without it), so an input that leaves it out has no price"
                )
            if not low <= _checked_units(term, node["default"]) <= high:
                raise UnboundedPrice(f"perInput {term.input!r}: the schema's default is out of its bounds")


def _priced_property(schema: Mapping[str, Any] | None, term: PriceTerm) -> Mapping[str, Any]:
    """The schema of the term's input, reached through closed objects only: an input the price does not
    see could otherwise change the job."""
    if schema is None:
        raise UnboundedPrice(f"perInput {term.input!r}: the model has no input schema to bound it")
    node: Any = schema
    for depth, name in enumerate(term.path):
        where = ".".join(term.path[:depth]) or "the input"
        if not _closed_object(node):
            raise UnboundedPrice(
                f"perInput {term.input!r}: {where} is not a closed object (type object, "
                "additionalProperties false, no patternProperties)"
            )
        node = node.get("properties", {}).get(name)
        if node is None:
            raise UnboundedPrice(f"perInput {term.input!r}: {where} has no property {name!r}")
    if not isinstance(node, Mapping):
        raise UnboundedPrice(f"perInput {term.input!r}: its schema is not an object")
    return node


def _closed_object(node: Any) -> bool:
    return (
        isinstance(node, Mapping)
        and node.get("type") == "object"
        and node.get("additionalProperties") is False
        and "patternProperties" not in node
    )


def _bounds(term: PriceTerm, node: Mapping[str, Any]) -> tuple[Decimal, Decimal]:
    """The least and greatest value the property's schema allows: an enum (or const) of numbers or
    numeric strings, or an integer or number with a minimum and a maximum (exclusive ones too)."""
    if "enum" in node or "const" in node:
        members = node["enum"] if "enum" in node else [node["const"]]
        values = [_checked_units(term, member) for member in members]
        if not values:
            raise UnboundedPrice(f"perInput {term.input!r}: its enum is empty")
        return min(values), max(values)
    if node.get("type") not in ("integer", "number"):
        raise UnboundedPrice(
            f"perInput {term.input!r}: neither a number nor an enum of numbers (type {node.get('type')!r})"
        )
    lows = [_checked_units(term, node[key]) for key in ("minimum", "exclusiveMinimum") if key in node]
    highs = [_checked_units(term, node[key]) for key in ("maximum", "exclusiveMaximum") if key in node]
    if not lows or not highs:
        raise UnboundedPrice(f"perInput {term.input!r}: the schema gives it no minimum or no maximum")
    return max(lows), min(highs)


def _value_at(input: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    """The value at `path`, None when it (or an object on the way) is left out."""
    value: Any = input
    for name in path:
        if not isinstance(value, Mapping) or name not in value:
            return None
        value = value[name]
    return value


def _checked_units(term: PriceTerm, value: Any) -> Decimal:
    try:
        return _units(value)
    except UnboundedPrice as error:
        raise UnboundedPrice(f"perInput {term.input!r}: {error}") from None


def _units(value: Any) -> Decimal:
    """A priced value as a number: a JSON number, or a string that is one (Kling's duration "5")."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise UnboundedPrice(f"{value!r} is not a number")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise UnboundedPrice(f"{value!r} is not a number") from None
    if not number.is_finite():
        raise UnboundedPrice(f"{value!r} is not a finite number")
    return number


def _decimal(value: Number) -> Decimal:
    # Through the decimal text, so 0.1 + 0.2 credits are 0.3, not 0.30000000000000004.
    return Decimal(str(value))


def _number(value: Decimal) -> Number:
    return int(value) if value == value.to_integral_value() else float(value)
