"""Tenants, users and API keys (shown once, hashed, prefix visible, revocable, scoped)."""

from __future__ import annotations

from tests.conftest import Api


def _tenant(api: Api, name: str = "acme") -> None:
    r = api.client.post(
        "/v1/tenants", json={"name": name, "country": "CN", "display_name": "Acme AI"}
    )
    assert r.status_code == 201, r.text


def test_tenant_users_and_keys(api: Api) -> None:
    _tenant(api)
    r = api.client.post("/v1/tenants/acme/users", json={"email": "Li@Acme.cn", "role": "admin"})
    assert r.status_code == 201
    assert (
        api.client.post("/v1/tenants/acme/users", json={"email": "li@acme.cn"}).status_code == 409
    )
    assert (
        api.client.post("/v1/tenants/acme/users", json={"email": "not-an-email"}).status_code == 422
    )
    key = api.client.post(
        "/v1/tenants/acme/api-keys",
        json={"name": "prod", "user": "li@acme.cn", "models": ["qwen3-8b"]},
    ).json()
    assert key["secret"].startswith("sk-")
    assert key["prefix"] == key["secret"][:12]
    assert key["models"] == ["qwen3-8b"]
    listed = api.client.get("/v1/tenants/acme/api-keys").json()
    assert "secret" not in listed[0]


def test_key_for_unknown_user_is_404_and_writes_nothing(api: Api) -> None:
    _tenant(api)
    r = api.client.post("/v1/tenants/acme/api-keys", json={"user": "ghost@acme.cn"})
    assert r.status_code == 404
    assert api.client.get("/v1/tenants/acme/api-keys").json() == []


def test_tenant_key_sees_only_its_tenant(api: Api) -> None:
    _tenant(api, "acme")
    _tenant(api, "globex")
    secret = api.client.post("/v1/tenants/acme/api-keys", json={}).json()["secret"]
    tenant = api.as_token(secret)
    assert tenant.get("/v1/tenants/acme").status_code == 200
    assert tenant.get("/v1/tenants/globex").status_code == 403
    assert tenant.get("/v1/tenants").status_code == 403
    assert tenant.get("/v1/nodes").status_code == 403
    assert tenant.post("/v1/tenants", json={"name": "x", "country": "CN"}).status_code == 403


def test_revoked_key_stops_working(api: Api) -> None:
    _tenant(api)
    key = api.client.post("/v1/tenants/acme/api-keys", json={}).json()
    tenant = api.as_token(key["secret"])
    assert tenant.get("/v1/tenants/acme").status_code == 200
    assert api.client.delete(f"/v1/tenants/acme/api-keys/{key['id']}").status_code == 200
    assert api.client.delete(f"/v1/tenants/acme/api-keys/{key['id']}").status_code == 409
    assert tenant.get("/v1/tenants/acme").status_code == 401
    assert api.client.delete("/v1/tenants/acme/api-keys/999").status_code == 404


def test_bad_tenant_country(api: Api) -> None:
    r = api.client.post("/v1/tenants", json={"name": "x", "country": "ZZ"})
    assert r.status_code == 422
    assert r.json()["error"]["param"] == "country"
