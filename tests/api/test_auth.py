"""Every endpoint but health needs a credential; roles limit what each may do."""

from __future__ import annotations

from tests.conftest import Api


def test_health_is_open_everything_else_is_not(api: Api) -> None:
    assert api.anon.get("/healthz").status_code == 200
    schema = api.anon.get("/openapi.json")
    assert schema.status_code == 200
    for path, ops in schema.json()["paths"].items():
        for method in ops:
            if path in ("/healthz",):
                continue
            url = path.replace("{name}", "x").replace("{key_id}", "1").replace("{token_id}", "1")
            r = api.anon.request(method.upper(), url)
            assert r.status_code == 401, (method, path, r.status_code)
            assert r.headers["www-authenticate"] == "Bearer"
    assert api.anon.get("/metrics").status_code == 401


def test_wrong_and_revoked_tokens(api: Api) -> None:
    bad = api.as_token("sa-not-a-real-token")
    assert bad.get("/v1/nodes").status_code == 401
    issued = api.client.post("/v1/admin/tokens", json={"name": "second"}).json()
    second = api.as_token(issued["secret"])
    assert second.get("/v1/nodes").status_code == 200
    assert api.client.delete(f"/v1/admin/tokens/{issued['id']}").status_code == 200
    assert second.get("/v1/nodes").status_code == 401


def test_tokens_are_stored_hashed_and_listed_by_prefix(api: Api) -> None:
    issued = api.client.post("/v1/admin/tokens", json={"name": "ci", "kind": "agent"}).json()
    secret = issued["secret"]
    assert secret.startswith("sn-")
    listed = api.client.get("/v1/admin/tokens").json()
    assert all("secret" not in t for t in listed)
    assert secret[:12] in [t["prefix"] for t in listed]
    from sqlalchemy import select

    from suanli.store.tables import AuditRow, CredentialRow

    with api.sessions() as s:
        stored = [r.digest for r in s.scalars(select(CredentialRow))]
        assert secret not in stored
        assert all(len(d) == 64 for d in stored)
        audit_text = " ".join(str(r.after) for r in s.scalars(select(AuditRow)))
        assert secret not in audit_text


def test_agent_token_cannot_administer(api: Api) -> None:
    agent = api.as_token(
        api.client.post("/v1/admin/tokens", json={"kind": "agent"}).json()["secret"]
    )
    r = agent.get("/v1/nodes")
    assert r.status_code == 403
    assert r.json()["error"]["type"] == "permission_error"


def test_admin_token_cannot_revoke_itself(api: Api) -> None:
    own = api.client.get("/v1/admin/tokens").json()[0]
    r = api.client.delete(f"/v1/admin/tokens/{own['id']}")
    assert r.status_code == 409
