"""Sidecar injection for files (`trellis kube-inject`), a pure function the webhook reuses."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from typing import Any

import pytest
import yaml
from tests.kube_schema import assert_valid

from trellis.kube.capture_init import parse_options
from trellis.kube.inject import (
    STATUS_KEY,
    InjectSettings,
    inject_documents,
    inject_object,
    inject_pod_template,
    needs_injection,
)
from trellis.kube.overlay import build_spec

SETTINGS = InjectSettings.from_spec(build_spec())


def _pod_spec(containers_port: int = 9080) -> dict[str, Any]:
    return {
        "containers": [
            {
                "name": "reviews",
                "image": "docker.io/istio/examples-bookinfo-reviews-v1:1.20.1",
                "ports": [{"containerPort": containers_port}],
            }
        ]
    }


def _deployment(**annotations: str) -> dict[str, Any]:
    template_meta: dict[str, Any] = {"labels": {"app": "reviews", "version": "v1"}}
    if annotations:
        template_meta["annotations"] = dict(annotations)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "reviews-v1"},
        "spec": {
            "selector": {"matchLabels": {"app": "reviews", "version": "v1"}},
            "template": {"metadata": template_meta, "spec": _pod_spec()},
        },
    }


def _pod() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "sleep", "labels": {"app": "sleep"}},
        "spec": _pod_spec(80),
    }


def _names(items: list[dict[str, Any]]) -> list[str]:
    return [item["name"] for item in items]


def test_deployment_gets_proxy_init_container_and_volumes() -> None:
    original = _deployment()
    injected = inject_object(original, SETTINGS)
    spec = injected["spec"]["template"]["spec"]
    assert _names(spec["containers"]) == ["reviews", "istio-proxy"]
    assert _names(spec["initContainers"]) == ["istio-init"]
    assert {"istio-data", "istio-envoy", "istio-token", "istiod-ca-cert"} <= set(
        _names(spec["volumes"])
    )
    assert original == _deployment()  # pure: the input is not changed
    assert_valid([injected])


def test_proxy_container_serves_prometheus_and_readiness() -> None:
    spec = inject_object(_deployment(), SETTINGS)["spec"]["template"]["spec"]
    proxy = spec["containers"][1]
    assert {"name": "http-envoy-prom", "containerPort": 15090, "protocol": "TCP"} in proxy["ports"]
    assert proxy["readinessProbe"]["httpGet"] == {"path": "/healthz/ready", "port": 15021}
    assert proxy["image"] == "ghcr.io/trellis-mesh/proxyv2:0.1.0"
    assert proxy["securityContext"]["runAsUser"] == 1337
    args = proxy["args"]
    assert args[args.index("--app-ports") + 1] == "9080"
    assert args[args.index("--xds-address") + 1] == "trellisd.istio-system.svc:15012"


def test_init_container_has_only_the_network_capabilities_it_needs() -> None:
    spec = inject_object(_deployment(), SETTINGS)["spec"]["template"]["spec"]
    init = spec["initContainers"][0]
    assert init["securityContext"]["capabilities"] == {
        "add": ["NET_ADMIN", "NET_RAW"],
        "drop": ["ALL"],
    }
    assert init["args"][:2] == ["-m", "trellis.kube.capture_init"]


def test_capture_exclusions_come_from_pod_annotations() -> None:
    deployment = _deployment(
        **{
            "traffic.sidecar.istio.io/excludeInboundPorts": "8081,8082",
            "traffic.sidecar.istio.io/excludeOutboundIPRanges": "10.0.0.0/8",
        }
    )
    init = inject_object(deployment, SETTINGS)["spec"]["template"]["spec"]["initContainers"][0]
    options = parse_options(init["args"][2:])
    assert options.exclude_inbound_ports == (8081, 8082)
    assert options.exclude_outbound_cidrs == ("10.0.0.0/8",)
    assert options.proxy_uid == 1337


def test_pod_labels_and_status_annotation_are_added() -> None:
    template = inject_object(_deployment(), SETTINGS)["spec"]["template"]
    labels = template["metadata"]["labels"]
    assert labels["security.istio.io/tlsMode"] == "istio"
    assert labels["service.istio.io/canonical-name"] == "reviews"
    assert labels["service.istio.io/canonical-revision"] == "v1"
    status = json.loads(template["metadata"]["annotations"][STATUS_KEY])
    assert status["containers"] == ["istio-proxy"]
    assert (
        template["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"] == "reviews"
    )


def test_a_bare_pod_is_injected() -> None:
    injected = inject_object(_pod(), SETTINGS)
    assert _names(injected["spec"]["containers"]) == ["reviews", "istio-proxy"]
    assert_valid([injected])


def test_injecting_twice_changes_nothing() -> None:
    once = inject_documents([_deployment(), _pod()], SETTINGS)
    twice = inject_documents(copy.deepcopy(once), SETTINGS)
    assert twice == once


def test_a_pod_that_already_has_istio_proxy_is_left_alone() -> None:
    pod = _pod()
    pod["spec"]["containers"].append({"name": "istio-proxy", "image": "someone/else"})
    assert inject_object(pod, SETTINGS) == pod


@pytest.mark.parametrize("where", ["annotations", "labels"])
@pytest.mark.parametrize("value", ["false", "False", "no"])
def test_sidecar_inject_false_opts_out(where: str, value: str) -> None:
    deployment = _deployment()
    deployment["spec"]["template"]["metadata"].setdefault(where, {})["sidecar.istio.io/inject"] = (
        value
    )
    assert inject_object(deployment, SETTINGS) == deployment


def test_host_network_pods_are_not_injected() -> None:
    pod = _pod()
    pod["spec"]["hostNetwork"] = True
    assert not needs_injection(pod)


@pytest.mark.parametrize("kind", ["StatefulSet", "DaemonSet", "Job"])
def test_other_workload_kinds_are_injected(kind: str) -> None:
    obj = _deployment()
    obj["kind"] = kind
    if kind == "Job":
        obj["spec"] = {"template": obj["spec"]["template"]}
        obj["apiVersion"] = "batch/v1"
        obj["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    if kind == "StatefulSet":
        obj["spec"]["serviceName"] = "reviews"
    injected = inject_object(obj, SETTINGS)
    assert _names(injected["spec"]["template"]["spec"]["containers"])[-1] == "istio-proxy"
    assert_valid([injected])


def test_cronjob_and_list_items_are_injected() -> None:
    cron = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "report"},
        "spec": {
            "schedule": "* * * * *",
            "jobTemplate": {"spec": {"template": {"spec": _pod_spec()}}},
        },
    }
    listed = {"apiVersion": "v1", "kind": "List", "items": [cron]}
    injected = inject_object(listed, SETTINGS)["items"][0]
    assert (
        _names(injected["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"])[-1]
        == "istio-proxy"
    )


def test_documents_without_pods_pass_through() -> None:
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "reviews"},
        "spec": {"ports": [{"port": 9080}]},
    }
    assert inject_documents([service, "text", None], SETTINGS) == [service, "text", None]


def test_pod_template_function_keeps_existing_init_containers_first() -> None:
    template = {
        "metadata": {},
        "spec": {**_pod_spec(), "initContainers": [{"name": "migrate", "image": "x"}]},
    }
    out = inject_pod_template(template, SETTINGS, default_name="job")
    assert _names(out["spec"]["initContainers"]) == ["migrate", "istio-init"]
    assert out["metadata"]["labels"]["service.istio.io/canonical-name"] == "job"
    assert template["spec"]["initContainers"] == [{"name": "migrate", "image": "x"}]


def test_image_follows_the_install_values() -> None:
    settings = InjectSettings.from_spec(build_spec(sets=["values.global.hub=registry.local/mesh"]))
    proxy = inject_object(_pod(), settings)["spec"]["containers"][-1]
    assert proxy["image"] == "registry.local/mesh/proxyv2:0.1.0"


def _trellis(args: list[str], stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from trellis.cli.main import main; main()", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_kube_inject_reads_stdin_and_writes_yaml() -> None:
    stdin = yaml.safe_dump_all([_deployment(), _pod()])
    done = _trellis(["kube-inject", "-f", "-"], stdin)
    assert done.returncode == 0, done.stderr
    documents = list(yaml.safe_load_all(done.stdout))
    assert documents == inject_documents([_deployment(), _pod()], SETTINGS)
    again = _trellis(["kube-inject", "-f", "-"], done.stdout)
    assert list(yaml.safe_load_all(again.stdout)) == documents


def test_cli_kube_inject_reports_bad_yaml_in_one_line() -> None:
    done = _trellis(["kube-inject", "-f", "-"], "kind: [unclosed\n")
    assert done.returncode == 1
    assert "not valid YAML" in done.stderr and "Traceback" not in done.stderr
