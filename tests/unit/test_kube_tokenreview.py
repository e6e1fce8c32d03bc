"""TokenReviewAuthenticator against the fake API server's TokenReview (tests/kube_fake): a
proxy is admitted only with a token of audience istio-ca whose service account is the one
its node claims; valid answers are cached briefly, refusals and API failures never."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.kube_fake import FakeApiServer, running_fake

from trellis.kube.cluster import connect
from trellis.kube.tokenreview import ServiceAccountIdentity, TokenReviewAuthenticator, token_of
from trellis.model.proxy import Proxy, ProxyType
from trellis.xds.server import NotAuthenticated

REVIEWS = Proxy(ProxyType.SIDECAR, "198.18.0.7", "reviews-v1-abc", "shop", {}, "bookinfo-reviews")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def setup(
    tmp_path: Path,
) -> AsyncIterator[tuple[FakeApiServer, TokenReviewAuthenticator, Clock]]:
    kubeconfig = tmp_path / "kubeconfig"
    async with running_fake(kubeconfig) as fake:
        fake.tokens["good"] = {
            "username": "system:serviceaccount:shop:bookinfo-reviews",
            "uid": "1",
            "audiences": ["istio-ca"],
        }
        fake.tokens["api-audience"] = {
            "username": "system:serviceaccount:shop:bookinfo-reviews",
            "audiences": ["https://kubernetes.default.svc.cluster.local"],
        }
        fake.tokens["other-sa"] = {
            "username": "system:serviceaccount:shop:ratings",
            "audiences": ["istio-ca"],
        }
        fake.tokens["a-user"] = {"username": "alice", "audiences": ["istio-ca"]}
        api = await connect(kubeconfig)
        clock = Clock()
        try:
            yield fake, TokenReviewAuthenticator(api, cache_seconds=30, clock=clock), clock
        finally:
            await api.close()


async def test_own_service_account_token_is_admitted_and_cached(
    setup: tuple[FakeApiServer, TokenReviewAuthenticator, Clock],
) -> None:
    fake, auth, clock = setup
    await auth(REVIEWS, [("x-trellis-token", "good")])
    await auth(REVIEWS, [("authorization", b"Bearer good")])
    assert fake.token_reviews == 1
    clock.now += 31
    await auth(REVIEWS, [("x-trellis-token", "good")])
    assert fake.token_reviews == 2


@pytest.mark.parametrize(
    ("token", "error"),
    [
        ("nope", "refused: invalid bearer token"),
        ("api-audience", r'is invalid for the target audiences \["istio-ca"\]'),
        (
            "other-sa",
            "service account shop/ratings's, but the proxy .* claims shop/bookinfo-reviews",
        ),
        ("a-user", "belongs to 'alice', not to a service account"),
    ],
)
async def test_wrong_tokens_are_refused(
    setup: tuple[FakeApiServer, TokenReviewAuthenticator, Clock], token: str, error: str
) -> None:
    fake, auth, _ = setup
    for _ in range(2):
        with pytest.raises(NotAuthenticated, match=error):
            await auth(REVIEWS, [("x-trellis-token", token)])
    # a valid token of another account is a cached fact about the token; refusals are not
    assert fake.token_reviews == (1 if token == "other-sa" else 2)


async def test_no_token_and_api_failure_refuse(
    setup: tuple[FakeApiServer, TokenReviewAuthenticator, Clock],
) -> None:
    fake, auth, _ = setup
    with pytest.raises(NotAuthenticated, match="no service-account token"):
        await auth(REVIEWS, [("authorization", "Basic Zm9v")])
    assert fake.token_reviews == 0
    fake.refuse_writes[("authentication.k8s.io", "tokenreviews")] = (403, "Forbidden", "no")
    with pytest.raises(NotAuthenticated, match=r"HTTP 403.*create tokenreviews"):
        await auth(REVIEWS, [("x-trellis-token", "good")])


def test_usernames_map_to_identities() -> None:
    assert ServiceAccountIdentity.from_username("system:serviceaccount:ns:sa") == (
        ServiceAccountIdentity("ns", "sa")
    )
    for bad in ("system:serviceaccount:ns", "system:serviceaccount::sa", "system:node:n1"):
        with pytest.raises(NotAuthenticated):
            ServiceAccountIdentity.from_username(bad)
    assert token_of([("X-Trellis-Token", b" t1 ")]) == "t1"
