"""Scripted WeCom callbacks: encrypted, signed, and consistent with the fake's state.

An add_external_contact callback makes the customer a contact of the staff member in the
fake and carries a fresh WelcomeCode the fake will accept for 20 seconds; del_follow_user
and del_external_contact end the contact, so later sends to that customer fail as on WeCom.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from xml.etree.ElementTree import Element, SubElement, tostring

import httpx

from cli.fake_wecom.state import FakeWeCom
from sopflow.wecom.crypto import WeComCrypto


@dataclass(frozen=True)
class SignedCallback:
    """One delivery as WeCom makes it: `POST <url>?<query>` with `body`."""

    query: dict[str, str]  # msg_signature, timestamp, nonce
    body: str  # <xml><ToUserName/><AgentID/><Encrypt/></xml>
    plaintext: str  # the XML inside, for assertions


class CallbackGenerator:
    def __init__(self, fake: FakeWeCom) -> None:
        self.fake = fake
        config = fake.config
        self.crypto = WeComCrypto(config.callback_token, config.callback_aes_key, config.corp_id)

    # -- building ----------------------------------------------------------------------

    def _xml(
        self, event: str, change_type: str, fields: Mapping[str, str | list[str] | None]
    ) -> str:
        root = Element("xml")
        base: dict[str, str | list[str] | None] = {
            "ToUserName": self.fake.config.corp_id,
            "FromUserName": "sys",
            "CreateTime": str(int(self.fake.clock.now())),
            "MsgType": "event",
            "Event": event,
            "ChangeType": change_type,
        }
        for tag, value in {**base, **fields}.items():
            if value is None:
                continue
            child = SubElement(root, tag)
            if isinstance(value, list):
                for item in value:
                    SubElement(child, "Item").text = item
            else:
                child.text = value
        return tostring(root, encoding="unicode")

    def seal(self, plaintext: str) -> SignedCallback:
        timestamp = str(int(self.fake.clock.now()))
        nonce = secrets.token_hex(8)
        encrypted = self.crypto.encrypt(plaintext)
        envelope = Element("xml")
        SubElement(envelope, "ToUserName").text = self.fake.config.corp_id
        SubElement(envelope, "AgentID").text = str(self.fake.config.agent_id)
        SubElement(envelope, "Encrypt").text = encrypted
        return SignedCallback(
            query={
                "msg_signature": self.crypto.signature(timestamp, nonce, encrypted),
                "timestamp": timestamp,
                "nonce": nonce,
            },
            body=tostring(envelope, encoding="unicode"),
            plaintext=plaintext,
        )

    def url_verification(self, echo: str | None = None) -> dict[str, str]:
        """The query of WeCom's `GET` when the admin saves the callback URL."""
        timestamp = str(int(self.fake.clock.now()))
        nonce = secrets.token_hex(8)
        echostr = self.crypto.encrypt(echo or secrets.token_hex(8))
        return {
            "msg_signature": self.crypto.signature(timestamp, nonce, echostr),
            "timestamp": timestamp,
            "nonce": nonce,
            "echostr": echostr,
        }

    # -- change_external_contact -------------------------------------------------------

    def add_external_contact(
        self, user_id: str, external_userid: str, state: str | None = None, welcome: bool = True
    ) -> SignedCallback:
        """The customer added the staff member; with `welcome`, a fresh WelcomeCode."""
        self.fake.add_contact(user_id, external_userid)
        code = self.fake.issue_welcome_code(user_id, external_userid) if welcome else None
        fields = {
            "UserID": user_id,
            "ExternalUserID": external_userid,
            "State": state,
            "WelcomeCode": code,
        }
        return self.seal(self._xml("change_external_contact", "add_external_contact", fields))

    def edit_external_contact(
        self,
        user_id: str,
        external_userid: str,
        add_tag: list[str] | None = None,
        remove_tag: list[str] | None = None,
    ) -> SignedCallback:
        """The staff member edited the customer in the WeCom client, perhaps tagging them
        (`add_tag`, `remove_tag`: corp tag ids); the callback says only that they edited."""
        tags = self.fake.customer_tags[(user_id, external_userid)]
        tags.update(add_tag or [])
        tags.difference_update(remove_tag or [])
        fields = {"UserID": user_id, "ExternalUserID": external_userid}
        return self.seal(self._xml("change_external_contact", "edit_external_contact", fields))

    def del_external_contact(self, user_id: str, external_userid: str) -> SignedCallback:
        """The staff member deleted the customer."""
        self.fake.remove_contact(user_id, external_userid)
        fields = {"UserID": user_id, "ExternalUserID": external_userid}
        return self.seal(self._xml("change_external_contact", "del_external_contact", fields))

    def del_follow_user(self, user_id: str, external_userid: str) -> SignedCallback:
        """The customer deleted the staff member."""
        self.fake.remove_contact(user_id, external_userid)
        fields = {"UserID": user_id, "ExternalUserID": external_userid}
        return self.seal(self._xml("change_external_contact", "del_follow_user", fields))

    # -- change_external_chat ----------------------------------------------------------

    def chat_create(self, chat_id: str, owner: str) -> SignedCallback:
        self.fake.add_chat(chat_id, owner)
        return self.seal(self._xml("change_external_chat", "create", {"ChatId": chat_id}))

    def chat_update(
        self,
        chat_id: str,
        update_detail: str,
        members: list[str] | None = None,
        join_scene: int | None = None,
        quit_scene: int | None = None,
    ) -> SignedCallback:
        """add_member / del_member (with `members`), change_owner, change_name, ..."""
        chat = self.fake.chats.setdefault(chat_id, {"owner": "", "members": []})
        for member in members or []:
            if update_detail == "add_member" and member not in chat["members"]:
                chat["members"].append(member)
            if update_detail == "del_member" and member in chat["members"]:
                chat["members"].remove(member)
        fields: dict[str, str | list[str] | None] = {
            "ChatId": chat_id,
            "UpdateDetail": update_detail,
            "JoinScene": None if join_scene is None else str(join_scene),
            "QuitScene": None if quit_scene is None else str(quit_scene),
        }
        if members is not None:
            fields["MemChangeCnt"] = str(len(members))
            fields["MemChangeList"] = members
        return self.seal(self._xml("change_external_chat", "update", fields))

    def chat_dismiss(self, chat_id: str) -> SignedCallback:
        self.fake.chats.pop(chat_id, None)
        return self.seal(self._xml("change_external_chat", "dismiss", {"ChatId": chat_id}))

    # -- change_external_tag -----------------------------------------------------------

    def tag_change(
        self, change_type: str, tag_id: str | None = None, tag_type: str = "tag"
    ) -> SignedCallback:
        """create / update / delete / shuffle of the corp tag library (made in WeCom)."""
        fields = {"Id": tag_id, "TagType": tag_type if tag_id else None}
        return self.seal(self._xml("change_external_tag", change_type, fields))

    # -- delivery ----------------------------------------------------------------------

    async def post(
        self,
        callback: SignedCallback,
        url: str | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> httpx.Response:
        """Deliver `callback` as WeCom does, to `url` or the configured callback URL."""
        target = url or self.fake.config.callback_url
        if not target:
            raise ValueError("no callback URL: pass url= or configure --callback-url")
        headers = {"Content-Type": "text/xml"}
        if http is not None:
            return await http.post(
                target, params=callback.query, content=callback.body, headers=headers
            )
        async with httpx.AsyncClient(timeout=10.0) as client:
            return await client.post(
                target, params=callback.query, content=callback.body, headers=headers
            )
