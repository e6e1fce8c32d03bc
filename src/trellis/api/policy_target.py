"""What a security or telemetry policy attaches to: a workload selector or a targetRef.

AuthorizationPolicy, RequestAuthentication and Telemetry share these fields (istio-notes §1).
`targetRef(s)` attach a policy to a Gateway API Gateway or a Service (waypoints); Trellis accepts
them so Istio YAML applies unchanged, but sidecars only honour `selector` (see policy_scope).
"""

from __future__ import annotations

from pydantic import Field

from trellis.api.base import ApiModel
from trellis.api.common import LabelSelector
from trellis.api.semantic_checks import Problems


class PolicyTargetReference(ApiModel):
    """A resource a policy attaches to, e.g. {kind: Gateway, group: gateway.networking.k8s.io}."""

    group: str | None = None
    kind: str
    name: str
    namespace: str | None = None


class TargetedPolicySpec(ApiModel):
    """The attachment fields common to AuthorizationPolicy, RequestAuthentication, Telemetry."""

    selector: LabelSelector | None = None
    target_ref: PolicyTargetReference | None = None
    target_refs: list[PolicyTargetReference] = Field(default_factory=list)

    @property
    def has_target_refs(self) -> bool:
        """True when the policy attaches by targetRef(s) rather than by workload selector."""
        return self.target_ref is not None or bool(self.target_refs)


def check_policy_target(spec: TargetedPolicySpec, problems: Problems) -> None:
    """Istio's rules: selector or targetRef(s), not both; targetRef or targetRefs, not both."""
    if spec.target_ref is not None and spec.target_refs:
        problems.append(("spec.targetRefs", "set targetRef or targetRefs, not both"))
    if spec.selector is not None and spec.has_target_refs:
        problems.append(("spec.selector", "set selector or targetRef(s), not both; keep one"))
    check_selector(spec.selector, problems)
    refs = [("spec.targetRef", spec.target_ref)] if spec.target_ref is not None else []
    refs += [(f"spec.targetRefs[{i}]", ref) for i, ref in enumerate(spec.target_refs)]
    for path, ref in refs:
        if ref is not None and not ref.kind:
            problems.append((f"{path}.kind", "kind is required, e.g. Gateway or Service"))
        if ref is not None and not ref.name:
            problems.append((f"{path}.name", "name is required; name the resource targeted"))


def check_selector(selector: LabelSelector | None, problems: Problems) -> None:
    """Label keys must be set, and neither keys nor values may use wildcards (Istio's CEL rule)."""
    if selector is None:
        return
    for key, value in selector.match_labels.items():
        path = f"spec.selector.matchLabels.{key}"
        if not key:
            problems.append(("spec.selector.matchLabels", "a label key is empty; name the label"))
        elif "*" in key or "*" in value:
            problems.append((path, "wildcards are not allowed in selector labels; write the label"))
