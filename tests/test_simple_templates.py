"""A template of text and `{{ name.key }}` only is rendered without Jinja: the same text,
the same steps, the same error, as Jinja's sandbox gives, whatever the data."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from sopflow.language import templates
from sopflow.language.templates import MAX_MESSAGE_CHARS, TemplateError, render_counted

CONTEXT: dict[str, Any] = {
    "customer": {
        "id": "c1",
        "tier": None,
        "score": 2.5,
        "vip": True,
        "count": 10**5000,  # str() refuses an int this long
        "attributes": {"nickname": "王先生", "items": "own key", "nested": {"k": [1, 2]}},
        "tags": ["a", "b"],
        "long": "x" * MAX_MESSAGE_CHARS,
    },
    "now": datetime(2026, 11, 23, 9, tzinfo=UTC),
    "event": {"data": {"status": "已下线"}},
}

CASES = [
    "您好{{ customer.attributes.nickname }}，我是小林",
    "新客户 {{ customer.id }}：24 小时\n",  # a trailing newline: Jinja drops it
    "a\r\nb {{ customer.id }}",  # newlines as Jinja writes them
    "{{ customer.tier }}/{{ customer.score }}/{{ customer.vip }}/{{ customer.tags }}",
    "{{ customer.attributes.nested }} {{ customer.attributes.nested.k }}",
    "{{- customer.id -}} x {# a comment #} {% raw %}{{ not read }}{% endraw %}",
    "{{ customer.attributes.items }}",  # a dict method: the sandbox gives the method
    "{{ customer.missing }}",  # an error
    "{{ nobody.id }}",  # an error
    "{{ now.year }}",  # not a dict
    "{{ customer.tags.size }}",
    "{{ customer.count }}",  # an error when made text
    "{{ customer.long }}{{ customer.id }}",  # over the length limit
    "{{ event.data.status }}",
    "{{ customer }}",  # a name without a key: Jinja
    "{{ customer.id | upper }}",  # a filter: Jinja
]


def jinja(source: str, context: dict[str, Any]) -> tuple[str, int] | str:
    try:
        return templates.render_counted(source, context)
    except TemplateError as e:
        return f"error: {e}"


@pytest.mark.parametrize("source", CASES)
def test_a_simple_template_renders_as_jinja_renders_it(
    source: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = jinja(source, CONTEXT)
    monkeypatch.setattr(templates, "_simple_render", lambda source, context: None)
    assert fast == jinja(source, CONTEXT)


def test_the_common_templates_take_the_way_without_jinja() -> None:
    taken = [s for s in CASES if templates._simple_render(s, CONTEXT) is not None]
    assert taken == [*CASES[:6], CASES[13]]
    assert render_counted(CASES[0], CONTEXT) == ("您好王先生，我是小林", 0)
