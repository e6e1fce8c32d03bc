"""What an xDS request means, decided without I/O (Istio's `shouldRespond`, as a pure function).

The stream code hands in the request and what it knows about that type on that stream; the answer
says whether the request ACKs or NACKs an outstanding response, how the subscription changes and
whether a response must be sent now. Everything here is a plain function over frozen data so the
whole ADS protocol is one table of tests (tests/unit/test_xds_protocol.py).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from envoy.service.discovery.v3 import discovery_pb2

from trellis.model.xds_types import CLUSTER, LISTENER

WILDCARD = "*"
# Types whose empty subscription means "everything" (legacy wildcard), per the xDS protocol.
WILDCARD_TYPES = frozenset({CLUSTER, LISTENER})


class RequestKind(enum.Enum):
    INITIAL = "initial"  # first request of this type on this stream
    ACK = "ack"  # accepts an outstanding response
    NACK = "nack"  # rejects an outstanding response (error_detail set)
    STALE_NONCE = "stale-nonce"  # answers a response that a newer one replaced: ignore
    SUBSCRIPTION_CHANGE = "subscription-change"  # asks for (more or other) names
    UNSUBSCRIBE = "unsubscribe"  # drops names; nothing to send, nothing to wait for
    REREQUEST = "rerequest"  # same names again after a CDS push: answer it (DESIGN §3)


@dataclass(frozen=True, slots=True)
class TypeState:
    """What the stream knows about one type: the protocol-relevant part only."""

    requested: bool = False  # a request of this type arrived on this stream
    last_nonce: str = ""  # nonce of the newest response sent
    pending_nonces: frozenset[str] = frozenset()  # responses not yet ACKed/NACKed
    subscribed: frozenset[str] = frozenset()  # explicit names (never "*")
    wildcard: bool = False
    always_respond: bool = False  # set for EDS when CDS was sent: Envoy re-requests endpoints


@dataclass(frozen=True, slots=True)
class Decision:
    kind: RequestKind
    answered_nonce: str  # the outstanding response this request ACKs/NACKs ("" if none)
    nack_message: str
    subscribed: frozenset[str]
    wildcard: bool
    respond: bool  # a response must be sent now
    force_all: bool = False  # send every subscribed resource, changed or not (SotW)
    force: frozenset[str] = frozenset()  # names to send even if the client has them (delta)
    initial_versions: Mapping[str, str] = field(default_factory=dict)  # delta reconnect

    @property
    def acked(self) -> bool:
        return bool(self.answered_nonce) and self.kind is not RequestKind.NACK

    @property
    def nacked(self) -> bool:
        return bool(self.answered_nonce) and self.kind is RequestKind.NACK


def decide_sotw(request: discovery_pb2.DiscoveryRequest, state: TypeState) -> Decision:
    """State-of-the-world: the request carries the complete list of names the client wants."""
    names = frozenset(request.resource_names)
    wildcard = WILDCARD in names or (not names and request.type_url in WILDCARD_TYPES)
    subscribed = names - {WILDCARD}
    nonce = request.response_nonce
    empty = not wildcard and not subscribed
    base = Decision(RequestKind.ACK, "", "", subscribed, wildcard, respond=False)
    if not nonce:
        kind = RequestKind.UNSUBSCRIBE if empty else RequestKind.INITIAL
        return replace(base, kind=kind, respond=not empty, force_all=True)
    if nonce != state.last_nonce:
        # Envoy sends the current names again with the newest nonce; nothing is lost.
        return replace(
            base, kind=RequestKind.STALE_NONCE, subscribed=state.subscribed, wildcard=state.wildcard
        )
    answered = nonce if nonce in state.pending_nonces else ""
    if request.HasField("error_detail"):
        return replace(
            base,
            kind=RequestKind.NACK,
            answered_nonce=answered,
            nack_message=request.error_detail.message,
        )
    base = replace(base, answered_nonce=answered)
    if subscribed != state.subscribed or wildcard != state.wildcard:
        if empty:
            return replace(base, kind=RequestKind.UNSUBSCRIBE)
        return replace(base, kind=RequestKind.SUBSCRIPTION_CHANGE, respond=True, force_all=True)
    if state.always_respond and not empty:
        return replace(base, kind=RequestKind.REREQUEST, respond=True, force_all=True)
    return base


def decide_delta(request: discovery_pb2.DeltaDiscoveryRequest, state: TypeState) -> Decision:
    """Incremental: the request carries changes to the subscription plus, maybe, an ACK/NACK.

    Subscription changes are always applied, even beside a stale nonce: unlike SotW they are not
    repeated later. Naming an already subscribed resource again asks for it to be re-sent.
    """
    added = frozenset(request.resource_names_subscribe)
    removed = frozenset(request.resource_names_unsubscribe)
    wildcard = _delta_wildcard(request, state, added, removed)
    subscribed = (state.subscribed | added) - removed - {WILDCARD}
    nonce = request.response_nonce
    answered = nonce if nonce and nonce in state.pending_nonces else ""
    nack = bool(answered) and request.HasField("error_detail")
    base = Decision(
        _delta_kind(request, state, added, removed, answered),
        answered_nonce=answered,
        nack_message=request.error_detail.message if nack else "",
        subscribed=subscribed,
        wildcard=wildcard,
        respond=not state.requested or bool(added),
        force=added - {WILDCARD},
    )
    if not state.requested:
        # Reconnect: what the client already holds in the right version is not sent again.
        held = dict(request.initial_resource_versions)
        return replace(base, initial_versions=held, force=base.force - held.keys())
    return base


def _delta_wildcard(
    request: discovery_pb2.DeltaDiscoveryRequest,
    state: TypeState,
    added: frozenset[str],
    removed: frozenset[str],
) -> bool:
    if WILDCARD in removed:
        return False
    if WILDCARD in added:
        return True
    if not state.requested:
        return not added and request.type_url in WILDCARD_TYPES
    return state.wildcard


def _delta_kind(
    request: discovery_pb2.DeltaDiscoveryRequest,
    state: TypeState,
    added: frozenset[str],
    removed: frozenset[str],
    answered: str,
) -> RequestKind:
    if answered and request.HasField("error_detail"):
        return RequestKind.NACK
    if not state.requested:
        return RequestKind.INITIAL
    if added:
        return RequestKind.SUBSCRIPTION_CHANGE
    if removed:
        return RequestKind.UNSUBSCRIBE
    if request.response_nonce and not answered:
        return RequestKind.STALE_NONCE
    return RequestKind.ACK


def after_decision(state: TypeState, decision: Decision) -> TypeState:
    """The type's state once the request is taken into account (before any response is sent)."""
    pending = state.pending_nonces - {decision.answered_nonce}
    return replace(
        state,
        requested=True,
        pending_nonces=pending,
        subscribed=decision.subscribed,
        wildcard=decision.wildcard,
        # any full answer for the type is what a re-request after a CDS push needs
        always_respond=state.always_respond and not (decision.respond and decision.force_all),
    )


def after_send(state: TypeState, nonce: str, *, delta: bool) -> TypeState:
    """The type's state once a response with `nonce` is on its way.

    SotW: the newest response replaces any older one, so only it is outstanding. Delta: every
    response is a separate change and each gets its own ACK.
    """
    pending = (state.pending_nonces | {nonce}) if delta else frozenset({nonce})
    return replace(state, last_nonce=nonce, pending_nonces=pending)


def is_wanted(state: TypeState, name: str) -> bool:
    """Whether the client subscribes to `name` (wildcard or explicitly)."""
    return state.wildcard or name in state.subscribed
