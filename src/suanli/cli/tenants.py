"""`suanli tenants ...`, `suanli keys ...` and `suanli tokens ...`."""

from __future__ import annotations

from typing import Annotated

import typer

from suanli.cli.common import JsonOpt, api, console, print_json, table

tenants_app = typer.Typer(help="Tenants (AI developers and companies) and their users.")
keys_app = typer.Typer(help="Tenant API keys: shown once, stored hashed, revocable.")
tokens_app = typer.Typer(help="Operator admin tokens and node-agent tokens.")

RpmOpt = Annotated[int | None, typer.Option(min=1, help="gateway requests per minute")]
TpmOpt = Annotated[int | None, typer.Option(min=1, help="gateway tokens per minute")]


def _limits(rpm: int | None, tpm: int | None, clear: bool) -> dict[str, int | None]:
    if clear:
        return {"rpm_limit": None, "tpm_limit": None}
    body: dict[str, int | None] = {
        k: v for k, v in (("rpm_limit", rpm), ("tpm_limit", tpm)) if v is not None
    }
    if not body:
        raise typer.BadParameter("give --rpm and/or --tpm, or --clear")
    return body


@tenants_app.command("limits")
def tenants_limits(
    tenant: str,
    rpm: RpmOpt = None,
    tpm: TpmOpt = None,
    clear: Annotated[bool, typer.Option(help="remove both limits")] = False,
) -> None:
    """Set a tenant's gateway limits (all its keys together)."""
    with api() as client:
        row = client.patch(f"/v1/tenants/{tenant}/limits", _limits(rpm, tpm, clear))
    console.print(
        f"{tenant}: rpm {row['rpm_limit'] or 'unlimited'}, tpm {row['tpm_limit'] or 'unlimited'}"
    )


@keys_app.command("limits")
def keys_limits(
    tenant: str,
    key_id: int,
    rpm: RpmOpt = None,
    tpm: TpmOpt = None,
    clear: Annotated[bool, typer.Option(help="remove both limits")] = False,
) -> None:
    """Set one API key's gateway limits."""
    with api() as client:
        row = client.patch(
            f"/v1/tenants/{tenant}/api-keys/{key_id}/limits", _limits(rpm, tpm, clear)
        )
    console.print(
        f"key {key_id}: rpm {row['rpm_limit'] or 'unlimited'}, "
        f"tpm {row['tpm_limit'] or 'unlimited'}"
    )


@tenants_app.command("list")
def tenants_list(as_json: bool = JsonOpt) -> None:
    """List tenants."""
    with api() as client:
        rows = client.get("/v1/tenants")
    if as_json:
        print_json(rows)
        return
    table(
        "tenants",
        ["name", "display name", "country", "verified", "users"],
        [
            [t["name"], t["display_name"], t["country"], t["verified"], len(t["users"])]
            for t in rows
        ],
    )


@tenants_app.command("create")
def tenants_create(
    name: str,
    country: Annotated[str, typer.Option(help="ISO 3166-1 alpha-2 code of the tenant")],
    display_name: str = "",
    verified: Annotated[bool, typer.Option(help="identity verified (KYC)")] = False,
    rpm: RpmOpt = None,
    tpm: TpmOpt = None,
) -> None:
    """Create a tenant."""
    body = {
        "name": name,
        "country": country,
        "display_name": display_name,
        "verified": verified,
        "rpm_limit": rpm,
        "tpm_limit": tpm,
    }
    with api() as client:
        client.post("/v1/tenants", body)
    console.print(f"created tenant [bold]{name}[/bold]")


@tenants_app.command("show")
def tenants_show(name: str, as_json: bool = JsonOpt) -> None:
    """Show a tenant and its users."""
    with api() as client:
        row = client.get(f"/v1/tenants/{name}")
    if as_json:
        print_json(row)
        return
    console.print(f"[bold]{row['name']}[/bold] {row['display_name']} ({row['country']})")
    table(
        "users",
        ["email", "name", "role"],
        [[u["email"], u["name"], u["role"]] for u in row["users"]],
    )


@tenants_app.command("add-user")
def tenants_add_user(
    tenant: str, email: str, name: str = "", role: Annotated[str, typer.Option()] = "member"
) -> None:
    """Add a user to a tenant."""
    with api() as client:
        client.post(f"/v1/tenants/{tenant}/users", {"email": email, "name": name, "role": role})
    console.print(f"added {email} to {tenant}")


@keys_app.command("create")
def keys_create(
    tenant: str,
    name: str = "",
    user: Annotated[str | None, typer.Option(help="email of the tenant user")] = None,
    model: Annotated[
        list[str] | None, typer.Option(help="limit the key to this model (repeatable)")
    ] = None,
    rpm: RpmOpt = None,
    tpm: TpmOpt = None,
) -> None:
    """Issue an API key; the secret is printed once and never again."""
    body = {"name": name, "user": user, "models": model, "rpm_limit": rpm, "tpm_limit": tpm}
    with api() as client:
        row = client.post(f"/v1/tenants/{tenant}/api-keys", body)
    console.print(f"key {row['id']} ({row['prefix']}...) for {tenant}; store it now:")
    typer.echo(row["secret"])


@keys_app.command("list")
def keys_list(tenant: str, as_json: bool = JsonOpt) -> None:
    """List a tenant's keys (prefixes only)."""
    with api() as client:
        rows = client.get(f"/v1/tenants/{tenant}/api-keys")
    if as_json:
        print_json(rows)
        return
    table(
        f"api keys of {tenant}",
        ["id", "name", "prefix", "models", "created", "revoked"],
        [
            [
                k["id"],
                k["name"],
                k["prefix"],
                ",".join(k["models"] or []) or "all",
                k["created_at"][:19],
                (k["revoked_at"] or "")[:19],
            ]
            for k in rows
        ],
    )


@keys_app.command("revoke")
def keys_revoke(tenant: str, key_id: int) -> None:
    """Revoke a key at once."""
    with api() as client:
        client.delete(f"/v1/tenants/{tenant}/api-keys/{key_id}")
    console.print(f"revoked key {key_id} of {tenant}")


@tokens_app.command("create")
def tokens_create(
    name: str = "",
    kind: Annotated[str, typer.Option(help="admin or agent")] = "admin",
) -> None:
    """Issue an admin or node-agent token; printed once."""
    with api() as client:
        row = client.post("/v1/admin/tokens", {"name": name, "kind": kind})
    console.print(f"{kind} token {row['id']} ({row['prefix']}...); store it now:")
    typer.echo(row["secret"])


@tokens_app.command("list")
def tokens_list(as_json: bool = JsonOpt) -> None:
    """List admin and agent tokens (prefixes only)."""
    with api() as client:
        rows = client.get("/v1/admin/tokens")
    if as_json:
        print_json(rows)
        return
    table(
        "tokens",
        ["id", "kind", "name", "prefix", "created", "revoked"],
        [
            [
                t["id"],
                t["kind"],
                t["name"],
                t["prefix"],
                t["created_at"][:19],
                (t["revoked_at"] or "")[:19],
            ]
            for t in rows
        ],
    )


@tokens_app.command("revoke")
def tokens_revoke(token_id: int) -> None:
    """Revoke a token."""
    with api() as client:
        client.delete(f"/v1/admin/tokens/{token_id}")
    console.print(f"revoked token {token_id}")
