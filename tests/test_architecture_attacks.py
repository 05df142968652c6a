"""Attacks on the layer and SQL-owner checks (tests/test_layers.py, tests/test_sql_owner.py): planted
violations in temporary files, to show which ones the checks see and to close the gaps they leave.

- A lazy import inside a function is an import to grimp (and so to import-linter): seen.
- ``importlib.import_module`` / ``__import__`` are invisible to grimp: :func:`dynamic_imports` below
  finds them, and the products may hold none (the CLIs import their command groups plainly).
- SQL in an f-string, a ``.format`` template, via ``executescript`` or a cursor: seen by the SQL check.
- SQL written in lower case, and a database call through ``getattr``: seen (the check reads SQL
  case-blind in the shapes prose does not take).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import grimp
import pytest

from test_sql_owner import offences

ROOT = Path(__file__).resolve().parents[1]
# The one dynamic import the products may hold: the CLIs are assembled from group modules named by
# their own package (edge.cli -> edge.*, sync.centre.cli -> sync.centre.*), not from caller input.
DYNAMIC_ALLOWED: set[str] = set()


def dynamic_imports(path: Path, rel: str) -> list[str]:
    """Calls that import by name at run time (unseen by grimp and import-linter)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=rel)):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
            if name in ("import_module", "__import__", "run_module", "run_path"):
                found.append(f"{rel}:{node.lineno}: dynamic import {name}(...)")
    return found


def test_no_dynamic_imports_in_the_products():
    found = [o for pkg in ("edge", "sync") for path in sorted((ROOT / pkg).rglob("*.py"))
             if (rel := path.relative_to(ROOT).as_posix()) not in DYNAMIC_ALLOWED
             for o in dynamic_imports(path, rel)]
    assert not found, "imports the layer contracts cannot see (use a plain import):\n" + "\n".join(found)


def test_the_dynamic_import_check_sees_a_planted_one(tmp_path):
    planted = tmp_path / "planted.py"
    planted.write_text("import importlib\n"
                       "def f():\n"
                       "    return importlib.import_module('sync.centre.app')\n"
                       "def g():\n"
                       "    return __import__('sync.centre.review')\n", encoding="utf-8")
    assert [o.split(": ", 1)[0] for o in dynamic_imports(planted, "edge/planted.py")] == ["edge/planted.py:3",
                                                                                        "edge/planted.py:5"]


def test_a_lazy_import_inside_a_function_is_an_import_to_the_contracts(tmp_path, monkeypatch):
    pkg = tmp_path / "plantpkg"
    (pkg / "centre").mkdir(parents=True)
    (pkg / "__init__.py").write_text("", encoding="utf-8")
    (pkg / "centre" / "__init__.py").write_text("", encoding="utf-8")
    (pkg / "centre" / "app.py").write_text("x = 1\n", encoding="utf-8")
    (pkg / "counter.py").write_text("def f():\n    from plantpkg.centre.app import x\n    return x\n",
                                    encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    graph = grimp.build_graph("plantpkg", cache_dir=None)
    assert graph.direct_import_exists(importer="plantpkg.counter", imported="plantpkg.centre.app")
    sys.modules.pop("plantpkg", None)


@pytest.mark.parametrize("code", [
    'def f(db, t):\n    db.execute(f"SELECT * FROM {t}")\n',
    'def f(db, t):\n    q = "DELETE FROM {}".format(t)\n    return q\n',
    'def f(db):\n    db.executescript("x")\n',
    'def f(db):\n    cur = db.cursor()\n    cur.execute("x")\n',
    'def f(db):\n    return db.cursor().executemany("x", [])\n',
])
def test_the_sql_check_sees_planted_sql(tmp_path, code):
    planted = tmp_path / "planted.py"
    planted.write_text(code, encoding="utf-8")
    assert offences(planted, "edge/planted.py")


@pytest.mark.parametrize("code", [
    'def f(db, n):\n    run = db.execute\n    return run("update persons set balc = ?", (n,))\n',
    'def f(db):\n    return getattr(db, "exec" + "ute")("delete from items")\n',
])
def test_the_sql_check_sees_lower_case_sql(tmp_path, code):
    planted = tmp_path / "planted.py"
    planted.write_text(code, encoding="utf-8")
    assert offences(planted, "edge/planted.py")
