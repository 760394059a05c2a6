"""The zones the web page saved where the config file is read-only: ``<state dir>/zones.toml``.

The shipped systemd unit keeps ``/etc/doorguard`` read-only to the service
(``ProtectSystem=strict``), so the zone editor (edge/act/web/zone_editor.py) cannot replace the
config file there. It then writes the polygons to this overlay in the state directory
(``cfg.state_dir()``: ``/var/lib/doorguard`` under the unit), mode 0600, atomically
(edge/atomic.py). ``doorguard run`` and ``doorguard check-config`` load it on top of the
config file: when it exists, its ``[[zones]]`` and ``[[privacy.masks]]`` replace the
file's (a kind it does not list is none); every other setting stays the file's.
``doorguard zones`` says where the polygons come from; ``doorguard zones --reset``
removes the overlay, and the config file's polygons apply again from the next start.

An overlay is checked like the config file (edge/decide/zones.py's geometry); a problem is one
line naming the overlay and the key path (``.../zones.toml: zones.0.points (line 5): ...``).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ... import installed
from ...errors import ConfigError
from ...decide.zones import MAX_POLYGONS, MaskConfig, ZoneConfig

log = logging.getLogger("doorguard.zones")

#: The overlay's name inside the state directory.
OVERLAY_FILE = "zones.toml"


class _OverlayPrivacy(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    masks: list[MaskConfig] = Field(default_factory=list, max_length=MAX_POLYGONS,
                                    description="[[privacy.masks]] tables: replace the config file's")


class _Overlay(BaseModel):
    """What an overlay may hold: polygons only (``privacy.blur_other_faces`` stays in the config file)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    zones: list[ZoneConfig] = Field(default_factory=list, max_length=MAX_POLYGONS,
                                    description="[[zones]] tables: replace the config file's")
    privacy: _OverlayPrivacy = Field(default_factory=_OverlayPrivacy, description="[privacy] masks only")


def overlay_path(cfg: Any) -> Path:
    """``<state dir>/zones.toml`` for a Config (the state directory as ``run`` resolves it)."""
    return Path(cfg.state_dir()) / OVERLAY_FILE


def read_overlay(path: Path) -> tuple[list[ZoneConfig], list[MaskConfig]] | None:
    """The overlay's (zones, masks); None when there is no overlay.

    Raises:
        ConfigError: unreadable, not TOML, or a polygon or key invalid (one line: file, key path, line).
    """
    from ... import config as config_mod

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"zones overlay {path} is unreadable: {getattr(e, 'strerror', None) or e} "
                          "(`doorguard zones --reset` removes it)") from e
    hint = " (`doorguard zones --reset` removes it)"
    try:
        raw = config_mod._load_toml(text, str(path))
    except ConfigError as e:
        raise ConfigError(f"{e}{hint}") from None
    try:
        ov = _Overlay.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(config_mod._format_errors(e, text, str(path)) + hint) from None
    except RecursionError:
        raise ConfigError(f"{path}: {config_mod._TOO_DEEP}{hint}") from None
    return ov.zones, ov.privacy.masks


def with_polygons(cfg: Any, zones: Sequence[ZoneConfig], masks: Sequence[MaskConfig]) -> Any:
    """A copy of ``cfg`` with these zones and masks (the rest, ``blur_other_faces`` too, unchanged)."""
    privacy = cfg.privacy.model_copy(update={"masks": list(masks)})
    return cfg.model_copy(update={"zones": list(zones), "privacy": privacy})


def apply(cfg: Any, path: Path | None = None) -> tuple[Any, Path | None]:
    """``cfg`` with the overlay's polygons when there is an overlay.

    Args:
        cfg: the config file's Config.
        path: the overlay (None: :func:`overlay_path` of ``cfg``).

    Returns:
        (config to run with, the overlay's path when it was applied, else None).

    Raises:
        ConfigError: as :func:`read_overlay`.
    """
    path = overlay_path(cfg) if path is None else Path(path)
    got = read_overlay(path)
    if got is None:
        return cfg, None
    return with_polygons(cfg, *got), path


def overlay_text(zones: Sequence[dict], masks: Sequence[dict], config_path: Path | str | None) -> str:
    """The overlay's TOML: a header saying what it is, then both lists (an empty one written as ``[]``).

    Raises:
        ConfigError: as :func:`edge.act.web.zone_editor.polygon_tables`.
    """
    from .zone_editor import polygon_tables

    head = ("# Zones and privacy masks saved by doorguard's web page (Zones) because the config file\n"
            f"# {config_path or '(none)'} was not writable to the service. They replace that file's\n"
            "# [[zones]] and [[privacy.masks]]; everything else comes from the file.\n"
            "# `doorguard zones --reset` removes this file (the file's polygons apply from the next start).\n")
    parts = [head]
    if not zones:
        parts.append("zones = []\n")
    else:
        parts.append("\n" + polygon_tables("zones", zones))
    parts.append("\n[privacy]\nmasks = []\n" if not masks else "\n" + polygon_tables("masks", masks))
    return "".join(parts)


def write_overlay(path: Path, text: str) -> None:
    """Write the overlay atomically, mode 0600 (its folder made 0700 when missing).

    Raises:
        OSError: the state directory cannot be written (the caller words it).
    """
    from ... import atomic

    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic.write_atomic(path, text.encode("utf-8"), 0o600)


def origin(config_path: Path | str | None, overlay: Path | None) -> str:
    """Where the zones in use came from, for the log and the status page."""
    if overlay is not None:
        return (f"{overlay} (saved on the web page; replaces the [[zones]]/[[privacy.masks]] of "
                f"{config_path or 'the config'}; `doorguard zones --reset` removes it)")
    return str(config_path) if config_path else "the built-in default config"


# ---- doorguard zones ----------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``doorguard zones``."""
    installed.add_config_argument(parser)
    parser.add_argument("--state-dir", metavar="DIR",
                        help="state directory holding zones.toml (default: events.state_dir, else "
                             "$STATE_DIRECTORY, else /var/lib/doorguard when it exists, else ./state)")
    parser.add_argument("--reset", action="store_true",
                        help="remove the zones the web page saved to the state directory; the config "
                             "file's apply from the next start")


def main(args: argparse.Namespace) -> int:
    """``doorguard zones``: say where the zones and masks come from; ``--reset`` removes the overlay.

    Raises:
        ConfigError: the config file or the overlay is invalid (one line; ``--reset`` still removes
            an invalid overlay).
    """
    from ... import config as config_mod

    target = installed.config_file(args.config)
    cfg = config_mod.load(target)
    path = installed.state_dir(cfg, args.state_dir) / OVERLAY_FILE
    where = target or "the built-in default config"
    if args.reset:
        try:
            path.unlink()
        except FileNotFoundError:
            print(f"no zones overlay at {path}: the zones and masks come from {where}")
            return 0
        except OSError as e:
            raise ConfigError(f"cannot remove {path}: {e.strerror or e} (run as root or as the service "
                              "user: sudo doorguard zones --reset)") from e
        log.info("zones: removed %s", path)
        print(f"removed {path}: the zones and masks of {where} apply from the next start "
              "(sudo systemctl restart doorguard)")
        return 0
    cfg, used = apply(cfg, path) if target else (cfg, None)  # run uses no overlay without --config
    print(f"zones and masks from {origin(where, used)}")
    for kind, polys in (("zone", cfg.zones), ("mask", cfg.privacy.masks)):
        for n, p in enumerate(polys):
            print(f"  {kind} {n}{f' {p.name!r}' if p.name else ''}: {len(p.points)} corners ({p.units})")
    if not cfg.zones and not cfg.privacy.masks:
        print("  none: faces count in the whole frame, nothing is blacked out")
    return 0
