"""Signed, expiring acknowledge links: alert, contact and expiry under an HMAC."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

from alerts.model import AlertId, ContactId

_SIG_BYTES = 16


@dataclass(frozen=True, slots=True)
class LinkClaim:
    alert_id: AlertId
    contact_id: ContactId
    expires_ms: int


class LinkError(ValueError):
    """The link was altered, is malformed, or has expired."""


class Links:
    def __init__(self, secret: bytes, *, public_url: str, ttl_s: int) -> None:
        if len(secret) < 16:
            raise ValueError("link secret: at least 16 bytes")
        self._secret = secret
        self._base = public_url.rstrip("/")
        self._ttl_ms = ttl_s * 1000

    def url(self, alert_id: AlertId, contact_id: ContactId, now_ms: int) -> str:
        return f"{self._base}/a/{self.token(alert_id, contact_id, now_ms)}"

    def token(self, alert_id: AlertId, contact_id: ContactId, now_ms: int) -> str:
        expires = (now_ms + self._ttl_ms) // 1000
        claim = f"{alert_id}.{contact_id}.{expires}".encode()
        return f"{_b64(claim)}.{_b64(self._sign(claim))}"

    def issued_ms(self, claim: LinkClaim) -> int:
        """When a link was made, as far as it tells: its expiry less the link lifetime (so a
        longer ttl set since errs towards treating the link as older)."""
        return claim.expires_ms - self._ttl_ms

    def verify(self, token: str, now_ms: int) -> LinkClaim:
        try:
            claim_part, sig_part = token.split(".")
            claim = _unb64(claim_part)
            signature = _unb64(sig_part)
        except ValueError:
            raise LinkError("malformed link") from None
        if not hmac.compare_digest(signature, self._sign(claim)):
            raise LinkError("link signature does not match")
        try:
            alert, rest = claim.decode().split(".", 1)
            contact, expires = rest.rsplit(".", 1)
            claimed = LinkClaim(AlertId(int(alert)), ContactId(contact), int(expires) * 1000)
        except ValueError:
            raise LinkError("malformed link") from None
        if now_ms >= claimed.expires_ms:
            raise LinkError("link has expired")
        return claimed

    def _sign(self, claim: bytes) -> bytes:
        return hmac.new(self._secret, claim, hashlib.sha256).digest()[:_SIG_BYTES]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError):
        raise ValueError(text) from None
