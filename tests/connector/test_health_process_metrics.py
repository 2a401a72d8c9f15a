"""The process series on /metrics: memory, CPU time, descriptors, sockets and tasks, read live."""

from __future__ import annotations

import asyncio
import os
import resource
import socket
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from crmphone.errors import InvalidStateError
from crmphone.health import PROC_SELF, ConnectorMetrics, HealthServer

PROCESS_SERIES = {
    "process_resident_memory_bytes": "gauge",
    "process_cpu_seconds": "counter",
    "process_open_fds": "gauge",
    "crmphone_open_sockets": "gauge",
}

linux_only = pytest.mark.skipif(not (PROC_SELF / "stat").is_file(), reason="needs Linux /proc")


def _values(text: str) -> dict[str, float]:
    """Each unlabelled sample of an exposition by name, read with the reference parser."""
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.labels
    }


def _types(text: str) -> dict[str, str]:
    return {family.name: family.type for family in text_string_to_metric_families(text)}


def _fake_proc(root: Path, *, utime: int, stime: int, pages: int, links: list[str]) -> Path:
    """A directory laid out like /proc/<pid>: stat, statm and fd/ with one link per target."""
    proc = root / "proc"
    (proc / "fd").mkdir(parents=True)
    # The command name may hold spaces and parentheses; fields after it are counted from ')'.
    fields = ["S", *["0"] * 10, str(utime), str(stime), *["0"] * 30]
    (proc / "stat").write_text(f"4242 (odd) name) ({' '.join(fields)}\n")
    (proc / "statm").write_text(f"9999 {pages} 10 1 0 50 0\n")
    for number, target in enumerate(links):
        os.symlink(target, proc / "fd" / str(number))
    return proc


@linux_only
async def test_process_series_parse_and_read_this_process() -> None:
    """Over a real socket every process series parses, typed as Prometheus clients type them."""
    async with (
        HealthServer(ConnectorMetrics()) as server,
        httpx.AsyncClient(base_url=server.url, timeout=5) as http,
    ):
        text = (await http.get("/metrics")).text
    types = _types(text)
    assert {name: types.get(name) for name in PROCESS_SERIES} == PROCESS_SERIES
    assert types["crmphone_asyncio_tasks"] == "gauge"
    values = _values(text)
    status = (PROC_SELF / "status").read_text().split("VmRSS:")[1].split()
    assert values["process_resident_memory_bytes"] == pytest.approx(int(status[0]) * 1024, rel=0.2)
    assert values["process_cpu_seconds_total"] > 0
    # The listener and both ends of the scrape's connection are sockets of this process.
    assert values["process_open_fds"] >= values["crmphone_open_sockets"] >= 3
    assert values["crmphone_asyncio_tasks"] >= 1


@linux_only
async def test_sockets_and_descriptors_follow_the_sockets_opened_and_closed() -> None:
    """Two socket pairs show as four more sockets and descriptors, and go when closed."""
    async with (
        HealthServer(ConnectorMetrics()) as server,
        httpx.AsyncClient(base_url=server.url, timeout=5) as http,
    ):
        before = _values((await http.get("/metrics")).text)
        pairs = [socket.socketpair() for _ in range(2)]
        try:
            during = _values((await http.get("/metrics")).text)
        finally:
            for pair in pairs:
                for end in pair:
                    end.close()
        after = _values((await http.get("/metrics")).text)
    for name in ("crmphone_open_sockets", "process_open_fds"):
        assert during[name] - before[name] == 4, name
        assert after[name] == before[name], name


async def test_tasks_count_the_tasks_of_the_serving_loop() -> None:
    """Five waiting tasks add five to the gauge; once they finish it is back where it was."""
    release = asyncio.Event()
    async with (
        HealthServer(ConnectorMetrics()) as server,
        httpx.AsyncClient(base_url=server.url, timeout=5) as http,
    ):
        before = _values((await http.get("/metrics")).text)["crmphone_asyncio_tasks"]
        waiters = [asyncio.create_task(release.wait()) for _ in range(5)]
        during = _values((await http.get("/metrics")).text)["crmphone_asyncio_tasks"]
        release.set()
        await asyncio.gather(*waiters)
        after = _values((await http.get("/metrics")).text)["crmphone_asyncio_tasks"]
    assert (during - before, after) == (5, before)


@linux_only
async def test_cpu_time_grows_with_the_work_done() -> None:
    """A fifth of a second of computation shows in process_cpu_seconds_total."""
    metrics = ConnectorMetrics()
    assert metrics.cpu_seconds is not None
    start = metrics.cpu_seconds.value
    usage = resource.getrusage(resource.RUSAGE_SELF)
    target = usage.ru_utime + usage.ru_stime + 0.2
    while True:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        if usage.ru_utime + usage.ru_stime >= target:
            break
        sum(range(10_000))
    # The kernel counts in clock ticks (1/100 s): allow one tick of rounding.
    assert metrics.cpu_seconds.value - start >= 0.19


def test_a_directory_laid_out_like_proc_is_read_exactly(tmp_path: Path) -> None:
    """Pages, clock ticks, descriptors and socket links become bytes, seconds and counts."""
    links = ["socket:[101]", "/dev/null", "socket:[102]", "pipe:[7]", "socket:[103]"]
    proc = _fake_proc(tmp_path, utime=250, stime=50, pages=300, links=links)
    text = ConnectorMetrics(proc=proc).render()
    ticks, page = os.sysconf("SC_CLK_TCK"), os.sysconf("SC_PAGE_SIZE")
    values = _values(text)
    assert values["process_resident_memory_bytes"] == 300 * page
    assert values["process_cpu_seconds_total"] == pytest.approx(300 / ticks)
    assert values["process_open_fds"] == 5
    assert values["crmphone_open_sockets"] == 3


def test_a_file_that_cannot_be_read_leaves_only_its_sample_out(tmp_path: Path) -> None:
    """A missing statm costs the memory sample; the series is still declared, the rest read."""
    proc = _fake_proc(tmp_path, utime=1, stime=1, pages=10, links=["socket:[1]"])
    metrics = ConnectorMetrics(proc=proc)
    (proc / "statm").unlink()
    (proc / "stat").write_text("garbage without the command's parentheses\n")
    text = metrics.render()
    assert "# TYPE process_resident_memory_bytes gauge" in text
    values = _values(text)
    assert "process_resident_memory_bytes" not in values
    assert "process_cpu_seconds_total" not in values
    assert (values["process_open_fds"], values["crmphone_open_sockets"]) == (1, 1)


@pytest.mark.parametrize("where", ["missing", "none"])
def test_without_proc_the_process_series_are_left_out(tmp_path: Path, where: str) -> None:
    """No /proc (another OS, or none asked for): no process series at all, and no error."""
    metrics = ConnectorMetrics(proc=tmp_path / "no-proc" if where == "missing" else None)
    assert (metrics.resident_memory, metrics.cpu_seconds) == (None, None)
    assert (metrics.open_fds, metrics.open_sockets) == (None, None)
    types = _types(metrics.render())
    assert not set(PROCESS_SERIES) & set(types)
    assert types["crmphone_asyncio_tasks"] == "gauge"


def test_tasks_are_left_out_when_rendered_off_the_event_loop() -> None:
    """Rendered with no loop running there are no tasks to count: no sample, not a zero."""
    assert "crmphone_asyncio_tasks" not in _values(ConnectorMetrics(proc=None).render())


@linux_only
def test_the_cpu_counter_cannot_be_incremented() -> None:
    """CPU time is the kernel's to count: inc() is refused."""
    metrics = ConnectorMetrics()
    assert metrics.cpu_seconds is not None
    with pytest.raises(InvalidStateError, match="read at scrape time"):
        metrics.cpu_seconds.inc()
