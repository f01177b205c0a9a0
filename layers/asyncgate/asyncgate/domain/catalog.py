"""The model catalog: data (a JSON file shipped in the layer, overridable per deployment), not code."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from asyncgate.domain.schedule import PollPlan

# Whole numbers stay whole on the wire (`"credits": 10`, as the contract writes them), fractions stay.
Number = int | float


class Price(BaseModel):
    credits: Number = Field(ge=0)


class ModelSpec(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True, extra="forbid")

    model: str
    provider: str
    provider_model: str
    is_async: bool = Field(alias="async")
    cancel: bool
    expected_duration_seconds: Number = Field(gt=0)
    max_duration_seconds: Number = Field(gt=0)
    price: Price
    # inline: the provider is called during submit; queued: the poll queue dispatches it.
    dispatch: Literal["inline", "queued"] = "inline"
    # Consecutive transient provider errors tolerated before the execution fails PROVIDER_UNREACHABLE.
    poll_error_budget: int = Field(default=5, ge=0)
    input_schema: dict[str, Any] | None = None

    @property
    def poll_plan(self) -> PollPlan:
        return PollPlan(
            expected_seconds=self.expected_duration_seconds, max_seconds=self.max_duration_seconds
        )


class Catalog(BaseModel):
    models: list[ModelSpec]

    def get(self, model: str) -> ModelSpec | None:
        return next((spec for spec in self.models if spec.model == model), None)


@cache
def load_catalog(path: Path) -> Catalog:
    return Catalog.model_validate(json.loads(path.read_text(encoding="utf-8")))
