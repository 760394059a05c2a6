"""What ``MqttPublisher.enqueue`` costs the frame loop.

``enqueue`` is one SQLite insert + commit into the outbox (WAL, synchronous=NORMAL)
on the caller's thread; the network is never touched there. This measures its
latency distribution for N events in two conditions, alternating in rounds so
that drift in machine load hits both alike:

* ``no-checkpoint`` - the shipped setting: the enqueue connection has
  ``wal_autocheckpoint=0`` and the sender thread checkpoints every 5 s;
* ``autocheckpoint`` - SQLite's default (a commit that pushes the WAL past 1000
  pages runs the checkpoint, with its fsync, on the committing thread).

The broker is unreachable in both (a closed loopback port), so events only
queue: the worst case for the outbox, and no network noise.

    .venv/bin/python -m benchmarks.mqtt_enqueue [--events 2000] [--rounds 3] [--out bench-out/mqtt_enqueue.md]

Numbers are for the machine and disk it runs on; an SD card's fsync is slower.
"""

from __future__ import annotations

import argparse
import logging
import socket
import tempfile
import time
from pathlib import Path

from edge.act.mqtt.publisher import MqttPublisher
from edge.settings.mqtt import MqttConfig
from edge.types import Box, Event


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_round(n: int, autocheckpoint: bool) -> list[float]:
    """Enqueue latencies (ms) of n events into a fresh outbox."""
    with tempfile.TemporaryDirectory() as d:
        cfg = MqttConfig(enabled=True, host="127.0.0.1", port=_closed_port(), device_name="bench")
        pub = MqttPublisher(cfg, Path(d) / "events.sqlite3").start()
        if autocheckpoint:
            pub.outbox._db.execute("PRAGMA wal_autocheckpoint=1000")  # SQLite's default
        out = []
        for i in range(n):
            ev = Event(1.7e9 + i, i, "violation", "no_mask", 0.9, Box(10, 20, 110, 140), True)
            t0 = time.perf_counter()
            pub.enqueue(ev, store_id=i, model_hashes={"detector": "d" * 64, "classifier": "c" * 64})
            out.append((time.perf_counter() - t0) * 1e3)
        pub.close()
    return out


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default="bench-out/mqtt_enqueue.md")
    a = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    res: dict[str, list[float]] = {"no-checkpoint": [], "autocheckpoint": []}
    for _ in range(a.rounds):
        for name in res:
            res[name] += one_round(a.events, name == "autocheckpoint")
    lines = [f"# MqttPublisher.enqueue latency ({a.events} events x {a.rounds} rounds, broker unreachable)", "",
             "| setting | p50 ms | p99 ms | p99.9 ms | max ms | > 10 ms |", "|---|---|---|---|---|---|"]
    for name, xs in res.items():
        lines.append(f"| {name} | {pct(xs, .5):.3f} | {pct(xs, .99):.3f} | {pct(xs, .999):.2f} | {max(xs):.2f} "
                     f"| {sum(x > 10 for x in xs)} |")
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
