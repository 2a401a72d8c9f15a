"""The ``[[adapters]]`` table's ``verify`` reaching the Salesforce adapter, against the emulator's
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

from crmphone.adapters import AdapterContext, CallLog, LogStage
from crmphone.errors import ConfigError, CrmRetryableError
from crmphone.sandbox.relay import TcpDelayProxy
from crmphone.testing import fake_call_logs
from crmphone_salesforce import SalesforceAdapter
from crmphone_salesforce.emulator import ONE_MATCH_NUMBER, SalesforceEmulator

SESSION_ENV = "SF_VERIFY_TEST_SESSION"

Build = Callable[..., Awaitable[SalesforceAdapter]]


def connected_log() -> CallLog:
    """A fresh call's log at connect."""
    return fake_call_logs(number=ONE_MATCH_NUMBER)[LogStage.CONNECTED]


def tasks_of(emulator: SalesforceEmulator, log: CallLog) -> int:
    """How many Tasks carry the call's key."""
    return len(emulator.model.find("Task", CTI_Call_Id__c=log.key))


def other_ca(folder: Path) -> Path:
    """A CA bundle that signed nothing the emulator serves."""
    path = folder / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    return path


@pytest.fixture
async def build(
    emulator: SalesforceEmulator, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Build]:
    """Build adapters from a table's ``verify`` (the context) and options; closed at the end."""
    monkeypatch.setenv(SESSION_ENV, emulator.session_id)
    made: list[tuple[SalesforceAdapter, AdapterContext]] = []

    async def make(verify: bool | str = True, **options: Any) -> SalesforceAdapter:
        values: dict[str, Any] = {
            "instance_url": emulator.url,
            "session_id_env": SESSION_ENV,
            "timeout": 5.0,
            **options,
        }
        context = AdapterContext(name="sf-verify", timeout=5.0, verify=verify)
        adapter = SalesforceAdapter.from_options(values, context)
        made.append((adapter, context))
        return adapter

    yield make
    for adapter, context in made:
        await adapter.close()
        context.close()


async def test_verify_naming_the_emulators_ca_is_trusted_without_ca_file(
    build: Build, emulator: SalesforceEmulator
) -> None:
    """verify = "<the emulator's CA>" on the table alone lets the adapter write its Task."""
    adapter = await build(verify=str(emulator.ca_file))
    assert adapter.settings.verify == str(emulator.ca_file)
    assert adapter.settings.ca_file is None
    await adapter.start()
    log = connected_log()
    await adapter.log_call(log)
    assert tasks_of(emulator, log) == 1


async def test_verify_false_works_without_any_ca_and_changes_nothing_else(
    build: Build, emulator: SalesforceEmulator
) -> None:
    """verify = false talks to the private-CA emulator with no CA at all; only verify differs."""
    trusting = await build(verify=str(emulator.ca_file))
    unverified = await build(verify=False)
    assert unverified.settings.verify is False
    assert attrs.evolve(unverified.settings, verify=True) == attrs.evolve(
        trusting.settings, verify=True
    )
    log = connected_log()
    # urllib3 names every unverified host (pytest turns warnings into errors).
    with pytest.warns(InsecureRequestWarning):
        await unverified.log_call(log)
    assert tasks_of(emulator, log) == 1


async def test_default_verification_refuses_the_private_ca_once_per_attempt(
    build: Build, emulator: SalesforceEmulator
) -> None:
    """No verify and no ca_file: the system store refuses the emulator with the TLS message that
    names verify and ca_file, one connection per attempt and no request ever answered."""
    async with TcpDelayProxy((emulator.host, emulator.port)) as proxy:
        adapter = await build(instance_url=f"https://127.0.0.1:{proxy.port}")
        assert adapter.settings.verify is True
        for attempt in (1, 2):
            with pytest.raises(CrmRetryableError, match="TLS failed") as raised:
                await adapter.log_call(connected_log())
            assert 'verify = "<CA bundle>"' in str(raised.value)
            assert "ca_file" in str(raised.value)
            assert proxy.connections == attempt
    assert emulator.model.stats.total == 0


async def test_ca_file_with_the_default_verify_is_trusted(
    build: Build, emulator: SalesforceEmulator
) -> None:
    """The plugin's own ca_file keeps working when the table leaves verify at true."""
    adapter = await build(ca_file=str(emulator.ca_file))
    assert adapter.settings.verify == str(emulator.ca_file)
    log = connected_log()
    await adapter.log_call(log)
    assert tasks_of(emulator, log) == 1


async def test_ca_file_and_verify_naming_the_same_bundle_agree(
    build: Build, emulator: SalesforceEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same CA bundle spelt two ways (absolute in verify, relative in ca_file) is one CA."""
    monkeypatch.chdir(emulator.ca_file.parent)
    adapter = await build(verify=str(emulator.ca_file), ca_file=emulator.ca_file.name)
    log = connected_log()
    await adapter.log_call(log)
    assert tasks_of(emulator, log) == 1


async def test_ca_file_with_verify_false_is_refused(
    build: Build, emulator: SalesforceEmulator
) -> None:
    """ca_file (check against this CA) with verify = false (check nothing) is a ConfigError on
    ca_file that says which to remove."""
    with pytest.raises(ConfigError, match="verify = false") as raised:
        await build(verify=False, ca_file=str(emulator.ca_file))
    assert raised.value.key == "adapters.sf-verify.ca_file"
    assert "remove" in str(raised.value)


async def test_ca_file_and_verify_naming_two_bundles_are_refused(
    build: Build, emulator: SalesforceEmulator, tmp_path: Path
) -> None:
    """Two different CA bundles, one in verify and one in ca_file, are a ConfigError on ca_file."""
    with pytest.raises(ConfigError, match="use one") as raised:
        await build(verify=str(other_ca(tmp_path)), ca_file=str(emulator.ca_file))
    assert raised.value.key == "adapters.sf-verify.ca_file"
