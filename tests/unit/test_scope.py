"""Which namespaces an operator limited by KUBESAGA_NAMESPACES accepts results for."""

from __future__ import annotations

import pytest

from kubesaga.operator.scope import watches


@pytest.mark.parametrize(
    ("namespace", "patterns", "expected"),
    [
        ("shop", [], True),
        ("shop", ["shop"], True),
        ("billing", ["shop"], False),
        ("shop-eu", ["shop-*"], True),
        ("shop", ["billing", "shop"], True),
        ("shop", ["!billing"], True),
        ("billing", ["!billing"], False),
    ],
)
def test_namespace_is_watched_as_kopf_would_watch_it(
    namespace: str, patterns: list[str], expected: bool
) -> None:
    assert watches(namespace, patterns) is expected
