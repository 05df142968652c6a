"""Only the storage modules speak SQL: the centre's ``sync/centre/store/`` and the edge's storage modules.

Everything else in ``edge/`` and ``sync/`` reaches a database through their repositories. The check
reads the code with :mod:`ast` (docstrings and comments do not count): a call named like a database
call (``execute``, ``executemany``, ``executescript``, ``query``) or a string literal that reads as SQL
is a failure outside the allowed files.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("edge", "sync")
ALLOWED_DIRS = ("sync/centre/store/",)
ALLOWED_FILES = {
    "edge/journal/store.py",    # the journal's storage
    "edge/journal/schema.py",   # the journal's migrations
    "edge/cache/store.py",      # the catalogue/person cache's storage
    "edge/storage.py",          # the edge's shared transaction + migration helper
    "edge/db.py",               # (the same helper, if it is named so)
    "edge/his/store.py",        # the HIS drop-in's msgid and visit references (his.db)
    "edge/counter/prices.py",   # the site's own price list (prices.db)
    "edge/counter/operators.py",  # the counter's operators (operators.db)
}
DB_CALLS = {"execute", "executemany", "executescript", "query"}
SQL = re.compile(r"\bSELECT\s|\bINSERT\s+INTO\b|\bUPDATE\s+\w+\s+SET\b|\bUPDATE\s|\bDELETE\s+FROM\b|"
                 r"\bCREATE\s+(TABLE|INDEX|UNIQUE\s+INDEX)\b|\bALTER\s+TABLE\b|\bDROP\s+TABLE\b")
# Lower-case SQL counts too, but only in shapes English prose does not take ("select a reader" is not
# "select x from"), so messages and help texts do not trip the check.
SQL_ANY_CASE = re.compile(r"\bselect\s+[\w*().,\s]+?\s+from\s+\w|\binsert\s+into\s+\w+|\bupdate\s+\w+\s+set\s+\w|"
                          r"\bdelete\s+from\s+\w|\bcreate\s+(table|index|unique\s+index)\b|\balter\s+table\b|"
                          r"\bdrop\s+table\b", re.IGNORECASE)


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the string constants that are docstrings or bare string statements."""
    out: set[int] = set()
    for node in ast.walk(tree):
        for stmt in getattr(node, "body", []) if isinstance(getattr(node, "body", None), list) else []:
            if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str):
                out.add(id(stmt.value))
    return out


def _const_text(node: ast.AST) -> str | None:
    """The text of a string constant, or of constants joined with + ("exec" + "ute"); None otherwise."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _const_text(node.left), _const_text(node.right)
        return left + right if left is not None and right is not None else None
    return None


def offences(path: Path, rel: str) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=rel)
    docs = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
            if name in DB_CALLS:
                found.append(f"{rel}:{node.lineno}: database call .{name}(...)")
            elif name == "getattr" and len(node.args) > 1 and _const_text(node.args[1]) in DB_CALLS:
                # getattr(db, "exec" + "ute") or getattr(db, "execute"): a database call by another name.
                found.append(f"{rel}:{node.lineno}: database call through getattr(...)")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            if SQL.search(node.value) or SQL_ANY_CASE.search(node.value):
                found.append(f"{rel}:{node.lineno}: SQL in a string: {node.value[:60]!r}")
    return found


def files():
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel in ALLOWED_FILES or rel.startswith(ALLOWED_DIRS):
                continue
            yield path, rel


def test_no_sql_outside_the_storage_modules():
    found = [o for path, rel in files() for o in offences(path, rel)]
    assert not found, "SQL outside the storage modules (use or extend a repository):\n" + "\n".join(found)


def test_the_check_sees_sql_and_ignores_docstrings(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text('"""SELECT * FROM docs is prose here."""\n'
                      'def f(db, n):\n'
                      '    """UPDATE t SET x = 1 in a docstring does not count."""\n'
                      '    db.execute("UPDATE persons SET balc = ?", (n,))\n'
                      '    return f"SELECT x FROM t WHERE n = {n}"\n', encoding="utf-8")
    found = offences(sample, "sample.py")
    assert [o.split(": ", 1)[1][:20] for o in found] == ["database call .execu", "SQL in a string: 'UP",
                                                         "SQL in a string: 'SE"]
    assert all(":4:" in o or ":5:" in o for o in found)


def test_the_allowed_storage_modules_exist_or_are_future_names():
    # A renamed storage module must be renamed here too, or its SQL would go unchecked elsewhere.
    present = [f for f in ALLOWED_FILES if (ROOT / f).exists()]
    assert "edge/journal/store.py" in present and "edge/cache/store.py" in present
    assert (ROOT / "sync/centre/store").is_dir()
