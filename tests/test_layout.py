"""The package's imports run one way, as CONTRIBUTING.md's module map says."""

import ast
from pathlib import Path

import pytest

import sksiamese

PACKAGE = Path(sksiamese.__file__).parent

# Module -> the package modules it may import (CONTRIBUTING.md). "" is the
# package itself (``from . import __version__``).
MAY_IMPORT = {
    "__init__": set(),
    "__main__": {"_cli"},
    "_classifier": {
        "_base",
        "_calibration",
        "_references",
        "_training",
        "_losses",
        "_persistence",
        "_compat",
    },
    "_pair_classifier": {
        "_base",
        "_calibration",
        "_losses",
        "_persistence",
        "_compat",
    },
    "_base": {"_training", "_persistence", "_preprocessing", "_networks", "_compat"},
    "_references": {"_networks"},
    "_calibration": {"_references"},
    "_training": {"_networks", "_sampling", "_augment", "_preprocessing"},
    "_persistence": {"", "_training", "_losses", "_preprocessing"},
    "_networks": set(),
    "_losses": {"_networks"},
    "_sampling": set(),
    "_preprocessing": set(),
    "_augment": set(),
    "_compat": set(),
    "distributed": {
        "_classifier",
        "_base",
        "_references",
        "_training",
        "_persistence",
        "_sampling",
    },
    "plotting": {"_base", "_pair_classifier", "_compat"},
    "_cli": {"", "_classifier"},
    "datasets/__init__": {"datasets/_omniglot", "datasets/_survey"},
    "datasets/_omniglot": set(),
    "datasets/_survey": set(),
}

# Imports of package modules inside functions, each for a stated reason.
LAZY = {
    # The command line's --help and input checks must not wait for torch.
    ("_cli", "_classifier"),
}


def _package_imports(path):
    """(imported module, inside a function) for each import of a package
    module in the file at ``path``, named relative to the package."""
    module = path.relative_to(PACKAGE).with_suffix("").as_posix()
    folder = Path(module).parent
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ImportFrom) or not node.level:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                )
                assert not any(
                    n == "sksiamese" or n.startswith("sksiamese.") for n in names
                ), f"{module} imports the package by its absolute name"
            continue
        base = folder
        for _ in range(node.level - 1):
            base = base.parent
        if node.module:
            targets = [(base / node.module.replace(".", "/")).as_posix()]
        else:  # from . import name: a module, or a name of the package
            targets = [
                (base / a.name).as_posix()
                if (PACKAGE / base / f"{a.name}.py").exists()
                else base.as_posix()
                for a in node.names
            ]
        for target in targets:
            target = "" if target == "." else target
            found.append((target, node.col_offset > 0))
    return module, found


def _modules():
    return sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", _modules(), ids=lambda p: p.name)
def test_imports_follow_the_module_map(path):
    module, found = _package_imports(path)
    assert module in MAY_IMPORT, f"{module} is not in the module map"
    top = {target for target, inside in found if not inside}
    assert top <= MAY_IMPORT[module], (module, top - MAY_IMPORT[module])
    inside = {(module, target) for target, inside in found if inside}
    assert inside <= LAZY, f"imports inside functions: {inside - LAZY}"


def test_module_map_has_no_cycle():
    def visit(module, path):
        for target in MAY_IMPORT.get(module, ()):
            assert target not in path, " -> ".join([*path, target])
            visit(target, [*path, target])

    for module in MAY_IMPORT:
        visit(module, [module])


def test_contributing_lists_every_module():
    contributing = PACKAGE.parent / "CONTRIBUTING.md"
    if not contributing.exists():
        pytest.skip("not a source checkout")
    text = contributing.read_text()
    for module in MAY_IMPORT:
        name = "datasets/" if module.startswith("datasets") else f"{module}.py"
        assert f"`{name}`" in text, name
