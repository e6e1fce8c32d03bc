"""The chart's install Job as Helm renders it (helm-python-sdk): valid against Kubernetes
1.30's schemas, and its command line accepted by the real `trellis install` parser with
the options the values select (so a renamed flag fails here, not in a cluster)."""

from __future__ import annotations

from typing import Any

import helm_python
import pytest
from tests.kube_chart import job_container, parse_trellis, render_chart
from tests.kube_schema import assert_valid


@pytest.mark.parametrize(
    ("values", "ignore", "timeout"),
    [
        ({}, False, 300.0),
        ({"installer": {"ignoreAnalysisErrors": True, "verifyTimeoutSeconds": 0}}, True, 0.0),
    ],
)
def test_install_job_runs_the_steps_with_the_values_options(
    values: dict[str, Any], ignore: bool, timeout: float
) -> None:
    objects = render_chart(values)
    assert_valid(objects)
    container = job_container(objects, "trellis-install")
    params = parse_trellis(container["args"])
    assert params["from_job"] == "trellis-install"
    assert params["ignore_analysis_errors"] is ignore
    assert params["verify_timeout"] == timeout
    assert params["overlay"] == ["/overlay/values-overlay.yaml", "/overlay/user-overlay.yaml"]


def test_uninstall_job_args_parse() -> None:
    container = job_container(
        render_chart({"installer": {"purgeOnDelete": True}}), "trellis-uninstall"
    )
    params = parse_trellis(container["args"])
    assert params["purge"] is True and params["if_installed"] is True


def test_values_schema_rejects_a_negative_verify_timeout() -> None:
    with pytest.raises(helm_python.HelmValuesError, match="verifyTimeoutSeconds"):
        render_chart({"installer": {"verifyTimeoutSeconds": -1}})
