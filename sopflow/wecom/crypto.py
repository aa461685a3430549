"""WeCom callback crypto (developer doc 91144): signature, AES-256-CBC, receive-id check.

- key = base64(EncodingAESKey + "="), 32 bytes; iv = key[:16]; AES-256-CBC with PKCS#7
  padding to a 32-byte block (not AES's 16: WeCom's own reference code pads to 32).
- plaintext = 16 random bytes + 4-byte big-endian length + message + receive id (the
  corp id for an internal app); the receive id is checked so that a callback sealed for
  another corp is refused even when it decrypts.
- msg_signature = sha1 of the sorted [token, timestamp, nonce, ciphertext], concatenated.

Every failure is a typed error with a message a person can act on; none of them says
which byte was wrong (a padding oracle would help an attacker and not the operator).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Callable

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from sopflow.errors import SopflowError
from sopflow.wecom.safexml import MalformedXml, child_text, parse_xml

BLOCK = 32  # WeCom pads to 32 bytes, a multiple of AES's 16-byte block
AES_KEY_LENGTH = 43  # characters of an EncodingAESKey


class CallbackCryptoError(SopflowError):
    """A callback could not be verified or decrypted; nothing in it may be trusted."""


class InvalidAesKey(CallbackCryptoError):
    """The configured EncodingAESKey is not 43 base64 characters (a settings mistake)."""


class BadSignature(CallbackCryptoError):
    """msg_signature does not match: not from WeCom, or token/timestamp/nonce altered."""


class BadCiphertext(CallbackCryptoError):
    """The ciphertext is not base64, not whole blocks, or decrypts to a malformed message."""


class WrongReceiveId(CallbackCryptoError):
    """The message decrypted but was sealed for another receive id (another corp)."""


class MalformedEnvelope(CallbackCryptoError):
    """The callback body is not the `<xml><Encrypt>...</Encrypt></xml>` envelope."""


def _decode_key(encoding_aes_key: str) -> bytes:
    if len(encoding_aes_key) != AES_KEY_LENGTH:
        raise InvalidAesKey(
            f"EncodingAESKey must be {AES_KEY_LENGTH} characters, got {len(encoding_aes_key)}"
        )
    try:
        key = base64.b64decode(encoding_aes_key + "=", validate=True)
    except binascii.Error as error:
        raise InvalidAesKey("EncodingAESKey is not base64") from error
    return key


def _pad(data: bytes) -> bytes:
    amount = BLOCK - len(data) % BLOCK
    return data + bytes([amount]) * amount


def _unpad(data: bytes) -> bytes:
    amount = data[-1] if data else 0
    if not 1 <= amount <= BLOCK or data[-amount:] != bytes([amount]) * amount:
        raise BadCiphertext("callback ciphertext has invalid padding")
    return data[:-amount]


class WeComCrypto:
    """Seal and open WeCom callbacks for one token, EncodingAESKey and receive id."""

    def __init__(self, token: str, encoding_aes_key: str, receive_id: str) -> None:
        self.token = token
        self.receive_id = receive_id
        self._key = _decode_key(encoding_aes_key)
        self._iv = self._key[:16]

    # -- signature ---------------------------------------------------------------------

    def signature(self, timestamp: str, nonce: str, encrypted: str) -> str:
        parts = sorted([self.token, timestamp, nonce, encrypted])
        return hashlib.sha1("".join(parts).encode()).hexdigest()

    def verify(self, msg_signature: str, timestamp: str, nonce: str, encrypted: str) -> None:
        """Raise BadSignature unless msg_signature signs these values with our token."""
        expected = self.signature(timestamp, nonce, encrypted)
        # Bytes, not str: compare_digest refuses non-ASCII str, and the signature is input.
        if not hmac.compare_digest(expected.encode(), msg_signature.lower().encode()):
            raise BadSignature("callback msg_signature does not match (wrong token or altered)")

    # -- AES ---------------------------------------------------------------------------

    def _cipher(self) -> Cipher[modes.CBC]:
        return Cipher(algorithms.AES(self._key), modes.CBC(self._iv))

    def encrypt(self, plaintext: str, random: Callable[[int], bytes] = os.urandom) -> str:
        """Base64 ciphertext of `plaintext`; `random` is injectable for fixed test vectors."""
        message = plaintext.encode()
        prefix = random(16)
        if len(prefix) != 16:
            raise ValueError("random(16) must return 16 bytes")
        body = prefix + len(message).to_bytes(4, "big") + message + self.receive_id.encode()
        encryptor = self._cipher().encryptor()
        sealed = encryptor.update(_pad(body)) + encryptor.finalize()
        return base64.b64encode(sealed).decode()

    def decrypt(self, encrypted: str) -> str:
        """The message inside `encrypted`, after checking padding, length and receive id."""
        try:
            sealed = base64.b64decode(encrypted, validate=True)
        except (binascii.Error, ValueError) as error:
            raise BadCiphertext("callback ciphertext is not base64") from error
        if not sealed or len(sealed) % BLOCK:
            raise BadCiphertext(
                f"callback ciphertext of {len(sealed)} bytes is not whole {BLOCK}-byte blocks"
            )
        decryptor = self._cipher().decryptor()
        body = _unpad(decryptor.update(sealed) + decryptor.finalize())
        if len(body) < 20:
            raise BadCiphertext("callback plaintext is too short")
        length = int.from_bytes(body[16:20], "big")
        if 20 + length > len(body):
            raise BadCiphertext("callback plaintext length field exceeds the message")
        message, receive_id = body[20 : 20 + length], body[20 + length :]
        if receive_id != self.receive_id.encode():
            raise WrongReceiveId(
                "callback was sealed for another receive id (check SOPFLOW_WECOM_CORP_ID)"
            )
        try:
            return message.decode()
        except UnicodeDecodeError as error:
            raise BadCiphertext("callback message is not UTF-8") from error

    # -- whole callbacks ---------------------------------------------------------------

    def verify_url(self, msg_signature: str, timestamp: str, nonce: str, echostr: str) -> str:
        """URL verification (GET): verify and return the plaintext to echo as the body."""
        self.verify(msg_signature, timestamp, nonce, echostr)
        return self.decrypt(echostr)

    def decrypt_callback(
        self, msg_signature: str, timestamp: str, nonce: str, body_xml: str | bytes
    ) -> str:
        """An event (POST): read `<Encrypt>` from the envelope, verify, return the XML inside."""
        try:
            root = parse_xml(body_xml)
        except MalformedXml as error:
            raise MalformedEnvelope(f"callback envelope refused: {error}") from error
        encrypted = child_text(root, "Encrypt")
        if not encrypted:
            raise MalformedEnvelope("callback envelope has no <Encrypt> element")
        self.verify(msg_signature, timestamp, nonce, encrypted)
        return self.decrypt(encrypted)

    def encrypt_callback(
        self,
        plaintext: str,
        timestamp: str,
        nonce: str,
        random: Callable[[int], bytes] = os.urandom,
    ) -> str:
        """The signed envelope `<xml><Encrypt/><MsgSignature/><TimeStamp/><Nonce/></xml>`.

        This is the shape of an encrypted passive reply; `decrypt_callback` reads it too,
        since it needs only `<Encrypt>` from the body.
        """
        encrypted = self.encrypt(plaintext, random)
        signature = self.signature(timestamp, nonce, encrypted)
        return (
            f"<xml><Encrypt><![CDATA[{encrypted}]]></Encrypt>"
            f"<MsgSignature><![CDATA[{signature}]]></MsgSignature>"
            f"<TimeStamp>{_digits(timestamp)}</TimeStamp>"
            f"<Nonce><![CDATA[{_cdata_safe(nonce)}]]></Nonce></xml>"
        )


def _digits(value: str) -> str:
    if not value.isdigit():
        raise ValueError(f"timestamp must be digits, got {value!r}")
    return value


def _cdata_safe(value: str) -> str:
    if "]]>" in value:
        raise ValueError("a nonce cannot contain ']]>'")
    return value
