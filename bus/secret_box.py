"""Encryption of system secrets at rest. WS-Security PasswordDigest proves knowledge of the
secret by hashing it with a nonce, so the hub must be able to recover the secret: it is
encrypted (Fernet: AES-128-CBC + HMAC-SHA256, from `cryptography`) rather than hashed."""
from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from bus.errors import ConfigError


class SecretBox:
    def __init__(self, key: str | bytes):
        try:
            self._fernet = Fernet(key)
        except (ValueError, TypeError):
            raise ConfigError("secret_key must be 32 bytes of urlsafe base64 "
                              "(make one with `huitong systems new-key`)") from None

    @classmethod
    def from_settings(cls, settings) -> "SecretBox":
        if settings.secret_key:
            return cls(settings.secret_key)
        return cls(_key_file(settings.secret_key_file))

    def encrypt(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except InvalidToken:
            raise ConfigError("a stored system secret cannot be decrypted with this secret_key; "
                              "the key changed since the system was registered") from None


def new_key() -> str:
    return Fernet.generate_key().decode("ascii")


def _key_file(path: Path) -> bytes:
    """The embedded default: a key made on first use, readable by the owner only."""
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        key = Fernet.generate_key()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it a moment ago
            return path.read_bytes().strip()
        with os.fdopen(fd, "wb") as out:
            out.write(key + b"\n")
        return key
