"""The web page's zone editor: save round trip with Flask's test client, CSRF, validation, atomic write."""

from __future__ import annotations

import json
import re
import tomllib

import numpy as np
import pytest

from edge import config, web
from edge.web import LiveFrame, WebConfig, WebServer
from edge.zone_editor import ZoneEditor, replace_polygons

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
    def __init__(self, tmp_path, text=CONFIG, path=True):
        self.path = tmp_path / "door.toml"
        self.path.write_text(text)
        self.path.chmod(0o640)
        self.saved = []
        self.live = LiveFrame()
        self.live.put(np.zeros((96, 128, 3), np.uint8))
        pw = tmp_path / "web-password"
        web.write_password_file(pw, web.hash_password(PASSWORD, n=2**10))
        self.editor = ZoneEditor(self.path if path else None, lambda: (128, 96), lambda: ([], []),
                                 self.saved.append)
        self.server = WebServer(WebConfig(port=0), status=lambda: {}, latest_frame=self.live.get,
                                test_outputs=lambda: None, password_file=pw, sys_root=tmp_path / "nosys",
                                zone_editor=self.editor)
        self.client = self.server.app.test_client()

    def login(self):
        r = self.client.post("/login", data={"password": PASSWORD, "next": "/zones"})
        assert r.status_code == 302

    def page(self):
        r = self.client.get("/zones")
        assert r.status_code == 200
        text = r.get_data(as_text=True)
        csrf = re.search(r'name="csrf" value="([^"]+)"', text[text.index('action="/zones"'):]).group(1)
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
    r = ed.client.post("/zones", data={"csrf": csrf, "polygons": json.dumps(polys)})
    assert r.status_code == 302 and r.headers["Location"].endswith("/zones?saved=1")
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
    assert "Saved to" in ed.client.get("/zones?saved=1").get_data(as_text=True)
    assert not list(ed.path.parent.glob(".door.toml.*"))  # no temp file left
    # saving again with nothing changed gives the same file (no growing blank lines)
    _, csrf, polys = ed.page()
    ed.client.post("/zones", data={"csrf": csrf, "polygons": json.dumps(polys)})
    assert ed.path.read_text() == text


def test_save_without_or_with_a_wrong_csrf_token_is_refused(ed):
    ed.login()
    _, csrf, polys = ed.page()
    before = ed.path.read_text()
    body = json.dumps({"zones": [], "masks": []})
    assert ed.client.post("/zones", data={"polygons": body}).status_code == 403
    assert ed.client.post("/zones", data={"csrf": "x" + csrf, "polygons": body}).status_code == 403
    other = ed.client.post("/zones", data={"csrf": csrf, "polygons": body}, headers={"Origin": "http://evil.example"})
    assert other.status_code == 403
    assert ed.path.read_text() == before and ed.saved == []


def test_invalid_polygons_are_refused_with_the_check_config_message(ed):
    ed.login()
    _, csrf, polys = ed.page()
    before = ed.path.read_text()
    polys["zones"].append({"points": [[0, 0], [1, 1], [1, 0], [0, 1]]})  # a bow tie
    r = ed.client.post("/zones", data={"csrf": csrf, "polygons": json.dumps(polys)})
    assert r.status_code == 400
    page = r.get_data(as_text=True)
    assert "zones.1.points" in page and "self-intersecting" in page
    for bad in ("not json", json.dumps({"zones": [{"points": [[0, 0], [1, 0]]}]}),
                json.dumps({"zones": [{"points": [[0, 0], [1, 0], [1, 1]], "bogus key": 1}]}),
                json.dumps({"zones": [{"points": [[0, 0], [1, 0], [1, 1]], "colour": "red"}]}),
                json.dumps({"masks": [{"points": [[0, 0], [2, 0], [1, 1]]}]})):
        assert ed.client.post("/zones", data={"csrf": csrf, "polygons": bad}).status_code == 400, bad
    assert ed.path.read_text() == before and ed.saved == []


def test_inline_zones_are_not_silently_duplicated(tmp_path):
    ed = Editor(tmp_path, 'zones = [{points = [[0, 0], [1, 0], [1, 1]]}]\n[models]\nnum_threads = 2\n')
    ed.login()
    _, csrf, polys = ed.page()
    before = ed.path.read_text()
    r = ed.client.post("/zones", data={"csrf": csrf, "polygons": json.dumps(polys)})
    assert r.status_code == 400 and ed.path.read_text() == before


def test_unwritable_folder_is_one_line_on_the_page(ed, monkeypatch):
    import os

    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied")

    ed.login()
    _, csrf, polys = ed.page()
    monkeypatch.setattr(os, "replace", refuse)
    r = ed.client.post("/zones", data={"csrf": csrf, "polygons": json.dumps(polys)})
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
