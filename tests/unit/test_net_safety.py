"""Where solewatch may send a request somebody else's URL names (shared/net_safety.py): the rules partner
webhooks and Web Push share in production."""

from __future__ import annotations

import pytest

from shared.net_safety import is_public_address, public_url_problem, resolved_addresses_problem


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.partner.example/solewatch",  # a name: checked once resolved
        "https://hooks.partner.example:8443/x?y=1",
        "https://93.184.215.14/hooks",
        "https://[2606:4700::6810:84e5]/hooks",
    ],
)
def test_https_to_a_name_or_a_public_address_passes(url: str) -> None:
    assert public_url_problem(url) is None


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://hooks.partner.example/x", "the url must use https"),
        ("ftp://hooks.partner.example/x", "the url must use https"),
        ("https:///x", "the url must name a public host"),
        ("https://localhost/x", "the url must name a public host"),
        ("https://api.localhost/x", "the url must name a public host"),
        ("https://127.0.0.1/x", "the url must name a public host"),
        ("https://10.1.2.3/x", "the url must name a public host"),
        ("https://192.168.0.10/x", "the url must name a public host"),
        ("https://169.254.169.254/latest/meta-data", "the url must name a public host"),  # cloud metadata
        ("https://100.64.0.1/x", "the url must name a public host"),  # carrier-grade NAT
        ("https://[::1]/x", "the url must name a public host"),
        ("https://[fd00::1]/x", "the url must name a public host"),
        ("https://[::ffff:127.0.0.1]/x", "the url must name a public host"),  # IPv4-mapped loopback
    ],
)
def test_anything_else_is_refused_as_written(url: str, problem: str) -> None:
    assert public_url_problem(url) == problem


def test_the_message_names_what_is_refused() -> None:
    assert public_url_problem("http://push.example/x", what="endpoint") == "the endpoint must use https"


def test_a_name_is_refused_when_any_address_it_resolves_to_is_inside() -> None:
    assert resolved_addresses_problem("ok.example", ["93.184.215.14", "2606:4700::6810:84e5"]) is None
    assert resolved_addresses_problem("mixed.example", ["93.184.215.14", "10.0.0.5"]) == (
        "mixed.example resolves to a non-public address"
    )
    assert resolved_addresses_problem("inside.example", ["127.0.0.1"]) == (
        "inside.example resolves to a non-public address"
    )
    assert resolved_addresses_problem("nothing.example", []) == "nothing.example resolves to no address"


def test_public_means_globally_routable() -> None:
    assert is_public_address("1.1.1.1") and is_public_address("2001:4860:4860::8888")
    assert not any(map(is_public_address, ["127.0.0.1", "10.0.0.1", "172.16.0.1", "fe80::1", "0.0.0.0", "::"]))
