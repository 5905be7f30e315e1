"""The ``X-BackendAI-Encoded`` login body the official client sends over plain http.

The client (``ai.backend.client.auth.encrypt_payload``) sends ``iv + b":" +
base64(AES-256-CBC(pkcs7(json)))`` where ``iv`` is 16 random ``[A-Za-z0-9]`` characters and the
key is ``(base64(endpoint) + iv + iv)[:32]``, ``endpoint`` being the URL the client was
configured with. This is obfuscation, not security (the key derives from public values); the
webserver only has to undo it. Use https to protect passwords.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from typing import Any

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = ["EncodedBodyError", "decrypt_json", "encrypt_payload"]

_IV_LENGTH = 16


class EncodedBodyError(ValueError):
    """The body is not an encoded payload for any of the candidate endpoints."""


def _key(endpoint: str, iv: bytes) -> bytes:
    return (base64.b64encode(endpoint.encode()) + iv + iv)[:32]


def encrypt_payload(endpoint: str, body: bytes, iv: bytes) -> bytes:
    """The client's encoding of ``body`` (used by tests and by nothing on the server path)."""
    padder = padding.PKCS7(128).padder()
    padded = padder.update(body) + padder.finalize()
    encryptor = Cipher(algorithms.AES(_key(endpoint, iv)), modes.CBC(iv)).encryptor()
    return iv + b":" + base64.b64encode(encryptor.update(padded) + encryptor.finalize())


def _decrypt_with(endpoint: str, iv: bytes, ciphertext: bytes) -> bytes | None:
    decryptor = Cipher(algorithms.AES(_key(endpoint, iv)), modes.CBC(iv)).decryptor()
    padded = decryptor.update(ciphertext) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:  # wrong key: the padding check fails (or, rarely, passes on garbage)
        return None


def decrypt_json(payload: bytes, endpoints: Iterable[str]) -> Any:
    """Undoes :func:`encrypt_payload` and parses the JSON, trying each candidate endpoint.

    A wrong key passes the padding check about once in 256 tries, so a candidate only counts
    when its plaintext also parses as JSON.

    Raises:
        EncodedBodyError: malformed payload, or no endpoint yields a JSON plaintext.
    """
    iv, sep, encoded = payload.strip().partition(b":")
    if not sep or len(iv) != _IV_LENGTH:
        raise EncodedBodyError("an encoded body is '<16-character iv>:<base64 ciphertext>'")
    try:
        ciphertext = base64.b64decode(encoded, validate=True)
    except binascii.Error as exc:
        raise EncodedBodyError("the ciphertext of the encoded body is not base64") from exc
    if not ciphertext or len(ciphertext) % 16:
        raise EncodedBodyError("the ciphertext of the encoded body is not whole AES blocks")
    for endpoint in endpoints:
        plain = _decrypt_with(endpoint, iv, ciphertext)
        if plain is None:
            continue
        try:
            return json.loads(plain)
        except ValueError:  # a lucky padding match under the wrong key, or not JSON at all
            continue
    raise EncodedBodyError("the encoded body does not decrypt for this endpoint")
