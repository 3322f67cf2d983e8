"""Cost of the inline consent check as the registry grows: 10^4, 10^6, 10^7 records.

For each size, fills a fresh SQLite registry (filler subjects are random 128-bit
pseudonym-shaped strings; one event each, one transaction), builds the registry's
filter of known subjects from it as the gateway does at start, then measures
through the real ConsentRegistry: a lookup of a subject never recorded (the common
case: the filter answers, no read, no await), a lookup that misses the cache (the
filter says maybe: one index range scan), a batch of misses (one query, as a submit
batch does), and a cache hit. Prints the figures, the filter's build time, size and
measured false-positive rate, and the process RSS side by side, with each size's
ratio to the first.

    .venv/bin/python bench/consent_lookup.py [--sizes 10000 1000000 10000000]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import random
import sqlite3
import tempfile
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar, cast

from gateway.config import config_from_dict
from gateway.metrics import Metrics
from gateway.store import Store
from privacy.audit import AuditLog
from privacy.keys import KeyRing
from privacy.registry import ConsentRegistry

SAMPLES = 2000
BATCH = 500
UNSEEN = 100_000
T = TypeVar("T")


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def fill(path: Path, size: int) -> list[str]:
    """Insert ``size`` opt-out events straight into the table; return a sample of subjects.

    One transaction, in subject order, so the index grows at its end: random order
    took 20 minutes for 10^7 with SQLite's 2 MB page cache, this about two.
    """
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    rng = random.Random(size)
    values = sorted(rng.getrandbits(128) for _ in range(size))
    sample = [f"p1:{values[i]:032x}" for i in rng.sample(range(size), min(size, SAMPLES * 2))]
    with db:
        db.executemany(
            "INSERT INTO consent_events"
            " (tenant, subject, kind, purpose, sender, source, evidence, at)"
            " VALUES ('bench', ?, 'opted_out', NULL, NULL, 'import', '', 0.0)",
            ((f"p1:{value:032x}",) for value in values),
        )
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return sample


def at_once(awaitable: Coroutine[Any, Any, T]) -> T:
    """The result of a coroutine that must finish without suspending (no read, no hop)."""
    try:
        awaitable.send(None)
    except StopIteration as done:
        return cast(T, done.value)
    awaitable.close()
    raise AssertionError("the lookup suspended: it went to the database")


async def measure(size: int, workdir: Path) -> dict[str, float]:
    path = workdir / f"registry-{size}.sqlite3"
    config = config_from_dict(
        {
            "storage": {"path": str(path)},
            "privacy": {"key_file": str(workdir / f"keys-{size}.json")},
            "tenants": [{"id": "bench", "api_keys": ["bench-key-1"], "senders": ["Bench"]}],
        }
    )
    store = await Store.open(config.storage, Metrics())  # creates the schema
    await store.close()
    started = time.perf_counter()
    # Filled in a child process, so this one's RSS shows only what the registry holds.
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        sample = pool.apply(fill, (path, size))
    fill_seconds = time.perf_counter() - started

    store = await Store.open(config.storage, Metrics())
    keys = KeyRing.open(config.privacy.key_file)
    registry = ConsentRegistry(
        config, store, keys, await AuditLog.open(store), Metrics(), time.time
    )
    rss_before = rss_mib()
    started = time.perf_counter()
    await registry.learn_known_subjects()
    build_seconds = time.perf_counter() - started
    filter_mib = rss_mib() - rss_before

    rng = random.Random(f"unseen {size}")  # not -size: Random(-n) is Random(n)
    unseen = [f"p1:{rng.getrandbits(128):032x}" for _ in range(UNSEEN)]
    # The filter's false positives take the read below, as a known subject does.
    known = registry._known_subjects["bench"]
    false_positives = sum(subject in known for subject in unseen) / len(unseen)
    unseen = [subject for subject in unseen if subject not in known]
    started = time.perf_counter()
    for subject in unseen:
        [state] = at_once(registry.states("bench", [subject]))
        assert not state.opted_out
    unseen_us = (time.perf_counter() - started) / len(unseen) * 1e6

    misses = sample[:SAMPLES]
    started = time.perf_counter()
    for subject in misses:
        [state] = await registry.states("bench", [subject])
        assert state.opted_out
    miss_us = (time.perf_counter() - started) / len(misses) * 1e6

    batch = sample[SAMPLES : SAMPLES + BATCH]
    started = time.perf_counter()
    states = await registry.states("bench", batch)
    batch_us = (time.perf_counter() - started) / len(batch) * 1e6
    assert all(s.opted_out for s in states)

    started = time.perf_counter()
    for _ in range(5):
        for subject in misses:
            await registry.states("bench", [subject])
    hit_us = (time.perf_counter() - started) / (5 * len(misses)) * 1e6
    rss = rss_mib()
    await store.close()
    return {
        "size": size,
        "fill_s": fill_seconds,
        "build_s": build_seconds,
        "filter_mib": filter_mib,
        "unseen_us": unseen_us,
        "fp": false_positives,
        "miss_us": miss_us,
        "batch_us": batch_us,
        "hit_us": hit_us,
        "rss_mib": rss,
        "db_mib": path.stat().st_size / 2**20,
    }


async def run(sizes: list[int]) -> None:
    with tempfile.TemporaryDirectory(prefix="smsgw-bench-") as tmp:
        results = [await measure(size, Path(tmp)) for size in sizes]
    base = results[0]
    print(
        f"{'records':>10} {'fill s':>7} {'build s':>8} {'filter MiB':>10} {'FP %':>6}"
        f" {'unseen µs':>9} {'miss µs':>8} {'batch µs':>8} {'hit µs':>7} {'RSS MiB':>8}"
        f" {'DB MiB':>7} {'unseen x':>8} {'miss x':>7}"
    )
    for r in results:
        print(
            f"{r['size']:>10,} {r['fill_s']:>7.1f} {r['build_s']:>8.2f} {r['filter_mib']:>10.1f}"
            f" {r['fp'] * 100:>6.3f} {r['unseen_us']:>9.2f} {r['miss_us']:>8.1f}"
            f" {r['batch_us']:>8.1f} {r['hit_us']:>7.2f} {r['rss_mib']:>8.1f} {r['db_mib']:>7.0f}"
            f" {r['unseen_us'] / base['unseen_us']:>8.2f} {r['miss_us'] / base['miss_us']:>7.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000, 10_000_000])
    asyncio.run(run(parser.parse_args().sizes))


if __name__ == "__main__":
    main()
