"""The model catalog: data (a JSON file shipped in the layer, overridable per deployment), not code."""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

# Re-exported (the `as` says so to mypy): credit amounts were typed here first and are imported from here.
from asyncgate.domain.pricing import Number as Number  # noqa: PLC0414
from asyncgate.domain.pricing import Price, UnboundedPrice
from asyncgate.domain.schedule import PollPlan


class ProviderDefaults(BaseModel):
    """How a model runs and what it costs. A named model (ModelSpec) says it for itself; a provider's
    entry in the catalog's `providers` says it for every pass-through id of that provider
    (`<provider>/<provider's model id>`, e.g. `replicate/owner/name`), so any of its models is reachable
    without a catalog entry of its own."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True, extra="forbid")

    is_async: bool = Field(default=True, alias="async")
    cancel: bool
    expected_duration_seconds: Number = Field(gt=0)
    max_duration_seconds: Number = Field(gt=0)
    price: Price
    # inline: the provider is called during submit; queued: the poll queue dispatches it.
    dispatch: Literal["inline", "queued"] = "inline"
    # Consecutive transient provider errors tolerated before the execution fails PROVIDER_UNREACHABLE.
    poll_error_budget: int = Field(default=5, ge=0)


class ModelSpec(ProviderDefaults):
    model: str
    provider: str
    provider_model: str
    # A named model says whether its provider runs it asynchronously.
    is_async: bool = Field(alias="async")
    # A JSON Schema (2020-12) the model's `input` must satisfy: checked at submit (422), and checked itself
    # when the catalog loads, so a broken schema fails the deployment rather than a request.
    input_schema: dict[str, Any] | None = None

    @field_validator("input_schema")
    @classmethod
    def _valid_schema(cls, schema: dict[str, Any] | None) -> dict[str, Any] | None:
        if schema is not None:
            from jsonschema import Draft202012Validator  # noqa: PLC0415 - only catalogs with schemas pay

            Draft202012Validator.check_schema(schema)
        return schema

    @model_validator(mode="after")
    def _price_bounded_by_schema(self) -> ModelSpec:
        try:
            self.price.check_bounded(self.input_schema)
        except UnboundedPrice as error:
            raise ValueError(f"model {self.model!r}: {error}") from None
        return self

    def price_of(self, input: Mapping[str, Any]) -> Number:
        """What a job with this (validated) input costs: `{}` prices the schema's defaults."""
        return self.price.of(input, self.input_schema)

    def input_errors(self, input: dict[str, Any]) -> list[dict[str, str]]:
        """Where `input` breaks the model's schema (the contract's `details.errors`), none without one."""
        if self.input_schema is None:
            return []
        from jsonschema import Draft202012Validator  # noqa: PLC0415

        validator = Draft202012Validator(self.input_schema)
        return [
            {
                "field": ".".join(["body", "input", *(str(part) for part in error.absolute_path)]),
                "message": error.message,
            }
            for error in sorted(
                validator.iter_errors(input), key=lambda error: list(map(str, error.absolute_path))
            )
        ]

    @property
    def poll_plan(self) -> PollPlan:
        return PollPlan(
            expected_seconds=self.expected_duration_seconds, max_seconds=self.max_duration_seconds
        )


class Catalog(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    models: list[ModelSpec]
    providers: dict[str, ProviderDefaults] = Field(default_factory=dict)
    # Providers described rather than coded, by name: each a declarative adapter's description
    # (asyncgate.providers.declarative.DeclarativeSpec), read when the provider is first used.
    http_providers: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _described_providers_hold(self) -> Catalog:
        """A broken description fails the catalog's load (the deployment), never a request. Imported
        only when the catalog describes a provider: the description's model lives with its adapter."""
        if self.http_providers:
            from asyncgate.providers.declarative import DeclarativeSpec  # noqa: PLC0415

            for name, described in self.http_providers.items():
                spec = DeclarativeSpec.model_validate(described)
                if spec.name != name:
                    raise ValueError(f"httpProviders.{name} describes a provider named {spec.name!r}")
        return self

    @model_validator(mode="after")
    def _pass_through_prices_are_flat(self) -> Catalog:
        """A pass-through id has no input schema, so nothing bounds a price by its input."""
        for name, defaults in self.providers.items():
            try:
                defaults.price.check_bounded(None)
            except UnboundedPrice as error:
                raise ValueError(f"providers.{name}: {error}") from None
        return self

    def get(self, model: str) -> ModelSpec | None:
        """The named model, else a pass-through id `<provider>/<provider model>` of a listed provider."""
        named = next((spec for spec in self.models if spec.model == model), None)
        if named is not None:
            return named
        provider, _, provider_model = model.partition("/")
        defaults = self.providers.get(provider)
        if defaults is None or not provider_model:
            return None
        return ModelSpec(model=model, provider=provider, provider_model=provider_model, **dict(defaults))


@cache
def load_catalog(path: Path) -> Catalog:
    return Catalog.model_validate(json.loads(path.read_text(encoding="utf-8")))
