"""Installer manifests and the Helm chart, validated against Kubernetes 1.30's schemas.

The chart is rendered by Helm's own template engine (helm-python-sdk binds Helm's Go SDK),
so what is tested is what `helm install` would send.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml
from tests.kube_schema import assert_valid, schema_problem

from trellis.errors import ValidationError
from trellis.kube.crds import ISTIO_KINDS
from trellis.kube.manifests import render_objects, render_yaml
from trellis.kube.overlay import build_spec

CHART = Path(__file__).resolve().parents[2] / "charts" / "trellis"
PROFILES = ["default", "demo", "minimal"]


def _by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def _deployments(objects: list[dict[str, Any]]) -> set[str]:
    return set(_by_kind(objects, "Deployment"))


@pytest.mark.parametrize("profile", PROFILES)
def test_every_object_of_every_profile_is_valid_kubernetes(profile: str) -> None:
    assert_valid(render_objects(build_spec(profile=profile)))


def test_overlays_and_sets_still_render_valid_objects() -> None:
    spec = build_spec(
        profile="demo",
        overlays=["components: {ingressGateways: [{name: extra-gateway, label: {istio: extra}}]}"],
        sets=[
            "components.ingressGateways[0].k8s.replicaCount=3",
            "components.ingressGateways[0].k8s.resources.requests.cpu=500m",
            "components.egressGateways[0].k8s.service.type=NodePort",
            "values.console.rbac.allowedRoles[0]=view",
        ],
    )
    objects = render_objects(spec)
    assert_valid(objects)
    deployments = _by_kind(objects, "Deployment")
    assert deployments["istio-ingressgateway"]["spec"]["replicas"] == 3
    assert "extra-gateway" in deployments


def test_schema_validation_really_rejects_a_broken_object() -> None:
    deployment = _by_kind(render_objects(build_spec()), "Deployment")["trellisd"]
    deployment["spec"]["replicas"] = "two"
    assert schema_problem(deployment)
    deployment["spec"]["replicas"] = 1
    deployment["spec"]["template"]["spec"]["contianers"] = []
    assert schema_problem(deployment)  # strict: unknown fields are errors


def test_profiles_install_what_they_promise() -> None:
    default = render_objects(build_spec(profile="default"))
    demo = render_objects(build_spec(profile="demo"))
    minimal = render_objects(build_spec(profile="minimal"))
    assert _deployments(default) == {"trellisd", "istio-ingressgateway"}
    assert _deployments(demo) == {
        "trellisd",
        "istio-ingressgateway",
        "istio-egressgateway",
        "kiali",
        "tracing",
    }
    assert _deployments(minimal) == {"trellisd"}


def test_crds_cover_istios_api_with_istios_versions() -> None:
    crds = _by_kind(render_objects(build_spec()), "CustomResourceDefinition")
    expected = {f"{k.plural}.{k.group}" for k in ISTIO_KINDS}
    assert set(crds) == expected and len(expected) == 11
    vs = crds["virtualservices.networking.istio.io"]["spec"]
    assert [v["name"] for v in vs["versions"]] == ["v1", "v1alpha3", "v1beta1"]
    assert [v["name"] for v in vs["versions"] if v["storage"]] == ["v1alpha3"]
    for crd in crds.values():
        assert sum(v["storage"] for v in crd["spec"]["versions"]) == 1
        assert all(v["served"] for v in crd["spec"]["versions"])


def test_trellisd_service_exposes_xds_metrics_and_webhook_ports() -> None:
    service = _by_kind(render_objects(build_spec()), "Service")["trellisd"]
    ports = {p["port"]: p["targetPort"] for p in service["spec"]["ports"]}
    assert ports == {15010: 15010, 15012: 15010, 15014: 15014, 443: 15017}  # one xDS port, TLS


def test_ingress_gateway_is_a_load_balancer_with_status_http_https() -> None:
    service = _by_kind(render_objects(build_spec()), "Service")["istio-ingressgateway"]
    assert service["spec"]["type"] == "LoadBalancer"
    assert {p["port"] for p in service["spec"]["ports"]} == {80, 443, 15021}
    assert service["spec"]["selector"]["istio"] == "ingressgateway"


def test_images_come_from_hub_and_tag() -> None:
    objects = render_objects(
        build_spec(sets=["values.global.hub=registry.local/mesh", "values.global.tag=9.9"])
    )
    deployments = _by_kind(objects, "Deployment")
    assert deployments["trellisd"]["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "registry.local/mesh/trellisd:9.9"
    )
    gateway = deployments["istio-ingressgateway"]["spec"]["template"]["spec"]["containers"][0]
    assert gateway["image"] == "registry.local/mesh/proxyv2:9.9"


def test_demo_samples_every_trace_and_sends_traces_to_the_store() -> None:
    trellisd = _by_kind(render_objects(build_spec(profile="demo")), "Deployment")["trellisd"]
    args = trellisd["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--trace-sampling") + 1] == "100"
    assert args[args.index("--tracing-address") + 1] == "tracing.istio-system.svc:4317"


def test_console_runs_as_kiali_with_the_allowed_roles() -> None:
    objects = render_objects(
        build_spec(profile="demo", sets=["values.console.rbac.allowedRoles[0]=view"])
    )
    assert "kiali" in _by_kind(objects, "ServiceAccount")
    console = _by_kind(objects, "Deployment")["kiali"]["spec"]["template"]["spec"]
    assert console["serviceAccountName"] == "kiali"
    args = console["containers"][0]["args"]
    assert args[args.index("--console-roles") + 1] == "view"


def test_mesh_roles_aggregate_into_admin_edit_view() -> None:
    roles = _by_kind(render_objects(build_spec()), "ClusterRole")
    for role, writes in (("admin", True), ("edit", True), ("view", False)):
        mesh_role = roles[f"trellis-mesh-{role}"]
        assert (
            mesh_role["metadata"]["labels"][f"rbac.authorization.k8s.io/aggregate-to-{role}"]
            == "true"
        )
        verbs = set(mesh_role["rules"][0]["verbs"])
        assert ("create" in verbs) is writes and {"get", "list", "watch"} <= verbs


def _console_access_labels(objects: list[dict[str, Any]]) -> set[str]:
    role = _by_kind(objects, "ClusterRole")["trellis-console-access"]
    return {
        k
        for k in role["metadata"]["labels"]
        if k.startswith("rbac.authorization.k8s.io/aggregate-to")
    }


def test_console_access_is_cluster_admin_only_by_default() -> None:
    assert _console_access_labels(render_objects(build_spec(profile="demo"))) == set()


def test_console_access_is_granted_to_roles_listed_in_values() -> None:
    spec = build_spec(
        profile="demo", overlays=["values: {console: {rbac: {allowedRoles: [edit, view]}}}"]
    )
    assert _console_access_labels(render_objects(spec)) == {
        "rbac.authorization.k8s.io/aggregate-to-edit",
        "rbac.authorization.k8s.io/aggregate-to-view",
    }


def test_injection_webhook_selects_labelled_namespaces_and_revisions() -> None:
    objects = render_objects(build_spec())
    (config,) = _by_kind(objects, "MutatingWebhookConfiguration").values()
    selectors = [w["namespaceSelector"] for w in config["webhooks"]]
    assert {"matchLabels": {"istio-injection": "enabled"}} in selectors
    assert any(
        {"key": "istio.io/rev", "operator": "Exists"} in s.get("matchExpressions", [])
        for s in selectors
    )
    for webhook in config["webhooks"]:
        assert webhook["clientConfig"]["service"] == {
            "name": "trellisd",
            "namespace": "istio-system",
            "path": "/inject",
            "port": 443,
        }
    (validating,) = _by_kind(objects, "ValidatingWebhookConfiguration").values()
    assert validating["webhooks"][0]["clientConfig"]["service"]["path"] == "/validate"


def test_webhooks_come_after_the_service_they_call() -> None:
    kinds = [o["kind"] for o in render_objects(build_spec())]
    assert kinds[0] == "Namespace"
    assert kinds.index("MutatingWebhookConfiguration") > kinds.index("Service")


def test_cli_manifest_generate_prints_the_same_yaml() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from trellis.cli.main import main; main()",
            "manifest",
            "generate",
            "--profile",
            "demo",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert done.stdout == render_yaml(build_spec(profile="demo"))


def test_cli_manifest_generate_reports_an_unknown_key_without_traceback() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from trellis.cli.main import main; main()",
            "manifest",
            "generate",
            "--set",
            "values.global.hubb=x",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "values.global.hubb: unknown key" in done.stderr
    assert "Traceback" not in done.stderr


# --- the Helm chart, rendered by Helm's engine ---------------------------------------------


def _render_chart(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    with helm_python.Chart.load(str(CHART)) as chart:
        rendered = chart.render(
            values or {}, name="trellis", namespace="istio-system", is_install=True
        )
    return [
        doc
        for path, text in sorted(rendered.items())
        if not path.endswith("NOTES.txt")
        for doc in yaml.safe_load_all(text)
        if doc
    ]


def _overlays(objects: list[dict[str, Any]]) -> list[str]:
    data = _by_kind(objects, "ConfigMap")["trellis-installer-overlay"]["data"]
    return [data["values-overlay.yaml"], data["user-overlay.yaml"]]


def test_chart_values_have_rancher_istio_shape() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["overlayFile"] == ""
    assert values["installer"]["releaseMirror"]["enabled"] is False
    assert values["ingressGateways"]["enabled"] is True
    assert values["egressGateways"]["enabled"] is False
    assert values["console"]["auth"]["strategy"] == "token"
    assert values["console"]["rbac"]["allowedRoles"] == []
    assert values["tracing"]["maxTraces"] > 0


def test_chart_renders_valid_objects_with_default_values() -> None:
    objects = _render_chart()
    assert objects
    assert_valid(objects)


def test_chart_overlay_installs_what_the_values_say() -> None:
    objects = _render_chart()
    rendered = render_objects(build_spec(overlays=_overlays(objects)))
    assert_valid(rendered)
    assert _deployments(rendered) == {"trellisd", "istio-ingressgateway"}


def test_chart_values_and_overlay_file_reach_the_installer() -> None:
    values = {
        "egressGateways": {"enabled": True},
        "console": {"enabled": True, "rbac": {"allowedRoles": ["admin"]}},
        "tracing": {"enabled": True, "maxTraces": 123},
        "overlayFile": "spec:\n  components:\n    ingressGateways:\n    - name: istio-ingressgateway\n      k8s: {replicaCount: 2}\n",
    }
    rendered = render_objects(build_spec(overlays=_overlays(_render_chart(values))))
    assert_valid(rendered)
    assert _deployments(rendered) == {
        "trellisd",
        "istio-ingressgateway",
        "istio-egressgateway",
        "kiali",
        "tracing",
    }
    assert _by_kind(rendered, "Deployment")["istio-ingressgateway"]["spec"]["replicas"] == 2
    tracing = _by_kind(rendered, "Deployment")["tracing"]["spec"]["template"]["spec"]["containers"][
        0
    ]
    assert tracing["args"][tracing["args"].index("--max-traces") + 1] == "123"
    assert _console_access_labels(rendered) == {"rbac.authorization.k8s.io/aggregate-to-admin"}


def test_chart_rejects_a_misspelt_value_by_its_schema() -> None:
    with pytest.raises(helm_python.HelmValuesError, match=r"/console/rbac.*allowedRole"):
        _render_chart({"console": {"rbac": {"allowedRole": ["admin"]}}})
    with pytest.raises(helm_python.HelmValuesError, match="admin', 'edit', 'view"):
        _render_chart({"console": {"rbac": {"allowedRoles": ["owner"]}}})


def test_chart_overlay_file_with_a_misspelt_key_fails_in_the_installer() -> None:
    objects = _render_chart({"overlayFile": "spec:\n  values:\n    tracing: {maxTrace: 5}\n"})
    with pytest.raises(ValidationError, match=r"values\.tracing\.maxTrace: unknown key"):
        build_spec(overlays=_overlays(objects))


def _job_args(objects: list[dict[str, Any]], name: str) -> list[str]:
    job = _by_kind(objects, "Job")[name]
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["trellis"]
    return list(container["args"])


def test_chart_runs_the_installer_after_install_and_upgrade() -> None:
    objects = _render_chart()
    job = _by_kind(objects, "Job")["trellis-install"]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    assert _job_args(objects, "trellis-install") == [
        "install",
        "--from-job",
        "trellis-install",
        "--verify-timeout",
        "300",
        "-f",
        "/overlay/values-overlay.yaml",
        "-f",
        "/overlay/user-overlay.yaml",
    ]
    pod = job["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "trellis-installer"
    assert pod["volumes"][0]["configMap"]["name"] == "trellis-installer-overlay"
    assert pod["containers"][0]["image"] == "ghcr.io/trellis-mesh/trellis:0.1.0"


def test_chart_uninstalls_before_delete_and_purges_only_when_asked() -> None:
    objects = _render_chart()
    job = _by_kind(objects, "Job")["trellis-uninstall"]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-delete"
    assert _job_args(objects, "trellis-uninstall") == [
        "uninstall",
        "--namespace",
        "istio-system",
        "--if-installed",
    ]
    purging = _render_chart({"installer": {"purgeOnDelete": True}})
    assert _job_args(purging, "trellis-uninstall")[-1] == "--purge"


def test_chart_installer_image_follows_hub_and_tag() -> None:
    objects = _render_chart({"global": {"hub": "registry.local/mesh", "tag": "2.0"}})
    pod = _by_kind(objects, "Job")["trellis-install"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == "registry.local/mesh/trellis:2.0"


def test_chart_installer_is_bound_to_cluster_admin() -> None:
    binding = _by_kind(_render_chart(), "ClusterRoleBinding")["trellis-installer-istio-system"]
    assert binding["roleRef"]["name"] == "cluster-admin"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "trellis-installer", "namespace": "istio-system"}
    ]
