"""The repository's own checks: lint and format (ruff), the generated flag reference is current."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(*args):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=REPO, timeout=300)


def test_ruff_lint():
    result = run("-m", "ruff", "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format():
    result = run("-m", "ruff", "format", "--check", ".")
    assert result.returncode == 0, "Run `ruff format .`:\n" + result.stdout + result.stderr


def test_flag_reference_is_current():
    result = run("scripts/flags_doc.py", "--check")
    assert result.returncode == 0, result.stderr
