"""Message templates: sandboxed Jinja2, compiled once per template version.

``compile_template`` turns stored source (subject, preheader, HTML or MJML, optional
text) into a ``CompiledTemplate``: MJML compiled to HTML, CSS inlined with css-inline
and a text part derived with html2text, all *before* Jinja sees a contact, so the
per-message cost is the Jinja render alone. Jinja tags are swapped for inert markers
while css-inline and html2text run, then put back. ``validate_template`` reports syntax
errors, unknown variables and sandbox escapes with ``field:line``. See docs/messages.md.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import css_inline
import html2text
from jinja2 import (
    DictLoader,
    StrictUndefined,
    TemplateNotFound,
    TemplateSyntaxError,
    UndefinedError,
    nodes,
)
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from postwise.core.errors import FieldError, ValidationFailed

# The names a template may use; each is documented in docs/messages.md.
VARIABLES = frozenset(
    {
        "contact",
        "company",
        "data",
        "workspace",
        "sender",
        "unsubscribe_url",
        "preferences_url",
        "message",
    }
)
PARTS = ("subject", "preheader", "html", "text")
MAX_SOURCE_CHARS = 512 * 1024


class _Environment(ImmutableSandboxedEnvironment):
    """On a mapping, ``x.key`` and ``x['key']`` mean the key only, never a method.

    Stock Jinja resolves ``data.items`` to ``dict.items`` (and ``data['items']``, when the
    key is missing, to the method too), so an abandoned-cart template would iterate a
    method. Iterate a mapping with the ``items`` or ``dictsort`` filters instead.
    """

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is dict or isinstance(obj, Mapping):
            return self.getitem(obj, attribute)
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if type(obj) is dict or isinstance(obj, Mapping):
            try:
                return obj[argument]
            except (KeyError, TypeError):
                return self.undefined(obj=obj, name=argument)
        return super().getitem(obj, argument)


def _environment(autoescape: bool) -> ImmutableSandboxedEnvironment:
    env = _Environment(
        autoescape=autoescape,
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        auto_reload=False,
        cache_size=0,
    )
    env.loader = DictLoader({})  # {% include %} and {% import %} find nothing
    return env


HTML_ENV = _environment(autoescape=True)
TEXT_ENV = _environment(autoescape=False)
_BUILTINS = frozenset(HTML_ENV.globals) | {"loop", "caller", "varargs", "kwargs"}


@dataclass(frozen=True)
class TemplateSource:
    """What a user saves. ``mjml``, when given, replaces ``html``."""

    subject: str
    html: str = ""
    text: str = ""
    preheader: str = ""
    mjml: str = ""


@dataclass(frozen=True)
class RenderedParts:
    subject: str
    preheader: str
    html: str
    text: str


@dataclass
class CompiledTemplate:
    """Ready-to-render Jinja templates for one template version; share across messages."""

    source: TemplateSource
    html_source: str  # after MJML and CSS inlining, Jinja tags intact
    text_source: str  # given or derived from the HTML
    text_derived: bool
    _compiled: dict[str, Any] = field(default_factory=dict, repr=False)

    def render(self, context: Mapping[str, Any]) -> RenderedParts:
        """Render every part; undefined variables and sandbox escapes become ValidationFailed."""
        out: dict[str, str] = {}
        for part in PARTS:
            try:
                out[part] = self._compiled[part].render(context)
            except TemplateNotFound:
                raise ValidationFailed(
                    "Templates cannot include or import other templates.",
                    code="template_unsafe",
                    field=part,
                ) from None
            except SecurityError as exc:
                raise ValidationFailed(
                    f"The template tried something not allowed: {exc}",
                    code="template_unsafe",
                    field=part,
                ) from None
            except UndefinedError as exc:
                raise ValidationFailed(
                    f"The template uses a value this message does not have: {exc.message}. "
                    'Give it a default, e.g. {{ contact.first_name | default("there") }}.',
                    code="template_undefined",
                    field=part,
                ) from None
            except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
                raise ValidationFailed(
                    f"The template failed while rendering: {exc}",
                    code="template_render_failed",
                    field=part,
                ) from None
        return RenderedParts(
            subject=" ".join(out["subject"].split()),
            preheader=" ".join(out["preheader"].split()),
            html=out["html"],
            text=out["text"],
        )


# --- Jinja tags kept out of reach of the HTML tools --------------------------------

_JINJA_TAG = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)


def _protect(source: str, *, comments: bool) -> tuple[str, dict[str, str], str]:
    """Replace Jinja tags by markers; statements become HTML comments when ``comments``.

    A statement between ``<table>`` and ``<tr>`` would be moved out of the table by an
    HTML5 parser if it were text; a comment stays where it is.
    """
    nonce = secrets.token_hex(4)
    tags: dict[str, str] = {}

    def swap(match: re.Match[str]) -> str:
        tag = match.group(0)
        if tag.startswith("{#"):
            return ""
        marker = f"pwj{nonce}x{len(tags)}x"
        tags[marker] = tag
        if comments and tag.startswith("{%"):
            return f"<!--{marker}-->"
        return marker

    return _JINJA_TAG.sub(swap, source), tags, nonce


def _restore(
    text: str, tags: dict[str, str], nonce: str, *, allow_missing: bool = False
) -> str | None:
    """Put the tags back; ``None`` when a tool duplicated (or, unless allowed, dropped) one."""
    pattern = re.compile(rf"(?:<!--|&lt;!--)?(pwj{nonce}x[0-9]+x)(?:-->|--&gt;)?")
    seen: set[str] = set()
    ok = True

    def back(match: re.Match[str]) -> str:
        nonlocal ok
        marker = match.group(1)
        if marker in seen or marker not in tags:
            ok = False
            return ""
        seen.add(marker)
        return tags[marker]

    restored = pattern.sub(back, text)
    if not ok or (seen != set(tags) and not allow_missing):
        return None
    return restored


_INLINER = css_inline.CSSInliner(keep_style_tags=False, load_remote_stylesheets=False)


def inline_css(html: str) -> str:
    """Inline the template's CSS once, keeping Jinja tags where they were."""
    if "<style" not in html.lower():
        return html
    protected, tags, nonce = _protect(html, comments=True)
    try:
        inlined = _INLINER.inline(protected)
    except (ValueError, css_inline.InlineError) as exc:
        raise ValidationFailed(
            f"The template's CSS could not be inlined: {exc}", code="invalid_css", field="html"
        ) from None
    restored = _restore(inlined, tags, nonce)
    if restored is None:
        raise ValidationFailed(
            "A template tag sits where HTML cannot hold it (e.g. inside a tag name); "
            "move it into text or an attribute value.",
            code="template_tag_misplaced",
            field="html",
        )
    return restored


_CELL_END = re.compile(r"</t[dh]\s*>", re.I)
_INVISIBLE = re.compile(r"<(head|style|script|title)\b.*?</\1\s*>|<!--.*?-->", re.S | re.I)


def html_to_text(html: str) -> str:
    """A readable plain-text part from the HTML (html2text), Jinja tags kept.

    What a reader never sees (head, style, comments) is dropped first, and with it any
    tag inside; tags html2text drops with an attribute (an image's alt) go too.
    """
    protected, tags, nonce = _protect(html, comments=False)
    converter = html2text.HTML2Text()
    converter.body_width = 0
    converter.ignore_images = True
    converter.ignore_emphasis = True
    converter.ignore_tables = True
    converter.unicode_snob = True
    converter.single_line_break = False
    visible = _CELL_END.sub(r"\g<0> ", _INVISIBLE.sub("", protected))  # cells apart
    text = converter.handle(visible)
    restored = _restore(text, tags, nonce, allow_missing=True)
    assert restored is not None  # only duplicates fail, and html2text does not copy text
    lines = "\n".join(line.rstrip() for line in restored.splitlines())
    return re.sub(r"\n{3,}", "\n\n", lines).strip() + "\n"


def compile_mjml(source: str) -> str:
    from mjml import mjml2html

    protected, tags, nonce = _protect(source, comments=False)
    try:
        html = mjml2html(protected, disable_comments=False)
    except Exception as exc:  # mjml-python raises plain exceptions for bad markup
        raise ValidationFailed(
            f"The MJML could not be compiled: {exc}", code="invalid_mjml", field="mjml"
        ) from None
    restored = _restore(html, tags, nonce)
    if restored is None:
        raise ValidationFailed(
            "A template tag in the MJML was dropped by the compiler; put it inside mj-text "
            "or an attribute value.",
            code="template_tag_misplaced",
            field="mjml",
        )
    return restored


# --- validation ---------------------------------------------------------------------


def _check_tree(
    part: str, tree: nodes.Template, known: Mapping[str, Iterable[str] | None]
) -> list[FieldError]:
    errors: list[FieldError] = []
    for node in tree.find_all((nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)):
        errors.append(
            FieldError(
                f"{part}:{node.lineno}",
                "template_unsafe",
                "Templates cannot include, import or extend other templates.",
            )
        )
    assigned = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
    for name in tree.find_all(nodes.Name):
        if name.ctx != "load" or name.name in assigned:
            continue
        if name.name not in VARIABLES and name.name not in _BUILTINS:
            errors.append(
                FieldError(
                    f"{part}:{name.lineno}",
                    "unknown_variable",
                    f"Unknown variable {name.name!r}; use one of: {', '.join(sorted(VARIABLES))}.",
                )
            )
    for getattr_ in tree.find_all(nodes.Getattr):
        if getattr_.attr.startswith("_"):
            errors.append(
                FieldError(
                    f"{part}:{getattr_.lineno}",
                    "template_unsafe",
                    f"Attributes starting with '_' ({getattr_.attr}) are not allowed.",
                )
            )
            continue
        target = getattr_.node
        if isinstance(target, nodes.Name) and target.ctx == "load":
            allowed = known.get(target.name)
            if allowed is not None and target.name not in assigned:
                allowed_set = set(allowed)
                if getattr_.attr not in allowed_set:
                    errors.append(
                        FieldError(
                            f"{part}:{getattr_.lineno}",
                            "unknown_variable",
                            f"Unknown field {target.name}.{getattr_.attr}; known: "
                            f"{', '.join(sorted(allowed_set))}.",
                        )
                    )
    for item in tree.find_all(nodes.Getitem):
        arg = item.arg
        if (
            isinstance(arg, nodes.Const)
            and isinstance(arg.value, str)
            and arg.value.startswith("_")
        ):
            errors.append(
                FieldError(
                    f"{part}:{item.lineno}",
                    "template_unsafe",
                    "Keys starting with '_' are not allowed.",
                )
            )
    return errors


def validate_template(
    source: TemplateSource, known: Mapping[str, Iterable[str] | None] | None = None
) -> list[FieldError]:
    """Every problem with line numbers; an empty list means the template compiles.

    ``known`` maps a variable (``contact``, ``company``...) to the attribute names it
    has, so ``contact.frist_name`` is caught at save time; ``None`` leaves it open.
    """
    errors: list[FieldError] = []
    if not source.subject.strip():
        errors.append(FieldError("subject", "required", "A template needs a subject."))
    if not source.html.strip() and not source.mjml.strip() and not source.text.strip():
        errors.append(FieldError("html", "required", "Give HTML, MJML or text."))
    parts = {
        "subject": source.subject,
        "preheader": source.preheader,
        "html": source.html,
        "text": source.text,
        "mjml": source.mjml,
    }
    for part, text in parts.items():
        if len(text) > MAX_SOURCE_CHARS:
            errors.append(
                FieldError(part, "too_long", f"{part} is over {MAX_SOURCE_CHARS} characters.")
            )
            continue
        if not text:
            continue
        env = HTML_ENV if part in ("html", "mjml") else TEXT_ENV
        try:
            tree = env.parse(text)
        except TemplateSyntaxError as exc:
            errors.append(
                FieldError(f"{part}:{exc.lineno}", "template_syntax", exc.message or "syntax error")
            )
            continue
        errors.extend(_check_tree(part, tree, known or {}))
        if part in ("subject", "preheader") and ("\r" in text or "\n" in text):
            errors.append(FieldError(part, "invalid_header", f"The {part} must be one line."))
    return errors


def compile_template(
    source: TemplateSource, known: Mapping[str, Iterable[str] | None] | None = None
) -> CompiledTemplate:
    """Validate, then prepare for rendering; raises ValidationFailed listing every problem."""
    errors = validate_template(source, known)
    if errors:
        raise ValidationFailed.from_errors(errors)
    html = compile_mjml(source.mjml) if source.mjml.strip() else source.html
    html = inline_css(html) if html else ""
    text = source.text
    derived = False
    if not text.strip() and html:
        text = html_to_text(html)
        derived = True
    compiled = CompiledTemplate(
        source=source, html_source=html, text_source=text, text_derived=derived
    )
    try:
        compiled._compiled = {
            "subject": TEXT_ENV.from_string(source.subject),
            "preheader": TEXT_ENV.from_string(source.preheader),
            "html": HTML_ENV.from_string(html),
            "text": TEXT_ENV.from_string(text),
        }
    except TemplateSyntaxError as exc:  # the derived text lost half of a tag pair
        raise ValidationFailed(
            "The plain-text part cannot be derived from this HTML (a {% %} tag sits where "
            f"text conversion drops it: {exc.message}); give the text part explicitly.",
            code="text_part_required",
            field="text",
        ) from None
    return compiled
