"""Console sessions: a signed, expiring cookie naming the contact and their login token."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

from alerts.model import ContactId

COOKIE = "bw_session"
SESSION_TTL_S = 12 * 3600  # one care shift
_SIG_BYTES = 20


@dataclass(frozen=True, slots=True)
class Session:
    contact_id: ContactId
    token_sha256: bytes  # the login token's digest: revoking the token ends the session
    expires_s: int
    cookie: str  # the signed value, from which the form token is derived


class Sessions:
    """Signs and checks session cookies and form tokens with keys derived from the link secret."""

    def __init__(self, secret: bytes) -> None:
        # Separate keys per use, so a link signature can never pass as a session or a form token.
        self._session_key = hmac.new(secret, b"console-session", hashlib.sha256).digest()
        self._form_key = hmac.new(secret, b"console-form", hashlib.sha256).digest()

    def issue(self, contact_id: ContactId, token_sha256: bytes, now_ms: int) -> Session:
        expires = now_ms // 1000 + SESSION_TTL_S
        claim = f"{_b64(contact_id.encode())}.{_b64(token_sha256)}.{expires}"
        cookie = f"{claim}.{_b64(self._sign(claim))}"
        return Session(contact_id, token_sha256, expires, cookie)

    def verify(self, cookie: str | None, now_ms: int) -> Session | None:
        """The session the cookie carries, or None if it is absent, altered or expired."""
        if not cookie or cookie.count(".") != 3:
            return None
        claim, _, signature = cookie.rpartition(".")
        try:
            given = _unb64(signature)
            contact, digest, expires = claim.split(".")
            session = Session(
                ContactId(_unb64(contact).decode()), _unb64(digest), int(expires), cookie
            )
        except (ValueError, UnicodeDecodeError):
            return None
        if not hmac.compare_digest(given, self._sign(claim)):
            return None
        if now_ms // 1000 >= session.expires_s:
            return None
        return session

    def form_token(self, session: Session) -> str:
        """The hidden field every POST must carry: bound to the session, unknown to other sites."""
        return _b64(hmac.new(self._form_key, session.cookie.encode(), hashlib.sha256).digest())

    def form_ok(self, session: Session, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self.form_token(session).encode())

    def _sign(self, claim: str) -> bytes:
        return hmac.new(self._session_key, claim.encode(), hashlib.sha256).digest()[:_SIG_BYTES]


def token_digest(token: str) -> bytes:
    """How contact tokens are kept and looked up: only their SHA-256."""
    return hashlib.sha256(token.encode()).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError):
        raise ValueError(text) from None
