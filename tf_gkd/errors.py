"""What tf_gkd reports to its users as a message rather than a traceback.

Every failure a user can fix (bad input, a missing dataset, a run directory in
use, an interrupted run) raises a subclass of `Error` whose message names what
was wrong and what to do. The binaries turn it, and the operating system's
`OSError`, into that message and an exit status (`with_messages`);
anything else is a bug and keeps its traceback.
"""

import errno
import functools
import sys

from absl import logging


class Error(Exception):
    """A failure the user can fix; its message says what was wrong and what to do."""

    exit_status = 1


class LockedError(Error):
    """A directory is in use by another process."""


class Interrupted(Error):
    """The user interrupted the process (Ctrl-C)."""

    exit_status = 130  # 128 + SIGINT, as shells report it.


def describe_os_error(error):
    """A one-line message for an `OSError`: what failed, on which path, and what usually fixes it."""
    path = error.filename if error.filename is not None else "a file"
    if error.filename2 is not None:
        path = f"{path} → {error.filename2}"
    reason = error.strerror or str(error)
    hints = {  # By errno name.
        "EACCES": "check its permissions",
        "EPERM": "check its permissions",
        "EROFS": "the file system is read-only: choose a writable directory",
        "ENOSPC": "the disk is full: free some space and re-run the same command",
        "EDQUOT": "the disk quota is exceeded: free some space and re-run the same command",
        "EEXIST": "a file is in the way: remove it or choose another path",
        "ENOTDIR": "a file is where a directory is expected: remove it or choose another path",
        "EISDIR": "a directory is where a file is expected: remove it or choose another path",
        "ENOENT": "check the path",
    }
    hint = hints.get(errno.errorcode.get(error.errno, ""), "")
    return f"Cannot use {path}: {reason}" + (f" ({hint})." if hint else ".")


def with_messages(main):
    """A binary's `main` for `app.run`, with the one mapping of failures to messages and exit statuses.

    A `tf_gkd.errors.Error` (bad input, missing data, a directory in use, an
    interrupted run...) prints its message and exits with its status (1; 130
    for an interruption), an `OSError` (permissions, a read-only or full disk,
    a file in the way) names the path and the reason and exits 1, and Ctrl-C
    anywhere else exits 130. Anything else is a bug: its traceback is kept.
    """

    @functools.wraps(main)
    def main_with_messages(argv):
        try:
            return main(argv)
        except Error as e:
            logging.error("%s", e)
            sys.exit(e.exit_status)
        except OSError as e:
            logging.error("%s", describe_os_error(e))
            sys.exit(1)
        except KeyboardInterrupt:
            logging.error("Interrupted.")
            sys.exit(Interrupted.exit_status)

    return main_with_messages
