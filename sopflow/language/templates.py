"""Message templates: Jinja2's sandbox with strict undefined, over the guards' context."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateError, nodes
from jinja2.sandbox import SandboxedEnvironment

from sopflow.language.context import ORDERS_FIELDS, ROOTS, SUBJECT_ROOT, template_roots
from sopflow.language.diagnostics import did_you_mean
from sopflow.language.subjects import Audience

# The sandbox refuses attribute tricks (`__class__`...) from template authors; strict
# undefined turns a missing variable into an error instead of a silent blank in a message.
_ENVIRONMENT = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


@lru_cache(maxsize=4096)
def _compile(source: str) -> Any:
    return _ENVIRONMENT.from_string(source)


def render_template(source: str, context: dict[str, Any]) -> str:
    """Render; raise TemplateError (with Jinja's message) when it cannot be rendered."""
    if "{" not in source:
        return source  # plain text, the common case: no Jinja at all
    rendered: str = _compile(source).render(context)
    return rendered


def check_template(
    source: str, *, with_event: bool = True, audience: Audience = Audience.CUSTOMER
) -> str | None:
    """A message saying why the template cannot render, or None."""
    try:
        tree = _ENVIRONMENT.parse(source)
    except TemplateError as e:
        return f"template does not parse: {e}"
    assigned = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
    roots = template_roots(audience)
    roots = roots if with_event else roots - {"event"}
    for name in tree.find_all(nodes.Name):
        if name.ctx == "load" and name.name not in roots and name.name not in assigned:
            if name.name in SUBJECT_ROOT.values():
                own = SUBJECT_ROOT[audience]
                return (
                    f"template variable '{name.name}' cannot exist in a playbook with "
                    f"audience {audience.value}: it reads '{own}'"
                )
            return f"template variable '{name.name}' cannot exist{did_you_mean(name.name, roots)}"
    for access in tree.find_all(nodes.Getattr):
        target = access.node
        if isinstance(target, nodes.Name) and target.name in ROOTS and target.name in roots:
            fields = ROOTS[target.name]
            if access.attr not in fields:
                suggestion = did_you_mean(access.attr, fields)
                return f"template variable '{target.name}.{access.attr}' cannot exist{suggestion}"
        if (
            isinstance(target, nodes.Getattr)
            and target.attr == "orders"
            and access.attr not in ORDERS_FIELDS
        ):
            suggestion = did_you_mean(access.attr, ORDERS_FIELDS)
            return f"template variable 'customer.orders.{access.attr}' cannot exist{suggestion}"
    return None


__all__ = ["TemplateError", "check_template", "render_template"]
