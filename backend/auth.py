"""Bearer JWTs as Better Auth issues them.

HS256 with the shared `BETTER_AUTH_SECRET`, or EdDSA / RS256 with keys from `JWKS_URL` (`backend.jwks`). With a JWKS
URL, HS256 is refused unless `JWT_ACCEPT_HS256` asks for it: a secret left over in the environment must not become a
second, weaker way in. Algorithms are pinned per key source, so `alg: none` and HS/RS confusion (an RS public key
used as an HMAC secret) are rejected; `exp` is required; `iss` / `aud` are checked when configured. Verification
never runs on a worker thread: the signature check is CPU on the event loop, a key fetch is async I/O.
"""

from __future__ import annotations

import time
import unicodedata
from typing import Any

import jwt

from backend.errors import ApiError
from backend.jwks import JwksKeys, KeysUnavailable, UnknownKey
from backend.models import USER_ID_MAX
from backend.settings import Settings

HMAC_ALGORITHMS = ["HS256"]
JWKS_ALGORITHMS = ["EdDSA", "RS256"]
USER_CLAIMS = ("sub", "user_id", "id")


def unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


def valid_user_id(value: object) -> str | None:
    """A claim usable as a user id: a non-blank string (or integer) of at most USER_ID_MAX characters, no controls."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value)
    if not text.strip() or len(text) > USER_ID_MAX:
        return None
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in text):
        return None
    return text


class TokenVerifier:
    def __init__(self, settings: Settings) -> None:
        self.secret = settings.auth_secret() if settings.accepts_hs256 else None
        self.issuer = settings.jwt_issuer
        self.audience = settings.jwt_audience
        self.jwks = (
            JwksKeys(
                settings.jwks_url,
                cache_seconds=settings.jwks_cache_seconds,
                max_stale_seconds=settings.jwks_max_stale_seconds,
                cooldown_seconds=settings.jwks_refresh_cooldown_seconds,
            )
            if settings.jwks_url
            else None
        )

    async def verified_user(self, token: str) -> str:
        """The verified user id; raises a 401 ApiError that says what was wrong (503 when keys are unavailable)."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise unauthorized("The token is not a valid JWT.") from exc
        algorithm = header.get("alg")
        if algorithm in HMAC_ALGORITHMS and self.secret:
            key: Any = self.secret
            algorithms = HMAC_ALGORITHMS
        elif algorithm in JWKS_ALGORITHMS and self.jwks is not None:
            kid = header.get("kid")
            if not isinstance(kid, str) or not kid:
                raise unauthorized("The token names no signing key.")
            try:
                key = await self.jwks.key_for(kid)
            except KeysUnavailable as exc:
                raise ApiError(503, "auth_unavailable", "The signing keys could not be fetched.") from exc
            except UnknownKey as exc:
                raise unauthorized("The token's signing key is unknown.") from exc
            algorithms = JWKS_ALGORITHMS
        else:
            raise unauthorized(f"Tokens signed with {algorithm!r} are not accepted.")
        return self._user_of(token, key, algorithms)

    def _user_of(self, token: str, key: Any, algorithms: list[str]) -> str:
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
            if claim in claims:
                user = valid_user_id(claims[claim])
                if user is None:
                    raise unauthorized(f"The token's {claim!r} claim is not a usable user id.")
                return user
        raise unauthorized("The token names no user.")

    async def aclose(self) -> None:
        if self.jwks is not None:
            await self.jwks.aclose()


def mint_token(settings: Settings, user_id: str, *, ttl_seconds: int = 86400) -> str:
    """An HS256 token this configuration accepts (local use, tests, the eval runner)."""
    secret = settings.auth_secret()
    if not secret or not settings.accepts_hs256:
        raise RuntimeError(
            "minting a token needs BETTER_AUTH_SECRET (or the development default), and with JWKS_URL also "
            "JWT_ACCEPT_HS256=true"
        )
    now = int(time.time())
    claims: dict[str, Any] = {"sub": user_id, "iat": now, "exp": now + ttl_seconds}
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    return jwt.encode(claims, secret, algorithm="HS256")
