"""Bearer JWTs as Better Auth issues them.

HS256 with the shared `BETTER_AUTH_SECRET`, or EdDSA / RS256 with keys from `JWKS_URL` (cached by PyJWKClient).
Algorithms are pinned per key source, so `alg: none` and HS/RS confusion (an RS public key used as an HMAC secret)
are rejected; `exp` is required; `iss` / `aud` are checked when configured.
"""

from __future__ import annotations

import time
from typing import Any

import anyio.to_thread
import jwt

from backend.errors import ApiError
from backend.settings import Settings

HMAC_ALGORITHMS = ["HS256"]
JWKS_ALGORITHMS = ["EdDSA", "RS256"]
USER_CLAIMS = ("sub", "user_id", "id")


def unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


class TokenVerifier:
    def __init__(self, settings: Settings) -> None:
        self.secret = settings.auth_secret()
        self.issuer = settings.jwt_issuer
        self.audience = settings.jwt_audience
        self.jwks = (
            jwt.PyJWKClient(settings.jwks_url, cache_keys=True, lifespan=settings.jwks_cache_seconds, timeout=5)
            if settings.jwks_url
            else None
        )

    async def verified_user(self, token: str) -> str:
        """`user_id` from async code: inline with a shared secret (pure CPU, ~0.1 ms), in the threadpool when a
        JWKS URL is set (a key fetch blocks)."""
        if self.jwks is None:
            return self.user_id(token)
        return await anyio.to_thread.run_sync(self.user_id, token)

    def user_id(self, token: str) -> str:
        """The verified user id; raises a 401 ApiError that says what was wrong."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise unauthorized("The token is not a valid JWT.") from exc
        algorithm = header.get("alg")
        if algorithm in HMAC_ALGORITHMS and self.secret:
            key: Any = self.secret
            algorithms = HMAC_ALGORITHMS
        elif algorithm in JWKS_ALGORITHMS and self.jwks is not None:
            try:
                key = self.jwks.get_signing_key_from_jwt(token).key
            except jwt.PyJWKClientConnectionError as exc:
                raise ApiError(503, "auth_unavailable", "The signing keys could not be fetched.") from exc
            except jwt.PyJWTError as exc:
                raise unauthorized("The token's signing key is unknown.") from exc
            algorithms = JWKS_ALGORITHMS
        else:
            raise unauthorized(f"Tokens signed with {algorithm!r} are not accepted.")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                issuer=self.issuer,
                audience=self.audience,
                options={"require": ["exp"], "verify_aud": self.audience is not None},
                leeway=5,
            )
        except jwt.ExpiredSignatureError as exc:
            raise unauthorized("The token has expired.") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise unauthorized(f"The token has no {exc.claim!r} claim.") from exc
        except jwt.PyJWTError as exc:
            raise unauthorized("The token could not be verified.") from exc
        for claim in USER_CLAIMS:
            value = claims.get(claim)
            if isinstance(value, str | int) and str(value):
                return str(value)
        raise unauthorized("The token names no user.")


def mint_token(settings: Settings, user_id: str, *, ttl_seconds: int = 86400) -> str:
    """An HS256 token this configuration accepts (local use, tests, the eval runner)."""
    secret = settings.auth_secret()
    if not secret:
        raise RuntimeError("minting a token needs BETTER_AUTH_SECRET (or the development default)")
    now = int(time.time())
    claims: dict[str, Any] = {"sub": user_id, "iat": now, "exp": now + ttl_seconds}
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    return jwt.encode(claims, secret, algorithm="HS256")
