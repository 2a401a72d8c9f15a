"""Soak: the load house (:mod:`bench.load`) for a long time; do memory and descriptors stay flat?

``python -m bench.soak --duration SECONDS [--agents N --rate R]`` (``make soak DURATION=600``)
runs a sandbox, ``crmphone run`` and a webhook receiver as the load benchmark does, and:

1. warms up: calls at the rate for ``--warmup`` seconds, until every one is logged; then, with
   no calls, the *post-warm-up level* of the connector's RSS, descriptors, sockets and tasks
   (medians of a few samples);
2. soaks: calls at the rate for ``--duration`` seconds, the connector sampled every few seconds;
3. drains: until every call's final log arrived; then, with no calls, the *end level*.

It writes ``bench/results/soak.json`` (``--output``): the samples, ``growth`` (end level minus
post-warm-up level), ``rss_mb_per_hour`` (the trend of RSS over the soak's second half),
``leaked`` tasks and sockets (growth beyond what idle keep-alive connections explain), and goals.
It prints a short table and exits 1 unless every goal is met.

*Flat* means:

* descriptors, sockets and tasks come back to the post-warm-up level within a few. Both levels
  are taken with no call in flight, so a task or socket that outlives its call is a leak and
  shows as hundreds; the few allowed are the webhook adapter's idle keep-alive connections (up to
  one per concurrent delivery, 4), whose number depends on how bursty the last seconds were;
* RSS grows less than ``RSS_MB_PER_HOUR`` over the soak's second half. The trend is the
  Theil-Sen slope (the median of the slopes between every pair of samples): a steady leak shows
  in full, while the allocator's occasional step of a few hundred kilobytes does not pass for
  one. It is judged only once the connector's bounded memories are full — the call tracker keeps
  the last ``FILL_CALLS`` ended calls (for an hour) to refuse late copies, which is growth that
  stops — so the default warm-up places that many calls first; with a shorter warm-up the slope
  is reported but not judged.

The default rate is the load benchmark's 50 calls/s, which costs the connector about a third of
one core here: at a lower rate the warm-up that fills those memories takes longer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench._environment import environment
from bench.load import (
    DRAIN_LIMIT,
    SETTLE_SECONDS,
    House,
    Sample,
    Sampler,
    analyse,
    goal,
)

RESULTS = Path(__file__).parent / "results"
DEFAULT_AGENTS = 1000
DEFAULT_RATE = 50.0
LEVEL_SAMPLES = 5
TASK_ALLOWANCE = 2
SOCKET_ALLOWANCE = 5
FD_ALLOWANCE = 6
RSS_MB_PER_HOUR = 20.0
RSS_JUDGED_FROM = 60.0
FILL_CALLS = 10_000
"""Ended calls the connector's call tracker remembers (``CallTracker(max_ended=...)``)."""


def _slope_per_hour(samples: Sequence[Sample]) -> float:
    """The Theil-Sen slope of RSS against time (median of pairwise slopes), in MB per hour."""
    slopes = [
        (later.rss_mb - earlier.rss_mb) / (later.t - earlier.t)
        for index, earlier in enumerate(samples)
        for later in samples[index + 1 :]
        if later.t > earlier.t
    ]
    return statistics.median(slopes) * 3600 if slopes else 0.0


async def _level(sampler: Sampler, phase: str) -> dict[str, float]:
    """Medians of a few samples a second apart, taken now (no calls in flight)."""
    sampler.phase = phase
    taken = []
    for _ in range(LEVEL_SAMPLES):
        await asyncio.sleep(1.0)
        taken.append(await sampler.sample())
    return {
        "rss_mb": round(statistics.median(s.rss_mb for s in taken), 2),
        "open_fds": statistics.median(s.open_fds for s in taken),
        "tasks": statistics.median(s.tasks for s in taken),
        "sockets": statistics.median(s.sockets for s in taken),
    }


async def soak(
    *, duration: float, agents: int, rate: float, warmup: float, sample_every: float
) -> dict[str, Any]:
    """Warm up, soak for ``duration`` seconds, drain; return the results."""
    async with House(agents=agents, sample_every=sample_every) as house:
        sampler = house.sampler
        await asyncio.sleep(SETTLE_SECONDS)
        sampler.phase = "warmup"
        first = await house.place_calls(rate, warmup)
        sampler.phase = "warmup_drain"
        drained = await house.wait_logged(first.conversation_ids, DRAIN_LIMIT)
        post_warmup = await _level(sampler, "post_warmup")
        print(f"   warmed up ({len(first.conversation_ids)} calls); soaking {duration:g} s")
        sampler.phase = "loaded"
        began = time.monotonic() - house.started
        placement = await house.place_calls(rate, duration)
        await sampler.sample()
        sampler.phase = "drain"
        drained = await house.wait_logged(placement.conversation_ids, DRAIN_LIMIT) and drained
        end = await _level(sampler, "after")
    placed = first.conversation_ids + placement.conversation_ids
    analysis = analyse(house.receiver.arrivals, placed)
    loaded = sampler.of("loaded")
    half = began + (loaded[-1].t - began) / 2 if loaded else began
    second_half = [s for s in loaded if s.t >= half]
    judged_for = second_half[-1].t - second_half[0].t if len(second_half) > 1 else 0.0
    slope = round(_slope_per_hour(second_half), 1)
    # Calls made before the second half began: the tracker's memory is full after FILL_CALLS.
    before_half = len(first.conversation_ids) + round(placement.rate * (half - began))
    growth = {
        "rss_mb": round(end["rss_mb"] - post_warmup["rss_mb"], 2),
        "open_fds": end["open_fds"] - post_warmup["open_fds"],
        "tasks": end["tasks"] - post_warmup["tasks"],
        "sockets": end["sockets"] - post_warmup["sockets"],
    }
    leaked = {
        "tasks": max(0, growth["tasks"] - TASK_ALLOWANCE),
        "sockets": max(0, growth["sockets"] - SOCKET_ALLOWANCE),
    }
    rss_judged = judged_for >= RSS_JUDGED_FROM and before_half >= FILL_CALLS
    why_not = (
        f"half shorter than {RSS_JUDGED_FROM:g} s"
        if judged_for < RSS_JUDGED_FROM
        else f"{before_half} calls before it, the tracker fills at {FILL_CALLS}"
    )
    goals = [
        goal("calls lost", analysis.lost, "== 0", analysis.lost == 0 and drained),
        goal("CRM writes duplicated", analysis.duplicates, "== 0", analysis.duplicates == 0),
        goal(
            "open fds after drain vs post-warm-up",
            growth["open_fds"],
            f"within ±{FD_ALLOWANCE}",
            abs(growth["open_fds"]) <= FD_ALLOWANCE,
        ),
        goal(
            "sockets after drain vs post-warm-up",
            growth["sockets"],
            f"within ±{SOCKET_ALLOWANCE}",
            abs(growth["sockets"]) <= SOCKET_ALLOWANCE,
        ),
        goal(
            "asyncio tasks after drain vs post-warm-up",
            growth["tasks"],
            f"within ±{TASK_ALLOWANCE}",
            abs(growth["tasks"]) <= TASK_ALLOWANCE,
        ),
        goal(
            "RSS slope over the second half (MB/hour)",
            slope,
            f"<= {RSS_MB_PER_HOUR:g}"
            if rss_judged
            else f"<= {RSS_MB_PER_HOUR:g} (not judged: {why_not})",
            slope <= RSS_MB_PER_HOUR or not rss_judged,
        ),
    ]
    return {
        "duration_s": round(placement.seconds, 1),
        "agents": agents,
        "calls_per_second_target": rate,
        "calls_per_second_achieved": round(placement.rate, 2),
        "calls_placed": len(placed),
        "calls_logged": analysis.calls_logged,
        "lost": analysis.lost,
        "duplicates": analysis.duplicates,
        "levels": {"post_warmup": post_warmup, "end": end},
        "samples": [s.to_json() for s in sampler.samples],
        "growth": growth,
        "rss_mb_per_hour": slope,
        "leaked": leaked,
        "goals": goals,
    }


def _table(result: dict[str, Any]) -> str:
    post, end = result["levels"]["post_warmup"], result["levels"]["end"]
    rows = [("", "post-warm-up", "end", "growth")]
    rows += [
        (name, f"{post[name]:g}", f"{end[name]:g}", f"{result['growth'][name]:+g}")
        for name in ("rss_mb", "open_fds", "sockets", "tasks")
    ]
    lines = ["   " + "  ".join(f"{cell:>12}" for cell in row) for row in rows]
    lines.append(
        f"   calls {result['calls_placed']} placed, {result['calls_logged']} logged, "
        f"{result['lost']} lost, {result['duplicates']} duplicated; "
        f"RSS {result['rss_mb_per_hour']:+g} MB/hour over the second half"
    )
    for entry in result["goals"]:
        status = "met" if entry["met"] else "NOT MET"
        lines.append(f"   {entry['name']}: {entry['measured']} (goal {entry['goal']}) {status}")
    return "\n".join(lines)


def main(argv: Sequence[str]) -> int:
    """Parse the options, soak, write and print the results; 1 unless every goal is met."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of load")
    parser.add_argument("--agents", type=int, default=DEFAULT_AGENTS)
    parser.add_argument("--rate", type=float, default=DEFAULT_RATE, help="calls a second")
    parser.add_argument(
        "--warmup",
        type=float,
        help=f"seconds of calls before the reference level (default: {FILL_CALLS} calls' worth)",
    )
    parser.add_argument("--sample-every", type=float, help="seconds between samples")
    parser.add_argument("--output", type=Path, default=RESULTS / "soak.json")
    options = parser.parse_args(argv)
    duration = options.duration
    warmup = options.warmup if options.warmup is not None else FILL_CALLS / options.rate
    every = options.sample_every or (2.0 if duration <= 600 else 5.0)
    print(f"== soak: {options.agents} agents, {options.rate:g} calls/s, {duration:g} s", flush=True)
    result = asyncio.run(
        soak(
            duration=duration,
            agents=options.agents,
            rate=options.rate,
            warmup=warmup,
            sample_every=every,
        )
    )
    result["environment"] = environment()
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(_table(result))
    print(f"   wrote {options.output}", flush=True)
    return 0 if all(entry["met"] for entry in result["goals"]) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
