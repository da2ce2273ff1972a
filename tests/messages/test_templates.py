"""Templates: sandbox, strictness with defaults, validation with line numbers, compile steps."""

from __future__ import annotations

import pytest

from postwise.core.errors import ValidationFailed
from postwise.messages.templates import TemplateSource, compile_template, validate_template

CTX = {
    "contact": {"first_name": "Ann", "email": "ann@corp.example"},
    "company": {},
    "data": {"items": [{"name": "Chair", "price": 120}, {"name": "Desk & Lamp", "price": 300}]},
    "workspace": {"name": "Acme"},
    "sender": {"name": "Acme", "email": "news@acme.example", "postal_address": "1 Main St"},
    "unsubscribe_url": "https://t.example/u/x",
    "preferences_url": "https://t.example/u/x?preferences=1",
    "message": {"kind": "marketing", "campaign": ""},
}


def test_defaults_and_autoescape() -> None:
    template = compile_template(
        TemplateSource(
            subject='Hi {{ contact.last_name | default("there") }}',
            html="<ul>{% for item in data['items'] %}<li>{{ item.name }}: {{ item.price }}</li>"
            "{% endfor %}</ul>",
            text="{% for item in data['items'] %}- {{ item.name }}\n{% endfor %}",
        )
    )
    parts = template.render(CTX)
    assert parts.subject == "Hi there"
    assert "<li>Desk &amp; Lamp: 300</li>" in parts.html
    assert parts.text == "- Chair\n- Desk & Lamp\n"


def test_missing_value_without_default_fails_at_render() -> None:
    template = compile_template(
        TemplateSource(subject="Hi {{ contact.last_name }}", html="<p>x</p>")
    )
    with pytest.raises(ValidationFailed) as err:
        template.render(CTX)
    assert err.value.code == "template_undefined" and err.value.field == "subject"


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ contact['__class__'] }}",
        "{{ data.items.__globals__ }}",
    ],
)
def test_sandbox_escapes_are_refused_at_save(source: str) -> None:
    errors = validate_template(TemplateSource(subject="s", html=f"<p>\n{source}</p>"))
    assert [(e.field, e.code) for e in errors][:1] == [("html:2", "template_unsafe")]


def test_sandbox_escapes_are_refused_at_render() -> None:
    # An escape the static check cannot see (the attribute name is computed).
    template = compile_template(
        TemplateSource(subject="s", html="{{ data.obj | attr(data.name) }}")
    )
    with pytest.raises(ValidationFailed) as err:
        template.render({**CTX, "data": {"obj": "", "name": "__class__"}})
    assert err.value.code == "template_unsafe"
    mutating = compile_template(TemplateSource(subject="s", html="{{ data.l.append(1) }}"))
    with pytest.raises(ValidationFailed) as err:
        mutating.render({**CTX, "data": {"l": []}})
    assert err.value.code == "template_unsafe"


def test_no_includes_or_imports() -> None:
    for tag in ("{% include '/etc/passwd' %}", "{% import 'os' as os %}", "{% extends 'x' %}"):
        errors = validate_template(TemplateSource(subject="s", html=tag))
        assert [(e.field, e.code) for e in errors] == [("html:1", "template_unsafe")]


def test_validation_reports_every_problem_with_lines() -> None:
    source = TemplateSource(
        subject="Hello {{ contact.first_name",
        html="<p>ok</p>\n<p>{{ customer.name }}</p>\n<p>{{ contact.frist_name }}</p>",
        text="line1\n{% if %}",
    )
    errors = validate_template(source, {"contact": ["first_name", "last_name", "email"]})
    found = {(e.field, e.code) for e in errors}
    assert ("subject:1", "template_syntax") in found
    assert ("html:2", "unknown_variable") in found
    assert ("html:3", "unknown_variable") in found
    assert ("text:2", "template_syntax") in found
    with pytest.raises(ValidationFailed) as err:
        compile_template(source)
    assert len(err.value.errors) >= 3


def test_loop_variables_are_not_unknown() -> None:
    source = TemplateSource(
        subject="s",
        html="{% set total = 0 %}{% for item in data.rows %}{{ item.x }}{{ loop.index }}"
        "{% endfor %}{{ total }}",
    )
    assert validate_template(source) == []


def test_css_is_inlined_once_with_tags_kept() -> None:
    template = compile_template(
        TemplateSource(
            subject="s",
            html=(
                "<html><head><style>td.price{color:#c00}</style></head><body><table>"
                "{% for item in data['items'] %}<tr><td class=\"price\">{{ item.price }}</td></tr>"
                "{% endfor %}</table></body></html>"
            ),
        )
    )
    assert "<style" not in template.html_source
    assert 'style="color: #c00;"' in template.html_source
    html = template.render(CTX).html
    assert html.count('style="color: #c00;">') == 2 and ">120<" in html and ">300<" in html


def test_text_is_derived_from_html() -> None:
    template = compile_template(
        TemplateSource(
            subject="s",
            html="<h1>Hello {{ contact.first_name }}</h1>"
            '<p>See <a href="https://acme.example/x">our offer</a>.</p>',
        )
    )
    assert template.text_derived
    text = template.render(CTX).text
    assert "Hello Ann" in text and "https://acme.example/x" in text and "<" not in text


def test_mjml_compiles_at_save() -> None:
    template = compile_template(
        TemplateSource(
            subject="s",
            mjml=(
                "<mjml><mj-body><mj-section><mj-column><mj-text>Hi {{ contact.first_name }}"
                '</mj-text><mj-button href="https://acme.example/{{ contact.first_name }}">Go'
                "</mj-button></mj-column></mj-section></mj-body></mjml>"
            ),
        )
    )
    html = template.render(CTX).html
    assert "Hi Ann" in html and "https://acme.example/Ann" in html and "<table" in html


def test_multiline_subject_is_refused() -> None:
    errors = validate_template(TemplateSource(subject="a\nBcc: x@y", html="<p>x</p>"))
    assert ("subject", "invalid_header") in {(e.field, e.code) for e in errors}


def test_mapping_keys_win_over_methods() -> None:
    template = compile_template(
        TemplateSource(
            subject="{{ data.items | length }} items",
            html="{% for i in data.items %}{{ i }}{% endfor %}"
            "|{{ data['keys'] | default('none') }}",
        )
    )
    parts = template.render({**CTX, "data": {"items": ["a", "b"]}})
    assert parts.subject == "2 items" and parts.html == "ab|none"
    with pytest.raises(ValidationFailed) as err:
        template.render({**CTX, "data": {}})
    assert err.value.code == "template_undefined"


def test_format_strings_cannot_reach_internals() -> None:
    template = compile_template(
        TemplateSource(subject="s", html="{{ '{0.__class__.__mro__}'.format(data.x) }}")
    )
    with pytest.raises(ValidationFailed) as err:
        template.render({**CTX, "data": {"x": 1}})
    assert err.value.code == "template_unsafe"
