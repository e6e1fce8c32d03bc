"""Per-stream, per-type bookkeeping: what was sent, what the client holds, ACK/NACK history.

The protocol decision itself is pure (protocol.py); this module applies decisions and sends to
the mutable record one stream keeps per type, and answers "is anything still outstanding?" for
the push sequence that must wait for an ACK before its next step.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from google.protobuf import any_pb2

from trellis.xds.contract import TypeStatus
from trellis.xds.protocol import Decision, TypeState, after_decision, after_send, is_wanted
from trellis.xds.resources import ClientView, PackedResource, Payload


@dataclass(slots=True)
class SentRecord:
    """One response not yet answered: enough to undo its effect on a NACK."""

    nonce: str
    version: str
    before: dict[str, PackedResource | None] = field(default_factory=dict)
    sent: dict[str, str] = field(default_factory=dict)  # name -> hash of content sent


class TypeStream:
    """Everything one stream tracks for one type URL."""

    def __init__(self, type_url: str, *, delta: bool) -> None:
        self.type_url = type_url
        self.delta = delta
        self.state = TypeState()
        self.have: dict[str, PackedResource] = {}
        self.rejected: dict[str, str] = {}
        self.rejections: dict[str, tuple[str, str]] = {}  # name -> (version, NACK message)
        self.records: dict[str, SentRecord] = {}
        self.sent_version = ""
        self.acked_version = ""
        self.nacked_version = ""
        self.nack_message = ""
        self.last_answer_was_nack = False
        self.idle = asyncio.Event()
        self.idle.set()

    def view(self) -> ClientView:
        return ClientView(have=self.have, rejected=self.rejected)

    def apply_decision(self, decision: Decision) -> SentRecord | None:
        """Fold a request in; returns the record of the response it answered, if any."""
        self.state = after_decision(self.state, decision)
        if decision.initial_versions:
            self._assume_client_has(decision.initial_versions)
        record = self.records.pop(decision.answered_nonce, None)
        if record is not None and decision.nacked:
            self._undo(record, decision.nack_message)
        elif record is not None:
            self.acked_version = record.version
            self.nacked_version = ""
            self.nack_message = ""
            self.last_answer_was_nack = False
        self._forget_unwanted()
        if not self.state.pending_nonces:
            self.idle.set()
        return record

    def record_send(self, nonce: str, version: str, payload: Payload, *, full_state: bool) -> None:
        """Account for a response as if the client took it (undone again on a NACK)."""
        record = SentRecord(nonce=nonce, version=version)
        names = {r.name for r in payload.resources}
        dropped = [n for n in self.have if n not in names] if full_state else list(payload.removed)
        for name in dropped:
            record.before[name] = self.have.pop(name, None)
        for resource in payload.resources:
            record.before[resource.name] = self.have.get(resource.name)
            record.sent[resource.name] = resource.hash
            self.have[resource.name] = resource
        if not self.delta:
            self.records.clear()  # SotW: the newest response replaces older outstanding ones
        self.records[nonce] = record
        self.state = after_send(self.state, nonce, delta=self.delta)
        self.sent_version = version
        self.idle.clear()

    def expect_rerequest(self) -> None:
        """CDS went out: Envoy re-requests endpoints with what looks like an ACK; answer it."""
        self.state = replace(self.state, always_respond=True)

    def give_up_waiting(self) -> None:
        """No answer in time: stop waiting; a late answer is then treated as stale."""
        self.records.clear()
        self.state = replace(self.state, pending_nonces=frozenset())
        self.idle.set()

    def reconcile(self, target: Mapping[str, PackedResource]) -> None:
        """Keep the NACK status true to what this proxy should have now, nothing in flight.

        Rejected content is never re-sent, so no answer will report on it: the NACK stands
        while the target still holds it, and ends once the client holds the whole target
        again (e.g. the bad config was deleted and the last good one is wanted once more).
        """
        if self.records or not (self.rejected or self.nacked_version):
            return  # in flight, or nothing was ever rejected: no NACK status to keep true
        mine = {n: r for n, r in target.items() if is_wanted(self.state, n)}
        blocked = [n for n, r in mine.items() if not self._holds(r) and self._rejects(r)]
        if blocked:
            self.nacked_version, self.nack_message = self.rejections[blocked[0]]
        elif self.nacked_version and all(self._holds(r) for r in mine.values()):
            self.nacked_version = self.nack_message = ""
            self.sent_version = self.acked_version

    def _holds(self, resource: PackedResource) -> bool:
        have = self.have.get(resource.name)
        return have is not None and have.hash == resource.hash

    def _rejects(self, resource: PackedResource) -> bool:
        return self.rejected.get(resource.name) == resource.hash and (
            resource.name in self.rejections
        )

    def status(self) -> TypeStatus:
        return TypeStatus(
            type_url=self.type_url,
            sent_version=self.sent_version,
            acked_version=self.acked_version,
            nacked_version=self.nacked_version,
            nack_message=self.nack_message,
        )

    def _undo(self, record: SentRecord, message: str) -> None:
        """The client keeps its last good config: so does our view of it."""
        for name, before in record.before.items():
            if before is None:
                self.have.pop(name, None)
            else:
                self.have[name] = before
        self.rejected.update(record.sent)
        self.rejections.update({name: (record.version, message) for name in record.sent})
        self.nacked_version = record.version
        self.nack_message = message
        self.last_answer_was_nack = True

    def _assume_client_has(self, versions: Mapping[str, str]) -> None:
        """Delta reconnect: the client lists what it kept; versions are our content hashes."""
        for name, version in versions.items():
            self.have[name] = PackedResource(name=name, any=any_pb2.Any(), hash=version)

    def _forget_unwanted(self) -> None:
        """An unsubscribed name is gone from the client: a later re-subscribe gets it again."""
        for name in [n for n in self.have if not is_wanted(self.state, n)]:
            del self.have[name]
