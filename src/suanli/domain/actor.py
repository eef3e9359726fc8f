"""Who is calling: resolved from a credential by the API, passed to every mutation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ActorKind = Literal["admin", "agent", "tenant", "system"]


@dataclass(frozen=True, slots=True)
class Actor:
    kind: ActorKind
    name: str  # what the audit log shows, e.g. "admin:bootstrap" or "tenant:acme/key-3"
    credential_id: int | None = None
    tenant_id: int | None = None
    allowed_models: tuple[str, ...] | None = None


SYSTEM = Actor("system", "system")
