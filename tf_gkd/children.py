"""Child processes of tf_gkd's own commands (the pipeline's stages, gkd-launch's workers)."""

import ctypes
import signal
import socket
import sys


def _die_with_parent():
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass  # Not Linux: the child then finishes on its own.


# `preexec_fn` of a child that must not outlive its parent: a killed parent takes it along (Linux).
DIE_WITH_PARENT = _die_with_parent if sys.platform == "linux" else None


def free_ports(count, host="127.0.0.1"):
    """`count` distinct TCP ports free on `host` now (the OS picks them; another process may take one later)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind((host, 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()
