"""Running tf_gkd's training binaries from a benchmark, as a user would, and timing them."""

import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def timed_run(binary, workdir, args, done_files, data_dir=None):
    """Runs `binary` ("train": gkd-train, "distill": gkd-distill, from tf_gkd/bin/) in `workdir`.

    Returns its wall time in seconds, or None without running it when any of
    `done_files` already exists in `workdir` (the run is complete and is reused).
    """
    if any(os.path.exists(os.path.join(workdir, f)) for f in done_files):
        return None
    cmd = [sys.executable, "-c", f"from tf_gkd.bin.{binary} import run; run()", f"--workdir={workdir}", *args]
    if data_dir:
        cmd.append(f"--data_dir={data_dir}")
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=REPO)
    return time.perf_counter() - start
