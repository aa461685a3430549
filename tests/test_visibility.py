"""What the workflow publishes to visibility is bounded, whatever the tags hold."""

from workflows.visibility import (
    MAX_KEYWORD_BYTES,
    MAX_LIST_BYTES,
    bounded_keyword,
    bounded_keywords,
    encoded_size,
)


def test_a_list_is_cut_to_the_servers_size_in_order() -> None:
    tags = [f"interest:{i:03d}-" + "t" * 88 for i in range(100)]
    kept = bounded_keywords(tags)
    assert encoded_size(kept) <= MAX_LIST_BYTES < encoded_size(tags[: len(kept) + 1])
    assert kept == tags[: len(kept)]


def test_a_long_keyword_is_cut_on_characters_as_the_sdk_encodes_them() -> None:
    chinese = "来源渠道:" + "门" * 3000  # six bytes each once JSON-escaped
    cut = bounded_keyword(chinese)
    assert encoded_size(cut) <= MAX_KEYWORD_BYTES
    assert chinese.startswith(cut) and len(cut) > 20
    assert bounded_keyword("short:tag") == "short:tag"


def test_keywords_that_become_equal_once_cut_are_published_once() -> None:
    same_start = ["x:" + "a" * 500 + "1", "x:" + "a" * 500 + "2"]
    assert len(bounded_keywords(same_start)) == 1
    assert bounded_keywords([]) == []
