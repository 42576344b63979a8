"""The user's cache folder (NAS_CACHE_DIR, default ~/.cache/nas-unified): what commands keep between runs to
save work (the trial cache of nas.trial_cache, the presets' counted figures of `nas arch list`).

Only this user can write what a command loads from it: a file is read only when it and every folder from the
cache root down to it belong to this user and nobody else may write them (a pickle runs code as it loads, so a
file another user could plant or change must never be read). Folders are made 0700 and files 0600; each is
opened relative to its checked folder, so nothing can be swapped in between the check and the read. A file
that fails the check is never read (the command does the work again) and is named once on stderr.
Imports only the standard library and nas.console.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_refused: set[str] = set()  # what this process said it will not read (said once)


class Unsafe(Exception):
    """A cache file or folder another user owns or may write."""


def root() -> Path:
    """NAS_CACHE_DIR, else nas-unified in the user's cache folder (XDG_CACHE_HOME or ~/.cache)."""
    if os.environ.get("NAS_CACHE_DIR"):
        return Path(os.environ["NAS_CACHE_DIR"]).expanduser().resolve()
    return (Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nas-unified").resolve()


def read(relative: str) -> bytes | None:
    """The bytes of the cache file at `relative` (a path below the root), or None when it is missing or unsafe."""
    try:
        with _folder(Path(relative).parent, create=False) as folder:
            fd = os.open(Path(relative).name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=folder)
            with open(fd, "rb") as f:
                _check(os.fstat(f.fileno()), root() / relative)
                return f.read()
    except Unsafe as exc:
        _say_once(str(exc))
    except OSError:
        pass
    return None


def write(relative: str, data: bytes) -> bool:
    """Write the cache file at `relative` whole (a reader sees the old file or the new one, never half of one);
    False when it could not (a full or read-only disk, an unsafe folder: that costs speed, never a result)."""
    path = Path(relative)
    part = f"{path.name}.{os.getpid()}.part"
    try:
        with _folder(path.parent, create=True) as folder:
            with suppress(FileNotFoundError):  # left by a killed process of the same id
                os.unlink(part, dir_fd=folder)
            fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=folder)
            try:
                with open(fd, "wb") as f:
                    f.write(data)
                os.replace(part, path.name, src_dir_fd=folder, dst_dir_fd=folder)
            except OSError:
                with suppress(OSError):
                    os.unlink(part, dir_fd=folder)
                raise
    except Unsafe as exc:
        _say_once(str(exc))
        return False
    except OSError:
        return False
    return True


def memo(relative: str, key: str, compute: Callable[[], object]) -> object:
    """`compute()`, kept as JSON at `relative` and given again while `key` (what it depends on) is the same."""
    saved = read(relative)
    with suppress(ValueError, TypeError):
        if saved is not None and (kept := json.loads(saved)).get("key") == key:
            return kept["value"]
    value = compute()
    write(relative, json.dumps({"key": key, "value": value}).encode())
    return value


def source_digest(folder: Path, patterns: tuple[str, ...] = ("*.py", "*.yaml")) -> str:
    """A digest of the files of a source folder (recursively): what a figure computed by that code depends on."""
    digest = hashlib.sha256()
    for pattern in patterns:
        for path in sorted(folder.rglob(pattern)):
            digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


@contextmanager
def _folder(relative: Path, create: bool) -> Iterator[int]:
    """A descriptor of the folder `relative` below the root, each folder on the way checked (and, with `create`,
    made 0700 where missing)."""
    top = root()
    if create:
        top.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, where = os.open(top, _DIR_FLAGS), top
    try:
        _check(os.fstat(fd), where)
        for part in relative.parts:
            if create:
                with suppress(FileExistsError):
                    os.mkdir(part, 0o700, dir_fd=fd)
            inner = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd, where = inner, where / part
            _check(os.fstat(fd), where)
        yield fd
    finally:
        os.close(fd)


def _check(st: os.stat_result, where: Path) -> None:
    if st.st_uid != os.geteuid():
        raise Unsafe(f"{where} belongs to another user")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise Unsafe(f"other users may write {where} (chmod go-w it)")


def _say_once(message: str) -> None:
    if message not in _refused:
        _refused.add(message)
        from .console import err

        err.print(f"nas: cache not used: {message}; the command reads and computes everything again", markup=False)
