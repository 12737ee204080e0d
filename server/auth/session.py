"""Browser sign-in: a signed session cookie naming a user token, and CSRF tokens for forms.

The cookie holds ``token_id.expires.signature``; the signature covers the token's stored hash,
so revoking the token (or the server key changing) ends every session made with it. A form's
CSRF token is an HMAC of a random per-browser cookie and of the session cookie: a page on
another site can neither read it nor forge it, and a token made for one session (or for a
signed-out visitor) is refused in any other, even in the same browser.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import Annotated
from urllib.parse import quote, urlsplit

from fastapi import Depends, HTTPException, Request, Response

from server.config import Settings
from server.deps import SessionDep, StateDep
from server.models import ApiToken, TokenKind

SESSION_COOKIE = "greenlight_session"
CSRF_COOKIE = "greenlight_csrf"


class LoginRequired(Exception):
    """A page was asked for by a signed-out visitor of a private server: send them to sign in."""

    def __init__(self, next_url: str) -> None:
        self.next_url = next_url


def _key(settings: Settings) -> bytes:
    secret = settings.secret_key.get_secret_value()
    if not secret:  # embedded mode: the data directory's generated key
        from server.crypto import embedded_key

        secret = embedded_key(settings.data_dir)
    return hashlib.sha256(b"greenlight browser sessions\0" + secret.encode()).digest()


def _sign(settings: Settings, message: str) -> str:
    return hmac.new(_key(settings), message.encode(), hashlib.sha256).hexdigest()


def secure_cookies(request: Request, settings: Settings) -> bool:
    return request.url.scheme == "https" or settings.public_url.startswith("https://")


def session_cookie_value(settings: Settings, token: ApiToken) -> str:
    expires = int(time.time() + settings.session_hours * 3600)
    return f"{token.id}.{expires}.{_sign(settings, f'{token.id}.{expires}.{token.token_hash}')}"


def signed_in_token(request: Request, session: SessionDep, state: StateDep) -> ApiToken | None:
    """The user token behind this request's session cookie, if it is valid, unexpired and live."""
    value = request.cookies.get(SESSION_COOKIE, "")
    parts = value.split(".")
    if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit() or int(parts[1]) < time.time():
        return None
    token = session.get(ApiToken, int(parts[0]))
    if token is None or token.revoked or token.kind is not TokenKind.user:
        return None
    expected = _sign(state.settings, f"{parts[0]}.{parts[1]}.{token.token_hash}")
    return token if hmac.compare_digest(expected, parts[2]) else None


ViewerDep = Annotated[ApiToken | None, Depends(signed_in_token)]


def login_url(next_url: str) -> str:
    return f"/-/login?next={quote(next_url, safe='/')}"


def csrf_seed(request: Request) -> str:
    """This browser's random CSRF seed (made on first sight; ``remember_csrf_seed`` stores it)."""
    seed = request.cookies.get(CSRF_COOKIE) or getattr(request.state, "new_csrf_seed", None)
    if not seed or len(seed) > 100:
        seed = secrets.token_urlsafe(24)
        request.state.new_csrf_seed = seed
    return seed


def _csrf_for(settings: Settings, seed: str, request: Request) -> str:
    # The session cookie as sent (empty when signed out): it changes at every sign-in and sign-out.
    return _sign(settings, f"csrf\0{seed}\0{request.cookies.get(SESSION_COOKIE, '')[:500]}")


def csrf_token(request: Request, settings: Settings) -> str:
    return _csrf_for(settings, csrf_seed(request), request)


def remember_csrf_seed(request: Request, response: Response, settings: Settings) -> None:
    seed = getattr(request.state, "new_csrf_seed", None)
    if seed:
        response.set_cookie(
            CSRF_COOKIE, seed, httponly=True, samesite="strict", secure=secure_cookies(request, settings)
        )


def check_csrf(request: Request, settings: Settings, submitted: str) -> None:
    seed = request.cookies.get(CSRF_COOKIE)
    if not seed or not hmac.compare_digest(_csrf_for(settings, seed, request), submitted or ""):
        raise HTTPException(403, "the form's CSRF token is missing or wrong: reload the page and try again")
    origin = request.headers.get("origin")
    allowed = {request.url.netloc, urlsplit(settings.public_url).netloc}
    if origin and urlsplit(origin).netloc not in allowed:
        raise HTTPException(403, "a form from another site may not act here")
