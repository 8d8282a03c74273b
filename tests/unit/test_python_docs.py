"""docs/python.md stays true to the code: its Python parses, it imports only public names, and
its FastAPI excerpt is the tested example (``examples/fastapi_app.py``, run on the platform by
``tests/integration/test_python_docs.py``) line for line, docstrings left out."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import kubesaga

REPO = Path(__file__).resolve().parents[2]
PAGE = (REPO / "docs" / "python.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```python\n(.*?)```", PAGE, flags=re.DOTALL)


def test_every_python_block_parses() -> None:
    assert len(BLOCKS) >= 8
    for block in BLOCKS:
        ast.parse(block)  # the parser accepts top-level await, as the page's async snippets use


def test_the_page_imports_only_public_names() -> None:
    for block in BLOCKS:
        for names in re.findall(r"^from kubesaga import (.+)$", block, flags=re.MULTILINE):
            for name in names.split(","):
                assert name.strip() in kubesaga.__all__, name


def test_the_fastapi_excerpt_is_the_tested_example() -> None:
    [excerpt] = [b for b in BLOCKS if b.startswith("def create_app(")]
    example = {
        line.strip()
        for line in (REPO / "examples" / "fastapi_app.py").read_text(encoding="utf-8").splitlines()
    }
    missing = [line for line in excerpt.splitlines() if line.strip() not in example]
    assert not missing, missing
