"""The systemd unit: `systemd-analyze verify` clean, exposure <= 1.5, the directives the runner relies on."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "systemd" / "doorguard.service"
EXEC = "/opt/doorguard/venv/bin/doorguard"
MAX_EXPOSURE = 1.5

needs_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze not installed (Debian package 'systemd'; scripts/sysdeps.sh test installs it)",
)


def directives(text: str) -> dict[str, list[str]]:
    """Key -> values (a key may repeat) of the unit file."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        out.setdefault(key.strip(), []).append(value.strip())
    return out


def installed_copy(tmp_path: Path) -> Path:
    """The unit with ExecStart* pointing at a stub, since verify insists the binary exists."""
    stub = tmp_path / "bin" / "doorguard"
    stub.parent.mkdir()
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    unit = tmp_path / "doorguard.service"
    unit.write_text(UNIT.read_text().replace(EXEC, str(stub)))
    return unit


def test_unit_directives():
    d = directives(UNIT.read_text())
    one = {k: v[-1] for k, v in d.items()}
    assert one["Type"] == "notify"
    assert one["NotifyAccess"] == "main"
    assert int(one["WatchdogSec"]) > 0
    assert one["Restart"] == "on-failure"
    assert int(one["RestartSec"]) > 0 and int(one["StartLimitBurst"]) > 0 and int(one["StartLimitIntervalSec"]) > 0
    # systemd 252 (Bookworm) ignores these with a warning: keep them out.
    assert "RestartSteps" not in d and "RestartMaxDelaySec" not in d
    assert one["User"] == "doorguard"
    assert set(one["SupplementaryGroups"].split()) >= {"video", "gpio"}
    assert one["StateDirectory"] == one["ConfigurationDirectory"] == one["RuntimeDirectory"] == "doorguard"
    assert one["WorkingDirectory"] == "/run/doorguard"
    assert "LG_WD=/run/doorguard" in d["Environment"]
    assert d["ExecStartPre"] == [f"{EXEC} check-config /etc/doorguard/config.toml"]
    assert d["ExecStart"] == [f"{EXEC} run --config /etc/doorguard/config.toml"]
    # PrivateDevices would hide the camera and GPIO: a closed device list instead.
    assert "PrivateDevices" not in d
    assert one["DevicePolicy"] == "closed"
    allowed = {v.split()[0] for v in d["DeviceAllow"]}
    assert {"char-video4linux", "char-media", "char-dma_heap", "char-gpiochip"} <= allowed
    assert one["CapabilityBoundingSet"] == ""
    for key, value in {"ProtectSystem": "strict", "ProtectHome": "yes", "NoNewPrivileges": "yes",
                       "PrivateTmp": "yes"}.items():
        assert one[key] == value, key
    assert "AF_PACKET" not in one["RestrictAddressFamilies"]
    assert d["SystemCallFilter"][0] == "@system-service"
    # /proc/cpuinfo must stay readable (XNNPACK's cpuinfo, gpiozero's board detection).
    assert "ProcSubset" not in d
    # A leak or a login flood restarts the service instead of starving the Pi (issue 17).
    assert one["MemoryMax"].endswith("M") and 256 <= int(one["MemoryMax"][:-1]) <= 1024
    assert 32 <= int(one["TasksMax"]) <= 256
    # Loopback (status page), link-local and the LAN (broker) only; nothing on the Internet.
    assert d["IPAddressDeny"] == ["any"]
    allow = " ".join(d["IPAddressAllow"]).split()
    assert "localhost" in allow and "192.168.0.0/16" in allow and "0.0.0.0/0" not in allow and "any" not in allow
    assert one["WantedBy"] == "multi-user.target"


@needs_analyze
def test_systemd_analyze_verify_is_clean(tmp_path):
    unit = installed_copy(tmp_path)
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)],
                       capture_output=True, text=True, timeout=60)
    out = (r.stdout + r.stderr).strip()
    assert r.returncode == 0, out
    # Unknown keys (e.g. directives newer than systemd 252) are only warnings: refuse them too.
    assert [line for line in out.splitlines() if "doorguard" in line] == [], out


@needs_analyze
def test_exposure_score_at_most_1_5(tmp_path):
    unit = installed_copy(tmp_path)
    r = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager", str(unit)],
                       capture_output=True, text=True, timeout=60)
    out = r.stdout + r.stderr
    m = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", out)
    assert m, f"no exposure figure in systemd-analyze output:\n{out[-2000:]}"
    score = float(m.group(1))
    print(f"systemd-analyze security exposure: {score}")
    assert score <= MAX_EXPOSURE, out


@needs_analyze
def test_firstboot_unit_verifies(tmp_path):
    src = ROOT / "systemd" / "firstboot" / "doorguard-firstboot.service"
    exe = "/usr/local/src/doorguard/systemd/firstboot/firstboot.sh"
    text = src.read_text()
    assert f"ExecStart={exe}" in text
    stub = tmp_path / "firstboot.sh"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    unit = tmp_path / "doorguard-firstboot.service"
    unit.write_text(text.replace(exe, str(stub)))
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)],
                       capture_output=True, text=True, timeout=60)
    out = (r.stdout + r.stderr).strip()
    assert r.returncode == 0 and [line for line in out.splitlines() if "doorguard" in line] == [], out


@needs_analyze
def test_recovery_timer_verifies_and_only_acts_on_a_failed_service(tmp_path):
    """The service gives up after its start limit; the timer retries it unattended."""
    svc = (ROOT / "systemd" / "doorguard-recover.service").read_text()
    d = directives(svc)
    assert d["ExecCondition"] == ["/bin/systemctl is-failed --quiet doorguard.service"]
    assert d["ExecStart"] == ["/bin/systemctl reset-failed doorguard.service",
                              "/bin/systemctl start --no-block doorguard.service"]
    timer = directives((ROOT / "systemd" / "doorguard-recover.timer").read_text())
    assert timer["OnUnitActiveSec"] == ["30min"] and timer["WantedBy"] == ["timers.target"]
    for name in ("doorguard-recover.service", "doorguard-recover.timer"):
        (tmp_path / name).write_text((ROOT / "systemd" / name).read_text())
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(tmp_path / "doorguard-recover.timer"),
                        str(tmp_path / "doorguard-recover.service")],
                       capture_output=True, text=True, timeout=60)
    out = (r.stdout + r.stderr).strip()
    assert r.returncode == 0, out
    assert [line for line in out.splitlines() if "doorguard-recover" in line] == [], out
