"""The WeCom protocol layer without a network: callback crypto, callback parsing, API models."""

from __future__ import annotations

import base64
import re

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from sopflow.wecom.crypto import (
    BadCiphertext,
    BadSignature,
    InvalidAesKey,
    MalformedEnvelope,
    WeComCrypto,
    WrongReceiveId,
)

# The official URL-verification vector of WeCom's callback crypto (developer doc 91144).
CORP_ID = "wx5823bf96d3bd56c7"
TOKEN = "QDG6eK"
AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
TIMESTAMP = "1409659589"
NONCE = "263014780"
ECHOSTR = "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ=="
MSG_SIGNATURE = "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3"
ECHO_PLAINTEXT = "1616140317555161061"

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<xml><Encrypt>&lol3;</Encrypt></xml>"""


@pytest.fixture
def crypto() -> WeComCrypto:
    return WeComCrypto(TOKEN, AES_KEY, CORP_ID)


def seal_raw(body: bytes) -> str:
    """Encrypt bytes exactly as given (no padding added) with the vector's key."""
    key = base64.b64decode(AES_KEY + "=")
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(encryptor.update(body) + encryptor.finalize()).decode()


def signature_of(envelope: str) -> str:
    match = re.search(r"<MsgSignature><!\[CDATA\[(\w+)\]\]>", envelope)
    assert match
    return match.group(1)


# -- crypto: the official vector ---------------------------------------------------------


def test_official_vector_signature(crypto: WeComCrypto) -> None:
    assert crypto.signature(TIMESTAMP, NONCE, ECHOSTR) == MSG_SIGNATURE


def test_official_vector_url_verification_decrypts_the_echostr(crypto: WeComCrypto) -> None:
    assert crypto.verify_url(MSG_SIGNATURE, TIMESTAMP, NONCE, ECHOSTR) == ECHO_PLAINTEXT


def test_official_vector_with_a_wrong_signature_is_refused(crypto: WeComCrypto) -> None:
    wrong = "0" * 40
    with pytest.raises(BadSignature, match="msg_signature does not match"):
        crypto.verify_url(wrong, TIMESTAMP, NONCE, ECHOSTR)
    # Any of the signed values altered breaks it too.
    with pytest.raises(BadSignature):
        crypto.verify_url(MSG_SIGNATURE, "1409659590", NONCE, ECHOSTR)
    with pytest.raises(BadSignature):
        WeComCrypto("other", AES_KEY, CORP_ID).verify_url(MSG_SIGNATURE, TIMESTAMP, NONCE, ECHOSTR)


def test_official_vector_for_another_corp_is_refused() -> None:
    other = WeComCrypto(TOKEN, AES_KEY, "ww0000000000000000")
    with pytest.raises(WrongReceiveId, match="sealed for another receive id"):
        other.verify_url(MSG_SIGNATURE, TIMESTAMP, NONCE, ECHOSTR)


def test_an_aes_key_that_is_not_43_base64_characters_is_refused() -> None:
    with pytest.raises(InvalidAesKey, match="must be 43 characters, got 42"):
        WeComCrypto(TOKEN, AES_KEY[:-1], CORP_ID)
    with pytest.raises(InvalidAesKey, match="not base64"):
        WeComCrypto(TOKEN, "!" * 43, CORP_ID)


# -- crypto: round trips -----------------------------------------------------------------


@pytest.mark.parametrize("length", [0, 1, 11, 12, 31, 32, 100, 5000])
def test_encrypt_then_decrypt_returns_the_message(crypto: WeComCrypto, length: int) -> None:
    # 16 random + 4 length + message + 18-byte corp id: lengths 11/12 land on and just
    # past a 32-byte boundary, so a whole block of padding is exercised.
    message = ("客" * length)[:length]
    assert crypto.decrypt(crypto.encrypt(message)) == message


def test_encryption_is_randomised_unless_random_is_injected(crypto: WeComCrypto) -> None:
    assert crypto.encrypt("x") != crypto.encrypt("x")
    fixed = lambda n: b"\x01" * n  # noqa: E731
    assert crypto.encrypt("x", fixed) == crypto.encrypt("x", fixed)


def test_callback_envelope_round_trip(crypto: WeComCrypto) -> None:
    inner = "<xml><Event><![CDATA[change_external_contact]]></Event></xml>"
    envelope = crypto.encrypt_callback(inner, "1700000000", "nonce-1")
    assert envelope.startswith("<xml><Encrypt><![CDATA[")
    assert "<TimeStamp>1700000000</TimeStamp>" in envelope
    signature = signature_of(envelope)
    assert crypto.decrypt_callback(signature, "1700000000", "nonce-1", envelope) == inner


def test_callback_with_a_tampered_ciphertext_is_refused(crypto: WeComCrypto) -> None:
    envelope = crypto.encrypt_callback("<xml/>", "1700000000", "n")
    encrypted = re.search(r"<Encrypt><!\[CDATA\[(.+?)\]\]>", envelope)
    assert encrypted
    original = encrypted.group(1)
    flipped = ("B" if original[0] == "A" else "A") + original[1:]
    tampered = envelope.replace(original, flipped)
    with pytest.raises(BadSignature):
        crypto.decrypt_callback(signature_of(envelope), "1700000000", "n", tampered)


def test_callback_replayed_with_another_timestamp_is_refused(crypto: WeComCrypto) -> None:
    envelope = crypto.encrypt_callback("<xml/>", "1700000000", "n")
    with pytest.raises(BadSignature):
        crypto.decrypt_callback(signature_of(envelope), "1700000001", "n", envelope)


def test_malformed_envelopes_are_refused(crypto: WeComCrypto) -> None:
    with pytest.raises(MalformedEnvelope, match="no <Encrypt> element"):
        crypto.decrypt_callback("x", "1", "n", "<xml><ToUserName>a</ToUserName></xml>")
    with pytest.raises(MalformedEnvelope, match="not well formed"):
        crypto.decrypt_callback("x", "1", "n", "<xml><Encrypt>")
    with pytest.raises(MalformedEnvelope, match="no DTD or entities"):
        crypto.decrypt_callback("x", "1", "n", BILLION_LAUGHS)
    with pytest.raises(MalformedEnvelope, match="over the 262144-byte limit"):
        crypto.decrypt_callback("x", "1", "n", "<xml>" + " " * 262144 + "</xml>")


# -- crypto: ciphertexts that are not what WeCom seals -------------------------------------


def test_ciphertext_that_is_not_base64_is_refused(crypto: WeComCrypto) -> None:
    with pytest.raises(BadCiphertext, match="not base64"):
        crypto.decrypt("not base64!")


def test_ciphertext_that_is_not_whole_32_byte_blocks_is_refused(crypto: WeComCrypto) -> None:
    sixteen = seal_raw(b"\x00" * 16)
    with pytest.raises(BadCiphertext, match="16 bytes is not whole 32-byte blocks"):
        crypto.decrypt(sixteen)
    with pytest.raises(BadCiphertext, match="0 bytes"):
        crypto.decrypt("")


@pytest.mark.parametrize(
    "tail",
    [
        bytes([0]),  # a zero pad byte
        bytes([33]),  # more than a 32-byte block
        bytes([2, 3]),  # the pad bytes disagree
    ],
)
def test_ciphertext_with_invalid_padding_is_refused(crypto: WeComCrypto, tail: bytes) -> None:
    body = b"\x00" * (64 - len(tail)) + tail
    with pytest.raises(BadCiphertext, match="invalid padding"):
        crypto.decrypt(seal_raw(body))


def test_ciphertext_whose_length_field_overruns_is_refused(crypto: WeComCrypto) -> None:
    message = b"hello" + CORP_ID.encode()
    body = b"r" * 16 + (1000).to_bytes(4, "big") + message
    pad = 32 - len(body) % 32
    with pytest.raises(BadCiphertext, match="length field exceeds the message"):
        crypto.decrypt(seal_raw(body + bytes([pad]) * pad))


def test_ciphertext_with_a_too_short_plaintext_is_refused(crypto: WeComCrypto) -> None:
    body = b"r" * 10 + bytes([22]) * 22
    with pytest.raises(BadCiphertext, match="too short"):
        crypto.decrypt(seal_raw(body))
