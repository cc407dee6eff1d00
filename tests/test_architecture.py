"""The library's shape holds: every module imports, and data flows one way.

``src/snakestream`` is grouped by concern. Each package may import only the packages
below it (and itself); ``smk`` is the only one that knows Snakemake:

    errors <- io <- grid <- register <- fields <- qc
    config: errors, register        demo: anything but smk        smk: everything

The rule is checked statically, with ``ast``, over every import statement of every
module, including imports inside functions and ``importlib.import_module("...")``
with a literal name, so an import that only runs on some code path cannot slip past.
Every violation is reported at once, as ``file:line: package imports name``.
"""

import ast
import importlib
import pkgutil
from pathlib import Path

import snakestream
from conftest import ROOT

SRC = Path(ROOT) / "src" / "snakestream"

_EVERYTHING = {"errors", "io", "grid", "register", "fields", "qc", "config", "demo", "smk"}
# package (or top-level module) of snakestream -> the other ones it may import
ALLOWED = {
    "": set(),  # snakestream/__init__.py: importing the package costs nothing
    "errors": set(),
    "io": {"errors"},
    "grid": {"errors", "io"},
    "register": {"errors", "io", "grid"},
    "fields": {"errors", "io", "grid", "register"},
    "qc": {"errors", "io", "grid", "register", "fields"},
    "config": {"errors", "register"},
    "demo": _EVERYTHING - {"demo", "smk"},
    "smk": _EVERYTHING - {"smk"},
}
SNAKEMAKE_ALLOWED_IN = {"smk"}


def library_modules():
    """[(module name, file, is package)] of every module under src/snakestream."""
    found, errors = [], []
    for info in pkgutil.walk_packages([str(SRC)], "snakestream.", onerror=errors.append):
        folder, last = Path(info.module_finder.path), info.name.rsplit(".", 1)[-1]
        path = folder / last / "__init__.py" if info.ispkg else folder / f"{last}.py"
        found.append((info.name, path, info.ispkg))
    assert not errors, f"pkgutil could not walk into: {errors}"
    return [("snakestream", SRC / "__init__.py", True)] + found


def concern(module):
    """The package (or top-level module) of snakestream a dotted name belongs to;
    "" for the root package itself, None outside snakestream."""
    parts = module.split(".")
    if parts[0] != "snakestream":
        return None
    return parts[1] if len(parts) > 1 else ""


def imported_modules(tree, module, is_package):
    """[(line, dotted module, what is shown)] of every import in a module's source,
    at any depth (inside functions, branches, ``try``).

    ``from a.b import c, d`` is one import of ``a.b``, shown as ``a.b (c, d)``;
    ``from snakestream import io`` imports ``snakestream.io``. Relative imports are
    resolved against ``module``; ``importlib.import_module("x")`` and
    ``__import__("x")`` with a literal name count as imports of ``x``.
    """
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            names = [alias.name for alias in node.names]
            if base in ("snakestream", package):  # the names may be subpackages
                found += [(node.lineno, f"{base}.{n}", f"{base}.{n}") for n in names]
            else:
                found.append((node.lineno, base, f"{base} ({', '.join(names)})"))
        elif (isinstance(node, ast.Call) and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
              and _is_dynamic_import(node.func)):
            found.append((node.lineno, node.args[0].value, node.args[0].value))
    return found


def _is_dynamic_import(func):
    if isinstance(func, ast.Name):
        return func.id in ("__import__", "import_module")
    return isinstance(func, ast.Attribute) and func.attr == "import_module"


def violations(module, path, is_package):
    """One line per import of ``module`` that breaks the rule."""
    own = concern(module)
    where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    tree = ast.parse(path.read_text(), filename=str(path))
    if own not in ALLOWED:
        return [f"{where}: no import rule for snakestream.{own}; add it to "
                "tests/test_architecture.py's ALLOWED (and its package docstring)"]
    found = []
    for line, name, shown in imported_modules(tree, module, is_package):
        top = name.split(".")[0]
        target = concern(name)
        if (top == "snakemake" or top.startswith("snakemake_")) and own not in SNAKEMAKE_ALLOWED_IN:
            found.append(f"{where}:{line}: {own} imports {shown}; only smk may import snakemake")
        elif target not in (None, "", own) and target not in ALLOWED[own]:
            allowed = ", ".join(sorted(ALLOWED[own])) or "no other package"
            found.append(f"{where}:{line}: {own} imports {shown}; {own} may import: {allowed}")
    return found


# ---------------------------------------------------------------------------


def test_tests_read_the_tree_they_import():
    assert Path(snakestream.__file__).resolve().parent == SRC.resolve()


def test_every_package_and_module_imports():
    failed = []
    modules = library_modules()
    assert len(modules) > 30, [m for m, _, _ in modules]
    for name, _, _ in modules:
        try:
            importlib.import_module(name)
        except Exception as err:  # noqa: BLE001 - every failure, then one report
            failed.append(f"{name}: {type(err).__name__}: {err}")
    assert not failed, "modules that do not import:\n" + "\n".join(failed)


def test_imports_flow_one_way_and_only_smk_knows_snakemake():
    found = [v for module in library_modules() for v in violations(*module)]
    assert not found, (f"{len(found)} imports break the one-way rule "
                       "(see tests/test_architecture.py):\n" + "\n".join(found))


def test_every_package_says_what_it_owns_and_may_import():
    missing = []
    for name, path, is_package in library_modules():
        if not is_package:
            continue
        doc = ast.get_docstring(ast.parse(path.read_text()))
        if not doc:
            missing.append(f"{name}: no docstring")
        elif name != "snakestream" and "May import" not in doc:
            missing.append(f"{name}: the docstring does not say what it may import")
    assert not missing, "\n".join(missing)


def test_the_checker_sees_nested_relative_and_dynamic_imports(tmp_path):
    """The rule is only as good as the scan: a fake io module with every kind of import."""
    source = tmp_path / "fake.py"
    source.write_text(
        "import numpy\n"
        "from snakestream.errors import InputError\n"
        "from . import ngff\n"
        "def later():\n"
        "    from ..register import align\n"
        "    import snakemake.io\n"
        "    if True:\n"
        "        from snakestream import fields, errors\n"
        "    return importlib.import_module('snakestream.qc.metrics')\n")
    found = violations("snakestream.io.fake", source, False)
    assert [v.split(": ", 1)[0].rsplit(":", 1)[1] for v in found] == ["5", "6", "8", "9"]
    assert found[0].endswith("io imports snakestream.register (align); io may import: errors")
    assert found[1].endswith("io imports snakemake.io; only smk may import snakemake")
    assert "io imports snakestream.fields;" in found[2] and "snakestream.qc.metrics" in found[3]
