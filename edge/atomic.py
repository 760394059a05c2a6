"""Files of the service's own: replaced in one rename, or created private (0600).

``write_atomic`` replaces a small file so that a power cut leaves the old one or the new one.
Used for the web password (edge/act/web/passwords.py), the arming state
(edge/decide/arming.py) and the config the zone editor saves (edge/act/web/zone_editor.py).
``private_file`` creates an SQLite database (and its -wal/-shm) readable by the service only:
the event store (edge/act/events.py), its MQTT outbox and the arming history.

The folder may be writable by the service user, who could plant symlinks in it, so every
step of ``write_atomic`` works on a descriptor of the folder (``openat`` semantics): the
temporary file gets an unpredictable name and is created with
``O_CREAT | O_EXCL | O_NOFOLLOW`` (a planted name fails instead of being followed),
``fchmod``/``fchown`` act on that descriptor, and the rename inside the folder replaces
whatever the final name was (a symlink there is replaced, not followed). The file and then
the folder are fsynced: the rename itself survives a power cut.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from pathlib import Path

log = logging.getLogger(__name__)


def write_atomic(path: str | os.PathLike, data: bytes, mode: int = 0o600, keep_mode: bool = False,
                 owner_from_folder: bool = False) -> None:
    """Replace ``path`` with ``data`` in one rename.

    Args:
        mode: the new file's permissions (set explicitly: the umask does not apply).
        keep_mode: use the permissions of the file being replaced, when there is one.
        owner_from_folder: as root, give the file the folder's owner and group (a file a
            root-run command writes for the service user).

    Raises:
        OSError: the folder cannot be opened or written (callers turn it into their one-line error).
    """
    path = Path(path)
    if keep_mode:
        try:
            mode = path.stat().st_mode & 0o777
        except OSError:
            pass
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
    tmp = None
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        for _ in range(100):
            candidate = f".{path.name}.{secrets.token_hex(8)}.tmp"
            try:
                fd = os.open(candidate, flags, 0o600, dir_fd=dir_fd)
            except FileExistsError:
                continue  # taken (or planted): draw another name
            tmp = candidate
            break
        else:
            raise OSError(f"no free temporary name in {path.parent}")
        try:
            os.fchmod(fd, mode)
            if owner_from_folder and hasattr(os, "geteuid") and os.geteuid() == 0:
                st = os.fstat(dir_fd)
                os.fchown(fd, st.st_uid, st.st_gid)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        tmp = None
        os.fsync(dir_fd)
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp, dir_fd=dir_fd)
            except OSError:
                pass
        os.close(dir_fd)


def private_file(path: Path) -> None:
    """Create ``path`` with mode 0600 when absent; take group/other bits off one of ours.

    SQLite creates its database with 0644 (less the umask) and its -wal/-shm files
    with the database's mode, so creating the file first keeps all three private.
    """
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
        return
    except FileExistsError:
        pass
    for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_mode & 0o077 and st.st_uid == os.geteuid():
            os.chmod(p, stat.S_IMODE(st.st_mode) & 0o700)
            log.info("%s was readable by other users: now mode %04o", p, stat.S_IMODE(st.st_mode) & 0o700)
