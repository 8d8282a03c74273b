"""Spec-level CEL rules that cost nothing on status writes.

The apiserver evaluates every CEL rule of the whole object on every update, status writes
included: the operator's one write per step paid for re-checking a spec that cannot have
changed (``spec.steps`` is immutable, and a ``/status`` PUT never changes the spec). Profiled
(``go tool pprof`` of kube-apiserver during status writes, see bench/README.md), the CEL rules
were ~15% of the apiserver's CPU, two thirds of it the ``self.steps == oldSelf.steps``
immutability check, which must stay, and the rest the other spec rules.

So every spec-level rule that does not itself compare with ``oldSelf`` is rewritten here, in the
generated CRD only (the models keep the rule as written):

- a rule that reads only immutable fields (``spec.steps``) is checked when the saga is created:
  ``oldSelf.hasValue() || (<rule>)`` with ``optionalOldSelf: true``. On an update the
  immutability rule already guarantees the same steps, which passed this rule at creation;
- a rule that reads mutable fields too is checked only when one of those changed:
  ``oldSelf.hasValue() && <each read field unchanged> || (<rule>)``;
- a rule that reads ``self`` whole (not ``self.<field>``) is left alone (always checked).

Messages, ``messageExpression`` and ``fieldPath`` are kept, so ``kubectl apply`` reports exactly
what it did before. To add a rule: write it in the model's ``json_schema_extra`` as usual, naming
fields as ``self.<field>``; regenerate the CRD. Nothing else to do.
"""

from __future__ import annotations

import re
from typing import Any

IMMUTABLE_SPEC_FIELDS = frozenset({"steps"})
"""Spec fields no update may change (the CRD's own transition rule enforces it)."""

_FIELD = re.compile(r"\bself\.([A-Za-z_][A-Za-z0-9_]*)")
_WHOLE_SELF = re.compile(r"\bself\b(?!\.)")


def read_fields(rule: str) -> frozenset[str] | None:
    """The top-level spec fields ``rule`` reads, or None when it reads ``self`` as a whole."""
    if _WHOLE_SELF.search(rule):
        return None
    return frozenset(_FIELD.findall(rule))


def _unchanged(field: str) -> str:
    old = f"oldSelf.value().{field}"
    return f"(has(self.{field}) == has({old}) && (!has(self.{field}) || self.{field} == {old}))"


def guard(rule: dict[str, Any]) -> dict[str, Any]:
    """``rule`` as evaluated only on create, or when a field it reads changes."""
    text = str(rule["rule"])
    if "oldSelf" in text:
        return rule  # a transition rule: it is about the change itself
    fields = read_fields(text)
    if fields is None:
        return rule
    conditions = ["oldSelf.hasValue()"] + [
        _unchanged(field) for field in sorted(fields - IMMUTABLE_SPEC_FIELDS)
    ]
    return {**rule, "rule": f"{' && '.join(conditions)} || ({text})", "optionalOldSelf": True}


def guard_spec_rules(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec schema with every rule of its own ``x-kubernetes-validations`` guarded."""
    rules = spec.get("x-kubernetes-validations")
    if not rules:
        return spec
    return {**spec, "x-kubernetes-validations": [guard(rule) for rule in rules]}
