"""Audiences: who a playbook runs for, and how each subject is named.

Three audiences receive content in WeCom operations: a customer (1:1), a customer group
chat (客户群, one message for all its members) and a staff member (who posts to their
moments, 朋友圈, seen by many customers). Each is a *subject* with its own durable
journeys: the same journey core runs them, each against its own profile, guards and caps.

A subject's id says its audience: a customer's id is theirs (the API refuses a `/` in
it), a group's is `group/<chat_id>`, a staff member's `staff/<userid>`. The id is also
the subject's workflow id for groups and staff (customers' is `customer/<id>`).
"""

from __future__ import annotations

from enum import StrEnum


class Audience(StrEnum):
    CUSTOMER = "customer"
    GROUP = "group"
    STAFF = "staff"


GROUP_PREFIX = "group/"
STAFF_PREFIX = "staff/"
MEANING = {
    Audience.CUSTOMER: "one customer, 1:1 (the default)",
    Audience.GROUP: "a customer group chat: one message for all its members",
    Audience.STAFF: "a staff member: posts to their moments, tasks for them",
}


def audience_of(subject_id: str) -> Audience:
    """The audience a subject id names (a customer's id never holds a `/`)."""
    if subject_id.startswith(GROUP_PREFIX):
        return Audience.GROUP
    if subject_id.startswith(STAFF_PREFIX):
        return Audience.STAFF
    return Audience.CUSTOMER


def group_subject(chat_id: str) -> str:
    return f"{GROUP_PREFIX}{chat_id}"


def staff_subject(userid: str) -> str:
    return f"{STAFF_PREFIX}{userid}"


def bare_id(subject_id: str) -> str:
    """The WeCom id inside a subject id: the chat id of a group, the userid of a staff
    member, the customer's own id."""
    for prefix in (GROUP_PREFIX, STAFF_PREFIX):
        if subject_id.startswith(prefix):
            return subject_id.removeprefix(prefix)
    return subject_id
