"""Schemathesis hooks for testing/schemathesis/run.py (loaded through
SCHEMATHESIS_HOOKS): signs half of the provider notifications it sends, so
that the generated bodies reach the notification reader rather than all
stopping at the signature check (401).

QuickBooks signs a notification with intuit-signature: base64 of the
HMAC-SHA256 of the raw body under the verifier token (run.py passes the
token the server was started with in SYNC_HOST_ST_VERIFIER).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os

import schemathesis

VERIFIER = os.environ["SYNC_HOST_ST_VERIFIER"].encode()
SIGNATURE = "intuit-signature"


def negative(case) -> bool:
    """Whether schemathesis made the case to be refused (signing it could
    make it acceptable)."""
    meta = getattr(case, "_meta", None)
    if meta is None:
        return False
    components = getattr(meta, "components", {}) or {}
    return meta.generation.mode.is_negative or any(c.mode.is_negative for c in components.values())


@schemathesis.hook
def before_call(context, case, kwargs):
    if not case.path.startswith("/webhooks/") or not case.headers or SIGNATURE not in case.headers:
        return
    # Half signed (decided by the generated signature, so a shrunk case
    # keeps its half), half left as generated: a 401.
    if negative(case) or len(str(case.headers[SIGNATURE])) % 2:
        return
    if not isinstance(case.body, (dict, list)):
        return
    # The bytes requests sends for `json=` (the standard library's dumps,
    # without NaN); the body itself is left as generated, for schemathesis'
    # own bookkeeping.
    body = json.dumps(case.body, allow_nan=False).encode()
    case.headers[SIGNATURE] = base64.b64encode(hmac.new(VERIFIER, body, hashlib.sha256).digest()).decode()
