"""Atomic writes: a reader never sees half a file, and a crash never clobbers the previous one.

Every file tf_gkd writes for others to read (configs, reports, models, figures,
teacher pairs) goes through `atomic_path`, and every directory written as a
whole (an export) through `atomic_directory`: the writer writes to a unique
temporary name in the same directory (so on the same file system) and the
result is renamed over the destination, which POSIX makes atomic.
"""

import contextlib
import json
import os
import shutil
import uuid


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path beside `path`; on success it is renamed to `path`, on error removed.

    The temporary name keeps `path`'s extension (writers such as Keras and
    matplotlib choose the format from it) and starts with a dot.
    """
    directory, name = os.path.split(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".tmp-{uuid.uuid4().hex}-{name}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text(text, path):
    """Writes `text` to `path` atomically."""
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write(text)


def write_json(value, path):
    """Writes `value` as indented JSON to `path` atomically."""
    write_text(json.dumps(value, indent=2) + "\n", path)


@contextlib.contextmanager
def atomic_directory(path, before_replace=None):
    """Yields a new empty directory beside `path`; on success it takes `path`'s place, on error it is removed.

    A directory already at `path` is replaced only once the new one is
    complete, and is put back if the swap fails. `before_replace`, if given,
    is called just before the swap (say, to check again that `path` may be
    replaced: another process may have written it meanwhile); what it raises
    leaves `path` as it was.
    """
    parent, name = os.path.split(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    # os.mkdir, unlike tempfile.mkdtemp (0700), gives the directory the usual permissions.
    tmp = os.path.join(parent, f".{name}.tmp-{uuid.uuid4().hex}")
    os.mkdir(tmp)
    try:
        yield tmp
        if before_replace is not None:
            before_replace()
        if os.path.lexists(path):
            old = tmp + ".old"
            os.rename(path, old)
            try:
                os.rename(tmp, path)
            except OSError:
                os.rename(old, path)  # Put the previous directory back.
                raise
            shutil.rmtree(old)
        else:
            os.rename(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # Gone already after a successful rename.
