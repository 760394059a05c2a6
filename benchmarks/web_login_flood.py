"""What 40 concurrent wrong logins do to a running doorway: memory and detection FPS.

Starts ``doorguard run --source demo`` (looping, the web page on, a real scrypt
password file with the default cost, mock GPIO) as a subprocess, logs in once
to read ``/status.json``, and measures in three windows of ``--window`` seconds:

* idle:          no login traffic;
* one address:   40 wrong logins at once from 127.0.0.1 (the issue's probe);
* 40 addresses:  40 wrong logins at once, each from its own loopback address
                 (127.0.0.2 ... 127.0.0.41), so the per-address limit does not
                 help and only the bound on concurrent password checks does.

For each: the frame loop's FPS (frames counted by the runner between two reads
of ``/status.json``) over the window and while the burst lasted (from the first
request until the last answer), the process's peak resident memory above the idle level
(``VmRSS`` sampled every 10 ms), the answers by status code and how long the
burst took. Markdown to stdout.

    .venv/bin/python benchmarks/web_login_flood.py [--code DIR] [--window 6]

``--code DIR`` runs another checkout of doorguard (e.g. an older commit, via
``git archive COMMIT | tar -x -C DIR``) with this venv. x86 figures on a shared
machine: compare the windows with each other, not with a Pi.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "correct horse battery staple"


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def request(port: int, method: str, path: str, body: dict | None = None, cookie: str | None = None,
            source: str | None = None, timeout: float = 60) -> tuple[int, dict, bytes]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout,
                                   source_address=(source, 0) if source else None)
    headers = {"Host": f"127.0.0.1:{port}"}
    if body is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    if cookie:
        headers["Cookie"] = f"doorguard_session={cookie}"
    try:
        c.request(method, path, body=urlencode(body) if body is not None else None, headers=headers)
        r = c.getresponse()
        return r.status, dict(r.headers), r.read()
    finally:
        c.close()


def frames(port: int, cookie: str) -> int:
    return int(json.loads(request(port, "GET", "/status.json", cookie=cookie)[2])["frames"])


def burst(port: int, sources: list[str | None]) -> tuple[dict[int, int], float]:
    """One wrong login per entry of ``sources``, all at once; (answers by status, seconds)."""
    start = threading.Barrier(len(sources))
    codes: list[int] = []
    lock = threading.Lock()

    def one(src):
        start.wait()
        try:
            code = request(port, "POST", "/login", {"password": "wrong guess"}, source=src)[0]
        except OSError:
            code = -1
        with lock:
            codes.append(code)

    threads = [threading.Thread(target=one, args=(s,)) for s in sources]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    took = time.monotonic() - t0
    return {c: codes.count(c) for c in sorted(set(codes))}, took


def window(pid: int, port: int, cookie: str, seconds: float, load=None) -> dict:
    """FPS, peak RSS over ``seconds``; ``load()`` runs at the start of the window."""
    peak = [0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_kb(pid))
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    f0, t0 = frames(port, cookie), time.monotonic()
    sampler.start()
    result = {}
    if load is not None:
        result["answers"], result["burst_s"] = load()
        result["fps_burst"] = (frames(port, cookie) - f0) / (time.monotonic() - t0)
    time.sleep(max(0.0, seconds - (time.monotonic() - t0)))
    f1, t1 = frames(port, cookie), time.monotonic()
    done.set()
    sampler.join(5)
    result.update(fps=(f1 - f0) / (t1 - t0), peak_rss_mb=peak[0] / 1024)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--code", type=Path, default=ROOT, help="doorguard checkout to run (default: this one)")
    ap.add_argument("--window", type=float, default=6.0, help="seconds per measured window")
    ap.add_argument("--port", type=int, default=18181)
    args = ap.parse_args()
    code = args.code.resolve()
    env = {**os.environ, "PYTHONPATH": str(code), "GPIOZERO_PIN_FACTORY": "mock"}
    env.pop("NOTIFY_SOCKET", None)
    with tempfile.TemporaryDirectory() as d:
        state = Path(d) / "state"
        state.mkdir()
        subprocess.run([sys.executable, "-m", "edge.cli", "set-password", "--password-file",
                        str(state / "web-password")], input=PASSWORD + "\n", text=True, check=True, env=env,
                       cwd=code, capture_output=True)
        conf = Path(d) / "c.toml"
        conf.write_text(f'[source]\nloop = true\n[events]\nstate_dir = "{state}"\n'
                        f"[web]\nenabled = true\nport = {args.port}\n")
        log = open(Path(d) / "run.log", "w")
        proc = subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "--config", str(conf), "--source", "demo"],
                                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=code)
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    status, headers, _ = request(args.port, "POST", "/login", {"password": PASSWORD})
                    if status == 302:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit(f"doorguard did not serve the page: {(Path(d) / 'run.log').read_text()[-2000:]}")
                time.sleep(0.5)
            cookie = headers["Set-Cookie"].split(";")[0].split("=", 1)[1]
            time.sleep(3)  # past start-up
            idle = window(proc.pid, args.port, cookie, args.window)
            one = window(proc.pid, args.port, cookie, args.window,
                         lambda: burst(args.port, [None] * 40))
            time.sleep(2)
            many = window(proc.pid, args.port, cookie, args.window,
                          lambda: burst(args.port, [f"127.0.0.{i}" for i in range(2, 42)]))
        finally:
            proc.terminate()
            proc.wait(30)
            log.close()
    rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                         text=True).stdout.strip()
    print(f"login flood against `doorguard run --source demo` ({code}{'' if code != ROOT else f' @ {rev}'}; "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; {args.window:g} s windows)\n")
    print("| window | detection FPS (window) | FPS while the burst lasted | peak RSS (MB) | above idle (MB) "
          "| answers | burst took |")
    print("|---|---|---|---|---|---|---|")
    for name, w in (("idle", idle), ("40 wrong logins, one address", one), ("40 wrong logins, 40 addresses", many)):
        answers = ", ".join(f"{n}x {c}" for c, n in w.get("answers", {}).items()) or "-"
        took = f"{w['burst_s']:.2f} s" if "burst_s" in w else "-"
        during = f"{w['fps_burst']:.1f}" if "fps_burst" in w else "-"
        print(f"| {name} | {w['fps']:.1f} | {during} | {w['peak_rss_mb']:.0f} "
              f"| {w['peak_rss_mb'] - idle['peak_rss_mb']:+.0f} | {answers} | {took} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
