"""What one live viewer of the web page costs the frame loop.

A frame loop (the real ``edge.pipeline.Pipeline`` when the default models are
in models/, else the yoloface-500k-v2 darknet detector from ../shared through
``cv2.dnn`` as a stand-in of the same kind) runs on the built-in demo clip and
hands each frame to ``edge.act.web.handover.LiveFrame``, exactly as the runner does. A
logged-in HTTP client reads ``/stream.mjpg`` during every other segment. The
segments alternate (none, one, none, one, ...) so that drift in machine load
hits both conditions alike; the figure is the ratio of the median FPS.

Process CPU time per loop frame (loop and web threads together) is reported
as well: on a busy shared machine wall-clock FPS swings with other users'
load, CPU time per frame much less, and its increase with a viewer is the FPS
a CPU-bound loop would lose.

Also measured: the cost of one hand-over (``LiveFrame.put`` plus
``overlays_from_tracks``-sized overlay list) and of one live JPEG
(``render_frame``: resize, draw, encode), from which the CPU share of one
viewer follows (``live_fps * encode time``).

    .venv/bin/python -m benchmarks.web_viewer [--segments 13] [--seconds 3] [--out bench-out/web_viewer.md]

Numbers are for the machine it runs on; never read Pi speed off x86 timings.
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from edge.settings.web import WebConfig
from edge.types import Box, Detection
from edge.act.web.handover import LiveFrame, Overlay
from edge.act.web.passwords import hash_password, write_password_file
from edge.act.web.render import render_frame
from edge.act.web.server import WebServer
from edge.act.web.sessions import SESSION_COOKIE

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def _detector():
    """(name, detect(rgb) -> list[Detection]) for the loop's workload."""
    try:
        from edge.config import load
        from edge.pipeline import Pipeline
        from edge.types import Frame

        cfg = load()
        pipe = Pipeline.from_config(cfg)
        counter = iter(range(1 << 62))

        def run(rgb):
            return pipe.process(Frame(rgb, time.monotonic(), next(counter))).tracks

        return "edge Pipeline (default models)", run
    except Exception as e:  # noqa: BLE001 - models not shipped yet: fall back to the stand-in
        reason = f"{type(e).__name__}: {e}"
    import cv2

    cfg = SHARED / "models/yoloface-500k/v2/yoloface-500k-v2.cfg"
    weights = cfg.with_suffix(".weights")
    net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
    names = net.getUnconnectedOutLayersNames()

    def run(rgb):
        blob = cv2.dnn.blobFromImage(rgb, 1 / 255.0, (352, 288), swapRB=False, crop=False)
        net.setInput(blob)
        outs = net.forward(names)
        h, w = rgb.shape[:2]
        dets = []
        for out in outs:
            for row in out:
                s = float(row[4] * row[5:].max()) if row.shape[0] > 5 else float(row[4])
                if s > 0.5:
                    cx, cy, bw, bh = row[0] * w, row[1] * h, row[2] * w, row[3] * h
                    dets.append(Detection(Box(cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2), s, 0, "face"))
        return dets

    return f"stand-in: yoloface-500k-v2 darknet via cv2.dnn (pipeline unavailable: {reason[:120]})", run


class Viewer:
    """A logged-in client reading the MJPEG stream until stopped."""

    def __init__(self, port: int, cookie: str) -> None:
        self.port, self.cookie = port, cookie
        self.stop = threading.Event()
        self.bytes = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        c.request("GET", "/stream.mjpg", headers={"Cookie": f"{SESSION_COOKIE}={self.cookie}"})
        r = c.getresponse()
        while not self.stop.is_set():
            chunk = r.read1(65536)
            if not chunk:
                break
            self.bytes += len(chunk)
        c.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--segments", type=int, default=13, help="segments in all, alternating, starting without")
    ap.add_argument("--seconds", type=float, default=3.0, help="length of one segment")
    ap.add_argument("--live-fps", type=float, default=2.0)
    ap.add_argument("--live-width", type=int, default=640)
    ap.add_argument("--out", type=Path, help="also write the Markdown table here")
    args = ap.parse_args(argv)

    from edge.capture.demo import DemoSource

    src = DemoSource(loop=True)
    src.open()
    frames = [src.render(i) for i in range(len(src))]
    name, detect = _detector()

    tmp = Path(tempfile.mkdtemp())
    pw = tmp / "pw"
    write_password_file(pw, hash_password("bench-password", n=2**10))
    live = LiveFrame()
    server = WebServer(WebConfig(port=0, live_fps=args.live_fps, live_width=args.live_width),
                       status=lambda: {"fps": 0.0}, latest_frame=live.get, test_outputs=lambda: None,
                       password_file=pw).start()
    c = http.client.HTTPConnection("127.0.0.1", server.port)
    c.request("POST", "/login", body="password=bench-password",
              headers={"Content-Type": "application/x-www-form-urlencoded"})
    r = c.getresponse()
    r.read()
    cookie = r.getheader("Set-Cookie").split(";")[0].split("=", 1)[1]
    c.close()

    # Hand-over and encode costs, in isolation.
    overlays = [Overlay((100.0, 80.0, 260.0, 260.0), "no_mask", 0.91, "violation", 1)]
    n = 20000
    t0 = time.perf_counter()
    for i in range(n):
        live.put(frames[i % len(frames)], list(overlays))
    put_us = (time.perf_counter() - t0) / n * 1e6
    enc = []
    for i in range(40):
        t0 = time.perf_counter()
        render_frame(frames[i % len(frames)], overlays, args.live_width, 12.3, server.cfg.jpeg_quality)
        enc.append((time.perf_counter() - t0) * 1000)
    enc_ms = statistics.median(enc)

    fps: dict[bool, list[float]] = {False: [], True: []}
    cpu: dict[bool, list[float]] = {False: [], True: []}
    i = 0
    for seg in range(args.segments):
        with_viewer = seg % 2 == 1
        viewer = Viewer(server.port, cookie) if with_viewer else None
        if viewer:
            time.sleep(0.3)  # connected and streaming before the clock starts
        sent0 = server.frames_sent
        count = 0
        c0 = time.process_time()
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < args.seconds:
            img = frames[i % len(frames)]
            dets = detect(img)
            live.put(img, dets)
            i += 1
            count += 1
        elapsed = time.perf_counter() - t0
        # CPU time of the whole process (loop + web threads) per loop frame: unlike wall-clock
        # FPS it hardly moves with other users' load, and it is what a saturated CPU would lose.
        cpu[with_viewer].append((time.process_time() - c0) / count * 1000)
        fps[with_viewer].append(count / elapsed)
        sent = server.frames_sent - sent0
        if viewer:
            viewer.close()
        print(f"segment {seg + 1}: {'1 viewer' if with_viewer else 'no viewer'}: {count / elapsed:.2f} FPS"
              + f", process CPU {cpu[with_viewer][-1]:.1f} ms/frame"
              + (f", {sent} JPEGs sent ({sent / elapsed:.2f}/s)" if with_viewer else ""))
    server.close()

    none, one = statistics.median(fps[False]), statistics.median(fps[True])
    # Each viewer segment against the mean of the segments either side of it: robust to load drift.
    paired = [fps[True][k] / ((fps[False][k] + fps[False][k + 1]) / 2)
              for k in range(min(len(fps[True]), len(fps[False]) - 1))]
    paired_txt = (f"{statistics.median(paired):.3f} (range {min(paired):.3f}-{max(paired):.3f}, n={len(paired)})"
                  if paired else "n/a (needs >= 3 segments)")
    lines = [
        "| measure | value |",
        "|---|---|",
        f"| loop workload | {name} |",
        f"| FPS, no viewer (median of {len(fps[False])} x {args.seconds:g} s) | {none:.2f} |",
        f"| FPS, one viewer ({args.live_fps:g} fps, {args.live_width} px) | {one:.2f} |",
        f"| one viewer / none (medians) | {one / none:.3f} ({(one / none - 1) * 100:+.1f} %) |",
        f"| one viewer / neighbouring no-viewer segments (median) | {paired_txt} |",
        f"| process CPU per loop frame, no viewer / one viewer (medians) | {statistics.median(cpu[False]):.2f} / "
        f"{statistics.median(cpu[True]):.2f} ms ({(statistics.median(cpu[True]) / statistics.median(cpu[False]) - 1) * 100:+.1f} %) |",
        f"| LiveFrame.put + overlay list, per frame | {put_us:.2f} us |",
        f"| one live JPEG (resize + draw + encode, 640x480 in) | {enc_ms:.1f} ms |",
        f"| CPU of one viewer (live_fps x encode) | {args.live_fps * enc_ms / 10:.1f} % of one core |",
    ]
    print("\n".join(lines))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
