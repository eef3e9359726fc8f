"""`suanli audit`: who changed what, when."""

from __future__ import annotations

import json

from suanli.cli.common import JsonOpt, api, print_json, table


def audit(
    resource_type: str | None = None,
    resource: str | None = None,
    actor: str | None = None,
    limit: int = 50,
    as_json: bool = JsonOpt,
) -> None:
    """Show the audit log, newest first."""
    with api() as client:
        rows = client.get(
            "/v1/audit", resource_type=resource_type, resource=resource, actor=actor, limit=limit
        )
    if as_json:
        print_json(rows)
        return

    def brief(v: object) -> str:
        return "" if v is None else json.dumps(v, ensure_ascii=False)[:80]

    table(
        "audit log",
        ["at", "actor", "action", "resource", "before", "after", "reason"],
        [
            [
                r["at"][:19],
                r["actor"],
                r["action"],
                f"{r['resource_type']}/{r['resource']}",
                brief(r["before"]),
                brief(r["after"]),
                r["reason"],
            ]
            for r in rows
        ],
    )
