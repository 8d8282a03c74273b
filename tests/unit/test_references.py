"""Comments and docstrings of the operator package name only files that are in the repository.

A reference to a file that is not there (a design note never committed, a module since renamed)
sends the reader looking for what does not exist.
"""

from __future__ import annotations

import ast
import io
import re
import subprocess
import tokenize
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "operator/kubesaga"
FILE_NAME = re.compile(r"(?<![\w./-])[\w./-]*\w\.(?:md|py|sh|yaml|toml|json)\b")
ELSEWHERE = {"patterns/master.py"}
"""Files of other projects, named with their project next to them (aio-pika's)."""


def prose(text: str) -> Iterator[tuple[int, str]]:
    """(line, text) of every comment and docstring."""
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type == tokenize.COMMENT:
            yield token.start[0], token.string
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            doc = ast.get_docstring(node, clean=False)
            if doc is not None and node.body:
                yield node.body[0].lineno, doc


def test_files_named_in_comments_and_docstrings_exist() -> None:
    listing = subprocess.run(
        ["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    ).stdout.split()
    if not listing:
        pytest.skip("not a git checkout")
    names = {Path(f).name for f in listing}
    missing = []
    for source in (f for f in listing if f.startswith(PACKAGE) and f.endswith(".py")):
        folder = (REPO_ROOT / source).parent
        for line, text in prose((REPO_ROOT / source).read_text(encoding="utf-8")):
            for ref in FILE_NAME.findall(text):
                if not (
                    (REPO_ROOT / ref).exists()
                    or (folder / ref).exists()
                    or ("/" not in ref and ref in names)
                    or ref in ELSEWHERE
                ):
                    missing.append(f"{source}:{line}: {ref}")
    assert not missing, "named but not in the repository:\n" + "\n".join(missing)
