"""The health server over a real socket, and /metrics as the Prometheus parser reads it."""

from __future__ import annotations

import socket

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from crmphone.errors import TransportError
from crmphone.health import (
    CONTENT_TYPE,
    ConnectorMetrics,
    HealthServer,
    Metrics,
    Readiness,
)


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, keyed by name and sorted labels, via the reference parser."""
    result: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            assert isinstance(sample, Sample)
            result[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return result


def _types(text: str) -> dict[str, str]:
    return {family.name: family.type for family in text_string_to_metric_families(text)}


async def test_endpoints_over_a_real_socket() -> None:
    """/livez is 200, /readyz 200 by default, /metrics carries the 0.0.4 content type."""
    metrics = ConnectorMetrics()
    async with (
        HealthServer(metrics) as server,
        httpx.AsyncClient(base_url=server.url, timeout=5) as http,
    ):
        assert server.port > 0
        assert server.url == f"http://127.0.0.1:{server.port}"
        live = await http.get("/livez")
        assert (live.status_code, live.json()) == (200, {"status": "live"})
        ready = await http.get("/readyz")
        assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
        scrape = await http.get("/metrics")
        assert scrape.status_code == 200
        assert scrape.headers["content-type"] == CONTENT_TYPE
        assert scrape.headers["content-type"].startswith("text/plain; version=0.0.4")
        assert (await http.get("/nothing")).status_code == 404
        assert (await http.post("/metrics")).status_code == 405


async def test_readiness_flips_with_its_callback() -> None:
    """/readyz follows the callback: 503 with the JSON reason, then 200 once it says ready."""
    state = {"readiness": Readiness.no("notification channel not connected")}
    async with (
        HealthServer(ConnectorMetrics(), ready=lambda: state["readiness"]) as server,
        httpx.AsyncClient(base_url=server.url, timeout=5) as http,
    ):
        first = await http.get("/readyz")
        assert first.status_code == 503
        assert first.json() == {
            "status": "not ready",
            "reason": "notification channel not connected",
        }
        state["readiness"] = Readiness.yes()
        assert (await http.get("/readyz")).status_code == 200
        state["readiness"] = Readiness.no("draining")
        assert (await http.get("/readyz")).json()["reason"] == "draining"
        # Liveness does not depend on readiness.
        assert (await http.get("/livez")).status_code == 200


async def test_readiness_accepts_bools_coroutines_and_survives_failures() -> None:
    """A bool, an async check, and a raising check (503, exception type only) all work."""
    answers: list[object] = [False, True]

    async def check() -> bool | Readiness:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        assert isinstance(answer, bool)
        return answer

    async with (
        HealthServer(Metrics(), ready=check) as server,
        httpx.AsyncClient(base_url=server.url, timeout=5) as http,
    ):
        not_ready = await http.get("/readyz")
        assert (not_ready.status_code, not_ready.json()["reason"]) == (503, "not ready")
        assert (await http.get("/readyz")).status_code == 200
        answers.append(RuntimeError("token abc123 leaked"))
        failed = await http.get("/readyz")
        assert failed.status_code == 503
        assert failed.json()["reason"] == "readiness check failed (RuntimeError)"
        assert "abc123" not in failed.text


async def test_metrics_parse_with_the_prometheus_parser() -> None:
    """Every pre-defined series parses, with the right types, labels and values."""
    metrics = ConnectorMetrics(proc=None)  # the /proc series have their own tests
    metrics.add_adapter("salesforce")
    metrics.events_in.inc()
    metrics.events_in.inc(2)
    metrics.writes_done.labels(adapter="webhook").inc()
    metrics.write_retries.labels(adapter="webhook").inc(3)
    metrics.dead_letters.labels(adapter="webhook").inc()
    metrics.channel_reconnects.inc()
    metrics.duplicates_dropped.inc(4)
    metrics.outbox_depth.labels(adapter="webhook").set(7)
    metrics.notifications_pending.set(5)
    metrics.tls_unverified.labels(target="webhook").set(1)

    async with (
        HealthServer(metrics) as server,
        httpx.AsyncClient(base_url=server.url, timeout=5) as http,
    ):
        text = (await http.get("/metrics")).text

    assert _types(text) == {
        "crmphone_events_in": "counter",
        "crmphone_writes_done": "counter",
        "crmphone_write_retries": "counter",
        "crmphone_dead_letters": "counter",
        "crmphone_outbox_depth": "gauge",
        "crmphone_adapter_gauge": "gauge",
        "crmphone_channel_reconnects": "counter",
        "crmphone_duplicates_dropped": "counter",
        "crmphone_asyncio_tasks": "gauge",
        "crmphone_notifications_pending": "gauge",
        "crmphone_tls_verification_disabled": "gauge",
    }
    web = (("adapter", "webhook"),)
    sf = (("adapter", "salesforce"),)
    samples = _samples(text)
    assert samples.pop(("crmphone_asyncio_tasks", ())) >= 1
    assert samples == {
        ("crmphone_events_in_total", ()): 3,
        ("crmphone_writes_done_total", web): 1,
        ("crmphone_writes_done_total", sf): 0,
        ("crmphone_write_retries_total", web): 3,
        ("crmphone_write_retries_total", sf): 0,
        ("crmphone_dead_letters_total", web): 1,
        ("crmphone_dead_letters_total", sf): 0,
        ("crmphone_outbox_depth", web): 7,
        ("crmphone_channel_reconnects_total", ()): 1,
        ("crmphone_duplicates_dropped_total", ()): 4,
        ("crmphone_notifications_pending", ()): 5,
        ("crmphone_tls_verification_disabled", (("target", "webhook"),)): 1,
    }
    assert "# HELP crmphone_events_in_total " in text
    assert "# TYPE crmphone_outbox_depth gauge" in text


async def test_gauge_functions_are_read_at_scrape_time() -> None:
    """A gauge's function is called on every scrape, so the value is always current."""
    depths = {"webhook": 2, "salesforce": 0}
    metrics = ConnectorMetrics()
    metrics.outbox_depth.set_labelled_function(lambda: dict(depths))
    async with (
        HealthServer(metrics) as server,
        httpx.AsyncClient(base_url=server.url, timeout=5) as http,
    ):
        first = _samples((await http.get("/metrics")).text)
        depths["webhook"] = 9
        second = _samples((await http.get("/metrics")).text)
    key = ("crmphone_outbox_depth", (("adapter", "webhook"),))
    assert (first[key], second[key]) == (2, 9)
    assert second[("crmphone_outbox_depth", (("adapter", "salesforce"),))] == 0


def test_a_failing_gauge_function_leaves_only_its_sample_out() -> None:
    """One broken function costs its own sample; the rest of the scrape is intact."""
    metrics = Metrics()
    broken = metrics.gauge("broken_gauge", "Raises.")
    broken.set_function(lambda: 1 / 0)
    fine = metrics.gauge("fine_gauge", "Works.", ["kind"])
    fine.labels(kind="a").set_function(lambda: 5)
    fine.labels(kind="b").set_function(lambda: 1 / 0)
    samples = _samples(metrics.render())
    assert samples == {("fine_gauge", (("kind", "a"),)): 5}


def test_label_values_and_help_are_escaped() -> None:
    """Quotes, backslashes and newlines in label values and help survive the round trip."""
    metrics = Metrics()
    counter = metrics.counter("odd_total", 'Help with a \\ backslash\nand "quotes".', ["adapter"])
    nasty = 'we"b\\hook\nline2 {x="y"}'
    counter.labels(adapter=nasty).inc(2)
    text = metrics.render()
    assert r'odd_total{adapter="we\"b\\hook\nline2 {x=\"y\"}"} 2' in text
    assert '# HELP odd_total Help with a \\\\ backslash\\nand "quotes".' in text
    (family,) = text_string_to_metric_families(text)
    assert family.documentation == 'Help with a \\ backslash\nand "quotes".'
    assert family.samples[0].labels == {"adapter": nasty}
    assert family.samples[0].value == 2


def test_special_values_render_in_the_exposition_format() -> None:
    """Fractions, infinities and NaN use the format's spellings and parse back."""
    metrics = Metrics()
    gauge = metrics.gauge("special", "Values.", ["v"])
    gauge.labels(v="half").set(0.5)
    gauge.labels(v="inf").set(float("inf"))
    gauge.labels(v="minus").set(float("-inf"))
    gauge.labels(v="nan").set(float("nan"))
    text = metrics.render()
    assert 'special{v="inf"} +Inf' in text
    assert 'special{v="minus"} -Inf' in text
    assert 'special{v="nan"} NaN' in text
    samples = _samples(text)
    assert samples[("special", (("v", "half"),))] == 0.5
    assert samples[("special", (("v", "inf"),))] == float("inf")


def test_registry_refuses_misuse() -> None:
    """Bad names, a counter going down, wrong labels and a second definition are errors."""
    metrics = Metrics()
    with pytest.raises(ValueError, match="must end in _total"):
        metrics.counter("events", "No suffix.")
    with pytest.raises(ValueError, match="not a valid Prometheus metric name"):
        metrics.gauge("bad-name", "Dash.")
    with pytest.raises(ValueError, match="not a valid Prometheus label name"):
        metrics.gauge("ok", "Label.", ["__reserved"])
    counter = metrics.counter("things_total", "Things.", ["adapter"])
    with pytest.raises(ValueError, match="takes labels"):
        counter.labels(adaptor="x")
    with pytest.raises(ValueError, match=r"use \.labels"):
        counter.inc()
    with pytest.raises(ValueError, match="cannot decrease"):
        counter.labels(adapter="x").inc(-1)
    with pytest.raises(ValueError, match="already defined"):
        metrics.counter("things_total", "Again.")
    assert counter.labels(adapter="x").value == 0
    assert metrics["things_total"] is counter


async def test_binds_loopback_by_default_and_reports_a_busy_port() -> None:
    """The default host is 127.0.0.1; a port already taken is a TransportError naming it."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(TransportError, match=f"127.0.0.1:{port}"):
            async with HealthServer(Metrics(), port=port):
                pass  # pragma: no cover - never reached
    server = HealthServer(Metrics())
    assert server.host == "127.0.0.1"
    async with server:
        port = server.port
    # Stopped: the port is released and a new server can take it.
    async with (
        HealthServer(Metrics(), port=port) as again,
        httpx.AsyncClient(base_url=again.url, timeout=5) as http,
    ):
        assert (await http.get("/livez")).status_code == 200
