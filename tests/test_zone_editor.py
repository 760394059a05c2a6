"""The web page's zone editor: save round trip with Flask's test client, CSRF, validation, atomic write."""

from __future__ import annotations

import json
import time
from pathlib import Path
import re
import tomllib

import numpy as np
import pytest

from edge import config
from edge.errors import ConfigError
from edge.settings.web import WebConfig
from edge.act.web.handover import LiveFrame
from edge.act.web.passwords import hash_password, write_password_file
from edge.act.web.server import WebServer
from edge.act.web.sessions import SESSION_COOKIE
from edge.act.web.zone_editor import ZoneEditor, replace_polygons

PASSWORD = "correct horse battery"

CONFIG = """# my door
[models]
num_threads = 2   # two cores

[[zones]]
name = "old"
points = [[0.0, 0.0], [0.5, 0.0], [0.5, 0.5]]

# comment about rules, kept
[rules]
global_cooldown_s = 1.0

[privacy]
blur_other_faces = true

[[privacy.masks]]
units = "pixels"
points = [[0, 0], [64, 0], [64, 48]]
"""


class Editor:
    def __init__(self, tmp_path, text=CONFIG, path=True, overlay=True, frame=True):
        self.path = tmp_path / "door.toml"
        self.path.write_text(text)
        self.path.chmod(0o640)
        self.saved = []
        self.live = LiveFrame()
        if frame:
            self.live.put(np.zeros((96, 128, 3), np.uint8))
        pw = tmp_path / "web-password"
        write_password_file(pw, hash_password(PASSWORD, n=2**10))
        self.saved_to = []
        self.overlay = tmp_path / "state" / "zones.toml"
        self.editor = ZoneEditor(self.path if path else None, self.frame_size, lambda: ([], []),
                                 self.on_saved, self.overlay if overlay else None)
        self.server = WebServer(WebConfig(port=0), status=lambda: {}, latest_frame=self.live.get,
                                test_outputs=lambda: None, password_file=pw, sys_root=tmp_path / "nosys",
                                zone_editor=self.editor)
        self.client = self.server.app.test_client()

    def frame_size(self):
        item = self.live.get()
        return None if item is None else (item[0].shape[1], item[0].shape[0])

    def on_saved(self, cfg, saved_to):
        self.saved.append(cfg)
        self.saved_to.append(saved_to)

    def login(self):
        r = self.client.post("/login", data={"password": PASSWORD, "next": "/zones"})
        assert r.status_code == 302

    def page(self):
        r = self.client.get("/zones")
        assert r.status_code == 200
        text = r.get_data(as_text=True)
        csrf = re.search(r'name="csrf" value="([^"]+)"', text[text.index('action="/zones"'):]).group(1)
        self.base = re.search(r'name="base" value="([0-9a-f]+)"', text).group(1)
        polys = json.loads(__import__("html").unescape(re.search(r'data-polygons="([^"]*)"', text).group(1)))
        return r, csrf, polys


@pytest.fixture
def ed(tmp_path):
    return Editor(tmp_path)


def test_zone_page_needs_login_and_shows_the_files_polygons(ed):
    assert ed.client.get("/zones").status_code == 302  # to the login
    assert ed.client.post("/zones", data={"polygons": "{}"}).status_code == 401
    ed.login()
    r, _, polys = ed.page()
    assert polys["zones"] == [{"name": "old", "points": [[0.0, 0.0], [0.5, 0.0], [0.5, 0.5]]}]
    # the pixel mask, scaled to the page's 0..1 by the 128 x 96 frame
    assert polys["masks"] == [{"units": "pixels", "points": [[0.0, 0.0], [0.5, 0.0], [0.5, 0.5]]}]
    csp = r.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp.split("script-src")[1]
    assert "script-src" not in ed.client.get("/status").headers["Content-Security-Policy"]
    js = ed.client.get("/zones.js")
    assert js.status_code == 200 and "JSON.parse" in js.get_data(as_text=True) and js.mimetype == "text/javascript"
    assert 'href="/zones"' in ed.client.get("/").get_data(as_text=True)


def test_save_round_trip_keeps_the_rest_of_the_file(ed):
    ed.login()
    _, csrf, polys = ed.page()
    polys["zones"].append({"name": "door", "points": [[0.1, 0.1], [0.9, 0.1], [0.9, 0.9], [0.1, 0.9]],
                           "inside": "overlap", "min_face_px": 24})
    r = ed.client.post("/zones", data={"csrf": csrf, "base": ed.base, "polygons": json.dumps(polys)})
    assert r.status_code == 302 and r.headers["Location"].endswith("/zones?saved=config")
    text = ed.path.read_text()
    for kept in ("# my door", "num_threads = 2   # two cores", "# comment about rules, kept",
                 "global_cooldown_s = 1.0", "blur_other_faces = true"):
        assert kept in text
    cfg = config.load(ed.path)
    assert [z.name for z in cfg.zones] == ["old", "door"]
    assert cfg.zones[1].inside == "overlap" and cfg.zones[1].min_face_px == 24
    assert cfg.privacy.masks[0].units == "pixels" and cfg.privacy.masks[0].points == [(0, 0), (64, 0), (64, 48)]
    assert cfg.rules.global_cooldown_s == 1.0 and cfg.privacy.blur_other_faces
    assert (ed.path.stat().st_mode & 0o777) == 0o640
    assert [len(c.zones) for c in ed.saved] == [2]  # the runner was told
    assert config.all_errors(text) == []
    assert "Saved to" in ed.client.get("/zones?saved=config").get_data(as_text=True)
    assert ed.saved_to == [ed.path] and not ed.overlay.exists()
    assert not list(ed.path.parent.glob(".door.toml.*"))  # no temp file left
    # saving again with nothing changed gives the same file (no growing blank lines)
    _, csrf, polys = ed.page()
    ed.client.post("/zones", data={"csrf": csrf, "base": ed.base, "polygons": json.dumps(polys)})
    assert ed.path.read_text() == text


def test_save_without_or_with_a_wrong_csrf_token_is_refused(ed):
    ed.login()
    _, csrf, polys = ed.page()
    before = ed.path.read_text()
    body = json.dumps({"zones": [], "masks": []})
    assert ed.client.post("/zones", data={"polygons": body}).status_code == 403
    assert ed.client.post("/zones", data={"csrf": "x" + csrf, "polygons": body}).status_code == 403
    other = ed.client.post("/zones", data={"csrf": csrf, "base": ed.base, "polygons": body}, headers={"Origin": "http://evil.example"})
    assert other.status_code == 403
    assert ed.path.read_text() == before and ed.saved == []


def test_invalid_polygons_are_refused_with_the_check_config_message(ed):
    ed.login()
    _, csrf, polys = ed.page()
    before = ed.path.read_text()
    polys["zones"].append({"points": [[0, 0], [1, 1], [1, 0], [0, 1]]})  # a bow tie
    r = ed.client.post("/zones", data={"csrf": csrf, "base": ed.base, "polygons": json.dumps(polys)})
    assert r.status_code == 400
    page = r.get_data(as_text=True)
    assert "zones.1.points" in page and "self-intersecting" in page
    for bad in ("not json", json.dumps({"zones": [{"points": [[0, 0], [1, 0]]}]}),
                json.dumps({"zones": [{"points": [[0, 0], [1, 0], [1, 1]], "bogus key": 1}]}),
                json.dumps({"zones": [{"points": [[0, 0], [1, 0], [1, 1]], "colour": "red"}]}),
                json.dumps({"masks": [{"points": [[0, 0], [2, 0], [1, 1]]}]})):
        assert ed.client.post("/zones", data={"csrf": csrf, "base": ed.base, "polygons": bad}).status_code == 400, bad
    assert ed.path.read_text() == before and ed.saved == []


def test_a_save_from_a_page_older_than_the_polygons_is_refused(ed):
    ed.login()
    _, csrf, polys = ed.page()
    ed.path.write_text(ed.path.read_text().replace('name = "old"', 'name = "edited by hand"'))
    before = ed.path.read_text()
    for base in (ed.base, "", None):
        data = {"csrf": csrf, "polygons": json.dumps(polys), **({"base": base} if base is not None else {})}
        r = ed.client.post("/zones", data=data)
        assert r.status_code == 400 and "reload the page" in r.get_data(as_text=True)
    assert ed.path.read_text() == before and ed.saved == []
    _, csrf, polys = ed.page()  # reloaded: saves again
    r = ed.client.post("/zones", data={"csrf": csrf, "base": ed.base, "polygons": json.dumps(polys)})
    assert r.status_code == 302


def test_a_page_that_cannot_show_the_polygons_offers_no_save(tmp_path):
    ed = Editor(tmp_path, frame=False)  # the pixel mask needs a frame to be shown on
    ed.login()
    text = ed.client.get("/zones").get_data(as_text=True)
    assert "wait for the camera" in text and 'id="noload"' in text and 'action="/zones"' not in text


def test_inline_zones_are_not_silently_duplicated(tmp_path):
    ed = Editor(tmp_path, 'zones = [{points = [[0, 0], [1, 0], [1, 1]]}]\n[models]\nnum_threads = 2\n')
    ed.login()
    _, csrf, polys = ed.page()
    before = ed.path.read_text()
    r = ed.client.post("/zones", data={"csrf": csrf, "base": ed.base, "polygons": json.dumps(polys)})
    assert r.status_code == 400 and ed.path.read_text() == before


def test_unwritable_folder_is_one_line_on_the_page(ed, monkeypatch):
    import os

    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied")

    ed.login()
    _, csrf, polys = ed.page()
    monkeypatch.setattr(os, "replace", refuse)
    r = ed.client.post("/zones", data={"csrf": csrf, "base": ed.base, "polygons": json.dumps(polys)})
    assert r.status_code == 400 and "cannot write config" in r.get_data(as_text=True)
    assert not list(ed.path.parent.glob(".door.toml.*"))


def test_without_a_config_file_nothing_can_be_saved(tmp_path):
    ed = Editor(tmp_path, path=False)
    ed.login()
    text = ed.client.get("/zones").get_data(as_text=True)
    assert "cannot be saved" in text and 'action="/zones"' not in text


def test_replace_polygons_text():
    new = replace_polygons(CONFIG, [{"points": [[0, 0], [1, 0], [1, 1]]}], [])
    raw = tomllib.loads(new)
    assert raw["zones"] == [{"points": [[0, 0], [1, 0], [1, 1]]}] and "masks" not in raw["privacy"]
    assert raw["rules"] == {"global_cooldown_s": 1.0} and "# comment about rules, kept" in new
    assert replace_polygons("[models]\nnum_threads = 2\n", [], []) == "[models]\nnum_threads = 2\n"


# ---- a read-only config (the shipped unit): the overlay in the state directory ---------------------

def read_only(monkeypatch, folder):
    """Make ``folder`` read-only to edge.atomic, as ProtectSystem=strict makes /etc/doorguard
    (the tests run as root, whom a chmod does not stop)."""
    import errno

    from edge import atomic

    real = atomic.write_atomic

    def write(path, *a, **k):
        if Path(path).parent.resolve() == Path(folder).resolve():
            raise OSError(errno.EROFS, "Read-only file system")
        return real(path, *a, **k)

    monkeypatch.setattr(atomic, "write_atomic", write)


NEW = {"zones": [{"name": "door", "points": [[0.1, 0.1], [0.9, 0.1], [0.9, 0.9]]}],
       "masks": [{"name": "street", "points": [[0.0, 0.5], [1.0, 0.5], [1.0, 1.0], [0.0, 1.0]]}]}


def test_read_only_config_saves_to_the_overlay_which_run_and_check_config_load(ed, monkeypatch, capsys):
    from edge import cli

    from edge.act.web import zone_overlay
    ed.login()
    _, csrf, _ = ed.page()
    before = ed.path.read_text()
    read_only(monkeypatch, ed.path.parent)
    r = ed.client.post("/zones", data={"csrf": csrf, "base": ed.base, "polygons": json.dumps(NEW)})
    assert r.status_code == 302 and r.headers["Location"].endswith("/zones?saved=overlay")
    assert ed.path.read_text() == before  # the config file is untouched
    assert ed.saved_to == [ed.overlay] and [z.name for z in ed.saved[0].zones] == ["door"]
    assert (ed.overlay.stat().st_mode & 0o777) == 0o600
    assert not list(ed.overlay.parent.glob(".zones.toml.*"))
    text = ed.client.get("/zones?saved=overlay").get_data(as_text=True)
    assert f"Saved to {ed.overlay}" in text and "read-only" in text and "doorguard zones --reset" in text
    _, _, shown = ed.page()  # the page now shows what the overlay holds
    assert [z["name"] for z in shown["zones"]] == ["door"] and [m["name"] for m in shown["masks"]] == ["street"]
    # what run and check-config get: the file's settings, the overlay's polygons
    cfg, used = zone_overlay.apply(config.load(ed.path), ed.overlay)
    assert used == ed.overlay and [z.name for z in cfg.zones] == ["door"]
    assert [m.name for m in cfg.privacy.masks] == ["street"] and cfg.privacy.blur_other_faces
    assert cfg.rules.global_cooldown_s == 1.0 and cfg.models.num_threads == 2
    monkeypatch.setenv("STATE_DIRECTORY", str(ed.overlay.parent))
    assert cli.main(["check-config", str(ed.path)]) == 0
    assert capsys.readouterr().out.strip().endswith(f"ok (zones and privacy masks from {ed.overlay})")
    # saving an empty set keeps "none" (not "the file's")
    _, csrf, _ = ed.page()
    ed.client.post("/zones", data={"csrf": csrf, "base": ed.base, "polygons": json.dumps({"zones": [], "masks": []})})
    cfg, used = zone_overlay.apply(config.load(ed.path), ed.overlay)
    assert used == ed.overlay and cfg.zones == [] and cfg.privacy.masks == []
    # the config file writable again: the save goes there and the overlay goes away
    monkeypatch.undo()
    _, csrf, _ = ed.page()
    r = ed.client.post("/zones", data={"csrf": csrf, "base": ed.base, "polygons": json.dumps(NEW)})
    assert r.headers["Location"].endswith("/zones?saved=config") and not ed.overlay.exists()
    assert [z.name for z in config.load(ed.path).zones] == ["door"] and "# comment about rules, kept" in \
        ed.path.read_text()


def test_neither_config_nor_state_dir_writable_is_one_line(ed, monkeypatch):
    ed.login()
    _, csrf, _ = ed.page()
    read_only(monkeypatch, ed.path.parent)
    ed.overlay.parent.mkdir()
    read_only(monkeypatch, ed.overlay.parent)  # both folders (the second patch wraps the first)
    r = ed.client.post("/zones", data={"csrf": csrf, "base": ed.base, "polygons": json.dumps(NEW)})
    page = r.get_data(as_text=True)
    assert r.status_code == 400 and "cannot write config" in page and "Read-only file system" in page
    assert f"cannot write the zones overlay {ed.overlay}" in page and ed.saved == []


def test_without_an_overlay_path_a_read_only_config_is_the_old_error(tmp_path, monkeypatch):
    ed = Editor(tmp_path, overlay=False)
    ed.login()
    _, csrf, _ = ed.page()
    read_only(monkeypatch, ed.path.parent)
    r = ed.client.post("/zones", data={"csrf": csrf, "base": ed.base, "polygons": json.dumps(NEW)})
    assert r.status_code == 400 and "Read-only file system" in r.get_data(as_text=True)


BAD_OVERLAYS = [
    ("[[zones]]\npoints = [[0, 0], [1, 1], [1, 0], [0, 1]]\n", "zones.0.points (line 2)", "self-intersecting"),
    ("[[zones]]\npoints = [[0, 0], [1, 0]]\n", "zones.0.points (line 2)", "at least 3"),
    ("[privacy]\nblur_other_faces = true\n", "privacy.blur_other_faces (line 2)", "unknown key"),
    ("[models]\nnum_threads = 4\n", "models (line 1)", "unknown key"),
    ("[[zones]\n", "not valid TOML", ""),
]


@pytest.mark.parametrize("text,key,why", BAD_OVERLAYS)
def test_a_bad_overlay_is_one_line_naming_the_file_and_key(tmp_path, monkeypatch, capsys, text, key, why):
    from edge import cli, service

    state = tmp_path / "state"
    state.mkdir()
    (state / "zones.toml").write_text(text)
    conf = tmp_path / "door.toml"
    conf.write_text(f'[events]\nstate_dir = "{state}"\n')
    assert cli.main(["check-config", str(conf)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"{state / 'zones.toml'}: ") and key in err
    assert why in err and "Traceback" not in err and "doorguard zones --reset" in err
    with pytest.raises(ConfigError, match="zones.toml"):
        service.Runner(config.load(conf), config_path=conf)
    assert cli.main(["run", "--config", str(conf), "--max-frames", "1"]) == 3
    err = capsys.readouterr().err.strip()
    assert err.startswith("doorguard: error: ") and key in err and len(err.splitlines()) == 1
    # the page shows it too, in one line
    (tmp_path / "page").mkdir()
    ed = Editor(tmp_path / "page")
    ed.editor.overlay_path = state / "zones.toml"
    ed.login()
    page = ed.client.get("/zones").get_data(as_text=True)
    assert 'id="error"' in page and key in page


def test_doorguard_zones_says_where_they_come_from_and_reset_removes_the_overlay(tmp_path, capsys):
    from edge import cli

    state = tmp_path / "state"
    conf = tmp_path / "door.toml"
    conf.write_text(f'[events]\nstate_dir = "{state}"\n[[zones]]\nname = "file"\npoints = {LEFT}\n')
    assert cli.main(["zones", "--config", str(conf)]) == 0
    out = capsys.readouterr().out
    assert f"from {conf}" in out and "zone 0 'file': 4 corners" in out
    state.mkdir()
    (state / "zones.toml").write_text("zones = []\n[[privacy.masks]]\nname = \"street\"\n"
                                      "points = [[0, 0.5], [1, 0.5], [1, 1]]\n")
    assert cli.main(["zones", "--config", str(conf)]) == 0
    out = capsys.readouterr().out
    assert f"from {state / 'zones.toml'} (saved on the web page" in out and "mask 0 'street'" in out
    assert "zone 0" not in out
    assert cli.main(["zones", "--config", str(conf), "--reset"]) == 0
    assert f"removed {state / 'zones.toml'}" in capsys.readouterr().out and not (state / "zones.toml").exists()
    assert cli.main(["zones", "--config", str(conf), "--reset"]) == 0
    assert "no zones overlay" in capsys.readouterr().out
    assert cli.main(["zones", "--config", str(conf), "--state-dir", str(tmp_path)]) == 0  # --state-dir wins


LEFT = "[[0, 0], [0.5, 0], [0.5, 1], [0, 1]]"


# ---- end to end: the real runner, its web page and /zones.js in headless Chromium -------------------

E2E_HEAD = """# doorguard at the front door (comments stay)
[models]
detector = "{det}"
classifier = "{clf}"

[source]
spec = "{frames}"   # a looping folder stands in for the camera
loop = true
fps = 8
per_image = false

[events]
state_dir = "{state}"

[web]
enabled = true
port = 0
password_file = "{pw}"

"""
E2E_OLD = """# Zones below are drawn on the web page (a comment above a table stays).
[[zones]]
name = "old"
points = [[0.0, 0.0], [0.2, 0.0], [0.2, 0.2]]

"""
E2E_TAIL = """# after the zone: kept
[rules]
global_cooldown_s = 0.0   # every violation
"""
FRAME_W, FRAME_H = 512, 384
#: The HTTP status of the page the browser shows.
STATUS = "performance.getEntriesByType('navigation')[0].responseStatus"


@pytest.mark.slow
def test_zone_editor_in_chromium_end_to_end(tmp_path, monkeypatch):
    """Log in, draw a zone and a mask with real mouse clicks on the canvas, delete the old zone,
    save: the file holds the polygons (the rest byte for byte), the running loop uses them (the
    live frame is black under the mask), and a forged or missing CSRF token is refused."""
    import http.client
    import threading

    import cv2
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    from edge import service
    from web_browser import SKIP_REASON, DevTools, Tab, chromium

    from edge.fakes import (BLUE, RED, BlobDetectorInterpreter, ColourClassifierInterpreter, FakeNotifier,
                            write_classifier_manifest, write_detector_manifest)

    binary = chromium()
    if binary is None:
        pytest.skip(SKIP_REASON)
    frames = tmp_path / "frames"
    frames.mkdir()
    img = np.full((FRAME_H, FRAME_W, 3), 128, np.uint8)
    img[100:220, 60:180] = BLUE    # a masked face in the left half (the zone)
    img[100:220, 360:480] = RED    # an unmasked face in the right half (under the mask)
    for i in range(3):
        cv2.imwrite(str(frames / f"{i}.png"), img[..., ::-1])
    pw = tmp_path / "web-password"
    write_password_file(pw, hash_password(PASSWORD, n=2**10))
    head = E2E_HEAD.format(det=write_detector_manifest(tmp_path), clf=write_classifier_manifest(tmp_path),
                           frames=frames, state=tmp_path / "state", pw=pw)
    conf = tmp_path / "door.toml"
    conf.write_text(head + E2E_OLD + E2E_TAIL)
    before = config.load(conf)

    servers = []
    real_start = WebServer.start
    monkeypatch.setattr(WebServer, "start", lambda self: servers.append(self) or real_start(self))
    factory = MockFactory(pin_class=MockPWMPin)
    runner = service.Runner(config.load(conf), pin_factory=factory, notifier=FakeNotifier(), config_path=conf,
                            detector_interpreter=BlobDetectorInterpreter(),
                            classifier_interpreter=ColourClassifierInterpreter())
    switched = []
    real_use = runner.use_polygons
    runner.use_polygons = lambda cfg, saved_to=None: switched.append(saved_to) or real_use(cfg, saved_to)
    result: list = []
    loop = threading.Thread(target=lambda: result.append(runner.run()), daemon=True)
    loop.start()
    artifacts = Path(__file__).resolve().parent / "artifacts"
    browser = DevTools(binary, tmp_path / "chromium-profile")
    try:
        deadline = time.monotonic() + 30
        while not (servers and servers[0].port and runner.frames >= 2) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert servers and runner.frames >= 2, "the runner's web page never came up"
        base = f"http://127.0.0.1:{servers[0].port}"

        def get(path: str, cookie: str) -> tuple[int, bytes]:
            c = http.client.HTTPConnection("127.0.0.1", servers[0].port, timeout=10)
            try:
                c.request("GET", path, headers={"Cookie": f"{SESSION_COOKIE}={cookie}"})
                r = c.getresponse()
                return r.status, r.read()
            finally:
                c.close()

        tab = Tab(browser)
        tab.load(f"{base}/zones")
        assert tab.evaluate("location.pathname") == "/login"
        tab.type("#password", PASSWORD)
        tab.load(click="#login")
        assert tab.evaluate("location.pathname") == "/zones"
        # the frame has loaded and the canvas lies over it at its size
        size = tab.wait_for("(() => { const i = document.getElementById('zimg'), c = "
                            "document.getElementById('zcanvas'); return i.naturalWidth && c.width === "
                            "i.clientWidth && c.height === i.clientHeight && c.width > 0 ? [c.width, c.height] "
                            ": null; })()")
        assert size[0] / size[1] == pytest.approx(FRAME_W / FRAME_H, rel=0.02), size
        assert tab.evaluate("document.getElementById('zlist').innerText").count("Delete") == 1  # "old"
        errors_before = tab.evaluate("document.getElementById('error') === null")
        assert errors_before

        zone = [(0.02, 0.02), (0.5, 0.02), (0.5, 0.98), (0.02, 0.98)]
        mask = [(0.6, 0.1), (0.98, 0.1), (0.98, 0.9), (0.6, 0.9)]

        def draw(stray: bool = False) -> None:
            """The zone "doorway" and the mask "street" by mouse, then delete the old zone."""
            for pt in zone:
                tab.click("#zcanvas", *pt)
            tab.type("#zname", "doorway")
            tab.click("#zclose")
            tab.evaluate("document.getElementById('zkind').value = 'masks'")
            for pt in mask:
                tab.click("#zcanvas", *pt)
            if stray:
                tab.click("#zcanvas", 0.3, 0.3)  # a stray corner...
                tab.click("#zundo")              # ...taken back
            tab.type("#zname", "street")
            tab.click("#zclose")
            tab.click("#zlist li:first-child button")  # delete "old"

        draw(stray=True)
        listed = tab.evaluate("document.getElementById('zlist').innerText")
        assert "old" not in listed and "Zone doorway (4 corners)" in listed and "Mask street (4 corners)" in listed
        tab.screenshot(artifacts / "zones-editor.png")

        # a forged token, then none: refused, the file unchanged, the loop not switched
        text_before = conf.read_text()
        tab.evaluate("document.querySelector('#zform input[name=csrf]').dataset.real = "
                     "document.querySelector('#zform input[name=csrf]').value")
        tab.evaluate("document.querySelector('#zform input[name=csrf]').value = 'forged' + 'x'.repeat(40)")
        tab.load(click="#zsave")
        assert tab.evaluate(STATUS) == 403
        tab.load(url=f"{base}/zones")
        assert conf.read_text() == text_before and switched == []
        tab.wait_for("document.getElementById('zcanvas').width > 0")
        tab.evaluate("document.querySelector('#zform input[name=csrf]').remove()")
        tab.load(click="#zsave")
        assert tab.evaluate(STATUS) == 403
        assert conf.read_text() == text_before and switched == []

        # draw again (the refused page kept nothing) and save for real
        tab.load(url=f"{base}/zones")
        tab.wait_for("document.getElementById('zcanvas').width > 0")
        draw()
        tab.load(click="#zsave")
        assert tab.evaluate("location.search") == "?saved=config", tab.evaluate("document.body.innerText")
        assert f"Saved to {conf}" in tab.evaluate("document.getElementById('saved').innerText")

        # the file: the zone and the mask where they were clicked, everything else as it was
        after = conf.read_text()
        assert after.startswith(head + E2E_OLD.splitlines(keepends=True)[0] + "\n" + E2E_TAIL), after
        assert after.index("[[zones]]") > after.index("global_cooldown_s")  # the new tables at the end
        cfg = config.load(conf)
        assert [z.name for z in cfg.zones] == ["doorway"] and [m.name for m in cfg.privacy.masks] == ["street"]
        for got, want in ((cfg.zones[0].points, zone), (cfg.privacy.masks[0].points, mask)):
            assert np.allclose(got, want, atol=0.01), (got, want)
        assert cfg.model_dump(exclude={"zones", "privacy"}) == before.model_dump(exclude={"zones", "privacy"})
        assert cfg.privacy.blur_other_faces == before.privacy.blur_other_faces
        assert config.all_errors(after) == []
        # the page shows the saved polygons again
        shown = json.loads(tab.evaluate("document.getElementById('zcanvas').dataset.polygons"))
        assert [z["name"] for z in shown["zones"]] == ["doorway"]

        # the running loop switched: use_polygons, the status, and black under the mask in the live frame
        assert switched == [conf]
        cookie = tab.cookie(SESSION_COOKIE, base)
        status, body = get("/status.json", cookie)
        st = json.loads(body)
        assert status == 200 and st["privacy"].startswith("1 zone(s), 1 privacy mask(s)") and \
            st["zones_from"] == str(conf)
        n = runner.frames
        deadline = time.monotonic() + 20
        while runner.frames < n + 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        status, body = get("/frame.jpg", cookie)
        live = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
        h, w = live.shape[:2]
        assert status == 200 and live[int(0.3 * h):int(0.7 * h), int(0.75 * w):int(0.9 * w)].max() < 40
        assert live[int(0.3 * h):int(0.5 * h), int(0.15 * w):int(0.3 * w)].mean() > 60  # the zone's face shown
        # and the page, reloaded, shows that frame: black under the mask
        tab.load(url=f"{base}/zones")
        tab.wait_for("document.getElementById('zcanvas').width > 0")
        under = tab.evaluate("(() => { const i = document.getElementById('zimg'), c = document.createElement("
                             "'canvas'); c.width = i.naturalWidth; c.height = i.naturalHeight; const x = "
                             "c.getContext('2d'); x.drawImage(i, 0, 0); const d = x.getImageData(c.width * 0.8, "
                             "c.height * 0.5, 1, 1).data; return d[0] + d[1] + d[2]; })()")
        assert under < 60, under
        tab.screenshot(artifacts / "zones-saved.png")
        print(f"\nscreenshots: {artifacts / 'zones-editor.png'} and {artifacts / 'zones-saved.png'}")
    finally:
        browser.close()
        runner.request_stop("test over")
        loop.join(timeout=20)
        factory.close()
    assert result == [0]


@pytest.mark.slow
def test_zone_page_opened_before_the_first_frame_shows_it_once_it_comes(tmp_path):
    """A page opened while the camera is still starting (/frame.jpg: 503) must not stay a
    broken image with a zero-size canvas (it tries the frame again), and, as it cannot show the
    file's pixel mask yet, must offer no Save that would drop it."""
    from web_browser import SKIP_REASON, DevTools, Tab, chromium

    binary = chromium()
    if binary is None:
        pytest.skip(SKIP_REASON)
    ed = Editor(tmp_path, frame=False)
    ed.server.start()
    browser = DevTools(binary, tmp_path / "chromium-profile")
    try:
        tab = Tab(browser)
        base = f"http://127.0.0.1:{ed.server.port}"
        tab.load(f"{base}/zones")
        tab.type("#password", PASSWORD)
        tab.load(click="#login")
        assert tab.evaluate("location.pathname") == "/zones"
        time.sleep(0.5)
        assert tab.evaluate("document.getElementById('zimg').naturalWidth") == 0  # no frame yet
        assert "wait for the camera" in tab.evaluate("document.getElementById('error').innerText")
        assert tab.evaluate("!!document.getElementById('noload') && !document.getElementById('zform')")
        img = np.zeros((96, 128, 3), np.uint8)
        img[..., 1] = 200
        ed.live.put(img)
        size = tab.wait_for("(() => { const c = document.getElementById('zcanvas'), i = "
                            "document.getElementById('zimg'); return i.naturalWidth && c.width === i.clientWidth "
                            "? [i.naturalWidth, c.width, c.height] : null; })()", timeout=10)
        assert size[0] == 128 and size[1] > 0 and size[2] > 0
        tab.load(f"{base}/zones")  # reloaded as the page says: now with the file's zone and mask
        tab.wait_for("document.getElementById('zcanvas').width > 0")
        assert tab.evaluate("document.getElementById('zlist').children.length") == 2
        for pt in ((0.1, 0.1), (0.9, 0.1), (0.5, 0.9)):
            tab.click("#zcanvas", *pt)
        tab.click("#zclose")
        tab.load(click="#zsave")
        assert tab.evaluate("location.search") == "?saved=config"
        cfg = config.load(ed.path)
        assert len(cfg.zones) == 2 and cfg.zones[0].name == "old" and len(cfg.privacy.masks) == 1
    finally:
        browser.close()
        ed.server.close()
