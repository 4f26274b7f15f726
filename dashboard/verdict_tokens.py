"""Verdict tokens (docs/verdict-links.md): `v1.TRANS_NUM.VERDICT.EXPIRES.SIGNATURE`, the signature an
HMAC-SHA256 of the rest with FRAUDCTL_VERDICT_KEY. fraudctl signs them (src/verdict.rs), the
dashboard verifies them here; tests/fixtures/verdict_vectors.json holds both to the same vectors."""

import dataclasses
import datetime as dt
import hashlib
import hmac
import re

TOKEN_FORM = re.compile(r"v1\.([A-Za-z0-9_-]{1,64})\.(fraud|not_fraud)\.([1-9][0-9]{0,9})\.([0-9a-f]{64})")


class TokenError(Exception):
    """A verdict token refused: code is "malformed", "bad_signature" or "expired"."""

    def __init__(self, code: str, expires_at: dt.datetime | None = None):
        super().__init__(code)
        self.code = code
        self.expires_at = expires_at


@dataclasses.dataclass(frozen=True)
class Claim:
    trans_num: str
    verdict: str
    expires_at: dt.datetime


def verify_token(key: bytes, token: str, now: dt.datetime) -> Claim:
    """The claim of an authentic, unexpired token (docs/verdict-links.md): its form, then its
    signature (compared in constant time), then its expiry."""
    form = TOKEN_FORM.fullmatch(token)
    if form is None:
        raise TokenError("malformed")
    trans_num, verdict, expires, signature = form.groups()
    signed = token.rpartition(".")[0].encode("ascii")
    expected = hmac.new(key, signed, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature):
        raise TokenError("bad_signature")
    expires_at = dt.datetime.fromtimestamp(int(expires), dt.UTC)
    if now >= expires_at:
        raise TokenError("expired", expires_at)
    return Claim(trans_num, verdict, expires_at)
