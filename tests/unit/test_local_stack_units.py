"""Pieces of the local stack that need no running stack."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from asyncgate_dev.handlers import TEMPLATE_PATH
from asyncgate_dev.localstack import (
    DEFAULT_TENANT,
    StackError,
    load_tenants,
    rate_seconds,
    refuse_what_does_not_run,
    unset_leaves_developers_own,
)
from asyncgate_dev.template import TemplateError, load_template


def test_the_template_runs_whole_in_the_local_stack() -> None:
    refuse_what_does_not_run(load_template(TEMPLATE_PATH))


def test_anything_the_local_stack_cannot_run_is_refused_by_name() -> None:
    template = load_template(TEMPLATE_PATH)
    template["Resources"]["Alerts"] = {"Type": "AWS::SNS::Topic", "Properties": {}}
    template["Resources"]["NotifyFunction"] = {
        "Type": "AWS::Serverless::Function",
        "Properties": {"Events": {"Changes": {"Type": "Kinesis", "Properties": {}}}},
    }
    with pytest.raises(
        StackError, match=r"Alerts \(AWS::SNS::Topic\).*NotifyFunction.Changes \(Kinesis event\)"
    ):
        refuse_what_does_not_run(template)


@pytest.mark.parametrize(
    ("expression", "seconds"), [("rate(1 minute)", 60), ("rate(5 minutes)", 300), ("rate(2 hours)", 7200)]
)
def test_rate_expressions(expression: str, seconds: int) -> None:
    assert rate_seconds(expression) == seconds


def test_cron_schedules_are_refused() -> None:
    with pytest.raises(TemplateError, match="rate"):
        rate_seconds("cron(0 12 * * ? *)")


def test_tenants_file_defaults_and_errors(tmp_path: Path) -> None:
    assert load_tenants(None) == [DEFAULT_TENANT]
    good = tmp_path / "tenants.json"
    good.write_text(json.dumps([{"tenant": "a", "apiKey": "k", "queueLimit": 5}]))
    [seed] = load_tenants(good)
    assert (seed.tenant, seed.api_key, seed.queue_limit, seed.credits) == ("a", "k", 5, 1_000_000)
    assert seed.scopes == ["execution:write", "execution:read", "execution:cancel", "webhook:manage"]
    assert seed.webhook_secret.startswith("whsec_")
    for bad in ("[]", "{}", '[{"tenant": "a"}]', '[{"tenant": "a", "apiKey": "k", "colour": 1}]', "not json"):
        good.write_text(bad)
        with pytest.raises(StackError, match="--tenants"):
            load_tenants(good)


def test_a_parameter_the_template_leaves_empty_does_not_hide_the_developers_variable() -> None:
    template = {"ASYNCGATE_FAL_URL": "", "FAL_KEY_PARAMETER": "", "RETENTION_DAYS": "7", "TABLE_NAME": "t"}
    environ = {"ASYNCGATE_FAL_URL": "http://127.0.0.1:8999", "RETENTION_DAYS": "3"}
    assert unset_leaves_developers_own(template, environ) == {
        "FAL_KEY_PARAMETER": "",
        "RETENTION_DAYS": "7",
        "TABLE_NAME": "t",
    }
