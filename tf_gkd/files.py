"""Safe files: atomic writes, directory locks, and the clean-up of what killed processes left.

Every file tf_gkd writes for others to read (configs, reports, models, figures,
teacher pairs) goes through `atomic_path`, and every directory written as a
whole (an export) through `atomic_directory`: the writer writes to a unique
temporary name in the same directory (so on the same file system) and the
result is renamed over the destination, which POSIX makes atomic.

A directory that one process writes at a time (a run, an export, a prepared
dataset, a pipeline) is held with `locked`: a second process is refused at
once with the holder's pid, host and start time. The lock is the operating
system's (`flock`), so it dies with its process: a killed holder leaves no
stale lock, only its record, and the next holder says whose lock it took
over. Under the lock, `remove_leftovers` deletes the temporary files a killed
writer left behind. A process's own temporary directory (`process_directory`)
is named after its pid, so that the next one removes those of dead processes.
"""

import contextlib
import datetime
import fcntl
import json
import os
import re
import shutil
import socket
import tempfile
import uuid

from absl import logging

from tf_gkd import errors

LOCK_FILE = ".lock"  # In a locked directory (an export's is beside it: `.<name>.lock`).
_TEMPORARY = re.compile(r"\.tmp-[0-9a-f]{32}-")  # atomic_path's temporary files.


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


def read_json_object(path, error, fix):
    """The JSON object in the file at `path`.

    Raises:
      what `error(message)` returns, the message naming `path` and saying `fix`,
        when the file is not valid JSON or holds something other than an object.
    """
    try:
        with open(path) as f:
            value = json.load(f)
    except ValueError as e:
        raise error(f"{path} is not valid JSON ({e}): {fix}.") from None
    if not isinstance(value, dict):
        raise error(f"{path} is not a configuration (a JSON object): {fix}.")
    return value


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


def _holder():
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.datetime.now().isoformat(" ", "seconds"),
    }


def _describe(holder):
    return f"pid {holder.get('pid')} on {holder.get('host')}, since {holder.get('started')}"


@contextlib.contextmanager
def locked(lock_path, what):
    """Holds the lock file `lock_path` for the body; `what` names the locked thing in messages.

    The file exists only while it is held (a directory created for it alone is
    removed with it), except after a killed holder: the next holder finds its
    record there and says so.

    Raises:
      LockedError: another process holds it; the message names that process.
    """
    directory = os.path.dirname(os.path.abspath(lock_path))
    created = not os.path.isdir(directory)
    os.makedirs(directory, exist_ok=True)
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise errors.LockedError(
                f"{what} is in use by another process ({_describe(holder)}). Wait for it to finish, or stop it, "
                "then re-run."
            ) from None
        # The holder before may have removed the file between our open and our lock: lock the one at the path.
        if _same_file(fd, lock_path):
            break
        os.close(fd)
    try:
        previous = _read_holder(fd)
        if previous:  # A holder that ends removes the file: this one was killed.
            logging.warning(
                "Took over the lock of %s from a process that ended without releasing it (%s).",
                what,
                _describe(previous),
            )
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(_holder()).encode(), 0)
        yield
    finally:
        os.remove(lock_path)  # While still locked, so that no one locks the file on its way out.
        os.close(fd)
        if created and not os.listdir(directory):
            os.rmdir(directory)


def _same_file(fd, path):
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def _read_holder(fd):
    try:
        return json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:
        return {}


def directory_lock(directory):
    """The lock file of a directory that is written in place (a run, a prepared dataset, a pipeline)."""
    return os.path.join(directory, LOCK_FILE)


def sibling_lock(path):
    """The lock file of a directory that is replaced as a whole (an export): beside it, `.<name>.lock`."""
    parent, name = os.path.split(os.path.abspath(path))
    return os.path.join(parent, f".{name}{LOCK_FILE}")


def remove_leftovers(directory, pattern=_TEMPORARY):
    """Removes the files and folders of `directory` whose names match `pattern`; returns their names.

    For what killed writers left: by default `atomic_path`'s temporary files;
    callers pass the patterns of other writers' temporaries (an unfinished
    checkpoint save, a dataset preparation). Call it holding the lock of what
    it cleans.
    """
    if not os.path.isdir(directory):
        return []
    removed = [name for name in sorted(os.listdir(directory)) if pattern.match(name)]
    for name in removed:
        path = os.path.join(directory, name)
        if os.path.isdir(path):
            shutil.rmtree(path)
        else:
            os.remove(path)
    if removed:
        logging.info("Removed what a killed process left in %s: %s.", directory, ", ".join(removed))
    return removed


_PROCESS_DIRECTORY = re.compile(r"tf_gkd_.+_pid(\d+)_")


def _running(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # Another user's process.
        return True
    return True


@contextlib.contextmanager
def process_directory(name):
    """A temporary directory of this process, `<tmp>/tf_gkd_<name>_pid<pid>_<random>`, removed at the end.

    First removes the directories of this kind that processes no longer running
    on this machine left (killed before their clean-up).
    """
    parent = tempfile.gettempdir()
    for entry in sorted(os.listdir(parent)):
        match = _PROCESS_DIRECTORY.match(entry)
        if match and int(match.group(1)) != os.getpid() and not _running(int(match.group(1))):
            shutil.rmtree(os.path.join(parent, entry), ignore_errors=True)
            logging.info("Removed %s, left by a killed process.", os.path.join(parent, entry))
    with tempfile.TemporaryDirectory(prefix=f"tf_gkd_{name}_pid{os.getpid()}_") as directory:
        yield directory


def remove_replacement_leftovers(path):
    """Removes what a killed `atomic_directory(path)` left beside `path`; returns the names removed.

    That is its temporary directories; a previous version of `path` that a
    killed swap had moved aside is put back first. Call it holding `path`'s
    `sibling_lock`.
    """
    parent, name = os.path.split(os.path.abspath(path))
    pattern = re.compile(rf"\.{re.escape(name)}\.tmp-[0-9a-f]{{32}}(\.old)?$")
    if os.path.isdir(parent) and not os.path.lexists(path):
        moved = [n for n in os.listdir(parent) if (match := pattern.match(n)) and match.group(1)]
        if moved:
            os.rename(os.path.join(parent, moved[0]), path)
            logging.warning("Put back %s, moved aside by a process killed while replacing it.", path)
    return remove_leftovers(parent, pattern)
