"""API keys for the HTTP service (``docsieve keys``, ``docsieve serve``).

A key is ``dsk_<id>_<secret>``: the id finds its row, the secret is 256 random bits. The store keeps only
the key's SHA-256 (a slow password hash buys nothing for a random 256-bit secret, and each request pays
for the check), compared in constant time. A key has one scope; each scope allows what those before it
in ``SCOPES`` allow.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from docsieve.schema import api_keys
from docsieve.store import Store

SCOPES = ("read", "submit", "admin")
PREFIX = "dsk_"
_ID_BYTES = 6  # 12 hex digits: collisions are checked, not hoped away
_UNKNOWN = hashlib.sha256(b"no such key").hexdigest()  # compared with when no row is found


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    name: str
    scope: str
    created_at: datetime | None = None
    revoked_at: datetime | None = None

    def allows(self, scope: str) -> bool:
        return SCOPES.index(self.scope) >= SCOPES.index(scope)


class KeyProblem(ValueError):
    """A key given to a command that names none (unknown id, bad scope)."""


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


def create(store: Store, scope: str, name: str = "") -> tuple[ApiKey, str]:
    """A new key of ``scope``; returns it and the key itself, which nothing keeps."""
    if scope not in SCOPES:
        raise KeyProblem(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    with store.engine.begin() as conn:
        while True:
            key_id = secrets.token_hex(_ID_BYTES)
            if conn.scalar(sa.select(api_keys.c.id).where(api_keys.c.id == key_id)) is None:
                break
        key = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        conn.execute(api_keys.insert().values(id=key_id, name=name or key_id, scope=scope, key_hash=_hash(key)))
        created = conn.scalar(sa.select(api_keys.c.created_at).where(api_keys.c.id == key_id))
    return ApiKey(key_id, name or key_id, scope, created), key


def all_keys(store: Store) -> list[ApiKey]:
    """Every key, revoked too, oldest first."""
    query = sa.select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)
    with store.engine.connect() as conn:
        return [_key(row) for row in conn.execute(query)]


def revoke(store: Store, key_id: str) -> ApiKey:
    """Revoke a key by its id (or the whole key); revoking twice keeps the first time."""
    if key_id.startswith(PREFIX):
        key_id = key_id[len(PREFIX) :].split("_", 1)[0]
    with store.engine.begin() as conn:
        row = conn.execute(sa.select(api_keys).where(api_keys.c.id == key_id)).first()
        if row is None:
            raise KeyProblem(f"no API key with the id {key_id!r} (`docsieve keys list` shows them)")
        if row.revoked_at is None:
            conn.execute(api_keys.update().where(api_keys.c.id == key_id).values(revoked_at=sa.func.now()))
        row = conn.execute(sa.select(api_keys).where(api_keys.c.id == key_id)).one()
    return _key(row)


def verify(store: Store, presented: str) -> ApiKey | None:
    """The key ``presented`` is, revoked or not; None for anything that is not a key of this store."""
    key_id = presented[len(PREFIX) :].split("_", 1)[0] if presented.startswith(PREFIX) else ""
    row = _row(store, key_id) if key_id else None
    # The digest is compared whether or not a row was found, so the time taken says nothing of either.
    matches = hmac.compare_digest(_hash(presented), row.key_hash if row is not None else _UNKNOWN)
    return _key(row) if row is not None and matches else None


def by_id(store: Store, key_id: str) -> ApiKey | None:
    row = _row(store, key_id)
    return _key(row) if row is not None else None


def _row(store: Store, key_id: str):
    with store.engine.connect() as conn:
        return conn.execute(sa.select(api_keys).where(api_keys.c.id == key_id)).first()


def _key(row) -> ApiKey:
    return ApiKey(row.id, row.name, row.scope, row.created_at, row.revoked_at)
