"""Parse XML that arrived from outside (WeCom callbacks) without trusting it.

defusedxml refuses document type declarations, entity definitions and external
references, so an entity bomb ("billion laughs") or an external entity fails before any
expansion. WeCom never sends a DTD, so refusing every DTD costs nothing. A size limit
bounds the work done on a body before anything is known about it.
"""

from __future__ import annotations

from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from sopflow.errors import SopflowError

# WeCom's callbacks are a few hundred bytes; a member-change list of a full group stays
# well under this.
MAX_XML_BYTES = 256 * 1024


class MalformedXml(SopflowError):
    """The XML is not well formed, too large, or uses a DTD or entities (refused)."""


def parse_xml(text: str | bytes) -> Element:
    """Parse one XML document, refusing DTDs, entities and oversized input."""
    raw = text.encode() if isinstance(text, str) else text
    if len(raw) > MAX_XML_BYTES:
        raise MalformedXml(f"XML body of {len(raw)} bytes is over the {MAX_XML_BYTES}-byte limit")
    try:
        root: Element = fromstring(raw, forbid_dtd=True)
    except DefusedXmlException as error:
        raise MalformedXml(f"XML refused: {type(error).__name__} (no DTD or entities)") from error
    except ParseError as error:
        raise MalformedXml(f"XML is not well formed: {error}") from error
    return root


def child_text(root: Element, tag: str) -> str | None:
    """Text of the first child `tag`, stripped; None when absent."""
    child = root.find(tag)
    if child is None:
        return None
    return (child.text or "").strip()
