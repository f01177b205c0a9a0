"""The webhook receiver's misbehaviours for the chaos harness: answering later than a sender waits,
answering with a huge body, and coming back at the same URL after being down."""

from __future__ import annotations

import pytest
import requests

from asyncgate_dev.devprocess import free_port
from asyncgate_dev.receiver import WebhookReceiver


def test_a_paused_answer_outlasts_the_senders_wait_and_the_delivery_is_recorded() -> None:
    with WebhookReceiver(pause=lambda count: 30.0 if count == 1 else 0.0) as receiver:
        with pytest.raises(requests.ReadTimeout):
            requests.post(receiver.url, data=b"first", timeout=0.5)
        assert requests.post(receiver.url, data=b"second", timeout=10).status_code == 200
        assert [item.body for item in receiver.received] == [b"first", b"second"]


def test_a_huge_answer_is_streamed_whole() -> None:
    with WebhookReceiver(answer_bytes=3 * 65536 + 7) as receiver:
        answer = requests.post(receiver.url, data=b"{}", timeout=10)
    assert (answer.status_code, len(answer.content)) == (200, 3 * 65536 + 7)


def test_a_receiver_down_comes_back_at_its_url() -> None:
    receiver = WebhookReceiver(port=free_port())
    url = receiver.url
    with pytest.raises(requests.ConnectionError):
        requests.post(url, data=b"{}", timeout=10)
    with receiver:
        assert requests.post(url, data=b"{}", timeout=10).status_code == 200
    with pytest.raises(requests.ConnectionError):
        requests.post(url, data=b"{}", timeout=10)
    with receiver:
        assert receiver.url == url
        assert requests.post(url, data=b"{}", timeout=10).status_code == 200
