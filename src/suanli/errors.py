"""Every error suanli raises on purpose, in one hierarchy.

Each carries structured context, so the API can turn it into a precise response (status,
the field at fault) and the CLI into a clear sentence. The API maps classes to HTTP status
in exactly one place (``suanli.api.errors``).

SuanliError
├── ValidationError            bad input; ``field`` names the part at fault        -> 422
│   └── UnknownChipError       a chip name not in the catalog, with suggestions    -> 422
├── NotFoundError              a named resource does not exist                     -> 404
├── ConflictError              duplicate name, or a state that forbids the action  -> 409
│   ├── IllegalTransitionError a node lifecycle change that is not allowed         -> 409
│   └── PolicyConflictError    a fleet change a compliance rule forbids            -> 409
├── AuthenticationError        missing or wrong credential                         -> 401
├── PermissionDeniedError      a valid credential without the right                -> 403
│   └── PolicyDeniedError      a placement or export a compliance rule forbids     -> 403
└── CatalogError               a packaged data file is broken (a bug, not input)   -> 500
"""

from __future__ import annotations

from collections.abc import Sequence


class SuanliError(Exception):
    """Base of all deliberate errors."""

    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ValidationError(SuanliError):
    """Input that cannot be accepted. ``field`` is a dotted/indexed path such as
    ``data_centers[1].nodes[0].chip`` (``None`` when the whole input is at fault)."""

    code = "invalid_value"

    def __init__(self, message: str, field: str | None = None, line: int | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.line = line


class UnknownChipError(ValidationError):
    """A chip name that the catalog does not know; ``suggestions`` holds the closest names."""

    code = "unknown_chip"

    def __init__(self, name: str, suggestions: Sequence[str], field: str | None = None) -> None:
        hint = f"; did you mean {', '.join(repr(s) for s in suggestions)}?" if suggestions else ""
        super().__init__(f"unknown chip {name!r}{hint}", field=field)
        self.name = name
        self.suggestions = list(suggestions)


class NotFoundError(SuanliError):
    code = "not_found"

    def __init__(self, kind: str, key: str) -> None:
        super().__init__(f"{kind} {key!r} not found")
        self.kind = kind
        self.key = key


class ConflictError(SuanliError):
    code = "conflict"


class IllegalTransitionError(ConflictError):
    code = "illegal_transition"

    def __init__(self, node: str, current: str, target: str, allowed: Sequence[str]) -> None:
        allowed_txt = ", ".join(allowed) if allowed else "none"
        super().__init__(
            f"node {node!r} cannot go from {current} to {target}; allowed from {current}: "
            f"{allowed_txt}"
        )
        self.node = node
        self.current = current
        self.target = target
        self.allowed = list(allowed)


class PolicyRefusal:
    """Mixin of the two policy errors: the refusing rules, what was refused, by whom."""

    rules: list[str]
    refusals: list[dict[str, str]]  # {"rule", "kind", "sentence"}
    subject: str
    actor: str

    def _init_refusal(self, subject: str, actor: str, refusals: Sequence[dict[str, str]]) -> None:
        self.subject = subject
        self.actor = actor
        self.refusals = list(refusals)
        self.rules = sorted({r["rule"] for r in refusals})


def _policy_message(subject: str, refusals: Sequence[dict[str, str]]) -> str:
    reasons = "; ".join(f"[{r['rule']}] {r['sentence']}" for r in refusals)
    return f"{subject} refused by compliance rules: {reasons}"


class PolicyConflictError(ConflictError, PolicyRefusal):
    code = "policy_violation"

    def __init__(self, subject: str, actor: str, refusals: Sequence[dict[str, str]]) -> None:
        super().__init__(_policy_message(subject, refusals))
        self._init_refusal(subject, actor, refusals)


class AuthenticationError(SuanliError):
    code = "invalid_credential"


class PermissionDeniedError(SuanliError):
    code = "permission_denied"


class PolicyDeniedError(PermissionDeniedError, PolicyRefusal):
    code = "policy_denied"

    def __init__(self, subject: str, actor: str, refusals: Sequence[dict[str, str]]) -> None:
        super().__init__(_policy_message(subject, refusals))
        self._init_refusal(subject, actor, refusals)


class CatalogError(SuanliError):
    code = "catalog_error"
