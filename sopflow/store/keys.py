"""API keys with roles. A key is shown once, at creation; only its hash is kept.

Keys are 32 random bytes, so a plain SHA-256 resists guessing; a slow password hash
would only slow down every request. Comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import select

from sopflow.errors import SopflowError
from sopflow.store.database import Database
from sopflow.store.tables import ApiKey

PREFIX = "sf"


class Role(StrEnum):
    """ingest: send events; staff: their own tasks and manual tags; operator: everything."""

    INGEST = "ingest"
    STAFF = "staff"
    OPERATOR = "operator"


@dataclass(frozen=True)
class Principal:
    key_id: str
    name: str
    role: Role
    staff_id: str | None


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(
    database: Database, role: Role, name: str, staff_id: str | None = None
) -> tuple[str, Principal]:
    """A new key; returns the token (shown once) and who it stands for."""
    if role == Role.STAFF and not staff_id:
        raise SopflowError("a staff key needs --staff, the staff id its tasks are assigned to")
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    with database.session() as session, session.begin():
        session.add(
            ApiKey(
                key_id=key_id,
                name=name,
                role=role.value,
                staff_id=staff_id,
                secret_hash=_hash(secret),
                created_at=datetime.now(UTC),
                revoked_at=None,
            )
        )
    return f"{PREFIX}_{key_id}_{secret}", Principal(key_id, name, role, staff_id)


def authenticate(database: Database, token: str) -> Principal | None:
    """The principal of a valid, unrevoked key, or None."""
    return authenticate_all(database, [token])[0]


def authenticate_all(database: Database, tokens: Sequence[str]) -> list[Principal | None]:
    """`authenticate` for several tokens (requests arriving together), in one query."""
    parsed = []
    for token in tokens:
        prefix, _, rest = token.partition("_")
        key_id, _, secret = rest.partition("_")
        valid = prefix == PREFIX and bool(key_id) and bool(secret)
        parsed.append((key_id, secret) if valid else None)
    ids = sorted({p[0] for p in parsed if p is not None})
    keys: dict[str, ApiKey] = {}
    if ids:
        with database.session() as session:
            keys = {
                k.key_id: k for k in session.scalars(select(ApiKey).where(ApiKey.key_id.in_(ids)))
            }
    return [_principal(keys.get(p[0]), p[1]) if p else None for p in parsed]


def _principal(key: ApiKey | None, secret: str) -> Principal | None:
    if key is None or key.revoked_at is not None:
        return None
    if not hmac.compare_digest(key.secret_hash, _hash(secret)):
        return None
    return Principal(key.key_id, key.name, Role(key.role), key.staff_id)


def list_keys(database: Database) -> list[ApiKey]:
    with database.session() as session:
        return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at)))


def revoke_key(database: Database, key_id: str) -> bool:
    with database.session() as session, session.begin():
        key = session.get(ApiKey, key_id)
        if key is None or key.revoked_at is not None:
            return False
        key.revoked_at = datetime.now(UTC)
        return True
