"""The generated Prometheus configuration: jobs, file_sd targets and their labels."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from trellis.errors import TrellisError
from trellis.runtime.prometheus import (
    CONTROL_PLANE_JOB,
    PROXY_JOB,
    ScrapedProxy,
    ScrapeSettings,
    parse_extra_scrape_configs,
    scrape_config,
    stats_port,
    target_groups,
    write_targets,
)

REVIEWS = ScrapedProxy(
    "default", "reviews-v2", "198.18.0.5:15090", {"app": "reviews", "version": "v2"}
)
RATINGS = ScrapedProxy("shop", "ratings-v1", "198.18.0.6:15090", {"app": "ratings"})
INGRESS = ScrapedProxy(
    "istio-system",
    "istio-ingressgateway",
    "127.0.0.1:41000",
    {"istio": "ingressgateway", "app": "istio-ingressgateway"},
)


def settings(tmp_path: Path, extra: str = "") -> ScrapeSettings:
    jobs = parse_extra_scrape_configs(extra, "extra.yaml") if extra else ()
    return ScrapeSettings(tmp_path / "proxies.json", "198.18.0.1:15014", extra_jobs=jobs)


def test_every_proxy_is_a_target_with_kubernetes_like_labels() -> None:
    groups = target_groups([REVIEWS, INGRESS, RATINGS])
    assert [g["targets"] for g in groups] == [
        ["198.18.0.5:15090"],
        ["127.0.0.1:41000"],
        ["198.18.0.6:15090"],
    ]
    assert groups[0]["labels"] == {
        "app": "reviews",
        "version": "v2",
        "namespace": "default",
        "pod": "reviews-v2",
    }
    assert "version" not in groups[2]["labels"]  # absent, as relabelling leaves it


def test_namespace_selection_keeps_only_those_namespaces() -> None:
    groups = target_groups([REVIEWS, INGRESS, RATINGS], ["shop", "istio-system"])
    assert [g["labels"]["pod"] for g in groups] == ["istio-ingressgateway", "ratings-v1"]


def test_label_names_are_made_valid_for_prometheus() -> None:
    proxy = ScrapedProxy("default", "web", "198.18.0.9:15090", {"app.kubernetes.io/name": "web"})
    assert target_groups([proxy])[0]["labels"]["app_kubernetes_io_name"] == "web"


def test_config_scrapes_proxies_from_file_sd_and_trellisd_statically(tmp_path: Path) -> None:
    config = yaml.safe_load(scrape_config(settings(tmp_path)))
    assert config["global"]["scrape_interval"] == "5s"
    proxies, pilot = config["scrape_configs"]
    assert proxies["job_name"] == PROXY_JOB
    assert proxies["metrics_path"] == "/stats/prometheus"
    assert proxies["file_sd_configs"] == [{"files": [str(tmp_path / "proxies.json")]}]
    assert pilot["job_name"] == CONTROL_PLANE_JOB and pilot["metrics_path"] == "/metrics"
    assert pilot["static_configs"][0]["targets"] == ["198.18.0.1:15014"]
    assert pilot["static_configs"][0]["labels"]["app"] == "istiod"


def test_extra_scrape_configs_are_appended(tmp_path: Path) -> None:
    extra = "- job_name: node\n  static_configs:\n  - targets: ['127.0.0.1:9100']\n"
    jobs = yaml.safe_load(scrape_config(settings(tmp_path, extra)))["scrape_configs"]
    assert [j["job_name"] for j in jobs] == [PROXY_JOB, CONTROL_PLANE_JOB, "node"]
    assert jobs[2]["static_configs"] == [{"targets": ["127.0.0.1:9100"]}]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("job_name: [", "not valid YAML"),
        ("42", "expected a list"),
        ("- static_configs: []", "[0] is not a scrape config with a job_name"),
        ("- job_name: pilot", "[0].job_name 'pilot' is already used"),
        ("- job_name: a\n- job_name: a", "[1].job_name 'a' is already used"),
    ],
)
def test_extra_scrape_config_mistakes_are_named(text: str, problem: str) -> None:
    with pytest.raises(TrellisError, match=r"extra\.yaml") as err:
        parse_extra_scrape_configs(text, "extra.yaml")
    assert problem in str(err.value)


def test_a_scrape_configs_mapping_is_accepted_too() -> None:
    jobs = parse_extra_scrape_configs("scrape_configs:\n- job_name: x\n", "extra.yaml")
    assert [j["job_name"] for j in jobs] == ["x"]


def test_stats_port_comes_from_the_agents_command_line() -> None:
    assert stats_port(["trellis-agent", "--stats-port", "41000", "--ready-port", "1"]) == 41000
    assert stats_port(["trellis-agent", "--name", "x"]) == 15090


def test_targets_file_is_rewritten_only_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "t" / "proxies.json"
    assert write_targets(path, [REVIEWS], ())
    assert not write_targets(path, [REVIEWS], ())
    assert write_targets(path, [REVIEWS, RATINGS], ())
    assert len(json.loads(path.read_text())) == 2


@pytest.mark.skipif(shutil.which("promtool") is None, reason="Debian's prometheus not installed")
def test_promtool_accepts_the_generated_config(tmp_path: Path) -> None:
    extra = "- job_name: node\n  static_configs:\n  - targets: ['127.0.0.1:9100']\n"
    write_targets(tmp_path / "proxies.json", [REVIEWS, INGRESS], ())
    config = tmp_path / "prometheus.yml"
    config.write_text(scrape_config(settings(tmp_path, extra)))
    check = subprocess.run(
        ["promtool", "check", "config", str(config)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
