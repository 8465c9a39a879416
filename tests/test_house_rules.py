"""The house plan's size and import rules (docs/architecture.md), checked on the source.

Layering and cycles are import-linter's (``lint-imports``, contracts in pyproject.toml); these
are the rules it does not cover:

* no module over 400 lines, no page over 150;
* no function over 60 lines, except argument-parser builders (``build_parser``, ``add_*_parser``);
* no private name (``_x``) imported from another module;
* an import inside a function only to defer an optional or heavy dependency, with its reason in a
  ``# deferred: ...`` comment on the import's first line.

Run ``python tests/test_house_rules.py [FOLDER ...]`` to list every violation.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("signseg_core", "signseg_ui", "pages", "app.py")
MODULE_LINES, PAGE_LINES, FUNCTION_LINES = 400, 150, 60


def source_files(roots=SOURCES) -> list[Path]:
    files = []
    for root in roots:
        path = ROOT / root
        files += [path] if path.is_file() else sorted(path.rglob("*.py"))
    return files


def _is_parser_builder(name: str) -> bool:
    return name == "build_parser" or (name.startswith("add_") and name.endswith("_parser"))


def violations(path: Path) -> list[str]:
    """Every rule ``path`` breaks, one line each (``file:line: what``)."""
    text = path.read_text()
    lines = text.split("\n")
    rel = path.relative_to(ROOT)
    out = []
    limit = PAGE_LINES if rel.parts[0] == "pages" else MODULE_LINES
    if len(lines) - (lines[-1] == "") > limit:
        out.append(f"{rel}: {len(lines)} lines (at most {limit})")
    tree = ast.parse(text)
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            n = node.end_lineno - node.lineno + 1
            if n > FUNCTION_LINES and not _is_parser_builder(node.name):
                out.append(f"{rel}:{node.lineno}: function {node.name} has {n} lines "
                           f"(at most {FUNCTION_LINES})")
            for inner in ast.walk(node):
                if isinstance(inner, (ast.Import, ast.ImportFrom)) and \
                        "# deferred:" not in lines[inner.lineno - 1]:
                    out.append(f"{rel}:{inner.lineno}: import inside {node.name} without a "
                               "'# deferred: reason' comment")
        if isinstance(node, ast.ImportFrom):
            private = [a.name for a in node.names
                       if a.name.startswith("_") and not a.name.startswith("__")]
            if private:
                out.append(f"{rel}:{node.lineno}: imports private {private} from {node.module}")
    return out


def all_violations(roots=SOURCES) -> list[str]:
    return [v for f in source_files(roots) for v in violations(f)]


def test_the_house_rules_hold():
    found = all_violations()
    assert not found, "\n".join(found)


def test_the_checker_finds_each_kind_of_violation(tmp_path, monkeypatch):
    # a planted module breaking every rule once, checked by the same function
    body = "\n".join(f"    x{i} = {i}" for i in range(61))
    src = ("from signseg_core.store import _FORMAT\n\n\ndef f():\n    import json\n"
           f"{body}\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    path = tmp_path / "signseg_core" / "planted.py"
    path.parent.mkdir()
    path.write_text(src + "\n" * 400)
    found = violations(path)
    assert any("lines (at most 400)" in v for v in found)
    assert any("function f has 63 lines" in v for v in found)  # def + import + 61
    assert any("import inside f" in v for v in found)
    assert any("private ['_FORMAT']" in v for v in found)


if __name__ == "__main__":
    print("\n".join(all_violations(sys.argv[1:] or SOURCES)))
