"""The WeCom protocol layer without a network: callback crypto, callback parsing, API models."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from pydantic import ValidationError

from sopflow.wecom.api import (
    AddCorpTagRequest,
    AddMsgTemplateRequest,
    GetCorpTagListResponse,
    GetGroupMsgSendResultResponse,
    Image,
    ImageAttachment,
    Link,
    LinkAttachment,
    MarkTagRequest,
    MessageSendRequest,
    NewTag,
    SendStatus,
    SendWelcomeMsgRequest,
    SendWelcomeMsgResponse,
    Text,
    TextCard,
)
from sopflow.wecom.callbacks import (
    ExternalChatCreated,
    ExternalChatDismissed,
    ExternalChatUpdated,
    ExternalContactAdded,
    ExternalContactDeleted,
    ExternalContactEdited,
    ExternalTagChanged,
    FollowUserDeleted,
    MalformedCallback,
    TransferFailed,
    UnknownCallback,
    callback_key,
    customer_events,
    parse_callback,
)
from sopflow.wecom.crypto import (
    BadCiphertext,
    BadSignature,
    InvalidAesKey,
    MalformedEnvelope,
    WeComCrypto,
    WrongReceiveId,
)
from sopflow.wecom.errors import ErrorKind, WeComError, WeComRateLimited, classify

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
        crypto.verify_url("签名" * 20, TIMESTAMP, NONCE, ECHOSTR)
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


# -- callbacks: parsing -------------------------------------------------------------------


def contact_xml(change_type: str, extra: str = "", create_time: int = 1403610513) -> str:
    return (
        "<xml><ToUserName><![CDATA[ww-corp]]></ToUserName>"
        "<FromUserName><![CDATA[sys]]></FromUserName>"
        f"<CreateTime>{create_time}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        "<Event><![CDATA[change_external_contact]]></Event>"
        f"<ChangeType><![CDATA[{change_type}]]></ChangeType>"
        "<UserID><![CDATA[zhangsan]]></UserID>"
        "<ExternalUserID><![CDATA[wmCUSTOMER1]]></ExternalUserID>"
        f"{extra}</xml>"
    )


def chat_xml(change_type: str, extra: str = "") -> str:
    return (
        "<xml><ToUserName><![CDATA[ww-corp]]></ToUserName>"
        "<FromUserName><![CDATA[sys]]></FromUserName>"
        "<CreateTime>1403610513</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        "<Event><![CDATA[change_external_chat]]></Event>"
        "<ChatId><![CDATA[wrCHAT1]]></ChatId>"
        f"<ChangeType><![CDATA[{change_type}]]></ChangeType>{extra}</xml>"
    )


def tag_xml(change_type: str, extra: str = "") -> str:
    return (
        "<xml><ToUserName><![CDATA[ww-corp]]></ToUserName>"
        "<FromUserName><![CDATA[sys]]></FromUserName>"
        "<CreateTime>1403610513</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        "<Event><![CDATA[change_external_tag]]></Event>"
        f"<ChangeType><![CDATA[{change_type}]]></ChangeType>{extra}</xml>"
    )


ADDED = contact_xml(
    "add_external_contact",
    "<State><![CDATA[qr-store-12]]></State><WelcomeCode><![CDATA[WELCOME1]]></WelcomeCode>",
)
T_1403610513 = datetime(2014, 6, 24, 11, 48, 33, tzinfo=UTC)


def test_add_external_contact_parses_with_state_and_welcome_code() -> None:
    callback = parse_callback(ADDED)
    assert isinstance(callback, ExternalContactAdded)
    assert callback.to_user_name == "ww-corp"
    assert callback.user_id == "zhangsan"
    assert callback.external_user_id == "wmCUSTOMER1"
    assert callback.state == "qr-store-12"
    assert callback.welcome_code == "WELCOME1"
    assert callback.create_time == T_1403610513


def test_add_external_contact_without_state_or_welcome_code() -> None:
    callback = parse_callback(contact_xml("add_external_contact"))
    assert isinstance(callback, ExternalContactAdded)
    assert callback.state is None and callback.welcome_code is None


@pytest.mark.parametrize(
    ("change_type", "extra", "model"),
    [
        ("edit_external_contact", "", ExternalContactEdited),
        ("del_external_contact", "<Source>DELETE_BY_TRANSFER</Source>", ExternalContactDeleted),
        ("del_follow_user", "", FollowUserDeleted),
        ("transfer_fail", "<FailReason>customer_refused</FailReason>", TransferFailed),
    ],
)
def test_other_contact_changes_parse(change_type: str, extra: str, model: type) -> None:
    callback = parse_callback(contact_xml(change_type, extra))
    assert type(callback) is model
    assert callback.change_type == change_type


def test_del_external_contact_keeps_its_source_and_transfer_fail_its_reason() -> None:
    deleted = parse_callback(
        contact_xml("del_external_contact", "<Source>DELETE_BY_TRANSFER</Source>")
    )
    assert isinstance(deleted, ExternalContactDeleted)
    assert deleted.source == "DELETE_BY_TRANSFER"
    failed = parse_callback(
        contact_xml("transfer_fail", "<FailReason>customer_refused</FailReason>")
    )
    assert isinstance(failed, TransferFailed)
    assert failed.fail_reason == "customer_refused"


MEMBERS_JOINED = chat_xml(
    "update",
    "<UpdateDetail><![CDATA[add_member]]></UpdateDetail><JoinScene>3</JoinScene>"
    "<MemChangeCnt>3</MemChangeCnt><MemChangeList><Item><![CDATA[lisi]]></Item>"
    "<Item><![CDATA[wmCUSTOMER1]]></Item><Item><![CDATA[woOTHERCORP]]></Item></MemChangeList>"
    "<LastMemVer>9c3f</LastMemVer><CurMemVer>7121</CurMemVer>",
)


def test_chat_member_change_parses_its_members_and_scene() -> None:
    callback = parse_callback(MEMBERS_JOINED)
    assert isinstance(callback, ExternalChatUpdated)
    assert callback.chat_id == "wrCHAT1"
    assert callback.update_detail == "add_member"
    assert callback.join_scene == 3
    assert callback.mem_change_cnt == 3
    assert callback.mem_change_list == ("lisi", "wmCUSTOMER1", "woOTHERCORP")
    assert (callback.last_mem_ver, callback.cur_mem_ver) == ("9c3f", "7121")


@pytest.mark.parametrize("detail", ["change_owner", "change_name", "change_notice"])
def test_chat_updates_without_members_parse(detail: str) -> None:
    callback = parse_callback(chat_xml("update", f"<UpdateDetail>{detail}</UpdateDetail>"))
    assert isinstance(callback, ExternalChatUpdated)
    assert callback.update_detail == detail
    assert callback.mem_change_list == ()


def test_chat_create_and_dismiss_parse() -> None:
    assert isinstance(parse_callback(chat_xml("create")), ExternalChatCreated)
    assert isinstance(parse_callback(chat_xml("dismiss")), ExternalChatDismissed)


@pytest.mark.parametrize("change_type", ["create", "update", "delete", "shuffle"])
def test_tag_library_changes_parse(change_type: str) -> None:
    callback = parse_callback(
        tag_xml(change_type, "<Id>etTAG1</Id><TagType>tag</TagType><StrategyId>1</StrategyId>")
    )
    assert isinstance(callback, ExternalTagChanged)
    assert callback.change_type == change_type
    assert (callback.id, callback.tag_type, callback.strategy_id) == ("etTAG1", "tag", "1")


def test_shuffle_of_the_whole_library_has_no_id() -> None:
    callback = parse_callback(tag_xml("shuffle"))
    assert isinstance(callback, ExternalTagChanged)
    assert callback.id is None


def test_unknown_event_types_parse_into_a_generic_model() -> None:
    unknown = parse_callback(
        "<xml><ToUserName>ww-corp</ToUserName><CreateTime>1403610513</CreateTime>"
        "<MsgType>event</MsgType><Event>change_contact</Event><ChangeType>create_user</ChangeType>"
        "<UserID>wangwu</UserID></xml>"
    )
    assert isinstance(unknown, UnknownCallback)
    assert (unknown.event, unknown.change_type) == ("change_contact", "create_user")
    assert unknown.fields["UserID"] == "wangwu"
    # A known event with a change type sopflow does not model is kept too.
    half = parse_callback(contact_xml("add_half_external_contact"))
    assert isinstance(half, UnknownCallback)
    assert half.fields["ExternalUserID"] == "wmCUSTOMER1"


def test_callbacks_missing_required_fields_are_refused_with_the_field_named() -> None:
    no_staff = ADDED.replace("<UserID><![CDATA[zhangsan]]></UserID>", "")
    with pytest.raises(
        MalformedCallback,
        match="change_external_contact/add_external_contact callback is invalid: "
        "UserID: Field required",
    ):
        parse_callback(no_staff)
    with pytest.raises(MalformedCallback, match="has no <Event>"):
        parse_callback("<xml><ToUserName>ww-corp</ToUserName></xml>")
    with pytest.raises(MalformedCallback, match="CreateTime"):
        parse_callback(
            ADDED.replace("<CreateTime>1403610513</CreateTime>", "<CreateTime>soon</CreateTime>")
        )


def test_blank_ids_are_refused_and_blank_numbers_are_absent() -> None:
    blank_customer = ADDED.replace("<![CDATA[wmCUSTOMER1]]>", "")
    with pytest.raises(MalformedCallback, match="ExternalUserID: String should have at least 1"):
        parse_callback(blank_customer)
    blank_scene = MEMBERS_JOINED.replace("<JoinScene>3</JoinScene>", "<JoinScene></JoinScene>")
    callback = parse_callback(blank_scene)
    assert isinstance(callback, ExternalChatUpdated)
    assert callback.join_scene is None


def test_callbacks_with_entities_are_refused() -> None:
    with pytest.raises(MalformedCallback, match="no DTD or entities"):
        parse_callback(BILLION_LAUGHS)
    external_entity = (
        '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        "<xml><Event>&e;</Event></xml>"
    )
    with pytest.raises(MalformedCallback, match="no DTD or entities"):
        parse_callback(external_entity)


# -- callbacks: identity --------------------------------------------------------------------


def test_callback_key_is_the_same_for_every_delivery() -> None:
    reformatted = ADDED.replace("><", ">\n  <")
    keys = {callback_key(parse_callback(ADDED)) for _ in range(3)}
    keys.add(callback_key(parse_callback(reformatted)))
    assert len(keys) == 1
    (key,) = keys
    assert key.startswith("wecom/change_external_contact/add_external_contact/1403610513/")


def test_callback_key_tells_occurrences_apart() -> None:
    base = callback_key(parse_callback(ADDED))
    later = callback_key(
        parse_callback(contact_xml("add_external_contact", create_time=1403610514))
    )
    other_customer = callback_key(parse_callback(ADDED.replace("wmCUSTOMER1", "wmCUSTOMER2")))
    other_staff = callback_key(parse_callback(ADDED.replace("zhangsan", "lisi")))
    removed = callback_key(parse_callback(contact_xml("del_follow_user")))
    assert len({base, later, other_customer, other_staff, removed}) == 5
    left = callback_key(parse_callback(MEMBERS_JOINED.replace("add_member", "del_member")))
    assert callback_key(parse_callback(MEMBERS_JOINED)) != left


# -- callbacks: customer events -------------------------------------------------------------


def test_add_becomes_contact_added_with_channel_staff_and_welcome_code() -> None:
    callback = parse_callback(ADDED)
    (event,) = customer_events(callback)
    assert event.customer_id == "wmCUSTOMER1"
    assert event.type == "contact.added"
    assert event.occurred_at == T_1403610513
    assert event.data == {
        "channel_code": "qr-store-12",
        "staff_user_id": "zhangsan",
        "welcome_code": "WELCOME1",
        "attributes": {"owner": "zhangsan"},
    }
    assert event.idempotency_key == f"{callback_key(callback)}/contact.added/wmCUSTOMER1"


def test_add_without_state_or_code_leaves_them_out() -> None:
    (event,) = customer_events(parse_callback(contact_xml("add_external_contact")))
    assert event.data == {"staff_user_id": "zhangsan", "attributes": {"owner": "zhangsan"}}


def test_removals_say_who_removed_whom() -> None:
    (by_staff,) = customer_events(parse_callback(contact_xml("del_external_contact")))
    (by_customer,) = customer_events(parse_callback(contact_xml("del_follow_user")))
    assert (by_staff.type, by_staff.data["removed_by"]) == ("contact.removed", "staff")
    assert (by_customer.type, by_customer.data["removed_by"]) == ("contact.removed", "customer")
    assert by_staff.idempotency_key != by_customer.idempotency_key


def test_edit_becomes_profile_updated() -> None:
    (event,) = customer_events(parse_callback(contact_xml("edit_external_contact")))
    assert (event.customer_id, event.type) == ("wmCUSTOMER1", "profile.updated")
    assert event.data == {"staff_user_id": "zhangsan"}


def test_chat_member_changes_become_one_event_per_customer_not_per_staff() -> None:
    joined = customer_events(parse_callback(MEMBERS_JOINED))
    assert [(e.customer_id, e.type) for e in joined] == [
        ("wmCUSTOMER1", "group.joined"),
        ("woOTHERCORP", "group.joined"),
    ]
    assert joined[0].data == {"chat_id": "wrCHAT1", "join_scene": 3}
    assert len({e.idempotency_key for e in joined}) == 2
    left_xml = MEMBERS_JOINED.replace("add_member", "del_member").replace(
        "<JoinScene>3</JoinScene>", "<QuitScene>1</QuitScene>"
    )
    left = customer_events(parse_callback(left_xml))
    assert {(e.customer_id, e.type) for e in left} == {
        ("wmCUSTOMER1", "group.left"),
        ("woOTHERCORP", "group.left"),
    }
    assert left[0].data == {"chat_id": "wrCHAT1", "quit_scene": 1}


def test_who_counts_as_a_customer_in_a_group_can_be_decided_by_the_caller() -> None:
    events = customer_events(parse_callback(MEMBERS_JOINED), is_customer=lambda m: m == "lisi")
    assert [e.customer_id for e in events] == ["lisi"]


def test_a_callback_delivered_three_times_yields_the_same_event_keys() -> None:
    keys = {e.idempotency_key for _ in range(3) for e in customer_events(parse_callback(ADDED))}
    assert len(keys) == 1


@pytest.mark.parametrize(
    "xml",
    [
        contact_xml("transfer_fail"),
        chat_xml("create"),
        chat_xml("dismiss"),
        chat_xml("update", "<UpdateDetail>change_owner</UpdateDetail>"),
        tag_xml("create", "<Id>etTAG1</Id><TagType>tag</TagType>"),
        contact_xml("add_half_external_contact"),
    ],
)
def test_callbacks_about_no_customer_in_particular_yield_no_events(xml: str) -> None:
    assert customer_events(parse_callback(xml)) == []


# -- API shapes ------------------------------------------------------------------------------


def test_a_single_mass_send_serialises_to_wecoms_json() -> None:
    request = AddMsgTemplateRequest(
        external_userid=["wmA", "wmB"],
        sender="zhangsan",
        text=Text(content="你好"),
        attachments=[
            LinkAttachment(link=Link(title="新品", url="https://example.com/n")),
            ImageAttachment(image=Image(media_id="MEDIA1")),
        ],
    )
    assert request.body() == {
        "chat_type": "single",
        "external_userid": ["wmA", "wmB"],
        "sender": "zhangsan",
        "text": {"content": "你好"},
        "attachments": [
            {"msgtype": "link", "link": {"title": "新品", "url": "https://example.com/n"}},
            {"msgtype": "image", "image": {"media_id": "MEDIA1"}},
        ],
    }


def test_attachments_parse_by_their_msgtype() -> None:
    request = SendWelcomeMsgRequest.model_validate(
        {
            "welcome_code": "W",
            "attachments": [
                {
                    "msgtype": "miniprogram",
                    "miniprogram": {
                        "title": "t",
                        "pic_media_id": "p",
                        "appid": "wx1",
                        "page": "/i",
                    },
                },
                {"msgtype": "video", "video": {"media_id": "v"}},
            ],
        }
    )
    assert [a.msgtype for a in request.attachments] == ["miniprogram", "video"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"chat_type": "group", "chat_id_list": ["wr1"]}, "chat_type group needs a sender"),
        ({"chat_id_list": ["wr1"], "sender": "s"}, "chat_id_list is for chat_type group"),
        (
            {"chat_type": "group", "sender": "s", "external_userid": ["wm"]},
            "is for chat_type single",
        ),
        ({}, "chat_type single needs external_userid or sender"),
        ({"external_userid": ["wm"] * 10_001}, "at most 10000 external_userid per task"),
        ({"chat_type": "group", "sender": "s", "chat_id_list": ["wr"] * 2001}, "at most 2000"),
    ],
)
def test_mass_sends_wecom_would_refuse_are_refused_here(fields: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        AddMsgTemplateRequest.model_validate({"text": {"content": "x"}, **fields})


def test_messages_need_content_and_at_most_nine_attachments() -> None:
    with pytest.raises(ValidationError, match="needs text or at least one attachment"):
        AddMsgTemplateRequest(external_userid=["wm"])
    image = ImageAttachment(image=Image(media_id="m"))
    with pytest.raises(ValidationError, match="at most 9 attachments, got 10"):
        SendWelcomeMsgRequest(welcome_code="W", attachments=[image] * 10)
    with pytest.raises(ValidationError, match="extra"):
        AddMsgTemplateRequest.model_validate({"external_userid": ["wm"], "txt": {"content": "x"}})


def test_tag_and_staff_message_requests_check_their_shape() -> None:
    with pytest.raises(ValidationError, match="needs group_id or group_name"):
        AddCorpTagRequest(tag=[NewTag(name="VIP")])
    with pytest.raises(ValidationError, match="no empty groups"):
        AddCorpTagRequest(group_name="等级", tag=[])
    with pytest.raises(ValidationError, match="needs add_tag or remove_tag"):
        MarkTagRequest(userid="zhangsan", external_userid="wmA")
    with pytest.raises(ValidationError, match="msgtype text needs text"):
        MessageSendRequest(touser="a", msgtype="text", agentid=1)
    card = TextCard(title="任务", description="跟进", url="https://x")
    with pytest.raises(ValidationError, match="msgtype textcard needs textcard"):
        MessageSendRequest(touser="a", msgtype="textcard", agentid=1, text=Text(content="x"))
    assert MessageSendRequest(touser="a|b", msgtype="textcard", agentid=1, textcard=card).body()[
        "textcard"
    ] == {"title": "任务", "description": "跟进", "url": "https://x"}


def test_responses_read_wecoms_documented_answers_and_ignore_new_fields() -> None:
    tags = GetCorpTagListResponse.model_validate(
        {
            "errcode": 0,
            "errmsg": "ok",
            "tag_group": [
                {
                    "group_id": "TAG_GROUPID1",
                    "group_name": "GOURP_NAME",
                    "create_time": 1557838797,
                    "order": 1,
                    "deleted": False,
                    "tag": [
                        {
                            "id": "TAG_ID1",
                            "name": "NAME1",
                            "create_time": 1557838797,
                            "order": 1,
                            "deleted": False,
                            "brand_new_field": 1,
                        }
                    ],
                }
            ],
        }
    )
    assert tags.tag_group[0].tag[0].id == "TAG_ID1"
    results = GetGroupMsgSendResultResponse.model_validate(
        {
            "errcode": 0,
            "errmsg": "ok",
            "next_cursor": "CURSOR",
            "send_list": [
                {
                    "external_userid": "wmA",
                    "userid": "zhangsan",
                    "status": 1,
                    "send_time": 1552536375,
                },
                {"chat_id": "wr1", "userid": "zhangsan", "status": 0},
            ],
        }
    )
    assert [r.status for r in results.send_list] == [SendStatus.SENT, SendStatus.UNSENT]
    welcome = SendWelcomeMsgResponse.model_validate({"errcode": 41051, "errmsg": "x"})
    assert welcome.already_sent


# -- error codes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("errcode", "api", "kind"),
    [
        (40001, "externalcontact/add_msg_template", ErrorKind.TOKEN),
        (40014, "externalcontact/add_msg_template", ErrorKind.TOKEN),
        (42001, "message/send", ErrorKind.TOKEN),
        (40001, "gettoken", ErrorKind.PERMANENT),  # a wrong secret
        (45009, "externalcontact/mark_tag", ErrorKind.RATE_LIMITED),
        (45033, "gettoken", ErrorKind.RATE_LIMITED),
        (41096, "externalcontact/send_welcome_msg", ErrorKind.RETRY),
        (-1, "externalcontact/get_groupmsg_task", ErrorKind.RETRY),
        (41051, "externalcontact/send_welcome_msg", ErrorKind.ALREADY_DONE),
        (41051, "externalcontact/add_msg_template", ErrorKind.PERMANENT),
        (41050, "externalcontact/send_welcome_msg", ErrorKind.PERMANENT),
        (41094, "externalcontact/remind_groupmsg_send", ErrorKind.PERMANENT),
        (40068, "externalcontact/mark_tag", ErrorKind.PERMANENT),
    ],
)
def test_error_codes_are_classified(errcode: int, api: str, kind: ErrorKind) -> None:
    assert classify(errcode, api) is kind


def test_wecom_errors_say_what_failed_and_whether_to_retry() -> None:
    expired = WeComError(41050, "invalid welcome code", "externalcontact/send_welcome_msg")
    assert str(expired) == (
        "WeCom externalcontact/send_welcome_msg failed with errcode 41050 "
        "(welcome code invalid or older than 20 seconds): invalid welcome code"
    )
    assert not expired.retryable
    assert WeComError(41096, "x", "externalcontact/send_welcome_msg").retryable
    assert str(WeComError(99999, "new", "a")) == "WeCom a failed with errcode 99999: new"
    limited = WeComRateLimited(45009, "api freq out of limit", "message/send", 120.0)
    assert limited.retryable
    assert str(limited).endswith("api freq out of limit; back off 120 s")
