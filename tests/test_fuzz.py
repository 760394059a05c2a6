"""Bad-input fuzzing (hypothesis): every case ends in success or a DoorguardError.

Targets: the config TOML (edge.config.parse/load/all_errors), darknet cfg text
(convert.parse.darknet.load_network), weights files of random length
(convert.parse.darknet.read_weights), VOC xml (convert.data.dataset.parse_voc and the
eval's convert.verify.evaluate.load_voc), image bytes (convert.data.images.read_rgb and
edge.capture.sources.FolderSource), valid TOML with absurd numbers (1e9 votes, 1e12
beeps, 1e-300 s, nan/inf: refused, or a config the alarm still works with), and
the web page's routes (``next`` after a login with control characters,
backslashes and slashes; any Host header). Inputs are partly random text/bytes
and partly built from the real grammar (known keys and sections with wrong
values), which reaches much deeper than noise. The number of cases run is
printed at the end.
"""

from __future__ import annotations

import math
import os
import struct
import tempfile
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convert.parse import darknet
from convert.data.dataset import parse_voc
from convert.verify.evaluate import load_voc
from convert.data.images import read_rgb
from darknet_fixtures import ODD_POOL_CFG
from edge import config as config_mod
from edge.errors import DoorguardError
from edge.capture.sources import FolderSource

CASES: Counter = Counter()
# CI explores the same cases every run (a random new finding must not block someone else's
# commit); DOORGUARD_FUZZ_RANDOM=1 explores fresh ones (how the bugs fixed so far were found).
FUZZ = settings(max_examples=700, deadline=None, database=None,
                derandomize=os.environ.get("DOORGUARD_FUZZ_RANDOM") != "1",
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                       HealthCheck.data_too_large])


@pytest.fixture(scope="module", autouse=True)
def report_cases(request):
    # OpenCV logs every undecodable image on stderr; thousands of those say nothing here.
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    yield
    cv2.utils.logging.setLogLevel(level)
    total = sum(CASES.values())
    line = f"fuzz cases: {total} ({', '.join(f'{k} {v}' for k, v in sorted(CASES.items()))})"
    capman = request.config.pluginmanager.getplugin("capturemanager")
    if capman is not None:
        with capman.global_and_fixture_disabled():  # shown even without -s
            print(f"\n{line}")
    else:
        print(line)


def outcome(kind: str, fn, *args, **kw):
    """Run one case: success or a DoorguardError; anything else fails the test (re-raised)."""
    CASES[kind] += 1
    try:
        return fn(*args, **kw)
    except DoorguardError as e:
        assert str(e).strip(), f"{kind}: empty error message"
        assert "\n" not in str(e).strip() or kind == "config", f"{kind}: multi-line error: {e!r}"
        return e


# ---- config TOML -----------------------------------------------------------------------------

def _schema(model) -> dict:
    """{section: [keys]} of the config models (the real grammar)."""
    out = {}
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and hasattr(ann, "model_fields"):
            out[name] = list(ann.model_fields)
            for sub, f2 in ann.model_fields.items():
                a2 = f2.annotation
                if isinstance(a2, type) and hasattr(a2, "model_fields"):
                    out[f"{name}.{sub}"] = list(a2.model_fields)
    return out


SCHEMA = _schema(config_mod.Config)

toml_scalar = st.one_of(
    st.integers(-2**63, 2**63 - 1), st.floats(allow_nan=True), st.booleans(),
    st.text(max_size=20), st.sampled_from(["", "auto", "demo", "/dev/video0", "~", "..", "models/x.json",
                                           "A5", "aplay", "letterbox", "nan", "inf"]),
)
toml_value = st.one_of(toml_scalar, st.lists(toml_scalar, max_size=4), st.dictionaries(
    st.text(min_size=1, max_size=8), toml_scalar, max_size=3))


def _toml_key(k: str) -> str:
    if k and all(c.isalnum() or c in "_-" for c in k):
        return k
    return '"' + k.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _toml_val(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return '"' + "".join(c if (c.isprintable() and c not in '"\\') else f"\\u{ord(c):04x}"
                             for c in v) + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_val(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_val(x)}" for k, x in v.items()) + "}"
    raise TypeError(v)


@st.composite
def config_texts(draw) -> str:
    sections = draw(st.lists(st.sampled_from(sorted(SCHEMA) + ["bogus", "models.extra"]), max_size=6,
                             unique=True))
    lines = []
    for sec in sections:
        lines.append(f"[{sec}]")
        keys = SCHEMA.get(sec, ["x"])
        for key in draw(st.lists(st.sampled_from(keys + ["typo_key"]), max_size=5, unique=True)):
            lines.append(f"{key} = {_toml_val(draw(toml_value))}")
    text = "\n".join(lines) + "\n"
    if draw(st.booleans()):  # damage it: cut, duplicate or insert a random line
        i = draw(st.integers(0, len(text)))
        text = text[:i] + draw(st.sampled_from(["", "[", "]]\n", "=\n", "\n[models]\n", "\x00", "key=\n",
                                                "\ufeff", '"""', "\n[models]\ndetector = 1\n"])) + text[i:]
    return text


@FUZZ
@given(config_texts())
def test_fuzz_config_structured(text):
    r = outcome("config", config_mod.parse, text, "fuzz.toml")
    if isinstance(r, config_mod.Config):
        r.state_dir()
        r.resolve(r.models.detector)
    errors = outcome("config", config_mod.all_errors, text, "fuzz.toml")
    assert isinstance(errors, list)
    assert (errors == []) == isinstance(r, config_mod.Config)


@FUZZ
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300)))
def test_fuzz_config_file_bytes(data):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "c.toml"
        if isinstance(data, str):
            p.write_text(data, encoding="utf-8", errors="surrogatepass")
        else:
            p.write_bytes(data)
        outcome("config", config_mod.load, p)


# ---- darknet cfg -----------------------------------------------------------------------------

DK_KEYS = {
    "net": ["width", "height", "channels", "batch"],
    "convolutional": ["batch_normalize", "filters", "size", "stride", "pad", "padding", "groups", "activation",
                      "dilation", "stride_x", "stride_y"],
    "maxpool": ["size", "stride", "stride_x", "stride_y", "padding"],
    "avgpool": [],
    "route": ["layers", "groups", "group_id"],
    "shortcut": ["from", "activation", "weights_type"],
    "upsample": ["stride", "scale"],
    "scale_channels": ["from", "scale_wh", "activation"],
    "yolo": ["mask", "anchors", "classes", "num", "scale_x_y", "new_coords", "jitter"],
    "bogus": ["x"],
}
dk_value = st.one_of(
    st.integers(-3, 70).map(str), st.sampled_from(["leaky", "linear", "relu", "mish", "swish", "logistic", "",
                                                   "1,2", "-1,-3", "0,1,2", "10,14, 23,27, 37,58", "0.5",
                                                   "1e9", "nan", "-1", "99999999999999999999", "a"]),
    st.lists(st.integers(-5, 20), min_size=1, max_size=6).map(lambda xs: ",".join(map(str, xs))),
    st.text(alphabet="0123456789,.-e x", max_size=12),
)


@st.composite
def darknet_texts(draw) -> str:
    lines = ["[net]", f"width={draw(st.integers(-2, 64))}", f"height={draw(st.integers(-2, 64))}"]
    if draw(st.booleans()):
        lines.append(f"channels={draw(st.integers(0, 4))}")
    for kind in draw(st.lists(st.sampled_from(sorted(DK_KEYS)), max_size=8)):
        lines.append(f"[{kind}]")
        for key in draw(st.lists(st.sampled_from(DK_KEYS[kind] or ["x"]), max_size=6, unique=True)):
            lines.append(f"{key}={draw(dk_value)}")
    text = "\n".join(lines) + "\n"
    if draw(st.booleans()):
        i = draw(st.integers(0, len(text)))
        text = text[:i] + draw(st.sampled_from(["[", "]", "=", "\n=\n", "#", "[yolo", "\x00", "\ufffd",
                                                "\n[]\n", "a b"])) + text[i:]
    return text


def _load_cfg_text(text: str | bytes):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "n.cfg"
        if isinstance(text, bytes):
            p.write_bytes(text)
        else:
            p.write_text(text, encoding="utf-8", errors="surrogatepass")
        net = darknet.load_network(p)
        darknet.head_names(net)
        return net


@FUZZ
@given(darknet_texts())
def test_fuzz_darknet_cfg_structured(text):
    outcome("darknet_cfg", _load_cfg_text, text)


@FUZZ
@given(st.one_of(st.text(max_size=200), st.binary(max_size=200)))
def test_fuzz_darknet_cfg_noise(text):
    outcome("darknet_cfg", _load_cfg_text, text)


# ---- darknet weights -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_net(tmp_path_factory):
    d = tmp_path_factory.mktemp("w")
    (d / "n.cfg").write_text(ODD_POOL_CFG)
    net = darknet.load_network(d / "n.cfg")
    good = d / "good.weights"
    darknet.write_weights(good, net, darknet.random_weights(net, 1))
    return net, good.read_bytes()


@st.composite
def weights_bytes(draw, good: bytes) -> bytes:
    how = draw(st.sampled_from(["random", "truncate", "extend", "header", "floats"]))
    if how == "random":
        return draw(st.binary(max_size=600))
    if how == "truncate":
        return good[:draw(st.integers(0, len(good)))]
    if how == "extend":
        return good + draw(st.binary(min_size=1, max_size=64))
    if how == "header":
        hdr = struct.pack("<iii", *draw(st.tuples(*[st.integers(-2**31, 2**31 - 1)] * 3)))
        return hdr + good[12:]
    # the right length, with non-finite or huge floats somewhere
    b = bytearray(good)
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(20, len(b) - 4)) // 4 * 4
        b[i:i + 4] = struct.pack("<f", draw(st.sampled_from([math.nan, math.inf, -math.inf, 3e38, 0.0])))
    return bytes(b)


def _read_weights(data: bytes, net):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "w.weights"
        p.write_bytes(data)
        return darknet.read_weights(p, net)


@FUZZ
@given(st.data())
def test_fuzz_weights_files(small_net, data):
    net, good = small_net
    blob = data.draw(weights_bytes(good))
    r = outcome("weights", _read_weights, blob, net)
    if not isinstance(r, DoorguardError):
        _, w = r
        assert all(np.isfinite(a).all() for d in w.values() for a in d.values())


# ---- VOC xml ---------------------------------------------------------------------------------

xml_text = st.one_of(st.sampled_from(["12", "0", "-3", "1e400", "nan", "inf", "", " 7 ", "3.5", "x", "1e-9",
                                      "&amp;", "99999999999999999999999"]),
                     st.text(alphabet="0123456789.-+eE ", max_size=8))


@st.composite
def voc_xml(draw) -> str:
    parts = ["<annotation>"]
    if draw(st.booleans()):
        parts.append(f"<filename>{draw(st.sampled_from(['a.jpg', '', '../x.png', 'a' * 300, 'sub/dir.jpg']))}"
                     "</filename>")
    for _ in range(draw(st.integers(0, 4))):
        obj = ["<object>"]
        if draw(st.booleans()):
            obj.append(f"<name>{draw(st.sampled_from(['with_mask', 'without_mask', '', ' x ', 'face']))}</name>")
        if draw(st.integers(0, 4)):
            obj.append("<bndbox>")
            for k in draw(st.lists(st.sampled_from(["xmin", "ymin", "xmax", "ymax"]), max_size=5)):
                obj.append(f"<{k}>{draw(xml_text)}</{k}>")
            obj.append("</bndbox>")
        obj.append("</object>")
        parts += obj
    parts.append("</annotation>")
    text = "".join(parts)
    if draw(st.booleans()):
        i = draw(st.integers(0, len(text)))
        text = text[:i] + draw(st.sampled_from(["<", "</object>", "&", "<!DOCTYPE x [<!ENTITY a 'b'>]>", "\x01",
                                                "<?xml version='1.0'?>", ""])) + text[i:]
    return text


def _voc_folder(d: Path, xml: str | bytes, with_image: bool):
    (d / "annotations").mkdir()
    (d / "images").mkdir()
    p = d / "annotations" / "img1.xml"
    if isinstance(xml, bytes):
        p.write_bytes(xml)
    else:
        p.write_text(xml, encoding="utf-8", errors="surrogatepass")
    if with_image:
        cv2.imwrite(str(d / "images" / "img1.jpg"), np.zeros((8, 8, 3), np.uint8))
    return p


@FUZZ
@given(st.one_of(voc_xml(), st.binary(max_size=200)), st.booleans())
def test_fuzz_voc_xml(xml, with_image):
    with tempfile.TemporaryDirectory() as d:
        p = _voc_folder(Path(d), xml, with_image)
        outcome("voc_xml", parse_voc, p)
        outcome("voc_xml", load_voc, d)


# ---- image bytes -----------------------------------------------------------------------------

def _encoded(ext: str) -> bytes:
    img = np.zeros((12, 16, 3), np.uint8)
    img[3:9, 4:12] = (40, 200, 90)
    ok, buf = cv2.imencode(ext, img)
    assert ok
    return buf.tobytes()


VALID = {ext: _encoded(ext) for ext in (".png", ".jpg", ".bmp", ".webp", ".tiff")}


@st.composite
def image_bytes(draw) -> tuple[str, bytes]:
    ext = draw(st.sampled_from(sorted(VALID)))
    good = VALID[ext]
    how = draw(st.sampled_from(["random", "truncate", "flip", "prefix"]))
    if how == "random":
        return ext, draw(st.binary(max_size=400))
    if how == "truncate":
        return ext, good[:draw(st.integers(0, len(good)))]
    if how == "prefix":
        return ext, good[:draw(st.integers(0, 32))] + draw(st.binary(max_size=200))
    b = bytearray(good)
    for _ in range(draw(st.integers(1, 8))):
        i = draw(st.integers(0, len(b) - 1))
        b[i] ^= 1 << draw(st.integers(0, 7))
    return ext, bytes(b)


@FUZZ
@given(image_bytes())
def test_fuzz_image_bytes(case):
    ext, data = case
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / f"x{ext}"
        p.write_bytes(data)
        r = outcome("image", read_rgb, p)
        if isinstance(r, np.ndarray):
            assert r.dtype == np.uint8 and r.ndim == 3 and r.shape[2] == 3
        src = FolderSource(d)

        def read_folder():
            src.open()
            try:
                return src.read()
            finally:
                src.close()

        r = outcome("image", read_folder)
        if isinstance(r, np.ndarray):
            assert r.dtype == np.uint8 and r.ndim == 3 and r.shape[2] == 3


def test_image_header_claiming_a_huge_size(tmp_path):
    """Found by fuzzing: a BMP header with 16 M rows made OpenCV raise cv2.error."""
    hdr = (b"BM" + struct.pack("<IHHI", 70, 0, 0, 54)
           + struct.pack("<IiiHHIIiiII", 40, 16, 0x100000C, 1, 24, 0, 0, 0, 0, 0, 0) + b"\0" * 16)
    (tmp_path / "x.bmp").write_bytes(hdr)
    assert isinstance(outcome("image", read_rgb, tmp_path / "x.bmp"), DoorguardError)
    src = FolderSource(tmp_path)
    src.open()
    assert isinstance(outcome("image", src.read), DoorguardError)


# ---- valid TOML, absurd numbers (issue 17) --------------------------------------------------

def _numeric_fields(model, prefix=()):
    """(section path, key, int?) of every number in the config models."""
    import typing

    for name, f in model.model_fields.items():
        ann = f.annotation
        if isinstance(ann, type) and hasattr(ann, "model_fields"):
            yield from _numeric_fields(ann, prefix + (name,))
            continue
        args = set(typing.get_args(ann)) or {ann}
        if bool not in args and args & {int, float}:
            yield prefix, name, int in args and float not in args


NUMBERS = [f for f in _numeric_fields(config_mod.Config) if f[0]]
absurd = st.one_of(
    st.sampled_from([0, -1, 1, 2, 50, 51, 10**9, 10**12, 10**19, 2**63 - 1, -2**63, 1e-300, 1e300, -1e300,
                     1e9, 1e12, 1e19, 0.5, 1e-9, math.inf, -math.inf, math.nan, 5e-324]),
    st.integers(-2**63, 2**63 - 1), st.floats(allow_nan=True, allow_infinity=True))


@st.composite
def absurd_configs(draw) -> str:
    chosen = draw(st.lists(st.sampled_from(NUMBERS), min_size=1, max_size=6, unique=True))
    by_section: dict[tuple, list[str]] = {}
    for section, key, _ in chosen:
        by_section.setdefault(section, []).append(f"{key} = {_toml_val(draw(absurd))}")
    return "".join(f"[{'.'.join(sec)}]\n" + "\n".join(lines) + "\n" for sec, lines in by_section.items())


@FUZZ
@given(absurd_configs())
def test_fuzz_config_absurd_numbers(text):
    """Valid TOML with absurd numbers (votes 1e9, beeps 1e12, 1e-300 s ...): refused, or a config
    with which the alarm still works: finite, small N-of-M, an alert pattern that ends."""
    from edge.track.tracking import Tracker

    r = outcome("config_absurd", config_mod.parse, text, "absurd.toml")
    if not isinstance(r, config_mod.Config):
        return
    for section, key, _ in NUMBERS:
        obj = r
        for s in section:
            obj = getattr(obj, s)
        v = getattr(obj, key)
        assert v is None or isinstance(v, str) or math.isfinite(v), (section, key, v)
    t = r.tracking
    assert 1 <= t.votes_needed <= t.window <= 50 and t.reclassify_every <= 300 and t.max_missed <= 300
    Tracker(t.iou_threshold, t.max_missed, t.votes_needed, t.window, t.reclassify_every)
    g = r.gpio
    assert g.alert_seconds <= 120 and g.alert_on_seconds >= 0.02 and g.alert_repeats <= 50
    assert r.source.reconnect_initial_s <= r.source.reconnect_max_s <= 3600
    assert r.mqtt.outbox_cap <= 1_000_000 and r.rules.track_cooldown_s <= 86400


# ---- the web page's routes (issue 17) ---------------------------------------------------------

@pytest.fixture(scope="module")
def web_app(tmp_path_factory):
    from edge.settings.web import WebConfig
    from edge.act.web.passwords import hash_password, write_password_file
    from edge.act.web.server import WebServer

    d = tmp_path_factory.mktemp("web")
    pw = d / "pw"
    write_password_file(pw, hash_password("correct horse battery", n=2**4))
    import itertools

    # Each reading of the clock is a minute later: hundreds of logins never meet the rate limits.
    minutes = itertools.count(0.0, 61.0)
    server = WebServer(WebConfig(allowed_hosts=["door.example.lan"]), dict, lambda: None, lambda: None,
                       password_file=pw, clock=lambda: next(minutes))
    return server.app.test_client(), server


next_text = st.one_of(
    st.text(max_size=40),
    st.lists(st.sampled_from(["/", "//", "\\", "\t", "\n", "\r", "\x00", "\x7f", " ", "%09", "%0A", "%2F",
                              "evil.example", "http:", "javascript:", "@", ".", "..", "?", "#", "status",
                              "\u2215", "\uff0f", "é"]), max_size=8).map("".join))


@FUZZ
@given(next_text, st.booleans())
def test_fuzz_login_next(web_app, nxt, in_query):
    """Control characters, backslashes, slashes in `next`: a 302 to a path on this page, never
    another site, never a 500."""
    from urllib.parse import quote

    client, _ = web_app
    CASES["web_next"] += 1
    form = {"password": "correct horse battery"}
    if in_query:
        resp = client.post(f"/login?next={quote(nxt, safe='')}", data=form)
    else:
        resp = client.post("/login", data={**form, "next": nxt})
    assert resp.status_code == 302, (nxt, resp.status_code)
    loc = resp.headers["Location"]
    assert loc.startswith("/") and not loc.startswith("//"), loc
    assert all(0x21 <= ord(c) <= 0x7E and c != "\\" for c in loc), loc
    assert loc == "/" or loc == nxt


host_text = st.one_of(
    st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=30),
    st.tuples(st.sampled_from(["localhost", "LOCALHOST.", "127.0.0.1", "[::1]", "door.example.lan", "evil.example",
                               "localhost.evil.example", "door.example.lan.evil", "10.0.0.7", "[fe80::1]",
                               "1.2.3.4.nip.io", "xn--80ak6aa92e.com", ""]),
              st.sampled_from(["", ":8080", ":0", ":abc", ":", "::", ":99999"])).map("".join))


@FUZZ
@given(host_text)
def test_fuzz_host_header(web_app, host):
    """Any Host header: 200 exactly for this device's names and IP addresses, else 400; never a 500."""
    from edge.act.web import guards

    client, server = web_app
    CASES["web_host"] += 1
    from werkzeug.sansio.utils import get_host

    resp = client.get("/login", headers={"Host": host})
    seen = get_host("http", host, ("127.0.0.1", 80))  # werkzeug's request.host: "" when malformed
    allowed = guards.host_allowed(seen, server.allowed_hosts)
    assert resp.status_code == (200 if allowed else 400), (host, seen, resp.status_code)
    name = guards._split_host(host) or ""
    if "evil" in name or name.endswith(".nip.io"):
        assert resp.status_code == 400, host
