"""Writing files so that a reader never sees half of one."""
import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator

import torch

from .errors import OutputExistsError


def atomic_save(obj, dst, force: bool = False) -> Path:
    """``torch.save`` to a temp file beside ``dst``, then rename over it.

    Refuses to replace an existing ``dst`` unless ``force``. If the process
    dies mid-write, ``dst`` is either absent or the old file.
    """
    dst = Path(dst)
    if dst.exists() and not force:
        raise OutputExistsError(f'{dst} already exists; pass --force to '
                              'overwrite it')
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f'.{dst.name}.',
                               suffix='.tmp')
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dst


def atomic_write_text(text: str, dst) -> Path:
    """Write ``text`` to a temp file beside ``dst``, then rename over it."""
    dst = Path(dst)
    tmp = dst.with_name(f'.{dst.name}.tmp')
    tmp.write_text(text)
    os.replace(tmp, dst)
    return dst


def atomic_write_json(obj, dst, **dump_kwargs) -> Path:
    """``json.dump`` to a temp file beside ``dst``, then rename over it."""
    return atomic_write_text(json.dumps(obj, **dump_kwargs), dst)


@contextlib.contextmanager
def atomic_path(dst) -> Iterator[str]:
    """A temp path beside ``dst`` for a writer that takes a path: renamed
    over ``dst`` when the block ends without an error, removed otherwise.
    The writer creates the file (so it gets the usual permissions)."""
    dst = os.path.abspath(dst)
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    tmp = os.path.join(os.path.dirname(dst),
                       f'.{os.path.basename(dst)}.{os.getpid()}.tmp')
    try:
        yield tmp
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
