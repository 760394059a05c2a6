"""The page's password: an scrypt hash with a random salt, in a 0600 file.

``doorguard set-password`` (edge/act/web/set_password.py) writes it; the page reads it at
each login (edge/act/web/sessions.py), so a new password needs no restart.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from pathlib import Path

from ...errors import ConfigError, StateError
from ...settings.web import WebConfig

#: File name of the password hash inside the state directory (when not configured).
DEFAULT_PASSWORD_FILE = "web-password"
#: Shortest password ``set-password`` accepts.
MIN_PASSWORD_LENGTH = 8

# scrypt cost: N=2**15, r=8 needs 32 MiB and ~0.1-0.3 s on a Pi 4 per login. The
# parameters are stored in the file, so raising them later keeps old files valid.
_SCRYPT_N = 2**15
_SCRYPT_R = 8
_SCRYPT_P = 1
_SCRYPT_MAXMEM = 256 * 1024 * 1024


def password_path(cfg: WebConfig, state_dir: str | os.PathLike | None) -> Path:
    """Where the password hash lives: ``cfg.password_file`` (relative: in the state dir), else the default name."""
    base = Path(state_dir) if state_dir is not None else Path("state")
    if cfg.password_file:
        p = Path(cfg.password_file).expanduser()
        return p if p.is_absolute() else base / p
    return base / DEFAULT_PASSWORD_FILE


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def hash_password(password: str, *, n: int = _SCRYPT_N, r: int = _SCRYPT_R, p: int = _SCRYPT_P) -> str:
    """Hash a password with scrypt and a random 16-byte salt.

    Returns:
        ``scrypt$N$r$p$<salt base64>$<hash base64>`` (one line, parameters included).
    """
    salt = os.urandom(16)
    dk = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=_SCRYPT_MAXMEM, dklen=32)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(dk)}"


def _parse_hash(stored: str) -> tuple[int, int, int, bytes, bytes]:
    parts = stored.strip().split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        raise ValueError("not an scrypt hash written by `doorguard set-password`")
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, dk = base64.b64decode(parts[4], validate=True), base64.b64decode(parts[5], validate=True)
    except (ValueError, binascii.Error) as e:
        raise ValueError(f"malformed scrypt hash: {e}") from None
    if n < 2 or n & (n - 1) or not (1 <= r <= 64 and 1 <= p <= 16) or len(salt) < 8 or len(dk) < 16:
        raise ValueError("scrypt parameters out of range")
    return n, r, p, salt, dk


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches a hash from :func:`hash_password` (constant-time compare)."""
    try:
        n, r, p, salt, dk = _parse_hash(stored)
    except ValueError:
        return False
    got = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=_SCRYPT_MAXMEM, dklen=len(dk))
    return hmac.compare_digest(got, dk)


def read_password_hash(path: Path) -> str | None:
    """The stored hash, or None when no password is set (file absent or empty).

    Raises:
        ConfigError: the file exists but cannot be read or is not a hash from set-password.
    """
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"web: password file {path} is unreadable: {getattr(e, 'strerror', None) or e}") from e
    if not text:
        return None
    try:
        _parse_hash(text)
    except ValueError as e:
        raise ConfigError(f"web: password file {path}: {e}; run `doorguard set-password` again") from None
    return text


def write_password_file(path: Path, stored: str) -> None:
    """Write a hash atomically with mode 0600, never following a symlink (``edge.atomic``).

    When run as root (``sudo doorguard set-password``), the file is given to the
    owner of its directory, so the service user can read it.

    Raises:
        StateError: the directory cannot be created or written.
    """
    from ...atomic import write_atomic

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, (stored.strip() + "\n").encode("ascii"), 0o600, owner_from_folder=True)
    except OSError as e:
        raise StateError(f"cannot write password file {path}: {e.strerror or e}") from e
