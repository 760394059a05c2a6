"""install.sh / uninstall.sh in a scratch root and dry run, deploy.sh with a fake ssh/rsync, shellcheck."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "systemd").rglob("*.sh")) + [ROOT / "systemd" / "firstboot" / "firstrun.sh"]


def shell_scripts() -> list[Path]:
    return sorted({p for p in SCRIPTS if p.exists()})


@pytest.fixture
def project(tmp_path) -> Path:
    """A minimal project tree: the real scripts, unit and config template, plus two fake models."""
    src = tmp_path / "src"
    shutil.copytree(ROOT / "systemd", src / "systemd")
    (src / "edge").mkdir()
    shutil.copy(ROOT / "edge" / "default.toml", src / "edge" / "default.toml")
    if (ROOT / "config.example.toml").exists():
        shutil.copy(ROOT / "config.example.toml", src / "config.example.toml")
    models = src / "models"
    models.mkdir()
    for name in ("yoloface-500k-v2-facemask", "mask-classifier"):
        (models / f"{name}.int8.tflite").write_bytes(b"TFL3" + name.encode())
        (models / f"{name}.float32.tflite").write_bytes(b"big")  # never shipped
        (models / f"{name}.json").write_text(json.dumps({"name": name, "tflite": f"{name}.int8.tflite"}, indent=2))
    (models / "MODEL_CARD.md").write_text("# cards\n")
    (src / ".venv").mkdir()
    (src / ".venv" / "junk").write_text("x")
    (src / "README.md").write_text("readme\n")
    return src


def sh(args, env=None, cwd=None, check=True) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    r = subprocess.run(args, capture_output=True, text=True, env=full_env, cwd=cwd, timeout=120)
    if check:
        assert r.returncode == 0, f"{args} -> {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


def tree(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


@pytest.mark.skipif(shutil.which("shellcheck") is None,
                    reason="shellcheck not installed (Debian package 'shellcheck'; scripts/sysdeps.sh test)")
@pytest.mark.parametrize("script", shell_scripts(), ids=lambda p: str(p.relative_to(ROOT)))
def test_shellcheck(script):
    r = subprocess.run(["shellcheck", "-x", str(script)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_install_into_scratch_root_is_idempotent_and_keeps_config(project, tmp_path):
    dest = tmp_path / "root"
    env = {"DOORGUARD_SRC": str(project)}
    r = sh([project / "systemd" / "install.sh", "--root", str(dest)], env)
    # Live-system steps (users, venv, pip, systemctl; apt when packages are missing) are listed, not run.
    skipped = "\n".join(line for line in r.stdout.splitlines() if line.startswith("skip (--root): "))
    for step in ("usermod -a -G video\\,gpio\\,audio doorguard",
                 "-m venv --system-site-packages /opt/doorguard/venv", "pip install",
                 "check-config /etc/doorguard/config.toml", "systemctl daemon-reload",
                 "systemctl enable doorguard.service", "systemctl restart doorguard.service",
                 "systemctl enable --now doorguard-recover.timer"):
        assert step in skipped, (step, r.stdout)
    unit = dest / "etc/systemd/system/doorguard.service"
    assert unit.read_text() == (ROOT / "systemd/doorguard.service").read_text()
    for name in ("doorguard-recover.service", "doorguard-recover.timer"):
        assert (dest / "etc/systemd/system" / name).read_text() == (ROOT / "systemd" / name).read_text()
    models = dest / "opt/doorguard/models"
    assert sorted(p.name for p in models.iterdir()) == sorted(
        ["MODEL_CARD.md", "mask-classifier.int8.tflite", "mask-classifier.json",
         "yoloface-500k-v2-facemask.int8.tflite", "yoloface-500k-v2-facemask.json"])
    cfg = (dest / "etc/doorguard/config.toml").read_text()
    assert 'detector = "/opt/doorguard/models/yoloface-500k-v2-facemask.json"' in cfg
    assert (dest / "var/lib/doorguard").is_dir()
    # The installed config parses as doorguard's config and points at the installed models.
    from edge.config import parse

    parsed = parse(cfg)
    assert parsed.models.detector == "/opt/doorguard/models/yoloface-500k-v2-facemask.json"

    first = tree(dest)
    sh([project / "systemd" / "install.sh", "--root", str(dest)], env)
    assert tree(dest) == first, "a second install changed the tree"

    (dest / "etc/doorguard/config.toml").write_text("# mine\n")
    r = sh([project / "systemd" / "install.sh", "--root", str(dest)], env)
    assert "kept existing /etc/doorguard/config.toml" in r.stdout
    assert (dest / "etc/doorguard/config.toml").read_text() == "# mine\n"


def test_install_prefix_rewrites_unit_and_config(project, tmp_path):
    dest = tmp_path / "root"
    sh([project / "systemd" / "install.sh", "--root", str(dest), "--no-start"],
       {"DOORGUARD_SRC": str(project), "PREFIX": "/srv/dg"})
    unit = (dest / "etc/systemd/system/doorguard.service").read_text()
    assert "ExecStart=/srv/dg/venv/bin/doorguard run" in unit and "/opt/doorguard" not in unit
    assert '"/srv/dg/models/mask-classifier.json"' in (dest / "etc/doorguard/config.toml").read_text()
    assert (dest / "srv/dg/models/mask-classifier.int8.tflite").exists()


def test_install_dry_run_changes_nothing_and_lists_every_step(project, tmp_path):
    before = tree(project)
    r = sh([project / "systemd" / "install.sh", "--dry-run"], {"DOORGUARD_SRC": str(project)})
    lines = [line for line in r.stdout.splitlines() if line.startswith("+ ")]
    text = "\n".join(lines)
    order = ["venv --system-site-packages /opt/doorguard/venv", "pip install", "install -m 0644",
             "config.toml", "/etc/systemd/system/doorguard.service", "check-config /etc/doorguard/config.toml",
             "systemctl daemon-reload", "systemctl enable doorguard.service", "systemctl restart doorguard.service"]
    pos = [text.find(s) for s in order]
    assert all(p >= 0 for p in pos), (order, text)
    assert pos == sorted(pos), text
    assert tree(project) == before


def test_install_refuses_manifest_without_its_model(project, tmp_path):
    (project / "models" / "mask-classifier.int8.tflite").unlink()
    r = sh([project / "systemd" / "install.sh", "--root", str(tmp_path / "r")], {"DOORGUARD_SRC": str(project)},
           check=False)
    assert r.returncode == 1
    assert "mask-classifier.int8.tflite" in r.stderr and "missing" in r.stderr


def test_install_rejects_unknown_option(project):
    r = sh([project / "systemd" / "install.sh", "--frobnicate"], check=False)
    assert r.returncode == 2 and "unknown option" in r.stderr


def test_uninstall_keeps_events_unless_purge(project, tmp_path):
    dest = tmp_path / "root"
    env = {"DOORGUARD_SRC": str(project)}
    sh([project / "systemd" / "install.sh", "--root", str(dest)], env)
    (dest / "var/lib/doorguard/events.sqlite3").write_bytes(b"events")
    r = sh([project / "systemd" / "uninstall.sh", "--root", str(dest)], {"PURGE": ""})
    assert not (dest / "etc/systemd/system/doorguard.service").exists()
    assert not (dest / "etc/systemd/system/doorguard-recover.timer").exists()
    assert not (dest / "etc/systemd/system/doorguard-recover.service").exists()
    assert not (dest / "opt/doorguard").exists()
    assert (dest / "var/lib/doorguard/events.sqlite3").read_bytes() == b"events"
    assert (dest / "etc/doorguard/config.toml").exists()
    assert "kept recorded events" in r.stdout
    sh([project / "systemd" / "uninstall.sh", "--root", str(dest)], {"PURGE": ""})  # idempotent
    sh([project / "systemd" / "uninstall.sh", "--root", str(dest)], {"PURGE": "1"})
    assert not (dest / "var/lib/doorguard").exists() and not (dest / "etc/doorguard").exists()


@pytest.fixture
def fake_remote(tmp_path) -> tuple[dict[str, str], Path]:
    """ssh and rsync on PATH that record their arguments (one JSON list per call)."""
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    log = tmp_path / "calls.jsonl"
    for name in ("ssh", "rsync"):
        exe = bindir / name
        exe.write_text(
            "#!/usr/bin/env python3\nimport json, os, sys\n"
            f"open({str(log)!r}, 'a').write(json.dumps([os.path.basename(sys.argv[0])] + sys.argv[1:]) + '\\n')\n"
        )
        exe.chmod(0o755)
    env = {"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}
    return env, log


def calls(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_deploy_rsyncs_project_and_models_then_installs(project, fake_remote):
    env, log = fake_remote
    env = {**env, "DOORGUARD_SRC": str(project)}
    sh([project / "systemd" / "deploy.sh", "--models", "yoloface-500k-v2-facemask", "pi@doorway.local"], env)
    rsync, ssh = calls(log)
    assert rsync[0] == "rsync" and ssh[0] == "ssh"
    assert rsync[-2:] == [f"{project}/", "pi@doorway.local:doorguard-src/"]
    assert "--delete" in rsync and rsync[rsync.index("-e") + 1] == "ssh"
    assert "--exclude=.venv" in rsync and "--exclude=*.float32.tflite" in rsync
    # Only the chosen model (+ cards) goes: explicit includes before the models/* exclude.
    inc = [a for a in rsync if a.startswith("--include=/models/")]
    assert inc == ["--include=/models/", "--include=/models/yoloface-500k-v2-facemask.json",
                   "--include=/models/yoloface-500k-v2-facemask.int8.tflite", "--include=/models/MODEL_CARD.md"]
    assert rsync.index("--exclude=/models/*") > rsync.index(inc[-1])
    assert ssh[1:] == ["pi@doorway.local", "cd doorguard-src && sudo ./systemd/install.sh"]


def test_deploy_no_start_remote_dir_and_custom_ssh(project, fake_remote, tmp_path):
    env, log = fake_remote
    env = {**env, "DOORGUARD_SRC": str(project), "REMOTE_DIR": "apps/dg", "SSH": "ssh"}
    sh([project / "systemd" / "deploy.sh", "--no-start", "pi@10.0.0.7"], env)
    rsync, ssh = calls(log)
    assert rsync[-1] == "pi@10.0.0.7:apps/dg/"
    assert sum(a.startswith("--include=/models/") for a in rsync) == 1 + 4 + 1  # dir, 2x(json+tflite), card
    assert ssh[-1] == "cd apps/dg && sudo ./systemd/install.sh --no-start"


def test_deploy_dry_run_and_errors(project, fake_remote):
    env, log = fake_remote
    env = {**env, "DOORGUARD_SRC": str(project)}
    r = sh([project / "systemd" / "deploy.sh", "--dry-run", "pi@x"], env)
    assert calls(log) == []
    assert "+ rsync" in r.stdout and "+ ssh" in r.stdout
    r = sh([project / "systemd" / "deploy.sh"], env, check=False)
    assert r.returncode == 2 and "usage" in r.stderr
    r = sh([project / "systemd" / "deploy.sh", "--models", "nope", "pi@x"], env, check=False)
    assert r.returncode == 1 and "models/nope.json" in r.stderr
    assert calls(log) == []


def test_deploy_bundle_for_first_boot(project, tmp_path):
    out = tmp_path / "doorguard.tar.gz"
    sh([project / "systemd" / "deploy.sh", "--models", "mask-classifier", "--bundle", str(out)],
       {"DOORGUARD_SRC": str(project)})
    with tarfile.open(out) as tf:
        names = set(tf.getnames())
    assert "doorguard/systemd/install.sh" in names
    assert "doorguard/models/mask-classifier.int8.tflite" in names
    assert "doorguard/models/mask-classifier.json" in names
    assert "doorguard/models/yoloface-500k-v2-facemask.json" not in names
    assert not any(".venv" in n or n.endswith(".float32.tflite") for n in names)


def test_deploy_bundle_default_takes_the_manifests_not_the_measurements(project, tmp_path):
    """Without --models: every model manifest; eval.json / conditions.json (no model) are skipped."""
    (project / "models" / "eval.json").write_text('{"doorguard-int8": {}}\n')
    (project / "models" / "conditions.json").write_text('{"_meta": {"detector": "x"}}\n')
    out = tmp_path / "doorguard.tar.gz"
    sh([project / "systemd" / "deploy.sh", "--bundle", str(out)], {"DOORGUARD_SRC": str(project)})
    with tarfile.open(out) as tf:
        names = set(tf.getnames())
    for name in ("yoloface-500k-v2-facemask", "mask-classifier"):
        assert f"doorguard/models/{name}.json" in names and f"doorguard/models/{name}.int8.tflite" in names
    assert not {"doorguard/models/eval.json", "doorguard/models/conditions.json"} & names


# ---- first boot --------------------------------------------------------------------------------

def fake_boot(tmp_path: Path) -> Path:
    boot = tmp_path / "bootfs"
    boot.mkdir()
    (boot / "config.txt").write_text("camera_auto_detect=1\n")
    (boot / "cmdline.txt").write_text("console=serial0,115200 root=PARTUUID=abc-02 rootwait\n")
    return boot


def test_firstrun_path_end_to_end_in_scratch_root(project, tmp_path):
    boot = fake_boot(tmp_path)
    dest = tmp_path / "pi-root"
    marker = tmp_path / "imager-ran"
    # What Raspberry Pi Imager leaves: its own firstrun.sh hooked into cmdline.txt.
    (boot / "firstrun.sh").write_text(f"#!/bin/bash\ntouch {marker}\nexit 0\n")
    (boot / "cmdline.txt").write_text(
        "console=serial0 root=PARTUUID=abc-02 rootwait systemd.run=/boot/firstrun.sh "
        "systemd.run_success_action=reboot systemd.unit=kernel-command-line.target\n")
    r = sh([project / "systemd/firstboot/prepare-boot.sh", "--models", "mask-classifier", str(boot)])
    assert "kept Imager's firstrun.sh" in r.stdout
    assert (boot / "doorguard.tar.gz").is_file() and (boot / "firstrun-imager.sh").is_file()
    assert "doorguard" in (boot / "firstrun.sh").read_text()

    # First boot, early: unpack + enable the one-shot, chain Imager's script, unhook cmdline.txt.
    sh(["bash", boot / "firstrun.sh"], {"DESTDIR": str(dest)})
    assert marker.exists()
    assert not (boot / "firstrun.sh").exists() and not (boot / "firstrun-imager.sh").exists()
    assert (boot / "cmdline.txt").read_text() == "console=serial0 root=PARTUUID=abc-02 rootwait\n"
    src = dest / "usr/local/src/doorguard"
    assert (src / "systemd/install.sh").is_file()
    assert (src / "models/mask-classifier.int8.tflite").is_file()
    wants = dest / "etc/systemd/system/multi-user.target.wants/doorguard-firstboot.service"
    assert wants.is_symlink() and str(wants.readlink()) == "/etc/systemd/system/doorguard-firstboot.service"
    unit = (dest / "etc/systemd/system/doorguard-firstboot.service").read_text()
    assert "ExecStart=/usr/local/src/doorguard/systemd/firstboot/firstboot.sh" in unit

    # Next boot, with network: the one-shot installs doorguard, then never again.
    r = sh([src / "systemd/firstboot/firstboot.sh"], {"DESTDIR": str(dest), "DOORGUARD_SRC": ""})
    assert (dest / "etc/systemd/system/doorguard.service").is_file()
    assert (dest / "opt/doorguard/models/mask-classifier.json").is_file()
    assert (dest / "var/lib/doorguard-firstboot.done").is_file()
    assert "install" in (dest / "var/log/doorguard-firstboot.log").read_text()
    r = sh([src / "systemd/firstboot/firstboot.sh"], {"DESTDIR": str(dest)})
    assert "already done" in r.stdout


def test_prepare_boot_hooks_cmdline_without_imager(project, tmp_path):
    boot = fake_boot(tmp_path)
    sh([project / "systemd/firstboot/prepare-boot.sh", str(boot)])
    line = (boot / "cmdline.txt").read_text()
    assert line.count("\n") == 1
    assert line.rstrip().endswith("rootwait systemd.run=/boot/firmware/firstrun.sh "
                                  "systemd.run_success_action=reboot systemd.unit=kernel-command-line.target")
    sh([project / "systemd/firstboot/prepare-boot.sh", str(boot)])  # idempotent
    assert (boot / "cmdline.txt").read_text() == line
    assert not (boot / "firstrun-imager.sh").exists()


def test_prepare_boot_cloud_init_keeps_imager_user_data(project, tmp_path):
    yaml = pytest.importorskip("yaml")
    ours = yaml.safe_load((ROOT / "systemd/firstboot/user-data").read_text())
    assert (ROOT / "systemd/firstboot/user-data").read_text().startswith("#cloud-config\n")
    assert len(ours["runcmd"]) == 1 and "firstboot.sh" in ours["runcmd"][0][2]

    for i, existing in enumerate((
        "#cloud-config\nhostname: door\nusers:\n  - name: pi\n    groups: sudo\nruncmd:\n  - [echo, hi]\n",
        "#cloud-config\nhostname: door\nruncmd:\n- [echo, hi]\n",
        "#cloud-config\nhostname: door\n",
    )):
        (tmp_path / str(i)).mkdir()
        boot = fake_boot(tmp_path / str(i))
        (boot / "user-data").write_text(existing)
        sh([project / "systemd/firstboot/prepare-boot.sh", str(boot)])
        data = yaml.safe_load((boot / "user-data").read_text())
        assert data["hostname"] == "door"
        assert ours["runcmd"][0] in data["runcmd"]
        assert len(data["runcmd"]) == (2 if "echo" in existing else 1)
        before = (boot / "user-data").read_text()
        sh([project / "systemd/firstboot/prepare-boot.sh", str(boot)])
        assert (boot / "user-data").read_text() == before
        assert (boot / "doorguard.tar.gz").is_file()
        assert "systemd.run" not in (boot / "cmdline.txt").read_text()


def test_prepare_boot_refuses_a_non_boot_dir(project, tmp_path):
    r = sh([project / "systemd/firstboot/prepare-boot.sh", str(tmp_path)], check=False)
    assert r.returncode == 1 and "boot partition" in r.stderr
