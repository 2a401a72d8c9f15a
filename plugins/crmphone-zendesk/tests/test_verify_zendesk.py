"""The ``[[adapters]]`` table's ``verify`` reaching the Zendesk adapter, against the emulator's
private CA over real loopback HTTPS: a CA bundle, verification off, the default, and the
settings that contradict each other."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
import trustme
from urllib3.exceptions import InsecureRequestWarning

from crmphone.adapters import AdapterContext, CallLog, LogStage, MatchOutcome
from crmphone.errors import ConfigError, CrmRetryableError
from crmphone.sandbox.relay import TcpDelayProxy
from crmphone.testing import fake_call_logs
from crmphone_zendesk import ZendeskAdapter
from crmphone_zendesk.emulator import ONE_MATCH_NUMBER, ZendeskEmulator

TOKEN_ENV = "ZD_VERIFY_TEST_TOKEN"

Build = Callable[..., Awaitable[ZendeskAdapter]]


def connected_log() -> CallLog:
    """A fresh call's log at connect."""
    return fake_call_logs(number=ONE_MATCH_NUMBER)[LogStage.CONNECTED]


async def write_one_call(adapter: ZendeskAdapter, emulator: ZendeskEmulator) -> None:
    """Look the caller up and log the connect: one ticket for the call must follow."""
    log = connected_log()
    match = await adapter.lookup_caller(log)
    assert match.outcome is MatchOutcome.ONE
    await adapter.log_call(attrs.evolve(log, match=match))
    assert len(emulator.model.tickets_by_external_id(log.key)) == 1


def other_ca(folder: Path) -> Path:
    """A CA bundle that signed nothing the emulator serves."""
    path = folder / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    return path


@pytest.fixture
async def build(
    zendesk_emulator: ZendeskEmulator, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Build]:
    """Build adapters from a table's ``verify`` (the context) and options; closed at the end."""
    monkeypatch.setenv(TOKEN_ENV, zendesk_emulator.api_token)
    made: list[tuple[ZendeskAdapter, AdapterContext]] = []

    async def make(verify: bool | str = True, **options: Any) -> ZendeskAdapter:
        values: dict[str, Any] = {
            "base_url": zendesk_emulator.url,
            "email": zendesk_emulator.email,
            "token_env": TOKEN_ENV,
            "timeout": 5.0,
            **options,
        }
        context = AdapterContext(name="zd-verify", timeout=5.0, verify=verify)
        adapter = ZendeskAdapter.from_options(values, context)
        made.append((adapter, context))
        return adapter

    yield make
    for adapter, context in made:
        await adapter.close()
        context.close()


async def test_verify_naming_the_emulators_ca_is_trusted_without_ca_file(
    build: Build, zendesk_emulator: ZendeskEmulator
) -> None:
    """verify = "<the emulator's CA>" on the table alone lets the adapter look up and log."""
    adapter = await build(verify=str(zendesk_emulator.ca_file))
    assert adapter.settings.verify == str(zendesk_emulator.ca_file)
    assert adapter.settings.ca_file is None
    await adapter.start()
    await write_one_call(adapter, zendesk_emulator)


async def test_verify_false_works_without_any_ca_and_changes_nothing_else(
    build: Build, zendesk_emulator: ZendeskEmulator
) -> None:
    """verify = false talks to the private-CA emulator with no CA at all; only verify differs."""
    trusting = await build(verify=str(zendesk_emulator.ca_file))
    unverified = await build(verify=False)
    assert unverified.settings.verify is False
    assert attrs.evolve(unverified.settings, verify=True) == attrs.evolve(
        trusting.settings, verify=True
    )
    # urllib3 names every unverified host (pytest turns warnings into errors).
    with pytest.warns(InsecureRequestWarning):
        await write_one_call(unverified, zendesk_emulator)


async def test_default_verification_refuses_the_private_ca_once_per_attempt(
    build: Build, zendesk_emulator: ZendeskEmulator
) -> None:
    """No verify and no ca_file: the system store refuses the emulator with the TLS message that
    names verify and ca_file, one connection per attempt and no request ever answered."""
    async with TcpDelayProxy((zendesk_emulator.host, zendesk_emulator.port)) as proxy:
        adapter = await build(base_url=f"https://127.0.0.1:{proxy.port}")
        assert adapter.settings.verify is True
        for attempt in (1, 2):
            with pytest.raises(CrmRetryableError, match="TLS failed") as raised:
                await adapter.lookup_caller(connected_log())
            assert 'verify = "<CA bundle>"' in str(raised.value)
            assert "ca_file" in str(raised.value)
            assert proxy.connections == attempt
    assert zendesk_emulator.model.stats.total == 0


async def test_ca_file_with_the_default_verify_is_trusted(
    build: Build, zendesk_emulator: ZendeskEmulator
) -> None:
    """The plugin's own ca_file keeps working when the table leaves verify at true."""
    adapter = await build(ca_file=str(zendesk_emulator.ca_file))
    assert adapter.settings.verify == str(zendesk_emulator.ca_file)
    await write_one_call(adapter, zendesk_emulator)


async def test_ca_file_and_verify_naming_the_same_bundle_agree(
    build: Build, zendesk_emulator: ZendeskEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same CA bundle spelt two ways (absolute in verify, relative in ca_file) is one CA."""
    monkeypatch.chdir(zendesk_emulator.ca_file.parent)
    adapter = await build(
        verify=str(zendesk_emulator.ca_file), ca_file=zendesk_emulator.ca_file.name
    )
    await write_one_call(adapter, zendesk_emulator)


async def test_ca_file_with_verify_false_is_refused(
    build: Build, zendesk_emulator: ZendeskEmulator
) -> None:
    """ca_file (check against this CA) with verify = false (check nothing) is a ConfigError on
    ca_file that says which to remove."""
    with pytest.raises(ConfigError, match="verify = false") as raised:
        await build(verify=False, ca_file=str(zendesk_emulator.ca_file))
    assert raised.value.key == "adapters.zd-verify.ca_file"
    assert "remove" in str(raised.value)


async def test_ca_file_and_verify_naming_two_bundles_are_refused(
    build: Build, zendesk_emulator: ZendeskEmulator, tmp_path: Path
) -> None:
    """Two different CA bundles, one in verify and one in ca_file, are a ConfigError on ca_file."""
    with pytest.raises(ConfigError, match="use one") as raised:
        await build(verify=str(other_ca(tmp_path)), ca_file=str(zendesk_emulator.ca_file))
    assert raised.value.key == "adapters.zd-verify.ca_file"
