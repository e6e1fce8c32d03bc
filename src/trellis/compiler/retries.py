"""Route retry policies with Istio's defaults (istio-notes §0.6).

Unset `retries` still retries twice on connection-level failures; `attempts: 0` turns retries
off; integers in `retryOn` become retriable status codes.
"""

from __future__ import annotations

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2

from trellis.api.networking import HTTPRetry
from trellis.compiler.protos import duration_of, pack, uint32

DEFAULT_RETRY_ON = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
DEFAULT_ATTEMPTS = 2
PREVIOUS_HOSTS = "envoy.retry_host_predicates.previous_hosts"
_RETRIABLE_STATUS_CODES = "retriable-status-codes"


def build_retry_policy(
    retries: HTTPRetry | None, *, consistent_hash: bool
) -> rc.RetryPolicy | None:
    """The route's retry policy; None when retries are turned off (`attempts: 0`).

    The previous-hosts predicate is left out under consistent hashing: retrying on another
    host would defeat the stickiness the user asked for.
    """
    if retries is None:
        return _policy(DEFAULT_RETRY_ON, DEFAULT_ATTEMPTS, previous_hosts=not consistent_hash)
    if not retries.attempts:
        return None
    conditions, codes = _split_retry_on(retries.retry_on or DEFAULT_RETRY_ON)
    ignore_previous = retries.retry_ignore_previous_hosts is not False
    policy = _policy(
        ",".join(conditions),
        retries.attempts,
        previous_hosts=ignore_previous and not consistent_hash,
    )
    policy.retriable_status_codes.extend(codes)
    per_try = duration_of(retries.per_try_timeout)
    if per_try is not None:
        policy.per_try_timeout.CopyFrom(per_try)
    backoff = duration_of(retries.backoff)
    if backoff is not None:
        policy.retry_back_off.base_interval.CopyFrom(backoff)
    return policy


def _policy(retry_on: str, attempts: int, *, previous_hosts: bool) -> rc.RetryPolicy:
    policy = rc.RetryPolicy(retry_on=retry_on, num_retries=uint32(attempts))
    if previous_hosts:
        policy.retry_host_predicate.append(
            rc.RetryPolicy.RetryHostPredicate(
                name=PREVIOUS_HOSTS, typed_config=pack(previous_hosts_pb2.PreviousHostsPredicate())
            )
        )
        policy.host_selection_retry_max_attempts = 5
    return policy


def _split_retry_on(retry_on: str) -> tuple[list[str], list[int]]:
    """Envoy conditions and HTTP status codes; codes imply `retriable-status-codes`."""
    conditions: list[str] = []
    codes: list[int] = []
    for item in (part.strip() for part in retry_on.split(",")):
        if item.isdigit():
            codes.append(int(item))
        elif item and item not in conditions:
            conditions.append(item)
    if codes and _RETRIABLE_STATUS_CODES not in conditions:
        conditions.append(_RETRIABLE_STATUS_CODES)
    return conditions, codes


def inbound_retry_policy() -> rc.RetryPolicy:
    """Inbound routes retry only resets that happened before the request reached the app."""
    return rc.RetryPolicy(retry_on="reset-before-request", num_retries=uint32(DEFAULT_ATTEMPTS))
