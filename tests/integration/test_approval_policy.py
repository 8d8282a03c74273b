"""The chart's optional approver check (approvals.checkApprover): a ValidatingAdmissionPolicy
that refuses an approval answer naming anyone but the user who sends it (docs/approvals.md).

Rendered only: the platform has no kube-controller-manager to type-check the policy (its status
stays empty), and the apiserver enforces a new policy after an informer sync with no signal to
wait on. The same expression was checked by hand on the platform (an answer with another user's
name denied, one with the sender's name accepted)."""

from __future__ import annotations

from tests.integration.chart import find, one, render


def test_the_policy_is_off_by_default_and_scoped_to_the_operators_namespaces() -> None:
    assert find(render("kubesaga"), "ValidatingAdmissionPolicy") == []
    docs = render(
        "kubesaga",
        "--set",
        "approvals.checkApprover=true",
        "--set",
        "operator.namespaces={shop,billing}",
    )
    policy = one(docs, "ValidatingAdmissionPolicy")
    binding = one(docs, "ValidatingAdmissionPolicyBinding")
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert binding["spec"]["validationActions"] == ["Deny"]
    selector = binding["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"][0]
    assert selector["values"] == ["shop", "billing"]
    [rule] = policy["spec"]["matchConstraints"]["resourceRules"]
    assert rule["resources"] == ["sagas"]  # not sagas/status: the operator's writes pass
