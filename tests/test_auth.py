"""Bearer JWTs: HS256 shared secret and EdDSA / RS256 through a JWKS URL; every bad token is a 401."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from backend.auth import TokenVerifier
from backend.errors import ApiError
from backend.settings import Settings
from tests.conftest import TEST_SECRET, Harness, make_settings, new_user


def hs256(claims: dict[str, Any], secret: str = TEST_SECRET, **headers: Any) -> str:
    return jwt.encode(claims, secret, algorithm="HS256", headers=headers or None)


def future() -> int:
    return int(time.time()) + 600


@pytest.fixture
async def app(make_harness: Any) -> Harness:
    built: Harness = await make_harness()
    return built


async def get_tasks(app: Harness, user: str, token: str | None, scheme: str = "Bearer") -> Any:
    headers = {"Authorization": f"{scheme} {token}"} if token is not None else {}
    return await app.client.get(f"/api/{user}/tasks", headers=headers)


def unsigned(claims: dict[str, Any]) -> str:
    import base64

    def b64(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."


@pytest.mark.parametrize(
    ("case", "token_factory"),
    [
        ("missing", lambda u: None),
        ("garbled", lambda u: "not-a-jwt"),
        ("expired", lambda u: hs256({"sub": u, "exp": int(time.time()) - 60})),
        (
            "wrong signature",
            lambda u: hs256({"sub": u, "exp": future()}, secret="another-secret-" + "y" * 40),
        ),
        ("alg none", lambda u: unsigned({"sub": u, "exp": future()})),
        ("no exp", lambda u: hs256({"sub": u})),
        ("no user", lambda u: hs256({"exp": future()})),
        ("basic scheme", lambda u: "Basic"),
    ],
)
async def test_bad_tokens_are_401_with_error_body(app: Harness, case: str, token_factory: Any) -> None:
    user = new_user()
    token = token_factory(user)
    if case == "basic scheme":
        response = await get_tasks(app, user, "dXNlcjpwYXNz", scheme="Basic")
    else:
        response = await get_tasks(app, user, token)
    assert response.status_code == 401, case
    body = response.json()
    assert body["error"]["code"] == "unauthorized" and body["error"]["message"]
    assert response.headers["www-authenticate"] == "Bearer"


async def test_path_user_other_than_token_user_is_403(app: Harness) -> None:
    alice, bob = new_user(), new_user()
    response = await app.client.get(f"/api/{bob}/tasks", headers=app.auth(alice))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
    chat = await app.client.post(f"/api/{bob}/chat", json={"message": "hi"}, headers=app.auth(alice))
    assert chat.status_code == 403


async def test_better_auth_user_id_claims_are_accepted(app: Harness) -> None:
    user = new_user()
    for claim in ("user_id", "id"):
        response = await get_tasks(app, user, hs256({claim: user, "exp": future()}))
        assert response.status_code == 200, claim


async def test_issuer_and_audience_are_checked_when_configured(tmp_path: Path) -> None:
    verifier = TokenVerifier(make_settings(tmp_path, jwt_issuer="https://auth.example", jwt_audience="todo"))
    good = {"sub": "u1", "exp": future(), "iss": "https://auth.example", "aud": "todo"}
    assert await verifier.verified_user(hs256(good)) == "u1"
    for bad in (
        {**good, "iss": "https://evil.example"},
        {**good, "aud": "other"},
        {"sub": "u1", "exp": future()},
    ):
        with pytest.raises(ApiError) as raised:
            await verifier.verified_user(hs256(bad))
        assert raised.value.status == 401


# ---------------------------------------------------------------- JWKS (EdDSA, RS256)


@pytest.fixture(scope="module")
def keys() -> dict[str, Any]:
    return {
        "ed": ed25519.Ed25519PrivateKey.generate(),
        "rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
    }


@pytest.fixture(scope="module")
def jwks_url(keys: dict[str, Any]) -> Iterator[str]:
    """A real JWKS endpoint on loopback, as Better Auth publishes at /api/auth/jwks."""
    ed_jwk = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(keys["ed"].public_key()))
    rsa_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(keys["rsa"].public_key()))
    body = json.dumps({"keys": [{**ed_jwk, "kid": "ed1", "alg": "EdDSA"}, {**rsa_jwk, "kid": "rsa1", "alg": "RS256"}]})

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/api/auth/jwks"
    server.shutdown()


def jwks_verifier(tmp_path: Path, jwks_url: str) -> TokenVerifier:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, environment="production", jwks_url=jwks_url, data_dir=tmp_path
    )
    return TokenVerifier(settings)


async def test_eddsa_and_rs256_tokens_verify_through_jwks(tmp_path: Path, jwks_url: str, keys: dict[str, Any]) -> None:
    verifier = jwks_verifier(tmp_path, jwks_url)
    claims = {"sub": "better-auth-user", "exp": future()}
    assert await verifier.verified_user(jwt.encode(claims, keys["ed"], algorithm="EdDSA", headers={"kid": "ed1"})) == (
        "better-auth-user"
    )
    assert await verifier.verified_user(
        jwt.encode(claims, keys["rsa"], algorithm="RS256", headers={"kid": "rsa1"})
    ) == ("better-auth-user")
    await verifier.aclose()


async def test_verification_never_takes_a_worker_thread(
    tmp_path: Path, jwks_url: str, keys: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key fetch is async I/O and a signature check is CPU on the event loop: neither holds a worker thread (a
    flood of tokens would otherwise fill the threadpool every route and health check shares)."""
    import anyio.to_thread

    trips: list[object] = []
    real = anyio.to_thread.run_sync

    async def counting(*args: Any, **kwargs: Any) -> Any:
        trips.append(args[0])
        return await real(*args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counting)
    token = jwt.encode({"sub": "u1", "exp": future()}, keys["ed"], algorithm="EdDSA", headers={"kid": "ed1"})
    verifier = jwks_verifier(tmp_path, jwks_url)
    assert await verifier.verified_user(token) == "u1"
    hs = TokenVerifier(make_settings(tmp_path))
    assert await hs.verified_user(jwt.encode({"sub": "u2", "exp": future()}, TEST_SECRET, algorithm="HS256")) == "u2"
    await verifier.aclose()
    assert trips == []


async def test_hs_rs_confusion_and_unknown_keys_are_rejected(
    tmp_path: Path, jwks_url: str, keys: dict[str, Any]
) -> None:
    verifier = jwks_verifier(tmp_path, jwks_url)
    public_pem = (
        keys["rsa"]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    claims = {"sub": "attacker", "exp": future()}
    # The classic confusion: sign HS256 with the RSA public key as the HMAC secret.
    import base64
    import hashlib
    import hmac

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    signing_input = f"{b64(json.dumps({'alg': 'HS256', 'kid': 'rsa1'}).encode())}.{b64(json.dumps(claims).encode())}"
    forged = f"{signing_input}.{b64(hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest())}"
    other_key = ed25519.Ed25519PrivateKey.generate()
    for token in (
        forged,
        unsigned(claims),
        jwt.encode(claims, other_key, algorithm="EdDSA", headers={"kid": "ed1"}),
        jwt.encode(claims, other_key, algorithm="EdDSA", headers={"kid": "unknown"}),
        jwt.encode({"sub": "x"}, keys["ed"], algorithm="EdDSA", headers={"kid": "ed1"}),
    ):
        with pytest.raises(ApiError) as raised:
            await verifier.verified_user(token)
        assert raised.value.status == 401
    await verifier.aclose()


def test_production_refuses_placeholder_secrets(tmp_path: Path) -> None:
    for secret in ("changeme", "short", "changeme-" + "x" * 40):
        with pytest.raises(ValueError, match="BETTER_AUTH_SECRET"):
            Settings(_env_file=None, environment="production", better_auth_secret=secret)  # type: ignore[call-arg]
    ok = Settings(_env_file=None, environment="production", better_auth_secret="z" * 40)  # type: ignore[call-arg]
    assert ok.auth_secret() == "z" * 40


def test_development_generates_and_keeps_its_secret(tmp_path: Path) -> None:
    first = Settings(_env_file=None, data_dir=tmp_path).auth_secret()  # type: ignore[call-arg]
    second = Settings(_env_file=None, data_dir=tmp_path).auth_secret()  # type: ignore[call-arg]
    assert first and first == second and len(first) >= 32
