"""Webhook URLs: https to public hosts only."""

from __future__ import annotations

import pytest

from asyncgate.domain.webhook_url import InvalidWebhookUrl, check_webhook_url


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/hook",
        "https://hooks.example.co.uk:8443/a?b=c",
        "https://93.184.215.14/hook",
        "https://[2606:4700::1111]/hook",
    ],
)
def test_public_https_urls_are_accepted(url: str) -> None:
    assert check_webhook_url(url, allow_loopback_http=False) == url


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/hook",
        "ftp://example.com/hook",
        "https://",
        "not a url",
        "https://user:pw@example.com/",
        "https://localhost/hook",
        "https://127.0.0.1/hook",
        "https://2130706433/hook",
        "https://0177.0.0.1/hook",
        "https://127.1/hook",
        "https://10.0.0.8/hook",
        "https://172.16.3.4/hook",
        "https://192.168.1.1/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "https://[fd00::1]/hook",
        "https://[fe80::1]/hook",
        "https://224.0.0.1/hook",
        "https://0.0.0.0/hook",
        "https://metadata.google.internal/computeMetadata",
        "https://printer.local/hook",
        "https://intranet/hook",
        "https://example.com:0/hook",
        "https://example.com:99999/hook",
    ],
)
def test_private_or_plain_urls_are_refused(url: str) -> None:
    with pytest.raises(InvalidWebhookUrl):
        check_webhook_url(url, allow_loopback_http=False)


def test_the_local_stack_allows_loopback_http_only() -> None:
    assert check_webhook_url("http://127.0.0.1:8080/h", allow_loopback_http=True)
    assert check_webhook_url("http://localhost:9000/h", allow_loopback_http=True)
    with pytest.raises(InvalidWebhookUrl):
        check_webhook_url("http://10.0.0.1/h", allow_loopback_http=True)
    with pytest.raises(InvalidWebhookUrl):
        check_webhook_url("http://example.com/h", allow_loopback_http=True)
