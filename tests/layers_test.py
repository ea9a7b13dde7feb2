"""The package's layers only import downwards: a part never imports a part above it or beside it."""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "tf_gkd"
# Each part (a folder or a top-level module of tf_gkd) with its layer, lowest first.
LAYERS = [
    ("contract", "errors"),  # The generator contract, the failures users are told about.
    ("children", "files", "rundir"),  # Child processes, safe files (atomic writes, locks), the run-directory layout.
    ("distribute", "images", "precision"),  # Devices: strategies, the dtype policy; image helpers.
    ("data", "networks", "losses"),
    ("models", "export"),
    ("training", "evaluation"),
    ("runs",),  # The composition root of training.
    ("pipeline",),
    ("bin",),
]
RANK = {part: rank for rank, parts in enumerate(LAYERS) for part in parts}


def imported_parts(path):
    """The parts of tf_gkd that the module at `path` imports."""
    parts = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] if node.module != "tf_gkd" else [f"tf_gkd.{a.name}" for a in node.names]
        else:
            continue
        parts.update(name.split(".")[1] for name in names if name.startswith("tf_gkd."))
    return parts


def part_of(path):
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py")


def test_every_part_has_a_layer():
    assert {part_of(p) for p in MODULES} == set(RANK)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path):
    part = part_of(path)
    upward = sorted(other for other in imported_parts(path) - {part} if RANK[other] >= RANK[part])
    assert not upward, f"{path.relative_to(PACKAGE)} ({part}) imports {upward}, which are not below it: {LAYERS}"


def test_the_checker_sees_upward_imports(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("from tf_gkd import files, runs\nimport tf_gkd.bin.common\nfrom tf_gkd.models import gan\n")
    assert imported_parts(module) == {"files", "runs", "bin", "models"}
