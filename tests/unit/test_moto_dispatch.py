"""asyncgate_dev.motodispatch: moto's server finds a host's backend as before, once per host."""

from __future__ import annotations

import pytest
from moto import backends
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

from asyncgate_dev import motodispatch, motofix

HOSTS = [
    "dynamodb.us-east-1.amazonaws.com",
    "sqs.us-east-1.amazonaws.com",
    "s3.amazonaws.com",
    "moto_api",
    None,
]


def test_each_host_gets_the_backend_moto_finds_and_is_looked_up_once(monkeypatch: pytest.MonkeyPatch) -> None:
    motofix.install()
    dispatcher = DomainDispatcherApplication(create_backend_app)
    expected = [motodispatch._originals["get_backend_for_host"](dispatcher, host) for host in HOSTS]
    listings = []
    listing = backends.list_of_moto_modules

    def counted() -> object:
        listings.append(1)
        return listing()

    monkeypatch.setattr(backends, "list_of_moto_modules", counted)
    for _ in range(3):
        assert [dispatcher.get_backend_for_host(host) for host in HOSTS] == expected
    assert expected[:2] == ["dynamodb", "sqs"]
    assert len(listings) <= len(HOSTS), "the module directory is listed once per host at most"
