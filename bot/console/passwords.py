"""Staff passwords: scrypt (stdlib) with a per-user salt, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets

# scrypt cost: n=2**14, r=8, p=1 (16 MiB, ~50 ms): the parameters travel in the stored string,
# so they can be raised later without invalidating old hashes.
_N, _R, _P = 2**14, 8, 1
MIN_LENGTH = 8


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${_N}${_R}${_P}${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str | None) -> bool:
    """False for no password set or a malformed hash; never raises on what a user typed."""
    if not stored:
        # Spend the same time as a real check, so timing does not tell which keys have a password.
        hashlib.scrypt(password.encode(), salt=b"0" * 16, n=_N, r=_R, p=_P, dklen=32)
        return False
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        actual = hashlib.scrypt(
            password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=len(digest) // 2
        )
    except ValueError:
        return False
    return hmac.compare_digest(actual.hex(), digest)
