"""Advisory locks on directories that one charwright process writes at a time (fcntl.flock).

    with hold("RUN_DIR/.charwright.lock", "RUN_DIR", RunDirError):
        ...  # a second writer gets one line naming this process: pid, command, since when

An exclusive holder writes who it is into the lock file (one JSON line), so the process that
is turned away can name it. A shared holder (a reader, e.g. export reading a RUN_DIR) writes
nothing; it only keeps exclusive writers out. The lock is released when the process ends,
however it ends (kill -9 included): the kernel drops flock locks with the file descriptor.

With `remove=True` the lock file is deleted on release (for a lock that sits beside a target,
where it would otherwise be litter). Because a file can be unlinked between another process's
open() and its flock(), an acquirer checks after locking that the path still names the file it
locked, and retries otherwise.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import stat
import sys
import time
from pathlib import Path
from typing import Iterator

from charwright.runtime.errors import CharwrightError


def _command() -> str:
    prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"
    if prog in ("cli.py", "__main__.py", "-c", ""):
        prog = "charwright"
    cmd = " ".join([prog, *sys.argv[1:]])
    return cmd if len(cmd) <= 120 else cmd[:117] + "..."


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def describe_holder(lock_path: str | os.PathLike) -> str:
    """Who holds the lock, in words ("pid 123 (charwright train ..., since 2026-01-01 10:00:00)")."""
    try:
        info = json.loads(Path(lock_path).read_text(encoding="utf-8") or "{}")
        pid = int(info["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return "another charwright process"
    if not _alive(pid):  # the file names the last exclusive holder; a reader holds it now
        return "another charwright process"
    return f"pid {pid} ({info.get('command', '?')}, since {info.get('since', '?')})"


def _busy(lock_path: Path, what: str, error: type[CharwrightError]) -> CharwrightError:
    return error(f"{what} is in use by {describe_holder(lock_path)}; wait for it to finish or "
                 "stop it, then run again")


def check_free(lock_path: str | os.PathLike, what: str,
               error: type[CharwrightError] = CharwrightError) -> None:
    """Raises `error` naming the holder if someone holds an exclusive lock on `lock_path` now
    (creates nothing: for read-only checks before the lock is taken)."""
    try:
        fd = os.open(lock_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return
    try:
        _check_lock_file(fd, Path(lock_path), error)
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            raise
        raise _busy(Path(lock_path), what, error) from None
    finally:
        os.close(fd)


def _check_lock_file(fd: int, lock_path: Path, error: type[CharwrightError]) -> None:
    """A lock file is written to: it must be a regular file of our own (no FIFO, no device, no
    hard link to someone else's file)."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:
        kind = "has other hard links" if stat.S_ISREG(st.st_mode) else "is not a regular file"
        raise error(f"{lock_path}: {kind}; a lock file must be a plain file (remove it)")


@contextlib.contextmanager
def hold(lock_path: str | os.PathLike, what: str, error: type[CharwrightError] = CharwrightError,
         shared: bool = False, remove: bool = False) -> Iterator[Path]:
    """Holds a non-blocking flock on `lock_path` (created if missing) for the block.

    Args:
        what: the thing being locked, for the message (a directory name).
        error: the CharwrightError subclass to raise when another process holds the lock.
        shared: take a shared (reader) lock instead of an exclusive one.
        remove: delete the lock file on release (exclusive locks only).
    Raises:
        error: "WHAT is in use by pid N (command, since TIME); wait for it or stop it".
    """
    lock_path = Path(lock_path)
    op = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB
    while True:
        try:  # never through a link: a planted link would have us overwrite its target
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
                         | os.O_CLOEXEC, 0o666)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise error(f"{lock_path}: is a symbolic link; a lock file must be a plain "
                            "file (remove it)") from None
            raise
        try:
            _check_lock_file(fd, lock_path, error)
            fcntl.flock(fd, op)
        except OSError as e:
            os.close(fd)
            if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            raise _busy(lock_path, what, error) from None
        except BaseException:
            os.close(fd)
            raise
        try:
            same = os.stat(lock_path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the file was removed by its last holder after we opened it: retry
    try:
        if not shared:
            info = {"pid": os.getpid(), "command": _command(),
                    "since": time.strftime("%Y-%m-%d %H:%M:%S")}
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        yield lock_path
    finally:
        if remove and not shared:
            with contextlib.suppress(OSError):
                os.unlink(lock_path)
        os.close(fd)
