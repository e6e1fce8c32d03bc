"""DestinationRule merge rules and route policies, one documented behaviour per test."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2

from trellis.api.networking import (
    DestinationRule,
    HTTPFaultInjection,
    HTTPRetry,
    StringMatch,
)
from trellis.compiler.retries import DEFAULT_RETRY_ON, PREVIOUS_HOSTS, build_retry_policy
from trellis.compiler.route_extras import build_fault_config
from trellis.compiler.route_match import build_string_matcher
from trellis.compiler.traffic_policy import apply_load_balancer, cluster_policy

RULE = DestinationRule.model_validate(
    {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": "reviews"},
        "spec": {
            "host": "reviews",
            "trafficPolicy": {
                "loadBalancer": {"simple": "ROUND_ROBIN"},
                "connectionPool": {"tcp": {"maxConnections": 10}},
                "outlierDetection": {"consecutive5xxErrors": 3},
                "portLevelSettings": [
                    {"port": {"number": 9443}, "loadBalancer": {"simple": "RANDOM"}}
                ],
            },
            "subsets": [
                {
                    "name": "v2",
                    "labels": {"version": "v2"},
                    "trafficPolicy": {"connectionPool": {"http": {"maxRetries": 1}}},
                },
                {
                    "name": "v3",
                    "labels": {"version": "v3"},
                    "trafficPolicy": {
                        "portLevelSettings": [
                            {"port": {"number": 9080}, "outlierDetection": {"interval": "1s"}}
                        ]
                    },
                },
            ],
        },
    }
)


def test_subset_block_replaces_the_top_level_block_whole() -> None:
    policy = cluster_policy(RULE, "v2", 9080)
    assert policy.connection_pool is not None and policy.connection_pool.tcp is None
    assert policy.load_balancer is not None  # blocks the subset does not set are kept


def test_port_level_settings_replace_every_block_and_do_not_inherit() -> None:
    policy = cluster_policy(RULE, "", 9443)
    assert policy.load_balancer is not None and policy.load_balancer.simple is not None
    assert policy.load_balancer.simple.value == "RANDOM"
    assert policy.connection_pool is None and policy.outlier_detection is None


def test_subset_port_level_settings_apply_last() -> None:
    policy = cluster_policy(RULE, "v3", 9080)
    assert policy.outlier_detection is not None and policy.outlier_detection.interval == "1s"
    assert policy.load_balancer is None and policy.connection_pool is None


def test_no_rule_means_least_request() -> None:
    cluster = cluster_pb2.Cluster()
    apply_load_balancer(cluster, cluster_policy(None, "", 9080).load_balancer)
    assert cluster.lb_policy == cluster_pb2.Cluster.LbPolicy.LEAST_REQUEST


def test_default_retries_are_istios() -> None:
    policy = build_retry_policy(None, consistent_hash=False)
    assert policy is not None
    assert policy.retry_on == DEFAULT_RETRY_ON
    assert policy.num_retries.value == 2
    assert policy.host_selection_retry_max_attempts == 5
    assert [p.name for p in policy.retry_host_predicate] == [PREVIOUS_HOSTS]
    assert not policy.retriable_status_codes


def test_consistent_hash_drops_the_previous_hosts_predicate() -> None:
    policy = build_retry_policy(None, consistent_hash=True)
    assert policy is not None and not policy.retry_host_predicate


def test_zero_attempts_disables_retries() -> None:
    assert build_retry_policy(HTTPRetry(attempts=0), consistent_hash=False) is None


def test_integer_retry_on_become_retriable_status_codes() -> None:
    policy = build_retry_policy(
        HTTPRetry(attempts=3, retry_on="5xx,503,429", per_try_timeout="2s"), consistent_hash=False
    )
    assert policy is not None
    assert policy.retry_on == "5xx,retriable-status-codes"
    assert list(policy.retriable_status_codes) == [503, 429]
    assert policy.per_try_timeout.seconds == 2


def test_fault_without_percentage_faults_nothing() -> None:
    fault = HTTPFaultInjection.model_validate({"delay": {"fixedDelay": "5s"}})
    assert build_fault_config(fault) is None


def test_fault_percentage_is_parts_per_million() -> None:
    fault = HTTPFaultInjection.model_validate(
        {"abort": {"httpStatus": 503, "percentage": {"value": 0.1}}}
    )
    config = build_fault_config(fault)
    assert config is not None
    assert config.abort.http_status == 503
    assert config.abort.percentage.numerator == 1000
    assert config.abort.percentage.denominator == config.abort.percentage.MILLION


def test_empty_string_match_means_present() -> None:
    assert build_string_matcher(StringMatch()) is None
    assert build_string_matcher(StringMatch(prefix="")) is None
    matcher = build_string_matcher(StringMatch(regex="v[0-9]"))
    assert matcher is not None and matcher.safe_regex.regex == "v[0-9]"
