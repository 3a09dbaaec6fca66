"""The layout stays true: the import rule between packages, module and constructor sizes,
no private names used across modules, and ``monitoring`` usable without BentoML.

Layers (a module may import only layers strictly below its own, or its own package)::

    names    monitoring/names.py                                (the vocabulary: names of metrics, attributes)
    leaves   monitoring/{schema,metrics,values}.py
    domain   monitoring/intake/  monitoring/stats/           (peers: never each other)
    alerts   monitoring/alerts/
    config   monitoring/config.py                               (rule specs come from alerts/)
    store    monitoring/store/                                  (each module: tables/errors only)
    runtime  monitoring/runtime/  models/                       (peers: never each other)
    service  service/
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("monitoring", "service", "models")

LAYERS = {
    "monitoring.names": -1, "monitoring.schema": 0, "monitoring.metrics": 0, "monitoring.values": 0,
    "monitoring.intake": 1, "monitoring.stats": 1,
    "monitoring.alerts": 2,
    "monitoring.config": 3,
    "monitoring.store": 4,
    "monitoring.runtime": 5, "models": 5,
    "service": 6,
}
MAX_LINES = 400
MAX_INIT_PARAMS = 8


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


MODULES = _modules()


def _unit(module: str) -> str | None:
    """The layer unit a module belongs to (the longest LAYERS key that prefixes it)."""
    best = None
    for key in LAYERS:
        if module == key or module.startswith(key + "."):
            if best is None or len(key) > len(best):
                best = key
    return best


def _imports(path: Path, module: str) -> list[tuple[str, int]]:
    """(imported module, line) for every import in the file, relative ones resolved."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(up + ([base] if base else []))
            out.append((base, node.lineno))
            out += [(f"{base}.{a.name}", node.lineno) for a in node.names if f"{base}.{a.name}" in MODULES]
    return out


def test_every_module_belongs_to_a_layer():
    missing = [m for m in MODULES if _unit(m) is None and m != "monitoring"]
    assert missing == []


def test_imports_only_go_down_the_layers():
    bad = []
    for module, path in MODULES.items():
        unit = _unit(module)
        if unit is None:  # monitoring/__init__.py: the curated public API re-exports every layer
            continue
        for target, line in _imports(path, module):
            other = _unit(target)
            if other is None or other == unit:
                continue
            if LAYERS[other] >= LAYERS[unit]:
                bad.append(f"{path.relative_to(ROOT)}:{line} ({unit}, layer {LAYERS[unit]}) imports {target} "
                           f"({other}, layer {LAYERS[other]})")
    assert bad == []


def test_store_modules_import_tables_and_errors_never_a_sibling():
    """Only the facade (and the package's ``__init__``) compose the store's modules."""
    allowed = {"monitoring.store.tables", "monitoring.store.errors"}
    bad = []
    for module, path in MODULES.items():
        if not module.startswith("monitoring.store.") or module in allowed | {"monitoring.store.facade"}:
            continue
        for target, line in _imports(path, module):
            if target.startswith("monitoring.store") and target not in allowed and target != "monitoring.store":
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    assert bad == []


def test_monitoring_never_imports_bentoml_or_the_service():
    bad = [f"{p.relative_to(ROOT)}:{line} imports {t}" for m, p in MODULES.items() if m.startswith("monitoring")
           for t, line in _imports(p, m) if t.split(".")[0] in ("bentoml", "service", "models")]
    assert bad == []


def test_runtime_and_service_leave_sql_to_the_store():
    bad = [f"{p.relative_to(ROOT)}:{line} imports {t}" for m, p in MODULES.items()
           if m.startswith(("monitoring.runtime", "service"))
           for t, line in _imports(p, m) if t.split(".")[0] == "sqlalchemy"]
    assert bad == []


def test_import_monitoring_works_where_bentoml_cannot_be_imported():
    code = """
import importlib, pkgutil, sys

class NoBento:
    def find_spec(self, name, path=None, target=None):
        if name == "bentoml" or name.startswith("bentoml."):
            raise ImportError("bentoml is not installed here")
        return None

sys.meta_path.insert(0, NoBento())
import monitoring
names = [m.name for m in pkgutil.walk_packages(monitoring.__path__, "monitoring.")]
for name in names:
    importlib.import_module(name)
for name in monitoring.__all__:  # the curated public API resolves
    getattr(monitoring, name)
assert not any(m == "bentoml" or m.startswith("bentoml.") for m in sys.modules), "bentoml was imported"
print(len(names))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert int(out.stdout.strip()) >= 20  # every subpackage's modules were walked


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_is_over_the_size_limit(module):
    n = len(MODULES[module].read_text().splitlines())
    assert n <= MAX_LINES, f"{module} has {n} lines"


def _explicit_inits(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                    a = item.args
                    yield node.name, len(a.posonlyargs) + len(a.args) - 1 + len(a.kwonlyargs)


def test_no_class_takes_more_than_eight_constructor_parameters():
    """Explicit ``__init__`` only: dataclasses and pydantic models *are* the config objects
    that group parameters."""
    bad = [f"{m}.{cls} takes {n}" for m, p in MODULES.items()
           for cls, n in _explicit_inits(ast.parse(p.read_text())) if n > MAX_INIT_PARAMS]
    assert bad == []


def test_no_private_name_is_imported_across_modules():
    bad = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in PACKAGES:
                bad += [f"{path.relative_to(ROOT)}:{node.lineno} imports {node.module}.{a.name}"
                        for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
    assert bad == []
