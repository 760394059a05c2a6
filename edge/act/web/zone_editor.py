"""The web page's zone editor: draw zones and privacy masks over the live view, save them to the config.

``GET /zones`` shows the newest frame with the zones (green) and masks (red) of the config
file drawn over it; a click adds a corner, "Close polygon" makes it a zone or a mask,
"Delete" removes one, "Save" posts them all (CSRF token, same-origin) to ``POST /zones``.
The script (``/zones.js``, about 70 lines, no library) only collects points; everything is
checked here:

* the new ``[[zones]]`` / ``[[privacy.masks]]`` tables replace the old ones in the file's
  text, everything else stays as it was (comments included; comments inside the replaced
  tables go);
* the new text goes through :func:`edge.config.all_errors` and
  :func:`edge.config.zone_problems` (what ``doorguard check-config`` runs) and must parse to
  the same settings as before apart from the zones and masks;
* it is written atomically (a temporary file in the same folder, fsync, rename) with the
  old file's mode, and the running loop uses the new polygons from the next frame on;
* where the config file cannot be written (the shipped unit's ``ProtectSystem=strict`` keeps
  ``/etc/doorguard`` read-only), the polygons go to the overlay ``<state dir>/zones.toml``
  instead (edge/act/web/zone_overlay.py), which ``run`` and ``check-config`` load on top of the file.
  A later save that can write the file removes the overlay.

The page works in relative coordinates (0..1 of the frame); a polygon the file gives in
pixels is shown scaled and written back in pixels.
"""

from __future__ import annotations

import json
import logging
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from ...errors import ConfigError

log = logging.getLogger("doorguard.web")

#: Where the two kinds of polygon live in the file, by the page's name for them.
TABLES = {"zones": ("zones",), "masks": ("privacy", "masks")}
_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_BARE_KEY = re.compile(r"^[A-Za-z0-9_]{1,32}$")


def _toml_value(v: Any, where: str) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v != v or v in (float("inf"), float("-inf")):
            raise ConfigError(f"{where}: not a finite number")
        return repr(round(v, 6))
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string with \uXXXX escapes is a TOML basic string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x, where) for x in v) + "]"
    raise ConfigError(f"{where}: {type(v).__name__} is not a value a zone or mask can have")


def polygon_tables(kind: str, entries: Sequence[dict]) -> str:
    """``[[zones]]`` (kind ``zones``) or ``[[privacy.masks]]`` (``masks``) tables for ``entries``.

    Raises:
        ConfigError: a key is not a plain name or a value not a number, string, bool or list.
    """
    header = "[[" + ".".join(TABLES[kind]) + "]]"
    out = []
    for n, e in enumerate(entries):
        if not isinstance(e, dict):
            raise ConfigError(f"{kind} {n}: not a table")
        lines = [header]
        # name and units first, the corners last: the order a person writes them in
        keys = sorted(e, key=lambda k: {"name": 0, "units": 1, "points": 3}.get(k, 2) if isinstance(k, str) else 2)
        for k, v in ((k, e[k]) for k in keys):
            if v is None:
                continue
            if not isinstance(k, str) or not _BARE_KEY.match(k):
                raise ConfigError(f"{kind} {n}: {str(k)[:40]!r} is not a key")
            lines.append(f"{k} = {_toml_value(v, f'{kind} {n} {k}')}")
        out.append("\n".join(lines) + "\n")
    return "\n".join(out)


def replace_polygons(text: str, zones: Sequence[dict], masks: Sequence[dict]) -> str:
    """The config text with its ``[[zones]]`` and ``[[privacy.masks]]`` tables replaced.

    Each old table goes from its header to the next header, less the comment and blank
    lines just above that header (they belong to what follows). The new tables are added
    at the end. Polygons written any other way (an inline ``zones = [...]``) stay, and
    :meth:`ZoneEditor.save` then refuses the result.
    """
    lines = text.splitlines(keepends=True)
    ours = {".".join(t) for t in TABLES.values()}
    keep: list[str] = []
    i = 0
    while i < len(lines):
        m = _HEADER.match(lines[i])
        name = ".".join(k.strip().strip("\"'") for k in m.group(2).split(".")) if m else None
        if not (m and m.group(1) == "[[" and name in ours):
            keep.append(lines[i])
            i += 1
            continue
        j = i + 1
        while j < len(lines) and not _HEADER.match(lines[j]):
            j += 1
        tail = j
        while j < len(lines) and tail > i + 1 and (not lines[tail - 1].strip() or
                                                  lines[tail - 1].lstrip().startswith("#")):
            tail -= 1
        if keep and not keep[-1].strip() and tail < j and not lines[tail].strip():
            tail += 1  # one blank line where the table was, not two
        keep.extend(lines[tail:j])
        i = j
    body = "".join(keep).rstrip("\n")
    if body and not body.endswith("\n"):
        body += "\n"
    new = polygon_tables("zones", zones) + ("\n" if zones and masks else "") + polygon_tables("masks", masks)
    return body + ("\n" + new if new else "")


def _without_polygons(raw: dict) -> dict:
    raw = dict(raw)
    raw.pop("zones", None)
    if isinstance(raw.get("privacy"), dict):
        raw["privacy"] = {k: v for k, v in raw["privacy"].items() if k != "masks"}
        if not raw["privacy"]:
            raw.pop("privacy")
    return raw


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one rename, keeping its mode (``edge.atomic``).

    Raises:
        ConfigError: the folder or file cannot be written (one line, with the reason).
    """
    from ... import atomic

    try:
        atomic.write_atomic(path, text.encode("utf-8"), 0o640, keep_mode=True)
    except OSError as e:
        raise ConfigError(f"cannot write config {path}: {e.strerror or e} (the service needs write access to "
                          "the file's folder; README \"Zones and privacy masks\")") from e


def _scaled(points: Sequence[Sequence[float]], sx: float, sy: float, digits: int | None) -> list[list[float]]:
    out = []
    for p in points:
        x, y = float(p[0]) * sx, float(p[1]) * sy
        out.append([round(x, digits), round(y, digits)] if digits is not None else [round(x), round(y)])
    return out


@dataclass
class ZoneEditor:
    """What the zone editor page needs from the runner.

    Args:
        config_path: the file ``doorguard run --config`` read; None: the embedded default (the
            page shows the polygons but cannot save).
        frame_size: the newest frame's ``(width, height)``, None before the first frame.
        active: the zones and masks in use now (``(cfg.zones, cfg.privacy.masks)``).
        on_saved: called with the saved Config and the file the polygons went to (the runner
            switches to them).
        overlay_path: where the polygons go when the config file cannot be written
            (``<state dir>/zones.toml``; None: nowhere, the save fails).
    """

    config_path: Path | None
    frame_size: Callable[[], "tuple[int, int] | None"]
    active: Callable[[], tuple[Sequence[Any], Sequence[Any]]]
    on_saved: Callable[[Any, Path], None] | None = None
    overlay_path: Path | None = None

    def _current(self) -> tuple[Any, Path | None]:
        """The config file's Config with the overlay applied, and the overlay when there is one."""
        from ... import config as config_mod
        from . import zone_overlay

        cfg = config_mod.load(self.config_path)
        if self.overlay_path is None:
            return cfg, None
        return zone_overlay.apply(cfg, self.overlay_path)

    def fingerprint(self) -> str:
        """A short hash of the zones and masks a page would start from now (file + overlay).

        The page sends it back with its save: a save whose page could not show the polygons
        (an invalid file, pixel corners before the first frame) or that started from older
        ones (another tab, a hand edit) would silently drop what it never showed.

        Raises:
            ConfigError: as :meth:`polygons`.
        """
        import hashlib

        cfg, _ = self._current()
        dump = [[p.model_dump(mode="json") for p in cfg.zones], [p.model_dump(mode="json") for p in cfg.privacy.masks]]
        return hashlib.sha256(json.dumps(dump, sort_keys=True).encode()).hexdigest()[:16]

    def source(self) -> str:
        """Where the polygons the page shows come from (a file name), for the page."""
        if self.config_path is None:
            return ""
        return str(self.overlay_path if self.overlay_path is not None and self.overlay_path.exists()
                   else self.config_path)

    def polygons(self) -> dict:
        """The file's zones and masks for the page: ``{"zones": [...], "masks": [...]}``, corners 0..1.

        Raises:
            ConfigError: the file or the overlay does not load (the page shows the line), or
                pixel polygons and no frame yet to scale them by.
        """
        if self.config_path is not None:
            cfg, _ = self._current()
            zones, masks = cfg.zones, cfg.privacy.masks
        else:
            zones, masks = self.active()
        size = self.frame_size()
        out: dict[str, list] = {}
        for kind, polys in (("zones", zones), ("masks", masks)):
            out[kind] = []
            for p in polys:
                d = p.model_dump(exclude_defaults=True)
                if p.units == "pixels":
                    if size is None:
                        raise ConfigError("pixel zones need a frame to be shown on: wait for the camera")
                    d["points"] = _scaled(p.points, 1.0 / size[0], 1.0 / size[1], 4)
                d["points"] = [list(pt) for pt in d.get("points", p.points)]
                out[kind].append(d)
        return out

    def save(self, payload: str, base: str | None = None) -> tuple[Any, Path]:
        """Check the page's polygons like check-config does and write them to the config file,
        or to the overlay where the file cannot be written.

        Args:
            payload: JSON ``{"zones": [{"points": [[x, y], ...], ...}], "masks": [...]}``, corners 0..1.
            base: the :meth:`fingerprint` the page was given (None: not checked); another one:
                the polygons changed since, the save is refused.

        Returns:
            (the saved Config, the file written: the config file or the overlay).

        Raises:
            ConfigError: one line: started without --config, bad JSON, a polygon or the file
                invalid (key path), other settings would change, or neither the file nor the
                overlay can be written.
        """
        from ... import config as config_mod

        if self.config_path is None:
            raise ConfigError("doorguard was started without --config: there is no file to save zones to")
        path = Path(self.config_path)
        if base is not None and base != self.fingerprint():
            raise ConfigError("the zones and masks changed since this page was loaded, or it could not show them: "
                              "reload the page and draw again (nothing was saved)")
        try:
            data = json.loads(payload)
        except ValueError:
            raise ConfigError("the page sent no readable polygons") from None
        if not isinstance(data, dict) or not all(isinstance(data.get(k, []), list) for k in TABLES):
            raise ConfigError("the page sent no readable polygons")
        size = self.frame_size()
        entries: dict[str, list[dict]] = {}
        for kind in TABLES:
            entries[kind] = []
            for n, e in enumerate(data.get(kind, [])):
                if not isinstance(e, dict) or not isinstance(e.get("points"), list):
                    raise ConfigError(f"{kind} {n}: no points")
                e = dict(e)
                try:
                    rel = [(float(p[0]), float(p[1])) for p in e["points"]]
                except (TypeError, ValueError, IndexError):
                    raise ConfigError(f"{kind} {n}: points must be [x, y] numbers") from None
                if e.get("units") == "pixels":
                    if size is None:
                        raise ConfigError("no frame yet to scale pixel corners by: wait for the camera")
                    e["points"] = _scaled(rel, size[0], size[1], None)
                else:
                    e["points"] = [[round(x, 4), round(y, 4)] for x, y in rel]
                entries[kind].append(e)
        try:
            old = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"cannot read config {path}: {getattr(e, 'strerror', None) or e}") from e
        new = replace_polygons(old, entries["zones"], entries["masks"])
        where = str(path)
        errors = config_mod.all_errors(new, where)
        if errors:
            raise ConfigError(errors[0] + (f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""))
        cfg = config_mod.parse(new, where, path.resolve().parent)
        problems = config_mod.zone_problems(cfg, size)
        if problems:
            raise ConfigError(f"{where}: {problems[0]}")
        try:
            same = _without_polygons(tomllib.loads(old)) == _without_polygons(tomllib.loads(new))
        except tomllib.TOMLDecodeError:
            same = False
        if not same:
            raise ConfigError(f"{where}: its zones or masks are written in a way the page cannot replace "
                              "(e.g. an inline zones = [...]): edit the file by hand")
        try:
            write_atomic(path, new)
            saved_to = path
        except ConfigError as e:
            if self.overlay_path is None:
                raise
            self._write_overlay(entries, f"{e} and ")
            saved_to = self.overlay_path
            log.info("web: %s is not writable to the service (%s): the polygons go to %s", path,
                     getattr(e.__cause__, "strerror", None) or e.__cause__, saved_to)
        else:
            self._drop_overlay(entries)
        log.info("web: %d zone(s) and %d privacy mask(s) saved to %s", len(cfg.zones), len(cfg.privacy.masks),
                 saved_to)
        if self.on_saved is not None:
            self.on_saved(cfg, saved_to)
        return cfg, saved_to

    def _write_overlay(self, entries: dict[str, list[dict]], why: str = "") -> None:
        """Write the overlay; it must load back as ``run`` will load it.

        Raises:
            ConfigError: it cannot be written (``why``: the config file's reason, said first).
        """
        from . import zone_overlay

        text = zone_overlay.overlay_text(entries["zones"], entries["masks"], self.config_path)
        assert self.overlay_path is not None
        try:
            zone_overlay.write_overlay(self.overlay_path, text)
        except OSError as e:
            raise ConfigError(f"{why}cannot write the zones overlay {self.overlay_path}: {e.strerror or e}") from e
        zone_overlay.read_overlay(self.overlay_path)

    def _drop_overlay(self, entries: dict[str, list[dict]]) -> None:
        """The config file holds the polygons now: an old overlay would override them at the next start."""
        if self.overlay_path is None or not self.overlay_path.exists():
            return
        try:
            self.overlay_path.unlink()
            log.info("web: removed %s (the config file holds the zones now)", self.overlay_path)
        except OSError as e:
            log.warning("web: cannot remove %s (%s): writing the same polygons there", self.overlay_path,
                        e.strerror or e)
            self._write_overlay(entries)

    def register(self, app: Any, page: Callable[..., str], check_csrf: Callable[[], None]) -> None:
        """Add ``/zones`` (GET page, POST save) and ``/zones.js`` to the web page's Flask app."""
        from flask import Response, redirect, request, url_for

        @app.get("/zones")
        def zones():
            error, base = None, ""
            polys: dict = {"zones": [], "masks": []}
            try:
                polys = self.polygons()
                if self.config_path is not None:
                    base = self.fingerprint()
            except ConfigError as e:
                error = str(e)
            # A page that could not show the polygons offers no Save: it would drop them.
            return page("Zones", _ZONES, polygons=json.dumps(polys), error=error, saved=request.args.get("saved"),
                        can_save=self.config_path is not None, loaded=error is None, base=base,
                        path=str(self.config_path or ""), shown_from=self.source(),
                        overlay=str(self.overlay_path or ""))

        @app.post("/zones")
        def zones_save():
            check_csrf()
            try:
                _, saved_to = self.save(request.form.get("polygons", ""), request.form.get("base", ""))
            except ConfigError as e:
                log.warning("web: zones not saved: %s", e)
                try:
                    polys = json.loads(request.form.get("polygons", ""))
                except ValueError:
                    polys = {"zones": [], "masks": []}
                return page("Zones", _ZONES, polygons=json.dumps(polys), error=str(e), saved=None,
                            can_save=self.config_path is not None, loaded=True,
                            base=request.form.get("base", ""), path=str(self.config_path or ""),
                            shown_from=self.source(), overlay=str(self.overlay_path or "")), 400
            kind = "overlay" if saved_to != self.config_path else "config"
            return redirect(url_for("zones", saved=kind))

        @app.get("/zones.js")
        def zones_js():
            return Response(_ZONES_JS, mimetype="text/javascript")


_ZONES = """{% if saved == "overlay" %}<p class="msg ok" id="saved">Saved to {{ overlay }} (the config file {{ path }}
is read-only to the service); in use from the next frame and after a restart. <code>doorguard zones --reset</code>
goes back to the config file's.</p>
{% elif saved %}<p class="msg ok" id="saved">Saved to {{ path }}; in use from the next frame.</p>{% endif %}
{% if error %}<p class="msg bad" id="error">{{ error }}</p>{% endif %}
<p>Click the corners of an area, then <b>Close polygon</b>. <span class="ok">Zones</span> (green): only faces
in them count. <span class="bad">Masks</span> (red): blacked out before anything sees the frame.</p>
<div style="position:relative;display:inline-block">
<img class="live" id="zimg" src="/frame.jpg" alt="no frame yet: waiting for the camera">
<canvas id="zcanvas" data-polygons="{{ polygons }}" style="position:absolute;left:0;top:0;cursor:crosshair">
</canvas></div>
<p><select id="zkind"><option value="zones">zone</option><option value="masks">mask</option></select>
<input id="zname" placeholder="name (optional)" maxlength="64">
<button type="button" id="zclose">Close polygon</button> <button type="button" id="zundo">Undo corner</button></p>
<ul id="zlist"></ul>
{% if can_save and not loaded %}<p class="msg bad" id="noload">The zones and masks in use cannot be shown (above):
saving from this page would drop them. Reload it once that is solved.</p>
{% elif can_save %}<form method="post" action="/zones" id="zform"><input type="hidden" name="csrf" value="{{ csrf_token }}">
<input type="hidden" name="base" value="{{ base }}">
<input type="hidden" name="polygons" id="zpolygons" value="{{ polygons }}">
<button type="submit" id="zsave">Save</button> <small id="zsource">(shown: from {{ shown_from }})</small></form>
{% else %}<p class="msg">Started without <code>--config</code>: zones cannot be saved from here.</p>{% endif %}
<script src="/zones.js"></script>
"""

_ZONES_JS = r""""use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const img = $("zimg"), cv = $("zcanvas"), ctx = cv.getContext("2d"), list = $("zlist");
  const data = JSON.parse(cv.dataset.polygons);
  let draft = [];
  function path(pts, close) {
    ctx.beginPath();
    pts.forEach((p, i) => (i ? ctx.lineTo : ctx.moveTo).call(ctx, p[0] * cv.width, p[1] * cv.height));
    if (close) ctx.closePath();
  }
  function draw() {
    ctx.clearRect(0, 0, cv.width, cv.height);
    ctx.lineWidth = 2;
    for (const [kind, colour] of [["zones", "#3c3"], ["masks", "#f44"]]) {
      for (const z of data[kind]) {
        path(z.points, true);
        ctx.strokeStyle = colour; ctx.stroke(); ctx.fillStyle = colour + "5"; ctx.fill();
      }
    }
    if (draft.length) { path(draft, false); ctx.strokeStyle = "#ff0"; ctx.stroke(); }
    list.textContent = "";
    for (const kind of ["zones", "masks"]) {
      data[kind].forEach((z, i) => {
        const li = document.createElement("li"), del = document.createElement("button");
        li.textContent = (kind === "zones" ? "Zone " : "Mask ") + (z.name || i + 1) + " (" +
          z.points.length + " corners) ";
        del.type = "button"; del.textContent = "Delete";
        del.onclick = () => { data[kind].splice(i, 1); draw(); };
        li.appendChild(del); list.appendChild(li);
      });
    }
    const out = $("zpolygons");
    if (out) out.value = JSON.stringify(data);
  }
  function fit() {
    if (!img.naturalWidth) return;  // no frame (yet): keep the canvas until one loads
    cv.width = img.clientWidth; cv.height = img.clientHeight; draw();
  }
  cv.addEventListener("click", (e) => {
    const r = cv.getBoundingClientRect();
    const x = Math.min(1, Math.max(0, (e.clientX - r.left) / r.width));
    const y = Math.min(1, Math.max(0, (e.clientY - r.top) / r.height));
    draft.push([+x.toFixed(4), +y.toFixed(4)]);
    draw();
  });
  $("zclose").onclick = () => {
    if (draft.length < 3) { alert("Click at least 3 corners first."); return; }
    const z = {points: draft}, name = $("zname").value.trim();
    if (name) z.name = name;
    data[$("zkind").value].push(z);
    draft = []; $("zname").value = ""; draw();
  };
  $("zundo").onclick = () => { draft.pop(); draw(); };
  // 503 while the camera starts: try again each second (a new URL, or the browser keeps the error)
  const retry = () => setTimeout(() => { img.src = "/frame.jpg?t=" + Date.now(); }, 1000);
  img.addEventListener("load", fit);
  img.addEventListener("error", retry);
  window.addEventListener("resize", fit);
  draw();
  if (img.complete) { if (img.naturalWidth) fit(); else retry(); }  // loaded or failed before this ran
})();
"""
