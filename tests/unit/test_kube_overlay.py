"""Profiles, the IstioOperator-like overlay and `--set`: merge order, paths, clear errors."""

from __future__ import annotations

import pytest

from trellis.errors import ValidationError
from trellis.kube.overlay import apply_set, build_spec, load_overlay, merge
from trellis.kube.spec import Profile


def test_default_profile_has_ingress_on_and_egress_off() -> None:
    spec = build_spec()
    assert spec.profile is Profile.default
    assert [(g.name, g.enabled) for g in spec.components.ingressGateways] == [
        ("istio-ingressgateway", True)
    ]
    assert [(g.name, g.enabled) for g in spec.components.egressGateways] == [
        ("istio-egressgateway", False)
    ]
    assert spec.meshConfig.defaultConfig.tracing.sampling == 1.0


def test_demo_profile_adds_egress_console_tracing_and_full_sampling() -> None:
    spec = build_spec(profile="demo")
    assert spec.components.egressGateways[0].enabled
    assert spec.values.console.enabled and spec.values.tracing.enabled
    assert spec.meshConfig.defaultConfig.tracing.sampling == 100.0
    assert spec.meshConfig.accessLogFile == "/dev/stdout"


def test_minimal_profile_turns_every_gateway_off() -> None:
    spec = build_spec(profile="minimal")
    gateways = [*spec.components.ingressGateways, *spec.components.egressGateways]
    assert gateways and not any(g.enabled for g in gateways)
    assert spec.components.pilot.enabled


def test_set_with_list_index_reaches_the_profile_gateway() -> None:
    spec = build_spec(sets=["components.ingressGateways[0].enabled=false"])
    assert not spec.components.ingressGateways[0].enabled


def test_set_values_are_converted_by_the_model_and_versions_stay_strings() -> None:
    spec = build_spec(
        sets=[
            "components.ingressGateways[0].k8s.replicaCount=3",
            "values.global.tag=1.20",
            "meshConfig.defaultConfig.tracing.sampling=12.5",
        ]
    )
    assert spec.components.ingressGateways[0].k8s.replicaCount == 3
    assert spec.values.global_.tag == "1.20"
    assert spec.meshConfig.defaultConfig.tracing.sampling == 12.5


def test_set_at_the_end_of_a_list_adds_an_item() -> None:
    spec = build_spec(
        sets=[
            "components.ingressGateways[1].name=internal-gateway",
            "components.ingressGateways[1].label.istio=internal",
        ]
    )
    assert [g.name for g in spec.components.ingressGateways] == [
        "istio-ingressgateway",
        "internal-gateway",
    ]
    assert spec.components.ingressGateways[1].label == {"istio": "internal"}


def test_set_past_the_end_of_a_list_is_an_error() -> None:
    with pytest.raises(ValidationError, match=r"no list item \[5\]"):
        build_spec(sets=["components.ingressGateways[5].enabled=false"])


def test_unknown_key_is_reported_with_its_path() -> None:
    with pytest.raises(ValidationError) as caught:
        build_spec(sets=["components.ingressGateways[0].k8s.replicas=2"])
    assert "components.ingressGateways[0].k8s.replicas: unknown key" in str(caught.value)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ValidationError) as caught:
        build_spec(sets=["values.global.tagg=1", "values.tracing.maxTraces=many"])
    text = str(caught.value)
    assert "values.global.tagg: unknown key" in text
    assert "values.tracing.maxTraces:" in text


def test_set_without_equals_is_an_error() -> None:
    with pytest.raises(ValidationError, match="write PATH=VALUE"):
        apply_set({}, "values.global.hub")


def test_overlay_document_gateways_merge_by_name() -> None:
    overlay = """
apiVersion: install.istio.io/v1alpha1
kind: IstioOperator
spec:
  components:
    ingressGateways:
    - name: istio-ingressgateway
      k8s:
        replicaCount: 2
    - name: second-gateway
      label: {istio: second}
"""
    spec = build_spec(overlays=[overlay])
    first, second = spec.components.ingressGateways
    assert first.name == "istio-ingressgateway" and first.enabled
    assert first.k8s.replicaCount == 2
    assert first.k8s.service is not None  # kept from the profile: maps merge key by key
    assert second.name == "second-gateway"


def test_overlay_may_be_a_bare_spec() -> None:
    assert load_overlay("profile: demo\n") == {"profile": "demo"}
    assert build_spec(overlays=["profile: demo\n"]).profile is Profile.demo


def test_later_overlays_win_and_sets_win_over_overlays() -> None:
    spec = build_spec(
        overlays=["values: {global: {hub: one}}", "values: {global: {hub: two}}"],
        sets=["values.global.hub=three"],
    )
    assert spec.values.global_.hub == "three"


def test_profile_from_set_is_used() -> None:
    assert build_spec(sets=["profile=minimal"]).profile is Profile.minimal


def test_profile_flag_conflicting_with_overlay_is_an_error() -> None:
    with pytest.raises(ValidationError, match="conflicts"):
        build_spec(profile="demo", overlays=["profile: minimal"])


def test_unknown_profile_names_the_choices() -> None:
    with pytest.raises(ValidationError, match="default, demo, minimal"):
        build_spec(profile="ambient")


def test_overlay_that_is_not_a_mapping_is_an_error() -> None:
    with pytest.raises(ValidationError, match="mapping"):
        load_overlay("- a\n- b\n")


def test_gateway_without_name_in_overlay_is_an_error() -> None:
    with pytest.raises(ValidationError, match="needs a `name`"):
        merge({"ingressGateways": []}, {"ingressGateways": [{"enabled": False}]})
