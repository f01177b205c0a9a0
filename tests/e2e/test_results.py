"""The results bucket in the local stack: outputs copied into the emulator's S3 and read by presigned
URLs on its endpoint, over real HTTP."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
import requests

from asyncgate_dev.simprovider import FAKE_CONTENT
from tests.e2e.conftest import DevStack
from tests.e2e.test_local_stack import follow, submit

pytestmark = pytest.mark.e2e


def test_a_sim_output_is_served_from_the_results_bucket(dev_stack: DevStack) -> None:
    execution_id = submit(dev_stack, {"durationSeconds": 0.5}).json()["executionId"]
    done = follow(dev_stack, execution_id)
    assert done["status"] == "succeeded"
    [output] = done["result"]["outputs"]
    assert (output["stored"], output["contentType"]) == (True, "video/mp4")
    url = urlsplit(output["url"])
    assert f"{url.scheme}://{url.netloc}" == dev_stack.dev.aws_endpoint, "presigned on the emulator"
    assert url.path.startswith("/asyncgate-resultsbucket/results/acme/")
    assert "X-Amz-Signature=" in url.query
    fetched = requests.get(output["url"], timeout=10)
    assert fetched.status_code == 200
    assert fetched.headers["content-type"] == "video/mp4"
    assert fetched.content == FAKE_CONTENT["video/mp4"]
    # The provider's own URL stays in the raw result.
    [raw] = done["result"]["raw"]["outputs"]
    assert raw["url"] != output["url"]
    assert requests.get(raw["url"], timeout=10).content == fetched.content
