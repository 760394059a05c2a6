"""Section 5 of ``doorguard bench``: ``doorguard run`` as a child process, peak RSS and start-up."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any


def _vm_hwm_kib(pid: int) -> int | None:
    """Peak resident set (VmHWM) of a live process, from /proc."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def run_subprocess(spec: str, frames: int, config: str | None, state_dir: Path,
                   timeout: float = 300.0) -> dict[str, Any]:
    """``doorguard run`` in a child: peak RSS and start -> first processed frame.

    Peak RSS is the child's VmHWM, polled every 10 ms until it exits (VmHWM
    only grows). Not ``wait4``'s ru_maxrss: Linux folds the forking parent's
    high-water mark into the child's at exec, so it would report the bench's
    own size.
    """
    exe = Path(sys.executable).with_name("doorguard")
    cmd = [str(exe)] if exe.is_file() else [sys.executable, "-m", "edge.cli"]
    cmd += ["--log-level", "INFO", "run", "--source", spec, "--max-frames", str(frames)]
    if config:
        cmd += ["--config", config]
    env = dict(os.environ, GPIOZERO_PIN_FACTORY="mock", STATE_DIRECTORY=str(state_dir), PYTHONUNBUFFERED="1")
    env.pop("NOTIFY_SOCKET", None)
    lines: list[tuple[float, str]] = []
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)

    def reader():
        for line in p.stdout:
            lines.append((time.perf_counter() - t0, line.rstrip("\n")))

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    peak = 0
    deadline = time.monotonic() + timeout
    while p.poll() is None:
        hwm = _vm_hwm_kib(p.pid)
        if hwm:
            peak = max(peak, hwm)
        if time.monotonic() > deadline:
            p.kill()
            p.wait()
            break
        time.sleep(0.01)
    th.join(timeout=5)
    first = next((t for t, ln in lines if "first frame processed" in ln), None)
    summary = next((ln for _, ln in lines if "summary:" in ln and "FPS" in ln), "")
    return {"rc": p.returncode, "max_rss_mib": peak / 1024.0 if peak else None, "first_frame_s": first,
            "wall_s": time.perf_counter() - t0, "summary": summary.split("summary:", 1)[-1].strip(),
            "tail": [ln for _, ln in lines[-3:]], "cmd": " ".join(cmd)}
