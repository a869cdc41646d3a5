"""The auth service's Prometheus counters."""

from typing import Final

from prometheus_client import Counter

PASSWORD_HASHES: Final = Counter(
    "saga_auth_password_hashes_total", "Passwords hashed to check a sign-in."
)
SIGN_INS: Final = Counter(
    "saga_auth_sign_ins_total",
    "Sign-ins, by outcome: success, failure (wrong password or unknown account), "
    "throttled (429: waits after failures) or busy (503: every hashing slot taken).",
    ["outcome"],
)
REVOCATIONS: Final = Counter(
    "saga_auth_revocations_total",
    "Revocations, by scope: token (one token) or all (every token of a user).",
    ["scope"],
)
KEY_ROTATIONS: Final = Counter(
    "saga_auth_key_rotations_total", "Signing keys made current by a rotation."
)
