"""The UI's pages keep to what the Content-Security-Policy and the escaping rule promise.

The CSP (``script-src 'self'; style-src 'self'``) would block an inline script or style in the
browser; these checks say which file broke it before a browser test does. Cluster data must
only reach the page through textContent or attribute values, never be parsed as HTML.
"""

from __future__ import annotations

import re

from kubesaga.ui.app import CSP, STATIC

HTML_SINKS = re.compile(
    r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|"
    r"createContextualFragment|DOMParser"
)


def test_the_static_folder_holds_the_pages_scripts_and_styles() -> None:
    names = {p.name for p in STATIC.iterdir()}
    assert {"index.html", "saga.html", "ui.css", "common.js", "list.js", "saga.js"} <= names


def test_pages_have_no_inline_scripts_styles_or_handlers() -> None:
    for page in STATIC.glob("*.html"):
        text = page.read_text()
        assert "<style" not in text, page.name
        assert not re.search(r"<script(?![^>]*\bsrc=)", text), f"{page.name}: inline script"
        assert not re.search(r"\son[a-z]+=", text), f"{page.name}: inline event handler"
        assert not re.search(r"\sstyle=", text), f"{page.name}: style attribute"
        assert not re.search(r"(src|href)=\"(https?:)?//", text), f"{page.name}: remote asset"


def test_scripts_never_parse_strings_as_html() -> None:
    for script in STATIC.glob("*.js"):
        found = HTML_SINKS.search(script.read_text())
        assert found is None, f"{script.name} uses {found.group(0) if found else ''}"


def test_the_policy_allows_nothing_inline_and_nothing_foreign() -> None:
    directives = dict(d.strip().split(" ", 1) for d in CSP.split(";"))
    assert directives["default-src"] == "'none'"
    for name in ("script-src", "style-src", "connect-src"):
        assert directives[name] == "'self'", name
    assert directives["frame-ancestors"] == "'none'"
