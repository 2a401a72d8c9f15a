"""resolve_region: region domains and URLs to API and login base URLs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crmphone.errors import ConfigError
from crmphone.platform import RegionUrls, resolve_region


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("mypurecloud.com", ("https://api.mypurecloud.com", "https://login.mypurecloud.com")),
        ("usw2.pure.cloud", ("https://api.usw2.pure.cloud", "https://login.usw2.pure.cloud")),
        (
            "mypurecloud.com.au",
            ("https://api.mypurecloud.com.au", "https://login.mypurecloud.com.au"),
        ),
        ("api.mypurecloud.ie", ("https://api.mypurecloud.ie", "https://login.mypurecloud.ie")),
        ("login.mypurecloud.jp", ("https://api.mypurecloud.jp", "https://login.mypurecloud.jp")),
        ("  MyPureCloud.DE.  ", ("https://api.mypurecloud.de", "https://login.mypurecloud.de")),
        (
            "https://api.mypurecloud.de",
            ("https://api.mypurecloud.de", "https://login.mypurecloud.de"),
        ),
        (
            "https://api.mypurecloud.de/",
            ("https://api.mypurecloud.de", "https://login.mypurecloud.de"),
        ),
        (
            "https://login.euw2.pure.cloud",
            ("https://api.euw2.pure.cloud", "https://login.euw2.pure.cloud"),
        ),
        (
            "https://genesys-proxy.corp.example:8443",
            ("https://genesys-proxy.corp.example:8443",) * 2,
        ),
        ("http://127.0.0.1:51234", ("http://127.0.0.1:51234", "http://127.0.0.1:51234")),
        ("http://localhost:8080/", ("http://localhost:8080", "http://localhost:8080")),
        ("http://[::1]:8080", ("http://[::1]:8080", "http://[::1]:8080")),
    ],
)
def test_resolves_shorthand_and_urls(value: str, expected: tuple[str, str]) -> None:
    """Each accepted form yields the documented (api_base, login_base) pair."""
    assert resolve_region(value) == expected


def test_result_unpacks_and_names_its_fields() -> None:
    """The result is a named pair that unpacks as api_base, login_base."""
    urls = resolve_region("mypurecloud.com")
    api_base, login_base = urls
    assert isinstance(urls, RegionUrls)
    assert (urls.api_base, urls.login_base) == (api_base, login_base)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "localhost",
        "127.0.0.1",
        "not a region",
        "mypurecloud",
        "-bad.example.com",
        "http://api.mypurecloud.com",
        "ftp://api.mypurecloud.com",
        "https://api.mypurecloud.com/api/v2",
        "https://api.mypurecloud.com?x=1",
        "https://user:pw@api.mypurecloud.com",
        "https://",
        "https://api.mypurecloud.com:99999",
        "https://api.mypurecloud.com:port",
    ],
)
def test_rejects_bad_values_naming_them(value: str) -> None:
    """A value that is neither a region domain nor a usable URL raises ConfigError naming it."""
    with pytest.raises(ConfigError) as info:
        resolve_region(value)
    assert info.value.key == "platform.region"
    if value.strip():
        assert repr(value) in str(info.value)


def test_rejects_non_strings() -> None:
    """A non-string region is a ConfigError, not an AttributeError."""
    with pytest.raises(ConfigError):
        resolve_region(42)  # type: ignore[arg-type]


_label = st.from_regex(r"[a-z][a-z0-9-]{0,10}[a-z0-9]", fullmatch=True)
_domains = st.lists(_label, min_size=2, max_size=4).map(".".join)


@given(_domains)
def test_any_region_domain_round_trips_through_its_urls(domain: str) -> None:
    """For any region domain, the shorthand and both derived URLs resolve to the same pair."""
    urls = resolve_region(domain)
    if domain.startswith(("api.", "login.")):
        return  # the prefix is read as the host part; covered by the parametrized cases
    assert urls == (f"https://api.{domain}", f"https://login.{domain}")
    assert resolve_region(urls.api_base) == urls
    assert resolve_region(urls.login_base) == urls


@given(st.text(max_size=60))
def test_arbitrary_text_yields_urls_or_config_error(value: str) -> None:
    """No input makes resolve_region raise anything but ConfigError."""
    try:
        urls = resolve_region(value)
    except ConfigError:
        return
    assert urls.api_base.startswith(("https://", "http://"))
    assert urls.login_base.startswith(("https://", "http://"))
