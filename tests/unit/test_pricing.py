"""Prices by input: the price function, the bounds a catalog must give every priced input (refused when it
loads otherwise), the shipped catalog's closed schemas and prices, and the price `GET /v1/models` shows."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from asyncgate.api.models import ModelView
from asyncgate.domain.catalog import Catalog, ModelSpec, load_catalog
from asyncgate.domain.pricing import Price
from asyncgate.settings import DEFAULT_CATALOG

CATALOG = load_catalog(DEFAULT_CATALOG)


def _spec(name: str) -> ModelSpec:
    spec = CATALOG.get(name)
    assert spec is not None
    return spec


def _closed(properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "properties": properties}


IMAGES = {"type": "integer", "minimum": 1, "maximum": 4, "default": 1}
CAT = {"prompt": "a cat"}
CLIP = {"prompt": "a cat", "image_url": "https://example.com/cat.png"}


def _images(**schema: Any) -> dict[str, Any]:
    """A closed input schema whose one input, `images`, has this schema."""
    return _closed({"images": schema})


def _model(price: dict[str, Any], schema: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "model": "m", "provider": "sim", "providerModel": "m", "async": True, "cancel": True,
        "expectedDurationSeconds": 5, "maxDurationSeconds": 60, "price": price, "inputSchema": schema,
    }  # fmt: skip


def _load(price: dict[str, Any], schema: dict[str, Any] | None) -> ModelSpec:
    return Catalog.model_validate({"models": [_model(price, schema)]}).models[0]


def test_a_term_adds_its_credits_per_unit_and_an_absent_input_counts_at_its_default() -> None:
    spec = _load({"credits": 1, "perInput": [{"input": "images", "credits": 2}]}, _closed({"images": IMAGES}))
    assert spec.price_of({}) == 3
    assert spec.price_of({"images": 4}) == 9


def test_started_units_count_whole_and_numeric_strings_are_numbers() -> None:
    schema = _closed(
        {
            "tokens": {"type": "integer", "minimum": 16, "maximum": 128_000, "default": 128_000},
            "duration": {"enum": ["5", "10"], "default": "5"},
        }
    )
    price = {
        "credits": 8,
        "perInput": [
            {"input": "tokens", "credits": 2, "per": 1000},
            {"input": "duration", "credits": 5},
        ],
    }
    spec = _load(price, schema)
    assert spec.price_of({"tokens": 1500, "duration": "10"}) == 8 + 2 * 2 + 5 * 10
    assert spec.price_of({"tokens": 16}) == 8 + 2 + 25
    assert spec.price_of({}) == 8 + 2 * 128 + 25


def test_a_nested_input_is_priced_by_its_path() -> None:
    schema = _closed({"sim": _closed({"outputs": IMAGES})})
    spec = _load({"credits": 0, "perInput": [{"input": "sim.outputs", "credits": 2}]}, schema)
    inputs: list[dict[str, Any]] = [{}, {"sim": {}}, {"sim": {"outputs": 3}}]
    assert [spec.price_of(input) for input in inputs] == [2, 2, 6]


def test_fractions_of_credits_add_up_exactly() -> None:
    spec = _load({"credits": 0.1, "perInput": [{"input": "images", "credits": 0.1}]}, _images(**IMAGES))
    assert spec.price_of({"images": 2}) == 0.3
    assert Price(credits=10).of({"anything": 1}, None) == 10


@pytest.mark.parametrize(
    ("price", "schema", "refusal"),
    [
        ({"input": "seconds"}, _images(**IMAGES), "has no property 'seconds'"),
        ({"input": "images"}, None, "no input schema"),
        ({"input": "images"}, {"type": "object", "properties": {"images": IMAGES}}, "not a closed object"),
        (
            {"input": "images"},
            {**_images(**IMAGES), "patternProperties": {"^x": {}}},
            "not a closed object",
        ),
        ({"input": "sim.outputs"}, _closed({"sim": {"type": "object"}}), "sim is not a closed object"),
        ({"input": "images"}, _images(type="integer", minimum=1, default=1), "no minimum or no maximum"),
        ({"input": "images"}, _images(type="integer", maximum=4, default=1), "no minimum or no maximum"),
        ({"input": "images"}, _images(type="string", default="1"), "neither a number"),
        ({"input": "images"}, _images(enum=["5", "long"], default="5"), "'long' is not a number"),
        ({"input": "images"}, _images(enum=[True], default=True), "True is not a number"),
        ({"input": "images"}, _images(enum=["NaN"], default="NaN"), "not a finite number"),
        ({"input": "images"}, _images(type="integer", minimum=-4, maximum=4, default=1), "below 0"),
        ({"input": "images"}, _images(**{**IMAGES, "default": None}), "None is not a number"),
        ({"input": "images"}, _images(**{**IMAGES, "default": 9}), "default is out of its bounds"),
        ({"input": "images"}, _images(type="integer", minimum=1, maximum=4), "no default"),
    ],
    ids=[
        "unknown-input", "no-schema", "open-schema", "pattern-properties", "open-nested-object", "no-maximum",
        "no-minimum", "free-string", "non-numeric-enum", "boolean-enum", "nan", "negative", "null-default",
        "default-out-of-bounds", "no-default",
    ],
)  # fmt: skip
def test_a_term_the_schema_does_not_bound_is_refused_when_the_catalog_loads(
    price: dict[str, Any], schema: dict[str, Any] | None, refusal: str
) -> None:
    with pytest.raises(ValidationError, match=refusal):
        _load({"credits": 0, "perInput": [{**price, "credits": 1}]}, schema)


def test_a_pass_through_price_is_flat_and_a_misspelt_price_is_refused() -> None:
    defaults = {"cancel": True, "expectedDurationSeconds": 5, "maxDurationSeconds": 60}
    priced = {**defaults, "price": {"credits": 1, "perInput": [{"input": "images", "credits": 1}]}}
    with pytest.raises(ValidationError, match=r"providers\.fal: perInput 'images': the model has no input"):
        Catalog.model_validate({"models": [], "providers": {"fal": priced}})
    with pytest.raises(ValidationError, match="perinput"):
        _load({"credits": 1, "perinput": []}, None)
    with pytest.raises(ValidationError, match="greater than 0"):
        _load({"credits": 0, "perInput": [{"input": "images", "credits": 1, "per": 0}]}, _images(**IMAGES))


def test_every_async_named_model_takes_only_the_inputs_its_schema_names() -> None:
    for spec in CATALOG.models:
        if spec.is_async:
            assert spec.input_schema is not None, spec.model
            assert spec.input_schema["additionalProperties"] is False, spec.model
            messages = [error["message"] for error in spec.input_errors({"unknown": 1})]
            assert "Additional properties are not allowed ('unknown' was unexpected)" in messages, spec.model


@given(
    st.fixed_dictionaries(
        {},
        optional={
            "durationSeconds": st.floats(min_value=0.01, max_value=3600),
            "outputs": st.integers(min_value=1, max_value=16),
            "outcome": st.sampled_from(["succeed", "fail", "incomplete"]),
        },
    )
)
def test_sim_video_costs_10_whatever_its_input(sim: dict[str, Any]) -> None:
    spec = _spec("sim-video")
    assert spec.input_errors({"prompt": "a fox", "sim": sim}) == []
    assert spec.price_of({"prompt": "a fox", "sim": sim}) == 10


@pytest.mark.parametrize(
    ("model", "input", "price"),
    [
        ("sim-image", {}, 2),
        ("sim-image", {"sim": {"outputs": 16}}, 32),
        ("flux-schnell", CAT, 1),
        ("flux-schnell", {**CAT, "num_images": 4}, 4),
        ("kling-video", CLIP, 25),
        ("kling-video", {**CLIP, "duration": "10"}, 50),
        ("gpt-5-background", {"input": "hi", "max_output_tokens": 2000}, 12),
        ("gpt-5-background", {"input": "hi"}, 8 + 2 * 128),
    ],
)
def test_the_shipped_prices(model: str, input: dict[str, Any], price: int) -> None:
    spec = _spec(model)
    assert spec.input_errors(input) == []
    assert spec.price_of(input) == price


@pytest.mark.parametrize(
    ("model", "input", "field"),
    [
        ("flux-schnell", {**CAT, "num_images": 5}, "num_images"),
        ("flux-schnell", {**CAT, "image_size": {"width": 14142, "height": 14142}}, "image_size"),
        ("kling-video", {**CLIP, "duration": "15"}, "duration"),
        ("gpt-5-background", {"input": "hi", "max_output_tokens": 200_000}, "max_output_tokens"),
        ("gpt-5-background", {"input": "hi", "metadata": {str(n): "v" for n in range(16)}}, "metadata"),
    ],
    ids=["five-images", "custom-size", "fifteen-seconds", "token-cap", "metadata-full"],
)
def test_what_would_cost_more_than_the_catalog_prices_is_refused(
    model: str, input: dict[str, Any], field: str
) -> None:
    assert [error["field"] for error in _spec(model).input_errors(input)] == [f"body.input.{field}"]


@pytest.mark.parametrize("field", ["sync_mode", "tools", "service_tier", "previous_response_id", "stream"])
def test_inputs_that_would_change_the_bill_unseen_are_unknown(field: str) -> None:
    model = "flux-schnell" if field == "sync_mode" else "gpt-5-background"
    base = {"prompt": "a cat"} if model == "flux-schnell" else {"input": "hi"}
    [error] = _spec(model).input_errors({**base, field: True})
    assert error["message"] == f"Additional properties are not allowed ('{field}' was unexpected)"


def test_models_shows_the_price_of_the_defaults_and_its_terms() -> None:
    view = ModelView.of(_spec("sim-image")).model_dump(mode="json", by_alias=True)
    assert view["price"] == {
        "credits": 2,
        "base": 0,
        "perInput": [{"input": "sim.outputs", "credits": 2, "per": 1}],
    }
    flat = ModelView.of(_spec("sim-video")).model_dump(mode="json", by_alias=True)
    assert flat["price"] == {"credits": 10, "base": 10, "perInput": []}
