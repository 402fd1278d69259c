"""The hub's Ed25519 signing keys: made on first need, rotated by `huitong audit keys rotate`,
exported for auditors by `huitong audit keys export`. The private halves are stored encrypted
with the hub's secret_key (the same box as system secrets), so a copy of the database alone
cannot sign; retired keys keep their public half so old seals still verify."""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine, select, update
from sqlalchemy.exc import IntegrityError

from bus.logs import get_logger
from bus.secret_box import SecretBox
from replay.models import SealKey
from replay.verifier import key_id_of, read_public_keys

log = get_logger("huitong.audit")
RAW = dict(encoding=serialization.Encoding.Raw, format=serialization.PublicFormat.Raw)


@dataclass(frozen=True)
class Signer:
    key_id: str
    private: Ed25519PrivateKey

    def sign(self, seal_hash: str) -> str:
        return self.private.sign(bytes.fromhex(seal_hash)).hex()


class SealKeys:
    def __init__(self, engine: Engine, box: SecretBox):
        self.engine = engine
        self.box = box

    def signer(self) -> Signer:
        """The active key; the first one is made here when there is none yet."""
        with self.engine.connect() as conn:
            row = conn.execute(select(SealKey).where(SealKey.retired_at.is_(None))
                               .order_by(SealKey.created_at.desc()).limit(1)).first()
        if row is None:
            return self._create(retire_others=False)
        raw = bytes.fromhex(self.box.decrypt(row.private_encrypted))
        return Signer(row.key_id, Ed25519PrivateKey.from_private_bytes(raw))

    def rotate(self) -> Signer:
        """A new key signs from now on; the old ones are retired, their public halves kept."""
        return self._create(retire_others=True)

    def _create(self, *, retire_others: bool) -> Signer:
        private = Ed25519PrivateKey.generate()
        public = private.public_key().public_bytes(**RAW)
        raw = private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                    serialization.NoEncryption())
        key_id, now = key_id_of(public), dt.datetime.now(dt.timezone.utc)
        try:
            with self.engine.begin() as conn:
                if retire_others:
                    conn.execute(update(SealKey).where(SealKey.retired_at.is_(None)).values(retired_at=now))
                elif conn.scalar(select(SealKey.key_id).where(SealKey.retired_at.is_(None)).limit(1)):
                    return self.signer()  # another process made the first key a moment ago
                conn.execute(SealKey.__table__.insert().values(
                    key_id=key_id, public_key=public.hex(), private_encrypted=self.box.encrypt(raw.hex()),
                    created_at=now, retired_at=None))
        except IntegrityError:
            return self.signer()
        log.info("audit.key_created", key_id=key_id, rotated=retire_others)
        return Signer(key_id, private)

    def listing(self) -> list[dict]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(SealKey.key_id, SealKey.public_key, SealKey.created_at, SealKey.retired_at)
                                .order_by(SealKey.created_at)).all()
        return [{"key_id": r.key_id, "public_key": r.public_key, "created_at": r.created_at.isoformat(),
                 "retired_at": r.retired_at.isoformat() if r.retired_at else None} for r in rows]

    def public_keys(self) -> dict[str, bytes]:
        return {k["key_id"]: bytes.fromhex(k["public_key"]) for k in self.listing()}


def export_keys(listing: list[dict]) -> str:
    """The auditor's copy of the public keys: JSON, each key also as PEM for other tools."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    keys = []
    for key in listing:
        pem = Ed25519PublicKey.from_public_bytes(bytes.fromhex(key["public_key"])).public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")
        keys.append({**key, "pem": pem})
    return json.dumps({"huitong_seal_keys": 1, "keys": keys}, ensure_ascii=False, indent=2) + "\n"


# The auditor's keys file is read by the self-contained verifier (bundles are checked without
# the hub); the hub's commands read it the same way.
read_keys_file = read_public_keys
