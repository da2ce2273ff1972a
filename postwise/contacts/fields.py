"""The fixed fields of contacts and companies: what each accepts and its stored form.

``clean_contact`` and ``clean_company`` are shared by the API, the CSV importer and the
tracking ``identify``/``group`` calls, so a value means the same whichever way it came in.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from typing import Any
from zoneinfo import available_timezones

from postwise.contacts.attributes import AttributeSchema, AttributeType, InvalidValue, coerce
from postwise.contacts.emails import normalize_domain, normalize_email
from postwise.core.errors import FieldError, ValidationFailed

CONTACT_STATUSES = ("subscribed", "unsubscribed", "bounced", "complained", "pending")
SENIORITIES = ("intern", "entry", "senior", "manager", "director", "vp", "c_level", "owner")
_SENIORITY_ALIASES = {
    "c-level": "c_level", "clevel": "c_level", "cxo": "c_level", "executive": "c_level",
    "vice president": "vp", "vice_president": "vp", "junior": "entry", "mid": "senior",
    "lead": "manager", "head": "director", "founder": "owner", "partner": "owner",
}  # fmt: skip
SIZE_BANDS = ("1-10", "11-50", "51-200", "201-500", "501-1000", "1001-5000", "5001-10000", "10001+")
_BAND_FLOORS = (1, 11, 51, 201, 501, 1001, 5001, 10001)
REVENUE_BANDS = ("<1M", "1M-10M", "10M-50M", "50M-100M", "100M-500M", "500M-1B", "1B+")

# ISO 3166-1 alpha-2, officially assigned codes.
COUNTRIES = frozenset(
    "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ "
    "BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM "
    "DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS "
    "GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN "
    "KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ "
    "MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM "
    "PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV "
    "SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI "
    "VN VU WF WS YE YT ZA ZM ZW ".split()
)
_LANGUAGE = re.compile(r"[a-z]{2,3}(?:-[A-Za-z0-9]{2,8})*")
_PHONE_NOISE = re.compile(r"[\s().\-/]")
_PHONE = re.compile(r"\+?[0-9]{5,15}")
MAX_LANGUAGE = 16  # the column's width
MAX_EMPLOYEES = 2**31 - 1  # the column's range

TEXT_LIMITS = {
    "external_id": 255, "first_name": 200, "last_name": 200, "job_title": 200,
    "department": 64, "name": 255, "industry": 100,
}  # fmt: skip
CONTACT_FIELDS = (
    "email", "external_id", "first_name", "last_name", "job_title", "seniority", "department",
    "country", "timezone", "language", "phone", "status", "attributes",
)  # fmt: skip
COMPANY_FIELDS = (
    "domain", "name", "industry", "employee_count", "size_band", "revenue_band", "country",
    "attributes",
)  # fmt: skip


@cache
def _timezones() -> frozenset[str]:
    return frozenset(available_timezones())


def size_band_for(employees: int) -> str:
    band = SIZE_BANDS[0]
    for floor, name in zip(_BAND_FLOORS, SIZE_BANDS, strict=True):
        if employees >= floor:
            band = name
    return band


def _text(field: str, value: Any, errors: list[FieldError]) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        errors.append(FieldError(field, "invalid_type", f"{field} must be text"))
        return None
    text = str(value).strip()
    if "\x00" in text:
        errors.append(FieldError(field, "invalid_character", f"{field} contains a NUL character"))
        return None
    limit = TEXT_LIMITS.get(field, 255)
    if len(text) > limit:
        errors.append(FieldError(field, "too_long", f"{field} is longer than {limit} characters"))
        return None
    return text or None


def _choice(field: str, value: Any, allowed: tuple[str, ...], errors: list[FieldError],
            aliases: Mapping[str, str] | None = None) -> str | None:  # fmt: skip
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    text = str(value).strip().lower() if field != "revenue_band" else str(value).strip()
    text = (aliases or {}).get(text, text)
    if text not in allowed:
        errors.append(
            FieldError(field, f"invalid_{field}", f"{field} must be one of: {', '.join(allowed)}")
        )
        return None
    return text


def _country(value: Any, errors: list[FieldError]) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    code = str(value).strip().upper()
    if code not in COUNTRIES:
        errors.append(
            FieldError(
                "country", "invalid_country", f"{value!r} is not an ISO 3166-1 alpha-2 country code"
            )
        )
        return None
    return code


def _address_text(field: str, value: Any) -> str:
    """Email and domain must arrive as text; anything else is refused before normalizing."""
    if value is None or isinstance(value, str):
        return value or ""
    raise ValidationFailed(f"{field} must be text", code="invalid_type", field=field)


def _unknown(data: Mapping[str, Any], known: tuple[str, ...], errors: list[FieldError]) -> None:
    for key in data:
        if key not in known:
            errors.append(
                FieldError(
                    key, "unknown_field", f"unknown field {key!r}; custom data goes in 'attributes'"
                )
            )


def _finish(
    data: Mapping[str, Any], schema: AttributeSchema, out: dict[str, Any], errors: list[FieldError]
) -> dict[str, Any]:
    """Custom attributes last, then every problem found at once or the cleaned values."""
    if "attributes" in data:
        attrs = data["attributes"] or {}
        if not isinstance(attrs, Mapping):
            errors.append(FieldError("attributes", "invalid_type", "attributes must be an object"))
        else:
            out["attributes"] = schema.clean(attrs, errors)
    if errors:
        raise ValidationFailed.from_errors(errors)
    return out


def clean_contact(
    data: Mapping[str, Any], schema: AttributeSchema, *, partial: bool = False
) -> dict[str, Any]:
    """Validated stored forms of the fields present in ``data``; raises with every problem.

    ``partial`` (an update) allows a missing email; otherwise email is required.
    """
    errors: list[FieldError] = []
    _unknown(data, CONTACT_FIELDS, errors)
    out: dict[str, Any] = {}
    if "email" in data or not partial:
        try:
            email = normalize_email(_address_text("email", data.get("email")))
            out["email"], out["email_domain"] = email.address, email.domain
        except ValidationFailed as exc:
            errors.append(FieldError("email", exc.code, exc.message))
    for field in ("external_id", "first_name", "last_name", "job_title", "department"):
        if field in data:
            out[field] = _text(field, data[field], errors)
    if "seniority" in data:
        out["seniority"] = _choice(
            "seniority", data["seniority"], SENIORITIES, errors, _SENIORITY_ALIASES
        )
    if "country" in data:
        out["country"] = _country(data["country"], errors)
    if "timezone" in data:
        tz = _text("timezone", data["timezone"], errors)
        if tz is not None and tz not in _timezones():
            errors.append(
                FieldError("timezone", "invalid_timezone", f"{tz!r} is not an IANA time zone")
            )
        else:
            out["timezone"] = tz
    if "language" in data:
        lang = _text("language", data["language"], errors)
        if lang is not None and (len(lang) > MAX_LANGUAGE or not _LANGUAGE.fullmatch(lang)):
            errors.append(
                FieldError(
                    "language",
                    "invalid_language",
                    f"language must be a BCP 47 tag like 'en' or 'de-CH', at most {MAX_LANGUAGE} "
                    "characters",
                )
            )
        else:
            out["language"] = lang
    if "phone" in data:
        phone = _text("phone", data["phone"], errors)
        if phone is not None:
            compact = _PHONE_NOISE.sub("", phone)
            if not _PHONE.fullmatch(compact):
                errors.append(
                    FieldError(
                        "phone",
                        "invalid_phone",
                        "phone must be 5 to 15 digits, optionally with a leading +",
                    )
                )
            else:
                out["phone"] = compact
        else:
            out["phone"] = None
    if "status" in data:
        status = _choice("status", data["status"], CONTACT_STATUSES, errors)
        if status is not None:
            out["status"] = status
    return _finish(data, schema, out, errors)


def clean_company(
    data: Mapping[str, Any], schema: AttributeSchema, *, partial: bool = False
) -> dict[str, Any]:
    errors: list[FieldError] = []
    _unknown(data, COMPANY_FIELDS, errors)
    out: dict[str, Any] = {}
    if "domain" in data or not partial:
        try:
            out["domain"] = normalize_domain(_address_text("domain", data.get("domain")))
        except ValidationFailed as exc:
            errors.append(FieldError("domain", exc.code, exc.message))
    for field in ("name", "industry"):
        if field in data:
            out[field] = _text(field, data[field], errors)
    if "employee_count" in data and data["employee_count"] not in (None, ""):
        try:
            count = coerce(AttributeType.NUMBER, data["employee_count"])
            if not isinstance(count, int) or not 0 <= count <= MAX_EMPLOYEES:
                raise InvalidValue(f"expected a whole number of employees up to {MAX_EMPLOYEES}")
            out["employee_count"] = count
            out["size_band"] = size_band_for(count)
        except InvalidValue as exc:
            errors.append(
                FieldError("employee_count", "invalid_employee_count", f"employee_count: {exc}")
            )
    elif "employee_count" in data:
        out["employee_count"] = None
    if "size_band" in data and "employee_count" not in out:
        out["size_band"] = _choice("size_band", data["size_band"], SIZE_BANDS, errors)
    if "revenue_band" in data:
        out["revenue_band"] = _choice("revenue_band", data["revenue_band"], REVENUE_BANDS, errors)
    if "country" in data:
        out["country"] = _country(data["country"], errors)
    return _finish(data, schema, out, errors)
