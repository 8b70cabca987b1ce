"""Atomic writes: a reader sees the old file or folder or the new one, never half of one."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` through a sibling ``.tmp`` file and a rename.

    Args:
        path: The file to write; its folder must exist.
        text: The whole content.

    Returns:
        The path written.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


@contextmanager
def atomic_folder(folder: str | os.PathLike) -> Iterator[Path]:
    """Fill a fresh sibling ``folder.tmp``, then put it in ``folder``'s place.

    A save cut short (disk full, a kill, an exception in the block) leaves at most
    ``folder.tmp`` (and, between the two renames, ``folder.old``) behind, never a half-written
    ``folder``. A stale ``.tmp`` from an earlier attempt is removed first.

    Args:
        folder: The folder to create or replace.

    Yields:
        The temporary folder to write into.
    """
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    yield tmp
    replace_folder(tmp, folder)


def replace_folder(new: str | os.PathLike, folder: str | os.PathLike) -> None:
    """Put the finished folder ``new`` in ``folder``'s place (``folder`` may exist or not).

    Between the two renames the old content is ``folder.old``; it is removed at the end.
    """
    new, folder = Path(new), Path(folder)
    if folder.exists():
        old = folder.with_name(folder.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(folder, old)
        os.replace(new, folder)
        shutil.rmtree(old)
    else:
        os.replace(new, folder)
