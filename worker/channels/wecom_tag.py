"""The `wecom.tag` channel: a customer playbook's `tag` action, tagged in WeCom for the
customer's owner (`mark_tag`).

`mark_tag` takes WeCom's tag ids, which `sopflow wecom sync-tags` keeps in the read model:
a tag it has not synced, a customer without an owner or an owner whose contact the
customer no longer is fails the delivery with the reason (recorded on the tag's timeline
entry); the tag stays on sopflow's profile either way. Adding a tag twice or removing one
the customer does not carry changes nothing in WeCom, so a retried delivery is harmless.
"""

from __future__ import annotations

import asyncio

from sopflow.core.state import Delivery
from sopflow.language.channels import TAG_ADD
from sopflow.store.wecom_tags import CorpTags
from sopflow.wecom import api
from sopflow.wecom.errors import WeComError
from worker.channels.base import PermanentDeliveryError
from worker.wecom.client import WeComClient


class WeComTagChannel:
    def __init__(self, client: WeComClient, tags: CorpTags) -> None:
        self.client = client
        self.tags = tags

    async def deliver(self, delivery: Delivery) -> str:
        adding = delivery.text.startswith(TAG_ADD)
        tag = delivery.text[1:]
        if not delivery.sender:
            raise PermanentDeliveryError(
                f"{tag} not tagged in WeCom: the customer has no owner (attributes.owner)"
            )
        ids = await asyncio.to_thread(self.tags.ids, [tag])
        if tag not in ids:
            raise PermanentDeliveryError(
                f"{tag} not tagged in WeCom: it is not in the corp tag library "
                "(run `sopflow wecom sync-tags`)"
            )
        request = api.MarkTagRequest(
            userid=delivery.sender,
            external_userid=delivery.customer_id,
            add_tag=[ids[tag]] if adding else [],
            remove_tag=[] if adding else [ids[tag]],
        )
        try:
            await self.client.mark_tag(request)
        except WeComError as error:
            if error.retryable:
                raise
            raise PermanentDeliveryError(f"{tag} not tagged in WeCom: {error}") from error
        verb = "tagged" if adding else "untagged"
        return f"{verb} {tag} for {delivery.sender} in WeCom"
