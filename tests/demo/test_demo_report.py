"""The demo's report files: JSON as the model says, and a self-contained, escaped HTML page."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest

from crmphone.demo.model import CallResult, CrmTotals, DemoReport
from crmphone.demo.report import HTML_NAME, JSON_NAME, render_html, write_report

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
SCRIPT_NAME = "<script>alert('x')</script>"

# Elements that never have an end tag in HTML.
VOID = {"meta", "br", "img", "input", "link", "hr", "col", "area", "base", "source", "wbr"}
# Elements SVG lets close themselves (<line/>).
SELF_CLOSING = {"line", "rect", "path", "polyline"}


class StrictTags(HTMLParser):
    """Parses a page and fails on any end tag that does not close the element last opened."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []
        self.problems: list[str] = []
        self.circles: list[dict[str, str]] = []
        self.svg_texts: list[str] = []
        self._in_svg_text = False
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        if tag == "circle":
            self.circles.append({name: value or "" for name, value in attrs})
        if tag == "text" and "svg" in self.open:
            self._in_svg_text = True
        if tag not in VOID:
            self.open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        if tag not in SELF_CLOSING and tag not in VOID:
            self.problems.append(f"<{tag}/> is not a self-closing element")

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.open[-1:] or 'nothing'}")
            return
        self.open.pop()
        if tag == "text":
            self._in_svg_text = False

    def handle_data(self, data: str) -> None:
        if self._in_svg_text:
            self.svg_texts.append(data)


def parse(page: str) -> StrictTags:
    parser = StrictTags()
    parser.feed(page)
    parser.close()
    assert parser.problems == []
    assert parser.open == []
    return parser


def call(
    number: int,
    answer_ms: float | None,
    *,
    over_persistent: bool | None = True,
    agent_name: str = "Ada",
    phone: str | None = "+15551230001",
    logged_in: tuple[str, ...] = ("salesforce", "zendesk"),
) -> CallResult:
    return CallResult(
        conversation_id=f"conv-{number}",
        agent_id="agent-1",
        agent_name=agent_name,
        number=phone,
        answered=True,
        over_persistent=over_persistent,
        answer_ms=answer_ms,
        logged_in=logged_in,
    )


def report(*calls: CallResult, crm: tuple[CrmTotals, ...] | None = None) -> DemoReport:
    if crm is None:
        crm = tuple(
            CrmTotals(
                adapter=adapter,
                records=len(calls),
                duplicates=0,
                writes_done=2 * len(calls),
                retries=0,
                dead_letters=0,
                requests=3 * len(calls),
            )
            for adapter in ("salesforce", "zendesk")
        )
    return DemoReport(
        started_at=T0,
        seconds=42.0,
        agents=3,
        planned_calls=None,
        planned_seconds=40.0,
        calls=calls,
        crm=crm,
        channel_reconnects=0,
        notifications=77,
        outbox_max_depth=4,
        bridge_messages=120,
        bridge_clients=1,
        versions={"python": "3.11.9", "crmphone": "0.1.0"},
    )


def mixed() -> DemoReport:
    return report(
        call(1, 850.0, over_persistent=False),
        call(2, 910.0, over_persistent=False),
        call(3, 120.0),
        call(4, 95.5),
        call(5, None, over_persistent=None),
        call(6, 130.0, agent_name=SCRIPT_NAME, phone="<b>+1</b>", logged_in=("salesforce",)),
        call(7, 780.0, over_persistent=False),
    )


def dots(parser: StrictTags, kind: str) -> list[dict[str, str]]:
    return [c for c in parser.circles if c.get("class", "").split()[:2] == ["dot", kind]]


def test_write_report_writes_both_files(tmp_path: Path) -> None:
    """Both files land in the directory, which is made when missing, and their paths come back."""
    directory = tmp_path / "runs" / "today"
    json_path, html_path = write_report(mixed(), directory)
    assert (json_path, html_path) == (directory / JSON_NAME, directory / HTML_NAME)
    assert json_path.is_file()
    assert html_path.is_file()
    assert sorted(path.name for path in directory.iterdir()) == sorted([JSON_NAME, HTML_NAME])


def test_json_file_matches_the_model(tmp_path: Path) -> None:
    """The JSON file loads back as exactly report.to_json()."""
    result = mixed()
    json_path, _ = write_report(result, tmp_path)
    assert json.loads(json_path.read_text(encoding="utf-8")) == result.to_json()


def test_rewriting_replaces_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    """A second run's report replaces the first, and no temporary file is left behind."""
    write_report(mixed(), tmp_path)
    json_path, _ = write_report(report(call(1, 10.0)), tmp_path)
    assert json.loads(json_path.read_text(encoding="utf-8"))["summary"]["calls"] == 1
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted([JSON_NAME, HTML_NAME])


def test_html_is_well_formed(tmp_path: Path) -> None:
    """The page parses with every element closed in order."""
    _, html_path = write_report(mixed(), tmp_path)
    parser = parse(html_path.read_text(encoding="utf-8"))
    assert {"html", "head", "body", "style", "svg", "table"} <= parser.tags


def test_chart_has_one_dot_per_measured_call_of_each_kind() -> None:
    """Every measured call is one dot in its kind's colour class; unmeasured calls are not drawn."""
    parser = parse(render_html(mixed()))
    assert len(dots(parser, "first")) == 3
    assert len(dots(parser, "persistent")) == 3
    assert len(parser.circles) == 6


def test_chart_has_a_labelled_linear_axis_and_a_legend() -> None:
    """The y axis is labelled in ms with round ticks from 0; the legend names both kinds."""
    page = render_html(mixed())
    parser = parse(page)
    assert "answer latency (ms)" in parser.svg_texts
    ticks = [
        float(text.replace(",", "")) for text in parser.svg_texts if re.fullmatch(r"[\d,.]+", text)
    ]
    y_ticks = sorted({tick for tick in ticks if tick == 0 or tick >= 100})
    assert y_ticks == [0, 200, 400, 600, 800, 1000]
    assert "first call" in page
    assert "over a persistent connection" in page


def test_user_text_is_escaped() -> None:
    """A script tag in a name or a number is shown as text, never as markup."""
    page = render_html(mixed())
    assert "<script" not in page.lower()
    assert "<b>+1" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "&lt;b&gt;+1&lt;/b&gt;" in page


def test_html_is_self_contained() -> None:
    """No script, no URL to fetch: the page works from disk and offline."""
    page = render_html(mixed())
    assert "<script" not in page
    assert "http://" not in page
    assert "https://" not in page
    assert not re.search(r"""(src|href)\s*=""", page)
    assert "@import" not in page
    assert "url(" not in page


def test_headline_and_tables() -> None:
    """The page states calls, lost, duplicates, records per CRM, requests per call, every call."""
    page = render_html(mixed())
    for expected in (
        "calls placed",
        "lost (answered, missing from a CRM)",
        "duplicate records",
        "records in salesforce",
        "zendesk API requests per call",
        "missing: zendesk",
        "conv-7",
        "nearest-rank",
        "2026-05-04 09:00:00 UTC",
    ):
        assert expected in page, expected


def test_empty_report_renders(tmp_path: Path) -> None:
    """A run with no calls and no CRM still writes a valid page that says there is nothing to draw."""
    _, html_path = write_report(report(crm=()), tmp_path)
    page = html_path.read_text(encoding="utf-8")
    parser = parse(page)
    assert "svg" not in parser.tags
    assert "nothing to draw" in page
    assert "No call was placed" in page


def test_one_call_of_one_kind() -> None:
    """A single measured call draws a single dot, inside the plot, on a sensible axis."""
    parser = parse(render_html(report(call(1, 42.0))))
    (dot,) = dots(parser, "persistent")
    assert dots(parser, "first") == []
    assert 0 < float(dot["cy"]) < 340
    assert "50" in parser.svg_texts


@pytest.mark.parametrize("value", [0.0, 0.4])
def test_tiny_latencies_still_get_an_axis(value: float) -> None:
    """Zero or sub-millisecond latencies do not break the axis arithmetic."""
    parser = parse(render_html(report(call(1, value), call(2, value, over_persistent=False))))
    assert len(parser.circles) == 2


def test_huge_outlier_keeps_the_axis_readable() -> None:
    """One enormous latency is drawn hollow on the top edge; the axis stays at the ordinary range."""
    calls = [call(n, 100.0 + n, over_persistent=n > 2) for n in range(1, 12)]
    calls.append(call(12, 1_000_000.0))
    parser = parse(render_html(report(*calls)))
    ticks = [
        float(text.replace(",", "")) for text in parser.svg_texts if re.fullmatch(r"[\d,.]+", text)
    ]
    assert max(ticks) <= 200
    outliers = [c for c in parser.circles if "outlier" in c["class"].split()]
    assert len(outliers) == 1
    assert len(dots(parser, "persistent")) == 10
    assert any("1,000,000 ms" in text for text in parser.svg_texts)
    tops = {float(c["cy"]) for c in parser.circles}
    assert min(tops) == float(outliers[0]["cy"])


def test_slow_first_calls_are_not_outliers() -> None:
    """A few slow first calls among many fast persistent ones stay on the axis, drawn solid."""
    calls = [call(n, 900.0 + n, over_persistent=False) for n in range(1, 4)]
    calls += [call(n, 100.0 + n % 7) for n in range(4, 40)]
    parser = parse(render_html(report(*calls)))
    assert not [c for c in parser.circles if "outlier" in c["class"].split()]
    assert len(dots(parser, "first")) == 3
    assert "1,000" in parser.svg_texts
