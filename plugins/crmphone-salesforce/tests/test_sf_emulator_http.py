"""The Salesforce emulator over real HTTPS on loopback, driven by unmodified simple-salesforce."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import requests
import trustme
from simple_salesforce import Salesforce, format_soql
from simple_salesforce.exceptions import (
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceMoreThanOneRecord,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)

from crmphone_salesforce.emulator import (
    HTML_NAME,
    HTML_NAME_NUMBER,
    ONE_MATCH_NUMBER,
    ExternalId,
    SalesforceEmulator,
    SalesforceEmulatorThread,
    SalesforceSettings,
    escape_sosl,
)

API_VERSION = "62.0"
PHONE_SEARCH = "FIND {{{}}} IN PHONE FIELDS RETURNING Contact(Id, Name, AccountId), Lead(Id, Name), Account(Id, Name)"  # fmt: skip


def phone_search(sf: Salesforce, number: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = sf.search(PHONE_SEARCH.format(escape_sosl(number)))[
        "searchRecords"
    ]
    return found


def content(error: Exception) -> Any:
    return getattr(error, "content", None)


# ---------------------------------------------------------------------- records


def test_task_create_get_update_delete(salesforce_emulator_client: Salesforce) -> None:
    """sf.Task.create/get/update/delete round-trip with Salesforce's codes."""
    sf = salesforce_emulator_client
    created = sf.Task.create(
        {"Subject": "Inbound call", "CallType": "Inbound", "TaskSubtype": "Call"}
    )
    assert created["success"] is True
    assert created["id"].startswith("00T")
    task = sf.Task.get(created["id"])
    assert task["attributes"]["type"] == "Task"
    assert task["Subject"] == "Inbound call"
    assert (
        sf.Task.update(created["id"], {"Status": "Completed", "CallDurationInSeconds": 61}) == 204
    )
    assert sf.Task.get(created["id"])["CallDurationInSeconds"] == 61
    assert sf.Task.delete(created["id"]) == 204
    with pytest.raises(SalesforceResourceNotFound):
        sf.Task.get(created["id"])


def test_upsert_by_external_id(
    salesforce_emulator: SalesforceEmulatorThread, salesforce_emulator_client: Salesforce
) -> None:
    """sf.Task.upsert creates (201) then updates (200) one Task per call id."""
    sf = salesforce_emulator_client
    first = sf.Task.upsert("CTI_Call_Id__c/conv-1", {"Subject": "Call", "Status": "In Progress"}, raw_response=True)  # fmt: skip
    assert first.status_code == 201
    assert first.json()["created"] is True
    assert sf.Task.upsert("CTI_Call_Id__c/conv-1", {"Status": "Completed"}) == 200
    assert (
        salesforce_emulator.model.find("Task", CTI_Call_Id__c="conv-1")[0]["Status"] == "Completed"
    )
    assert salesforce_emulator.model.count("Task") == 1
    by_id = sf.Task.get_by_custom_id("CTI_Call_Id__c", "conv-1")
    assert by_id["Id"] == first.json()["id"]


def test_upsert_errors_surface_as_simple_salesforce_exceptions(
    salesforce_emulator_client: Salesforce,
) -> None:
    """404 for a field that is no external id, 400 for bad values, each with its error array."""
    sf = salesforce_emulator_client
    with pytest.raises(SalesforceResourceNotFound) as not_found:
        sf.Task.upsert("Subject/x", {})
    assert content(not_found.value)[0]["errorCode"] == "NOT_FOUND"
    assert "Subject" in content(not_found.value)[0]["message"]
    with pytest.raises(SalesforceMalformedRequest) as bad:
        sf.Task.upsert(
            "CTI_Call_Id__c/conv-2", {"CallType": "INBOUND", "CallDurationInSeconds": ""}
        )
    assert content(bad.value)[0]["errorCode"] == "JSON_PARSER_ERROR"
    with pytest.raises(SalesforceMalformedRequest) as picklist:
        sf.Task.upsert("CTI_Call_Id__c/conv-2", {"CallType": "INBOUND"})
    assert content(picklist.value) == [
        {
            "message": "Call Type: bad value for restricted picklist field: INBOUND",
            "errorCode": "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
            "fields": ["CallType"],
        }
    ]


def test_duplicate_external_id_on_create(salesforce_emulator_client: Salesforce) -> None:
    """Creating a Task whose CTI_Call_Id__c is taken is 400 DUPLICATE_VALUE."""
    sf = salesforce_emulator_client
    sf.Task.create({"CTI_Call_Id__c": "conv-3"})
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.Task.create({"CTI_Call_Id__c": "conv-3"})
    assert content(caught.value)[0]["errorCode"] == "DUPLICATE_VALUE"


def test_upsert_with_several_matches_is_more_than_one_record() -> None:
    """A non-unique external id held twice makes upsert answer 300 (SalesforceMoreThanOneRecord)."""
    settings = SalesforceSettings(
        external_ids=(ExternalId("Task", "CTI_Call_Id__c", unique=False),)
    )
    with (
        SalesforceEmulatorThread(seed=1, settings=settings) as emulator,
        requests.Session() as http,
    ):
        http.verify, http.trust_env = str(emulator.ca_file), False
        sf = Salesforce(instance_url=emulator.url, session_id=emulator.session_id, version=API_VERSION, session=http)  # fmt: skip
        ids = [sf.Task.create({"CTI_Call_Id__c": "twice"})["id"] for _ in range(2)]
        with pytest.raises(SalesforceMoreThanOneRecord) as caught:
            sf.Task.upsert("CTI_Call_Id__c/twice", {"Subject": "which?"})
        assert content(caught.value) == [
            f"/services/data/v{API_VERSION}/sobjects/Task/{i}" for i in ids
        ]


def test_references_are_checked(salesforce_emulator_client: Salesforce) -> None:
    """A WhoId that is an Account id is FIELD_INTEGRITY_EXCEPTION naming WhoId."""
    sf = salesforce_emulator_client
    account = sf.query("SELECT Id FROM Account LIMIT 1")["records"][0]["Id"]
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.Task.create({"WhoId": account})
    assert content(caught.value)[0]["errorCode"] == "FIELD_INTEGRITY_EXCEPTION"
    assert content(caught.value)[0]["fields"] == ["WhoId"]


def test_describe_and_limit_header(salesforce_emulator_client: Salesforce) -> None:
    """Describe names the external id; simple-salesforce reads Sforce-Limit-Info."""
    sf = salesforce_emulator_client
    fields = {f["name"]: f for f in sf.Task.describe()["fields"]}
    assert fields["CTI_Call_Id__c"]["externalId"] is True
    sf.query("SELECT Id FROM User")
    usage = sf.api_usage["api-usage"]
    assert (usage.used, usage.total) == (2, 15000)


# ---------------------------------------------------------------------- query and search


def test_query_finds_by_exact_phone(salesforce_emulator_client: Salesforce) -> None:
    """SOQL with a quoted literal finds the contact stored in that format."""
    sf = salesforce_emulator_client
    answer = sf.query("SELECT Id, Name FROM Contact WHERE Phone = '(555) 010-0001'")
    assert answer["totalSize"] == 1
    assert answer["done"] is True
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.query("SELECT Id FROM Contact WHERE Name LIKE 'A%'")
    assert content(caught.value)[0]["errorCode"] == "MALFORMED_QUERY"


def test_search_one_many_none_and_html_names(
    salesforce_emulator: SalesforceEmulatorThread, salesforce_emulator_client: Salesforce
) -> None:
    """Phone search finds one, two or no records; an HTML name comes back verbatim."""
    sf = salesforce_emulator_client
    model = salesforce_emulator.model
    assert len(phone_search(sf, ONE_MATCH_NUMBER)) == 1
    many = phone_search(sf, model.seeded_numbers("many")[0])
    assert sorted(r["attributes"]["type"] for r in many) == ["Contact", "Lead"]
    assert phone_search(sf, model.seeded_numbers("none")[0]) == []
    assert [r["Name"] for r in phone_search(sf, HTML_NAME_NUMBER)] == [HTML_NAME]
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.search("FIND {+15550100001} IN PHONE FIELDS")
    assert content(caught.value)[0]["errorCode"] == "MALFORMED_SEARCH"


def test_search_index_lag(
    salesforce_emulator: SalesforceEmulatorThread, salesforce_emulator_client: Salesforce
) -> None:
    """A new contact is invisible to search while the index lags, but visible to query."""
    sf = salesforce_emulator_client
    salesforce_emulator.model.search_lag = 3600.0
    contact = sf.Contact.create({"LastName": "Newcomer", "Phone": "+1 555 040 0001"})["id"]
    assert phone_search(sf, "+15550400001") == []
    assert sf.query(format_soql("SELECT Id FROM Contact WHERE Id = {}", contact))["totalSize"] == 1
    salesforce_emulator.model.search_lag = 0.0
    assert [r["Id"] for r in phone_search(sf, "+15550400001")] == [contact]


# ---------------------------------------------------------------------- collections


def test_collections_answer_200_per_record(
    salesforce_emulator: SalesforceEmulatorThread, salesforce_emulator_client: Salesforce
) -> None:
    """Create, update and upsert collections through sf.restful report each record."""
    sf = salesforce_emulator_client
    task = {"attributes": {"type": "Task"}}
    created = sf.restful("composite/sobjects", method="POST", json={"allOrNone": False, "records": [{**task, "Subject": "a"}, {**task, "Status": "Nope"}]})  # fmt: skip
    assert [r["success"] for r in created] == [True, False]
    assert created[1]["errors"][0]["statusCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    updated = sf.restful("composite/sobjects", method="PATCH", json={"records": [{**task, "Id": created[0]["id"], "Subject": "b"}]})  # fmt: skip
    assert updated == [{"id": created[0]["id"], "success": True, "errors": []}]
    records = [{**task, "CTI_Call_Id__c": f"call-{n}", "Status": "Completed"} for n in range(200)]
    upserted = sf.restful("composite/sobjects/Task/CTI_Call_Id__c", method="PATCH", json={"allOrNone": True, "records": records})  # fmt: skip
    assert len(upserted) == 200
    assert all(r["created"] for r in upserted)
    assert salesforce_emulator.model.stats.requests["composite"] == 3
    assert salesforce_emulator.model.usage.used == 3


def test_collection_over_200_records_is_refused(salesforce_emulator_client: Salesforce) -> None:
    """201 records are 400 EXCEEDED_ID_LIMIT."""
    records = [{"attributes": {"type": "Task"}, "Subject": str(n)} for n in range(201)]
    with pytest.raises(SalesforceMalformedRequest) as caught:
        salesforce_emulator_client.restful("composite/sobjects", method="POST", json={"records": records})  # fmt: skip
    assert content(caught.value)[0]["errorCode"] == "EXCEEDED_ID_LIMIT"


# ---------------------------------------------------------------------- faults and limits


def test_faults_surface_as_simple_salesforce_exceptions(
    salesforce_emulator: SalesforceEmulatorThread, salesforce_emulator_client: Salesforce
) -> None:
    """Injected 401, 403 and 503 reach simple-salesforce as its exceptions, once each."""
    sf = salesforce_emulator_client
    faults = salesforce_emulator.model.faults
    faults.fail_next("expired_session")
    with pytest.raises(SalesforceExpiredSession):
        sf.query("SELECT Id FROM Task")
    faults.fail_next("request_limit", route="composite")
    sf.query("SELECT Id FROM Task")  # not a composite request: the fault waits
    with pytest.raises(SalesforceRefusedRequest) as refused:
        sf.restful("composite/sobjects", method="POST", json={"records": []})
    assert content(refused.value)[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"
    faults.fail_next("unavailable", retry_after=3)
    with pytest.raises(SalesforceGeneralError) as unavailable:
        sf.Task.create({"Subject": "lost"})
    assert unavailable.value.status == 503
    assert "Service Unavailable" in str(content(unavailable.value))
    assert sf.Task.create({"Subject": "kept"})["success"] is True


def test_daily_limit_spent(salesforce_emulator: SalesforceEmulatorThread, salesforce_emulator_client: Salesforce) -> None:  # fmt: skip
    """Once the allowance is spent requests are refused with REQUEST_LIMIT_EXCEEDED."""
    salesforce_emulator.model.usage.set_used(14_999)
    salesforce_emulator_client.query("SELECT Id FROM Task")
    with pytest.raises(SalesforceRefusedRequest):
        salesforce_emulator_client.query("SELECT Id FROM Task")


def test_expired_sessions(
    salesforce_emulator: SalesforceEmulatorThread, salesforce_emulator_client: Salesforce
) -> None:
    """After expire_sessions the session id is refused with INVALID_SESSION_ID."""
    salesforce_emulator.model.expire_sessions()
    with pytest.raises(SalesforceExpiredSession) as caught:
        salesforce_emulator_client.Task.create({"Subject": "x"})
    assert content(caught.value) == [
        {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}
    ]


def test_slow_answer_times_out_but_the_write_happened(
    salesforce_emulator: SalesforceEmulatorThread, salesforce_emulator_http: requests.Session
) -> None:
    """A client timing out on a slow answer loses the answer, not the write."""
    salesforce_emulator.model.faults.fail_next("slow", route="upsert", delay=5.0)
    url = f"{salesforce_emulator.url}/services/data/v{API_VERSION}/sobjects/Task/CTI_Call_Id__c/slow-1"
    headers = {"Authorization": f"Bearer {salesforce_emulator.session_id}"}
    with pytest.raises(requests.exceptions.ReadTimeout):
        salesforce_emulator_http.patch(url, json={"Subject": "late"}, headers=headers, timeout=0.3)
    assert salesforce_emulator.model.find("Task", CTI_Call_Id__c="slow-1")


# ---------------------------------------------------------------------- OAuth over HTTP


def test_versions_and_client_credentials_with_plain_requests(
    salesforce_emulator: SalesforceEmulatorThread, salesforce_emulator_http: requests.Session
) -> None:
    """The versions list needs no token; a client-credentials token then works for simple-salesforce."""
    http = salesforce_emulator_http
    versions = http.get(f"{salesforce_emulator.url}/services/data/", timeout=5).json()
    assert {"label": "Winter '25", "url": "/services/data/v62.0", "version": "62.0"} in versions
    form = {
        "grant_type": "client_credentials",
        "client_id": salesforce_emulator.client_id,
        "client_secret": salesforce_emulator.client_secret,
    }
    answer = http.post(salesforce_emulator.token_url, data=form, timeout=5)
    assert answer.status_code == 200
    token = answer.json()
    assert token["instance_url"] == salesforce_emulator.url
    sf = Salesforce(instance_url=token["instance_url"], session_id=token["access_token"], version=API_VERSION, session=http)  # fmt: skip
    assert sf.query("SELECT Id FROM User WHERE IsActive = true")["totalSize"] == 5
    refused = http.post(
        salesforce_emulator.token_url, data={**form, "client_secret": "x"}, timeout=5
    )
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_client"


def test_jwt_bearer_with_a_registered_certificate(
    salesforce_emulator: SalesforceEmulatorThread, salesforce_emulator_http: requests.Session
) -> None:
    """An RS256 assertion signed for a registered X.509 certificate yields a working token."""
    authority = trustme.CA(key_type=trustme.KeyType.RSA)
    leaf = authority.issue_cert("connected-app.example", key_type=trustme.KeyType.RSA)
    salesforce_emulator.model.auth.register_certificate(leaf.cert_chain_pems[0].bytes())
    claims = {
        "iss": salesforce_emulator.client_id,
        "sub": "grace.hopper@sandbox.example",
        "aud": "https://login.salesforce.com",
        "exp": str(int(time.time()) + 180),  # simple-salesforce sends exp as text
    }
    signed = jwt.encode(claims, leaf.private_key_pem.bytes(), algorithm="RS256")
    form = {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": signed}
    answer = salesforce_emulator_http.post(salesforce_emulator.token_url, data=form, timeout=5)
    assert answer.status_code == 200, answer.text
    sf = Salesforce(instance_url=salesforce_emulator.url, session_id=answer.json()["access_token"], version=API_VERSION, session=salesforce_emulator_http)  # fmt: skip
    task = sf.Task.get(sf.Task.create({"Subject": "by Grace"})["id"])
    assert task["OwnerId"] == salesforce_emulator.model.agent_user_ids[1]


# ---------------------------------------------------------------------- the server itself


def test_tls_is_real(salesforce_emulator: SalesforceEmulatorThread) -> None:
    """A client that does not trust the emulator's CA cannot talk to it."""
    with requests.Session() as untrusting:
        untrusting.trust_env = False
        with pytest.raises(requests.exceptions.SSLError):
            untrusting.get(f"{salesforce_emulator.url}/services/data/", timeout=5)


def _listening_addresses(port: int) -> set[str]:
    addresses = set()
    for table in (Path("/proc/net/tcp"), Path("/proc/net/tcp6")):
        if not table.exists():
            continue
        for line in table.read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.split(":")
            if state == "0A" and int(port_hex, 16) == port:  # 0A: LISTEN
                addresses.add(address)
    return addresses


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's socket table")
def test_binds_loopback_only_and_stop_leaves_nothing() -> None:
    """The server listens on 127.0.0.1 only; after stop the port, thread and key files are gone."""
    emulator = SalesforceEmulatorThread(seed=2)
    with emulator:
        port, ca_file = emulator.port, emulator.ca_file
        assert emulator.url == f"https://127.0.0.1:{port}"
        assert _listening_addresses(port) == {"0100007F"}  # 127.0.0.1, little-endian hex
        with requests.Session() as http:
            http.verify, http.trust_env = str(ca_file), False
            assert http.get(f"{emulator.url}/services/data/", timeout=5).status_code == 200
            started = time.monotonic()
    assert time.monotonic() - started < 2.0  # an idle kept-alive connection does not delay stop
    assert not emulator.alive
    assert not ca_file.exists()
    with (
        pytest.raises(ConnectionRefusedError),
        socket.create_connection(("127.0.0.1", port), timeout=1),
    ):
        pass


def test_stop_cuts_slow_answers_short() -> None:
    """Stopping while a slow answer is held returns promptly."""
    emulator = SalesforceEmulatorThread(seed=0)
    with emulator, requests.Session() as http:
        http.verify, http.trust_env = str(emulator.ca_file), False
        emulator.model.faults.fail_next("slow", delay=30.0)
        url = f"{emulator.url}/services/data/v{API_VERSION}/"
        outcome: list[Any] = []

        def slow_call() -> None:
            try:
                outcome.append(http.get(url, headers={"Authorization": f"Bearer {emulator.session_id}"}, timeout=10).status_code)  # fmt: skip
            except requests.RequestException as exc:
                outcome.append(exc)

        caller = threading.Thread(target=slow_call)
        caller.start()
        deadline = time.monotonic() + 5
        while emulator.model.stats.total == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        started = time.monotonic()
        emulator.close()
        caller.join(5)
    assert time.monotonic() - started < 1.5
    assert not caller.is_alive()
    assert outcome == [200]  # the held answer went out when the server stopped


async def test_async_lifecycle_serves_httpx() -> None:
    """The async emulator starts and stops on the running loop and serves any HTTPS client."""
    async with SalesforceEmulator(seed=5) as emulator:
        trusting = ssl.create_default_context(cafile=str(emulator.ca_file))
        async with httpx.AsyncClient(verify=trusting, trust_env=False) as client:
            answer = await client.get(
                f"{emulator.url}/services/data/v{API_VERSION}/limits",
                headers={"Authorization": f"Bearer {emulator.session_id}"},
            )
        assert answer.status_code == 200
        assert answer.headers["sforce-limit-info"] == "api-usage=1/15000"
        assert answer.headers["content-type"] == "application/json;charset=UTF-8"
    assert not emulator.running
    await asyncio.sleep(0)


def test_module_runs_until_interrupted() -> None:
    """python -m crmphone_salesforce.emulator prints where and how to connect, then serves."""
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    with subprocess.Popen(
        [sys.executable, "-m", "crmphone_salesforce.emulator", "--seed", "4"],
        stdout=subprocess.PIPE,
        text=True,
        env=environment,
    ) as process:
        _interrupt_when_serving(process)


def _interrupt_when_serving(process: subprocess.Popen[str]) -> None:
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        lines = [first] + [process.stdout.readline() for _ in range(3)]
        assert first.startswith("Salesforce emulator listening on https://127.0.0.1:")
        assert "trust this CA certificate" in lines[1]
        url = first.rsplit(" ", 1)[1].strip()
        ca_file = Path(lines[1].rsplit(" ", 1)[1].strip())
        with requests.Session() as http:
            http.verify, http.trust_env = str(ca_file), False
            assert http.get(f"{url}/services/data/", timeout=5).status_code == 200
        process.send_signal(signal.SIGINT)  # Ctrl+C: a clean stop that deletes the key files
        assert process.wait(10) == 0
        assert not ca_file.exists()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)
