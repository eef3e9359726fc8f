"""Tenant API keys as the gateway sees them: looked up by digest, cached for a moment.

A key found (or not found) is remembered for ``ttl_s`` seconds, so the database sees at most
one lookup per key per process per ``ttl_s``; a revoked key or a changed limit takes effect
on every gateway process within that time. Unknown digests are cached too (bounded), so a
client retrying a wrong key does not reach the database each time.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from suanli.gateway.ratelimit import Limits, Subject
from suanli.store.tables import CredentialRow, TenantRow

MAX_NEGATIVE = 10_000


@dataclass(frozen=True, slots=True)
class KeyInfo:
    credential_id: int
    tenant_id: int
    tenant: str
    models: frozenset[str] | None
    subjects: tuple[Subject, ...]  # the key's and the tenant's rate limits
    prepaid: bool = False  # refused when its funds cannot cover a request


def _lookup(factory: sessionmaker[Session], digest: str) -> KeyInfo | None:
    with factory() as session:
        row = session.execute(
            select(CredentialRow, TenantRow)
            .join(TenantRow, CredentialRow.tenant_id == TenantRow.id)
            .where(CredentialRow.digest == digest, CredentialRow.kind == "api_key")
        ).first()
    if row is None:
        return None
    cred, tenant = row
    if cred.revoked_at is not None:
        return None
    subjects = []
    if cred.rpm_limit is not None or cred.tpm_limit is not None:
        subjects.append(Subject(f"key:{cred.id}", Limits(cred.rpm_limit, cred.tpm_limit)))
    if tenant.rpm_limit is not None or tenant.tpm_limit is not None:
        subjects.append(Subject(f"tenant:{tenant.id}", Limits(tenant.rpm_limit, tenant.tpm_limit)))
    models = frozenset(cred.allowed_models) if cred.allowed_models is not None else None
    return KeyInfo(cred.id, tenant.id, tenant.name, models, tuple(subjects), tenant.prepaid)


class KeyCache:
    def __init__(
        self,
        factory: sessionmaker[Session],
        ttl_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.factory = factory
        self.ttl_s = ttl_s
        self.clock = clock
        self._known: dict[str, tuple[float, KeyInfo | None]] = {}

    async def resolve(self, token: str) -> KeyInfo | None:
        digest = hashlib.sha256(token.encode()).hexdigest()
        now = self.clock()
        hit = self._known.get(digest)
        if hit is not None and hit[0] > now:
            return hit[1]
        loop = asyncio.get_running_loop()
        info = await loop.run_in_executor(None, _lookup, self.factory, digest)
        if info is None and len(self._known) >= MAX_NEGATIVE:
            self._known = {d: v for d, v in self._known.items() if v[1] is not None}
        self._known[digest] = (now + self.ttl_s, info)
        return info

    def forget(self) -> None:
        self._known.clear()
