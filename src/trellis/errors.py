"""One exception hierarchy for everything a user can get wrong or ask for that is not there."""

from __future__ import annotations


class TrellisError(Exception):
    """Base of every error Trellis reports to a user; its str() is one readable line."""


class ValidationError(TrellisError):
    """A resource is invalid: names the kind, namespace/name, the field path and the reason."""

    def __init__(
        self,
        reason: str,
        *,
        kind: str = "",
        namespace: str = "",
        name: str = "",
        field: str = "",
        document: int = 0,
    ) -> None:
        self.reason = reason
        self.document = document  # 1-based index in a multi-document input; 0 = not known
        self.kind = kind
        self.namespace = namespace
        self.name = name
        self.field = field
        super().__init__(self.describe())

    def describe(self) -> str:
        if not (self.kind or self.document or self.name or self.field):
            return self.reason  # already a whole sentence (e.g. relayed from trellisd)
        where = self.kind or (f"document {self.document}" if self.document else "document")
        if self.name:
            where += f" {self.namespace}/{self.name}" if self.namespace else f" {self.name}"
        field = f" {self.field}:" if self.field else ""
        return f"{where}:{field} {self.reason}"


class NotFound(TrellisError):
    """The named resource, workload or proxy does not exist."""


class Conflict(TrellisError):
    """The request clashes with what exists (a name in use, a port taken, a mesh already up)."""


class BadRequest(TrellisError):
    """A local API (trellisd, the runtime) refused the request itself as malformed (HTTP 4xx).

    Kept apart from RuntimeProblem so a relaying server (the console) answers a 4xx, not a 502.
    """

    def __init__(self, message: str, status: int = 400) -> None:
        self.status = status
        super().__init__(message)


class RuntimeProblem(TrellisError):
    """The local runtime could not do what was asked (a process did not start, no root, ...)."""


class ValidationErrors(ValidationError):
    """Several resources (or fields) are invalid; str() lists every problem, one per line.

    Raised by parse_documents and the store's apply so a user fixes everything in one pass.
    """

    def __init__(self, errors: list[ValidationError]) -> None:
        self.errors = list(errors)
        first = self.errors[0] if self.errors else ValidationError("no problems")
        super().__init__(
            first.reason,
            kind=first.kind,
            namespace=first.namespace,
            name=first.name,
            field=first.field,
            document=first.document,
        )

    def describe(self) -> str:
        return "\n".join(error.describe() for error in self.errors)
