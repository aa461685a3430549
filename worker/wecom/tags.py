"""The corp tag library in step with the deployed taxonomy (`sopflow wecom sync-tags`).

Each taxonomy group (`skin_type`) is a WeCom tag group of that name, each of its values
(`oily`) a tag in it: the customer tag `skin_type:oily`. Only what is missing is created
(a group with its tags in one `add_corp_tag`, a missing tag in its group), so a second
run creates nothing; every tag's WeCom id is kept in the read model for `mark_tag`.
Nothing is renamed or deleted: tags made by staff in WeCom stay theirs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sopflow.language.plan import ProfilePlan
from sopflow.store.wecom_tags import CorpTagId, CorpTags
from sopflow.wecom import api
from worker.wecom.client import WeComClient

NAME_MAX_CHARS = 30  # WeCom's limit on tag and tag-group names (doc 92117)


@dataclass
class TagSyncReport:
    created_groups: list[str] = field(default_factory=list)
    created_tags: list[str] = field(default_factory=list)  # group:value
    existing_tags: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # group or tag -> why


def wanted_tags(profile: ProfilePlan | None, report: TagSyncReport) -> dict[str, list[str]]:
    """The taxonomy's groups and values WeCom can hold; the rest go to `report.skipped`."""
    wanted: dict[str, list[str]] = {}
    for group, spec in sorted((profile.groups if profile else {}).items()):
        if not spec.values:
            report.skipped[group] = (
                "no listed values (any value allowed): WeCom has no empty tag groups, list "
                "the values in the TagTaxonomy to tag customers in WeCom"
            )
            continue
        if len(group) > NAME_MAX_CHARS:
            report.skipped[group] = f"a group name over {NAME_MAX_CHARS} characters"
            continue
        values = []
        for value in spec.values:
            if len(value) > NAME_MAX_CHARS:
                report.skipped[f"{group}:{value}"] = f"a tag name over {NAME_MAX_CHARS} characters"
            else:
                values.append(value)
        if values:
            wanted[group] = values
    return wanted


async def sync_tags(
    client: WeComClient, profile: ProfilePlan | None, store: CorpTags
) -> TagSyncReport:
    """Create the taxonomy's missing groups and tags in WeCom and keep every tag's id."""
    report = TagSyncReport()
    wanted = wanted_tags(profile, report)
    library = await client.get_corp_tag_list()
    groups = {g.group_name: g for g in library.tag_group if not g.deleted}
    mapping: list[CorpTagId] = []
    for name, values in wanted.items():
        group = groups.get(name)
        present = {t.name: t.id for t in group.tag if not t.deleted} if group else {}
        missing = [v for v in values if v not in present]
        for value in values:
            if value in present and group is not None:
                report.existing_tags.append(f"{name}:{value}")
                mapping.append(CorpTagId(f"{name}:{value}", group.group_id, present[value]))
        if not missing:
            continue
        request = api.AddCorpTagRequest(
            group_id=group.group_id if group else None,
            group_name=None if group else name,
            tag=[api.NewTag(name=v) for v in missing],
        )
        answer = await client.add_corp_tag(request)
        created = answer.tag_group
        if created is None:
            report.skipped[name] = "WeCom's answer to add_corp_tag named no group"
            continue
        if group is None:
            report.created_groups.append(name)
        ids = {t.name: t.id for t in created.tag}
        for value in missing:
            if value in ids:
                report.created_tags.append(f"{name}:{value}")
                mapping.append(CorpTagId(f"{name}:{value}", created.group_id, ids[value]))
            else:
                report.skipped[f"{name}:{value}"] = "WeCom's answer did not include it"
    store.record(mapping)
    return report
