"""A B2B audience built in memory from a seed: companies, people, lists and their history.

Everything comes from one ``random.Random(seed)``, and times are offsets from ``now``,
so the same seed and ``now`` give the same data (the same seed alone gives the same
people and addresses). Nothing here touches the database; ``loader.py`` writes it.

The history is shaped for the segments later features need: firmographics on every
company, job titles and seniorities, lifecycle stages, birthdays and customer
anniversaries, page views with UTM campaigns, trials, lead magnets, webinars, demo
bookings, orders and abandoned checkouts, and a few accounts with several people on
the pricing page this week.
"""

from __future__ import annotations

import math
import random
import re
import unicodedata
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from postwise.contacts.emails import normalize_domain
from postwise.contacts.fields import REVENUE_BANDS
from postwise.contacts.freemail import is_free_mail
from postwise.core.clock import utcnow
from postwise.core.errors import ValidationFailed
from postwise.demo import data
from postwise.demo.data import Country, Industry, ListSpec

T = TypeVar("T")

MAX_CONTACTS = 100_000
MAX_COMPANIES = 10_000
FREE_MAIL_SHARE = 0.08
HISTORY_DAYS = 120  # events reach this far back
CONTACT_AGE_DAYS = 730  # contacts were created over this many days
TRIAL_DAYS = 14
LIBRARY = {"name": "analytics.js", "version": "5.2.0"}


@dataclass(frozen=True)
class AttributeSpec:
    entity: str
    name: str
    type: str
    description: str


ATTRIBUTES: tuple[AttributeSpec, ...] = (
    AttributeSpec("contact", "plan", "string", "free, trial, starter, growth or enterprise"),
    AttributeSpec(
        "contact",
        "lifecycle_stage",
        "string",
        "subscriber, lead, mql, sql, opportunity, customer or evangelist",
    ),
    AttributeSpec("contact", "lead_score", "number", "0-100 from fit and recent activity"),
    AttributeSpec("contact", "birthday", "date", "Date of birth, where the person gave it"),
    AttributeSpec("contact", "customer_since", "date", "When their account started paying"),
    AttributeSpec("contact", "interests", "list", "Topics they asked to hear about"),
    AttributeSpec("contact", "trial_ends_at", "date", "End of the current or last trial"),
    AttributeSpec("contact", "is_customer", "boolean", "Works at a paying customer account"),
    AttributeSpec("company", "crm_tier", "string", "Tier 1 (strategic) to Tier 3"),
    AttributeSpec("company", "arr", "number", "Annual recurring revenue, USD"),
)


@dataclass
class CompanyRecord:
    domain: str
    name: str
    industry: str
    employee_count: int
    revenue_band: str | None
    country: str
    attributes: dict[str, Any]
    customer_since: date | None
    ip: str  # the office's address, shared by most of its people
    created_at: datetime
    updated_at: datetime

    def row(self) -> dict[str, Any]:
        """The input of ``contacts.companies.upsert_company``."""
        return {
            "domain": self.domain,
            "name": self.name,
            "industry": self.industry,
            "employee_count": self.employee_count,
            "revenue_band": self.revenue_band,
            "country": self.country,
            "attributes": self.attributes,
        }


@dataclass
class ContactRecord:
    email: str
    first_name: str
    last_name: str
    job_title: str | None
    seniority: str | None
    department: str | None
    country: str
    timezone: str
    language: str
    phone: str | None
    company: CompanyRecord | None
    stage: str
    created_at: datetime
    updated_at: datetime
    status: str = "subscribed"
    attributes: dict[str, Any] = field(default_factory=dict)
    trial_started_at: datetime | None = None
    anonymous_id: str | None = None  # the browser they signed up from, if they did
    user_agent: str = ""
    ip: str = ""

    @property
    def company_domain(self) -> str | None:
        return self.company.domain if self.company else None

    def row(self) -> dict[str, Any]:
        """The input of ``contacts.actions.upsert_contacts``."""
        return {
            "email": self.email,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "job_title": self.job_title,
            "seniority": self.seniority,
            "department": self.department,
            "country": self.country,
            "timezone": self.timezone,
            "language": self.language,
            "phone": self.phone,
            "status": self.status,
            "attributes": self.attributes,
        }


@dataclass(frozen=True)
class MembershipRecord:
    list_name: str
    email: str
    source: str  # form | import | api
    ip: str | None
    recorded_at: datetime
    confirmed_at: datetime | None  # double opt-in only; None there means still pending
    unsubscribed_at: datetime | None = None


@dataclass(frozen=True)
class EventRecord:
    email: str | None  # None: a visitor who never identified
    anonymous_id: str | None
    type: str  # page | track
    name: str
    properties: dict[str, Any]
    context: dict[str, Any]
    message_id: str
    occurred_at: datetime
    received_at: datetime  # a moment later, when the collector got it


@dataclass
class DemoData:
    seed: int
    now: datetime
    attributes: tuple[AttributeSpec, ...]
    lists: tuple[ListSpec, ...]
    companies: list[CompanyRecord]
    contacts: list[ContactRecord]
    memberships: list[MembershipRecord]
    events: list[EventRecord]


def generate(
    *, seed: int = 7, contacts: int = 2000, companies: int = 160, now: datetime | None = None
) -> DemoData:
    """The demo audience; raises ValidationFailed for sizes it cannot make plausible."""
    if not 1 <= companies <= MAX_COMPANIES:
        raise ValidationFailed(
            f"companies must be between 1 and {MAX_COMPANIES}", field="companies"
        )
    if not companies <= contacts <= MAX_CONTACTS:
        raise ValidationFailed(
            f"contacts must be between the number of companies ({companies}) and {MAX_CONTACTS}",
            field="contacts",
        )
    return _Generator(seed, now or utcnow()).build(contacts, companies)


# --- small helpers ----------------------------------------------------------------------

_TRANSLIT_COMMON = str.maketrans(
    {"ß": "ss", "ø": "o", "Ø": "O", "æ": "ae", "Æ": "Ae", "ł": "l", "Ł": "L", "&": " "}
)
_TRANSLIT_DE = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "Ä": "Ae", "Ö": "Oe", "Ü": "Ue"})


def ascii_slug(text: str, sep: str = "", *, culture: str = "") -> str:
    """Lower-case ASCII words joined by ``sep``: 'Jürgen' -> 'juergen' (German), 'Lefèvre' ->
    'lefevre'."""
    if culture == "de":
        text = text.translate(_TRANSLIT_DE)
    text = text.translate(_TRANSLIT_COMMON)
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return sep.join(re.findall(r"[a-z0-9]+", text.lower()))


def _weighted(rng: random.Random, pairs: Sequence[tuple[T, float]]) -> T:
    return rng.choices([value for value, _ in pairs], weights=[w for _, w in pairs])[0]


def _cover(rng: random.Random, pairs: Sequence[tuple[T, float]], n: int) -> list[T]:
    """``n`` weighted picks in random order that include every value once when n allows."""
    picks = [value for value, _ in pairs][:n]
    picks += [_weighted(rng, pairs) for _ in range(n - len(picks))]
    rng.shuffle(picks)
    return picks


def _poisson(rng: random.Random, mean: float) -> int:
    if mean <= 0:
        return 0
    limit, k, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        k += 1
        product *= rng.random()
    return k


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _revenue_band(revenue: float) -> str:
    floors = (0, 1e6, 10e6, 50e6, 100e6, 500e6, 1e9)
    band = REVENUE_BANDS[0]
    for floor, name in zip(floors, REVENUE_BANDS, strict=True):
        if revenue >= floor:
            band = name
    return band


# --- the generator --------------------------------------------------------------------

_STAGE_WEIGHTS = (
    ("subscriber", 34.0), ("lead", 28.0), ("mql", 16.0), ("sql", 9.0), ("opportunity", 5.0),
)  # fmt: skip
_SESSIONS_PER_120_DAYS = {
    "subscriber": 1.2, "lead": 2.5, "mql": 4.0, "sql": 4.5, "opportunity": 5.0,
    "customer": 4.0, "evangelist": 8.0,
}  # fmt: skip
_LEAD_SCORE = {
    "subscriber": (5, 25), "lead": (15, 40), "mql": (40, 70), "sql": (60, 85),
    "opportunity": (70, 95), "customer": (30, 70), "evangelist": (50, 90),
}  # fmt: skip
_SENIORITY_WEIGHT = {
    "intern": 0.3, "entry": 1.5, "senior": 1.6, "manager": 1.3, "director": 0.8, "vp": 0.4,
    "c_level": 0.25, "owner": 0.2,
}  # fmt: skip
_ARR_BY_BAND = {
    "1-10": (1_200, 3_000), "11-50": (3_000, 9_000), "51-200": (6_000, 24_000),
    "201-500": (12_000, 48_000), "501-1000": (24_000, 90_000), "1001-5000": (48_000, 180_000),
    "5001-10000": (90_000, 300_000), "10001+": (120_000, 400_000),
}  # fmt: skip
_PLANS_BY_SIZE = ((50, "starter"), (1000, "growth"), (10**9, "enterprise"))
_TITLES = {
    **{path: title for group in data.PAGES.values() for path, title in group},
    **{path: title for title, _, path in data.LEAD_MAGNETS},
    "/webinars": "Webinars",
}
_CAMPAIGN_REFERRERS = {"linkedin": "https://www.linkedin.com/", "google": "https://www.google.com/"}
_ADVANCED = ("mql", "sql", "opportunity")


class _Generator:
    def __init__(self, seed: int, now: datetime) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.now = now.astimezone(UTC)
        self.window_start = self.now - timedelta(days=HISTORY_DAYS)
        self.domains: set[str] = set()
        self.emails: set[str] = set()
        self.events: list[EventRecord] = []
        self.memberships: list[MembershipRecord] = []
        self.joined: set[tuple[str, str]] = set()

    def build(self, n_contacts: int, n_companies: int) -> DemoData:
        companies = [
            self._company(industry, band) for industry, band in self._firmographics(n_companies)
        ]
        n_free = min(round(n_contacts * FREE_MAIL_SHARE), n_contacts - n_companies)
        people: list[ContactRecord] = []
        for company, count in zip(
            companies, self._allocate(companies, n_contacts - n_free), strict=True
        ):
            pattern = self.rng.choice(data.EMAIL_PATTERNS)
            people += [self._employee(company, pattern, index) for index in range(count)]
        people += [self._free_mailer() for _ in range(n_free)]
        for person in people:
            self._journey(person)
        for person in people:
            self._lists_of(person)
            self._history_of(person)
        self._in_market_accounts(companies, people)
        self._anonymous_visitors(max(10, n_contacts // 6))
        self._settle_times(companies, people)
        self.events.sort(key=lambda event: event.occurred_at)
        return DemoData(
            seed=self.seed,
            now=self.now,
            attributes=ATTRIBUTES,
            lists=data.LISTS,
            companies=companies,
            contacts=people,
            memberships=self.memberships,
            events=self.events,
        )

    # --- companies ------------------------------------------------------------------

    def _firmographics(self, n: int) -> list[tuple[Industry, str]]:
        industries = _cover(self.rng, [(i, i.weight) for i in data.INDUSTRIES], n)
        bands = _cover(self.rng, list(data.BAND_WEIGHTS.items()), n)
        return list(zip(industries, bands, strict=True))

    def _company(self, industry: Industry, band: str) -> CompanyRecord:
        rng = self.rng
        country = _weighted(rng, [(c, c.weight) for c in data.COUNTRIES])
        low, high = data.BAND_RANGES[band]
        employees = round(math.exp(rng.uniform(math.log(low), math.log(high))))
        employees = min(max(employees, low), high)
        name, domain = self._company_name(industry, country)
        revenue_band = None
        if industry.name != "Government":
            revenue = employees * rng.uniform(*industry.revenue_per_employee)
            revenue_band = _revenue_band(revenue)
        customer = rng.random() < (0.12 if industry.name == "Government" else 0.26)
        customer_since = (
            (self.now - timedelta(days=rng.randint(20, 700))).date() if customer else None
        )
        attributes: dict[str, Any] = {}
        arr = 0
        if customer:
            arr = int(round(rng.uniform(*_ARR_BY_BAND[band]), -2))
            attributes["arr"] = arr
        if employees > 1000 or arr >= 60_000:
            attributes["crm_tier"] = "Tier 1"
        elif employees > 200 or customer:
            attributes["crm_tier"] = "Tier 2"
        else:
            attributes["crm_tier"] = "Tier 3"
        return CompanyRecord(
            domain=domain,
            name=name,
            industry=industry.name,
            employee_count=employees,
            revenue_band=revenue_band,
            country=country.code,
            attributes=attributes,
            customer_since=customer_since,
            ip=self._ip(),
            created_at=self.now,
            updated_at=self.now,
        )

    def _company_name(self, industry: Industry, country: Country) -> tuple[str, str]:
        for _ in range(200):
            name, domain = self._name_candidate(industry, country)
            domain = normalize_domain(domain)
            if domain not in self.domains and not is_free_mail(domain):
                self.domains.add(domain)
                return name, domain
        raise RuntimeError("ran out of company names; add words to demo/data.py")

    def _coined(self) -> str:
        return self.rng.choice(data.NAME_FIRST) + self.rng.choice(data.NAME_SECOND)

    def _place(self, culture: str) -> str:
        firsts, seconds = data.PLACE_PARTS.get(culture, data.PLACE_PARTS["en"])
        return self.rng.choice(firsts) + self.rng.choice(seconds)

    def _name_candidate(self, industry: Industry, country: Country) -> tuple[str, str]:
        rng = self.rng
        culture = country.locales[0].culture
        tld = rng.choice(country.tlds)
        if industry.name == "Government":
            place = self._place(country.place_culture)
            pattern, domain = data.GOVERNMENT[country.code]
            slug = ascii_slug(place, culture=culture)
            return pattern.format(place=place), domain.format(slug=slug)
        if industry.name == "Education":
            tld = data.EDUCATION_TLDS.get(country.code, country.tlds[0])
            if rng.random() < 0.6:
                place = self._place(country.place_culture)
                kind = rng.choice(("University", "College", "Business School"))
                name = f"Hochschule {place}" if culture == "de" else f"{place} {kind}"
                slug = ascii_slug(place, culture=culture)
                if rng.random() < 0.3:
                    slug = f"{slug}-{ascii_slug(kind, '-')}"
                return name, f"{slug}.{tld}"
            core = f"{self._coined()} {rng.choice(('Academy', 'Learning', 'Institute'))}"
            return core, f"{ascii_slug(core, rng.choice(('', '-')))}.{tld}"
        if industry.coined and rng.random() < 0.75:
            ending = rng.choice(data.SAAS_ENDINGS)
            core = (rng.choice(data.NAME_FIRST) + ending) if ending else self._coined()
            if industry.tlds and rng.random() < 0.7:
                tld = rng.choice(industry.tlds)
            name = core if rng.random() < 0.7 else f"{core} {rng.choice(country.legal)}"
            return name, f"{ascii_slug(core)}.{tld}"
        local = industry.local_words.get(culture)
        if local and rng.random() < 0.6:
            core = f"{rng.choice(data.LAST_NAMES[culture])} {rng.choice(local)}"
        else:
            core = f"{self._coined()} {rng.choice(industry.words)}"
        if industry.tlds and rng.random() < 0.5:
            tld = rng.choice(industry.tlds)
        name = core if rng.random() < 0.5 else f"{core} {rng.choice(country.legal)}"
        first_word = ascii_slug(core.split()[0], culture=culture)
        slug = rng.choice(
            (ascii_slug(core, "-", culture=culture), ascii_slug(core, culture=culture), first_word)
        )
        return name, f"{slug}.{tld}"

    def _allocate(self, companies: list[CompanyRecord], total: int) -> list[int]:
        """Contacts per company: one each, the rest weighted by size, never above headcount."""
        rng = self.rng
        weights = [
            (1 + math.log10(c.employee_count)) ** 2 * rng.lognormvariate(0, 0.45) for c in companies
        ]
        caps = [c.employee_count for c in companies]
        counts = [1] * len(companies)
        if sum(caps) < total:
            raise ValidationFailed(
                f"{len(companies)} companies employ too few people for {total} business "
                "contacts; give more companies",
                field="contacts",
            )
        for _ in range(total - len(companies)):
            index = rng.choices(range(len(companies)), weights=weights)[0]
            counts[index] += 1
            if counts[index] >= caps[index]:
                weights[index] = 0.0
        return counts

    # --- people ---------------------------------------------------------------------

    def _ip(self) -> str:
        return f"{self.rng.choice(data.IP_PREFIXES)}{self.rng.randint(1, 254)}"

    def _person(self, country: Country) -> tuple[str, str, str, str, str]:
        """(first, last, culture, language, timezone) fitting the country."""
        rng = self.rng
        locale = _weighted(rng, [(loc, loc.weight) for loc in country.locales])
        first = rng.choice(data.FIRST_NAMES[locale.culture])
        last = rng.choice(data.LAST_NAMES[locale.culture])
        timezone = _weighted(rng, country.timezones)
        return first, last, locale.culture, locale.language, timezone

    def _unique_email(self, candidates: list[str], domain: str) -> str:
        for local in candidates:
            if f"{local}@{domain}" not in self.emails:
                break
        else:
            base, n = candidates[0], 2
            while f"{base}{n}@{domain}" in self.emails:
                n += 1
            local = f"{base}{n}"
        email = f"{local}@{domain}"
        self.emails.add(email)
        return email

    def _employee(self, company: CompanyRecord, pattern: str, index: int) -> ContactRecord:
        rng = self.rng
        home = data.COUNTRY_BY_CODE[company.country]
        abroad = 0.2 if company.employee_count > 1000 else 0.05
        country = home
        if rng.random() < abroad:
            country = _weighted(rng, [(c, c.weight) for c in data.COUNTRIES])
        first, last, culture, language, timezone = self._person(country)
        f, la = ascii_slug(first, culture=culture), ascii_slug(last, culture=culture)
        local = {
            "first.last": f"{f}.{la}", "flast": f"{f[0]}{la}", "first": f,
            "firstl": f"{f}{la[0]}", "f.last": f"{f[0]}.{la}", "first_last": f"{f}_{la}",
        }[pattern]  # fmt: skip
        middle = rng.choice("abcdeghjklmnprstw")
        email = self._unique_email([local, f"{f}.{middle}.{la}", f"{f}{la}"], company.domain)
        title, seniority, department = self._role(company, index)
        return ContactRecord(
            email=email,
            first_name=first,
            last_name=last,
            job_title=title,
            seniority=seniority,
            department=department,
            country=country.code,
            timezone=timezone,
            language=language,
            phone=self._phone(country.code) if rng.random() < 0.45 else None,
            company=company,
            stage="lead",
            created_at=self.now,
            updated_at=self.now,
            user_agent=rng.choice(data.USER_AGENTS),
            ip=company.ip if rng.random() < 0.8 else self._ip(),
        )

    def _free_mailer(self) -> ContactRecord:
        rng = self.rng
        domain, home, _ = _weighted(rng, [(row, row[2]) for row in data.FREE_MAIL])
        country = (
            data.COUNTRY_BY_CODE[home]
            if home
            else _weighted(rng, [(c, c.weight) for c in data.COUNTRIES])
        )
        first, last, culture, language, timezone = self._person(country)
        f, la = ascii_slug(first, culture=culture), ascii_slug(last, culture=culture)
        digits = str(rng.choice((rng.randint(1, 99), rng.randint(1960, 2004))))
        local = rng.choice(
            (f"{f}.{la}{digits}", f"{f}{la}{digits}", f"{f[0]}{la}{digits}", f"{f}_{la}{digits}")
        )
        email = self._unique_email([local], domain)
        freelance = rng.random() < 0.35
        return ContactRecord(
            email=email,
            first_name=first,
            last_name=last,
            job_title=rng.choice(data.FREELANCE_TITLES) if freelance else None,
            seniority="owner" if freelance else None,
            department=None,
            country=country.code,
            timezone=timezone,
            language=language,
            phone=self._phone(country.code) if rng.random() < 0.15 else None,
            company=None,
            stage="subscriber",
            created_at=self.now,
            updated_at=self.now,
            user_agent=rng.choice(data.USER_AGENTS),
            ip=self._ip(),
        )

    def _role(self, company: CompanyRecord, index: int) -> tuple[str | None, str | None, str]:
        rng = self.rng
        small = company.employee_count <= 50
        if index == 0 and company.employee_count <= 10:
            title = rng.choice(("Founder & CEO", "Co-Founder", "Owner"))
            return title, "owner", "Executive"
        special = data.INDUSTRY_TITLES.get(company.industry, ())
        if special and rng.random() < 0.15:
            department, title, seniority = rng.choice(special)
            return title, seniority, department
        department = _weighted(rng, list(data.DEPARTMENT_WEIGHTS.items()))
        options = data.TITLES[department]
        weights = []
        for _, seniority in options:
            weight = _SENIORITY_WEIGHT[seniority]
            if seniority in ("c_level", "owner"):
                weight *= 3 if small else 0.4 if company.employee_count > 1000 else 1
            if seniority == "vp" and small:
                weight *= 0.2
            if seniority == "owner" and company.employee_count > 200:
                weight *= 0.05  # founders of big firms rarely sit in the CRM
            weights.append(weight)
        title, seniority = rng.choices(options, weights=weights)[0]
        if rng.random() < 0.03:  # some records simply lack a title
            return None, None, department
        return title, seniority, department

    def _phone(self, country: str) -> str:
        """Numbers in ranges reserved for fiction where a country has them (US/CA 555-01xx,
        Ofcom's drama ranges, ACMA's); elsewhere random digits in the national shape."""
        rng = self.rng
        n = rng.randint
        if country in ("US", "CA"):
            area = rng.choice(("212", "312", "415", "512", "617", "206", "303", "404"))
            if country == "CA":
                area = rng.choice(("416", "604", "514", "403"))
            return f"+1 {area} 555 01{n(0, 99):02d}"
        if country == "GB":
            return rng.choice((f"+44 20 7946 0{n(0, 999):03d}", f"+44 7700 900{n(0, 999):03d}"))
        if country == "AU":
            return rng.choice((f"+61 2 5550 {n(0, 9999):04d}", f"+61 3 7010 {n(0, 9999):04d}"))
        codes = {
            "DE": "49", "AT": "43", "CH": "41", "FR": "33", "BE": "32", "NL": "31", "SE": "46",
            "DK": "45", "NO": "47", "FI": "358", "ES": "34", "IT": "39", "PL": "48", "JP": "81",
            "IE": "353",
        }  # fmt: skip
        return f"+{codes[country]} {n(10, 99)} {n(100, 999)} {n(1000, 9999)}"

    # --- lifecycle and attributes ---------------------------------------------------

    def _days_ago(self, days: float) -> datetime:
        return self.now - timedelta(seconds=round(days * 86400))

    def _journey(self, person: ContactRecord) -> None:
        """Stage, status, creation date and the custom attributes that follow from them."""
        rng = self.rng
        company = person.company
        if company is not None and company.customer_since is not None and rng.random() < 0.85:
            person.stage = "evangelist" if rng.random() < 0.12 else "customer"
        elif company is None:
            person.stage = _weighted(rng, [("subscriber", 60.0), ("lead", 30.0), ("mql", 10.0)])
        else:
            person.stage = _weighted(rng, _STAGE_WEIGHTS)
        customer = person.stage in ("customer", "evangelist")

        person.created_at = self._days_ago(CONTACT_AGE_DAYS * rng.random() ** 1.35)
        if customer and company is not None and company.customer_since is not None:
            since = datetime.combine(company.customer_since, datetime.min.time(), UTC)
            if person.created_at > since and rng.random() < 0.7:
                person.created_at = since - timedelta(days=rng.uniform(1, 200))
            person.created_at = max(person.created_at, self._days_ago(CONTACT_AGE_DAYS))

        plan: str | None = None
        if customer and company is not None:
            plan = next(p for limit, p in _PLANS_BY_SIZE if company.employee_count <= limit)
        elif (person.stage in _ADVANCED and rng.random() < 0.25) or (
            person.stage == "lead" and rng.random() < 0.08
        ):
            plan = "trial"
            person.trial_started_at = self._days_ago(rng.uniform(0.2, 50))
            if rng.random() < 0.5 or person.created_at > person.trial_started_at:
                person.created_at = person.trial_started_at
        elif person.stage != "subscriber" and rng.random() < 0.3:
            plan = "free"

        roll = rng.random()
        if not customer and plan is None and roll < 0.04:
            person.status = "pending"
            person.created_at = self._days_ago(rng.uniform(0.05, 12))
        elif roll < 0.10:
            person.status = "unsubscribed"
        elif roll < 0.135:
            person.status = "bounced"
        elif roll < 0.141:
            person.status = "complained"

        low, high = _LEAD_SCORE[person.stage]
        score = rng.randint(low, high) + (
            5 if person.seniority in ("director", "vp", "c_level") else 0
        )
        attributes: dict[str, Any] = {
            "lifecycle_stage": person.stage,
            "lead_score": min(score, 100),
            "is_customer": customer,
        }
        if plan:
            attributes["plan"] = plan
        if customer and company is not None and company.customer_since is not None:
            attributes["customer_since"] = company.customer_since.isoformat()
        if person.trial_started_at is not None:
            ends = person.trial_started_at + timedelta(days=TRIAL_DAYS)
            attributes["trial_ends_at"] = ends.date().isoformat()
        if rng.random() < 0.4:
            born = date(rng.randint(1962, 2001), 1, 1) + timedelta(days=rng.randint(0, 364))
            attributes["birthday"] = born.isoformat()
        if rng.random() < 0.55:
            attributes["interests"] = sorted(rng.sample(data.INTERESTS, rng.randint(1, 3)))
        person.attributes = attributes
        if person.created_at >= self.window_start and rng.random() < 0.75:
            person.anonymous_id = _uuid(rng)  # signed up on the website

    # --- lists ------------------------------------------------------------------------

    def _after(self, start: datetime, low_minutes: float, high_minutes: float) -> datetime | None:
        """A moment some minutes after ``start``, or None when that would be in the future."""
        moment = start + timedelta(minutes=self.rng.uniform(low_minutes, high_minutes))
        return moment if moment < self.now else None

    def _between(self, start: datetime, end: datetime | None = None) -> datetime:
        end = end or self.now
        if end <= start:
            return start
        return start + (end - start) * self.rng.random()

    def _join(
        self, person: ContactRecord, list_name: str, source: str, at: datetime, *, doi: bool
    ) -> None:
        rng = self.rng
        if (person.email, list_name) in self.joined:
            return
        self.joined.add((person.email, list_name))
        confirmed: datetime | None = None
        if doi:
            if source == "import":
                confirmed = at
            elif person.status != "pending":
                confirmed = self._after(at, 1, 60 * rng.choice((0.2, 1, 4, 30)))
        unsubscribed: datetime | None = None
        settled = confirmed or at
        if person.status in ("unsubscribed", "complained") or (
            list_name == data.NEWSLETTER and person.status == "subscribed" and rng.random() < 0.07
        ):
            unsubscribed = self._between(settled)
        self.memberships.append(
            MembershipRecord(
                list_name=list_name,
                email=person.email,
                source=source,
                ip=self._consent_ip(person, source),
                recorded_at=at,
                confirmed_at=confirmed,
                unsubscribed_at=unsubscribed,
            )
        )

    def _consent_ip(self, person: ContactRecord, source: str) -> str | None:
        """The browser's address for forms; imports and server-side API calls have none."""
        if source != "form":
            return None
        return self._ip() if self.rng.random() < 0.2 else person.ip

    def _lists_of(self, person: ContactRecord) -> None:
        rng = self.rng
        stage, created = person.stage, person.created_at
        customer = stage in ("customer", "evangelist")
        web = person.anonymous_id is not None
        if person.status == "pending":
            self._join(person, data.NEWSLETTER, "form", created, doi=True)
            return
        if stage == "subscriber" or rng.random() < (0.45 if customer else 0.55):
            source = "form" if web else _weighted(rng, [("form", 6), ("import", 2.5), ("api", 1.5)])
            at = created if web or source == "import" else self._between(created)
            self._join(person, data.NEWSLETTER, source, at, doi=True)
        trial = person.trial_started_at
        updates = (
            0.8 if trial else 0.65 if customer else 0.4 if person.attributes.get("plan") else 0.05
        )
        if rng.random() < updates:
            self._join(
                person, data.PRODUCT_UPDATES, "api", self._between(trial or created), doi=False
            )
        if customer and person.company is not None and person.company.customer_since is not None:
            since = datetime.combine(person.company.customer_since, datetime.min.time(), UTC)
            at = max(created, since) + timedelta(hours=rng.uniform(1, 48))
            at = max(created, min(at, self.now - timedelta(hours=1)))
            self._join(person, data.CUSTOMERS, "import", at, doi=False)
        beta = 0.5 if stage == "evangelist" else 0.08 if customer or trial else 0.0
        if rng.random() < beta:
            self._join(
                person, data.BETA, "form", self._between(max(created, self.window_start)), doi=False
            )
        if created < self.window_start and rng.random() < 0.04:  # attended a webinar last year
            self._join(
                person,
                data.WEBINAR_ATTENDEES,
                "form",
                self._between(created, self.window_start),
                doi=False,
            )

    # --- history ----------------------------------------------------------------------

    def _event(
        self,
        person: ContactRecord | None,
        kind: str,
        name: str,
        at: datetime,
        properties: dict[str, Any],
        page: dict[str, Any] | None = None,
        campaign: dict[str, str] | None = None,
        *,
        anonymous_id: str | None = None,
        ip: str | None = None,
        locale: str = "en-US",
        timezone: str = "UTC",
        user_agent: str = "",
        server: bool = False,
    ) -> None:
        if person is not None:
            anonymous_id = person.anonymous_id or anonymous_id
            ip, locale, timezone = person.ip, person.language, person.timezone
            user_agent = person.user_agent
        at = min(at, self.now - timedelta(seconds=1))
        context: dict[str, Any]
        if server:  # sent by the shop's backend, not the browser
            context = {"library": {"name": "analytics-python", "version": "2.3.2"}}
            anonymous_id = None
        else:
            context = {
                "ip": ip,
                "userAgent": user_agent,
                "locale": locale,
                "timezone": timezone,
                "library": dict(LIBRARY),
            }
            if page is not None:
                context["page"] = page
            if campaign is not None:
                context["campaign"] = campaign
        self.events.append(
            EventRecord(
                email=person.email if person else None,
                anonymous_id=anonymous_id,
                type=kind,
                name=name,
                properties=properties,
                context=context,
                message_id=f"ajs-{_uuid(self.rng)}",
                occurred_at=at,
                received_at=at + timedelta(milliseconds=self.rng.randint(40, 2500)),
            )
        )

    def _office_hours(self, moment: datetime, timezone: str, floor: datetime) -> datetime:
        """Move ``moment`` to a weekday working hour in the person's zone, within [floor, now)."""
        rng = self.rng
        local = moment.astimezone(ZoneInfo(timezone))
        if local.weekday() >= 5 and rng.random() < 0.8:
            local -= timedelta(days=local.weekday() - 4)
        hour = min(max(rng.gauss(13, 2.8), 7), 19.5)
        local = local.replace(
            hour=int(hour), minute=int((hour % 1) * 60), second=rng.randint(0, 59)
        )
        moment = local.astimezone(UTC)
        latest = self.now - timedelta(minutes=rng.uniform(45, 180))  # room for the session
        if moment >= latest:
            moment = latest
        if moment <= floor:
            moment = floor + timedelta(minutes=rng.uniform(1, 90))
        return min(moment, latest)

    def _page(
        self,
        person: ContactRecord | None,
        at: datetime,
        path: str,
        title: str,
        referrer: str,
        campaign: dict[str, str] | None = None,
        **visitor: Any,
    ) -> None:
        search = ""
        if campaign is not None:
            search = (
                f"?utm_source={campaign['source']}&utm_medium={campaign['medium']}"
                f"&utm_campaign={campaign['name']}&utm_content={campaign['content']}"
            )
        page = {
            "path": path,
            "url": f"{data.SITE}{path}{search}",
            "title": title,
            "referrer": referrer,
            "search": search,
        }
        self._event(person, "page", "Page Viewed", at, dict(page), page, campaign, **visitor)

    def _visit(
        self,
        person: ContactRecord | None,
        at: datetime,
        groups: Sequence[str],
        *,
        landing: tuple[str, str] | None = None,
        utm: float = 0.2,
        **visitor: Any,
    ) -> datetime:
        """A browsing session: pages from ``groups`` a minute or two apart; returns its end."""
        rng = self.rng
        campaign: dict[str, str] | None = None
        referrer = _weighted(rng, data.REFERRERS)
        if rng.random() < utm:
            name, source, medium, content, path = rng.choice(data.CAMPAIGNS)
            campaign = {"name": name, "source": source, "medium": medium, "content": content}
            referrer = _CAMPAIGN_REFERRERS.get(source, "")
            if landing is None:
                landing = (path, _TITLES.get(path, "Northwind"))
        pages = [landing] if landing else []
        pages += [rng.choice(data.PAGES[group]) for group in groups]
        for index, (path, title) in enumerate(pages):
            self._page(
                person, at, path, title, referrer, campaign if index == 0 else None, **visitor
            )
            referrer = f"{data.SITE}{path}"
            at += timedelta(seconds=rng.randint(20, 240))
        return at

    def _groups(self, intent: str) -> list[str]:
        rng = self.rng
        groups = [intent]
        for _ in range(rng.choice((0, 0, 1, 1, 2, 3))):
            groups.append(
                rng.choice(("product", "product", "blog", "docs", "pricing", "home", "blog"))
            )
        return groups

    def _intent(self, person: ContactRecord) -> str:
        technical = person.department in ("Engineering", "IT", "Product")
        using = person.stage in ("customer", "evangelist") or person.trial_started_at is not None
        pricing = {"subscriber": 0.2, "lead": 0.4, "mql": 0.8, "sql": 1.2, "opportunity": 1.5}
        weights = [
            ("blog", 3.0),
            ("product", 2.5),
            ("pricing", pricing.get(person.stage, 1.0)),
            ("docs", (3.0 if technical else 1.0) + (3.0 if using else 0.0)),
            ("home", 1.0),
        ]
        return _weighted(self.rng, weights)

    def _history_of(self, person: ContactRecord) -> None:
        rng = self.rng
        start = max(person.created_at, self.window_start)
        if start >= self.now:
            return
        if person.anonymous_id is not None:
            self._signup(person)
        span = (self.now - start).total_seconds() / (HISTORY_DAYS * 86400)
        mean = _SESSIONS_PER_120_DAYS[person.stage] * span * rng.lognormvariate(0, 0.6)
        if person.status in ("unsubscribed", "bounced", "complained"):
            mean *= 0.6
        for _ in range(_poisson(rng, mean)):
            at = self._session_time(person, start)
            self._visit(person, at, self._groups(self._intent(person)))
        self._trial(person)
        self._lead_magnet(person, start)
        self._webinar(person, start)
        self._demo_booking(person, start)
        self._store(person, start)

    def _session_time(self, person: ContactRecord, start: datetime) -> datetime:
        skew = 0.85 if person.stage in _ADVANCED else 1.0  # the keen come back more lately
        moment = start + (self.now - start) * (self.rng.random() ** skew)
        return self._office_hours(moment, person.timezone, start)

    def _signup(self, person: ContactRecord) -> None:
        """Anonymous browsing before the signup, then the signup; both carry the browser id."""
        rng = self.rng
        created = person.created_at
        for _ in range(rng.choice((0, 1, 1, 2, 3))):
            floor = created - timedelta(days=14)
            before = self._office_hours(self._between(floor, created), person.timezone, floor)
            if self.window_start < before < created - timedelta(hours=1):
                self._visit(person, before, self._groups(self._intent(person)), utm=0.35)
        if person.trial_started_at == created:
            form = "trial"
        elif person.stage == "subscriber":
            form = "newsletter"
        else:
            form = rng.choice(("newsletter", "contact_sales", "free_account"))
        at = created - timedelta(minutes=rng.uniform(1, 4))
        self._page(person, at, "/signup", "Sign up", f"{data.SITE}/pricing")
        self._event(person, "track", "Signed Up", created, {"form": form, "method": "email"})

    def _trial(self, person: ContactRecord) -> None:
        started = person.trial_started_at
        if started is None or started < self.window_start:
            return
        at = started - timedelta(minutes=self.rng.uniform(2, 6))
        self._visit(person, at, [], landing=("/pricing", "Pricing"), utm=0.0)
        self._event(
            person,
            "track",
            "Trial Started",
            started,
            {
                "plan": "growth",
                "trial_days": TRIAL_DAYS,
                "trial_ends_at": (started + timedelta(days=TRIAL_DAYS)).isoformat(
                    timespec="seconds"
                ),
            },
        )

    def _lead_magnet(self, person: ContactRecord, start: datetime) -> None:
        rng = self.rng
        chance = {"lead": 0.35, "mql": 0.5, "sql": 0.3}.get(person.stage, 0.12)
        if rng.random() >= chance:
            return
        title, kind, path = rng.choice(data.LEAD_MAGNETS)
        at = self._session_time(person, start)
        end = self._visit(person, at, [], landing=(path, title), utm=0.5)
        self._event(
            person,
            "track",
            "Lead Magnet Downloaded",
            end,
            {"asset": title, "asset_type": kind, "format": "pdf"},
        )
        interests = set(person.attributes.get("interests", []))
        interests.add(
            {"report": "analytics", "checklist": "deliverability", "templates": "abm"}.get(
                kind, "compliance"
            )
        )
        person.attributes["interests"] = sorted(interests)

    def _webinar(self, person: ContactRecord, start: datetime) -> None:
        rng = self.rng
        if person.status == "pending":  # registering would have confirmed them
            return
        if rng.random() >= (0.14 if person.stage in (*_ADVANCED, "evangelist") else 0.06):
            return
        webinar_id, title, offset = rng.choice(data.WEBINARS)
        starts = (self.now + timedelta(days=offset)).replace(
            hour=15, minute=0, second=0, microsecond=0
        )
        registered = starts - timedelta(days=rng.uniform(1, 20), hours=rng.uniform(0, 8))
        if registered < start or registered >= self.now:
            return
        end = self._visit(person, registered, [], landing=("/webinars", "Webinars"), utm=0.4)
        props = {"webinar_id": webinar_id, "title": title, "starts_at": starts.isoformat()}
        self._event(person, "track", "Webinar Registered", end, props)
        if starts < self.now and rng.random() < 0.6:
            attended = starts + timedelta(minutes=rng.uniform(0, 10))
            self._event(
                person,
                "track",
                "Webinar Attended",
                attended,
                {**props, "duration_minutes": rng.randint(12, 58)},
            )
            self._join(person, data.WEBINAR_ATTENDEES, "form", end, doi=False)
            interests = set(person.attributes.get("interests", []))
            person.attributes["interests"] = sorted(interests | {"webinars"})

    def _demo_booking(self, person: ContactRecord, start: datetime) -> None:
        rng = self.rng
        if rng.random() >= {"sql": 0.5, "opportunity": 0.8, "mql": 0.1}.get(person.stage, 0.0):
            return
        floor = max(start, self.now - timedelta(days=60))
        at = self._office_hours(self._between(floor), person.timezone, floor)
        end = self._visit(person, at, [], landing=("/demo", "Book a demo"), utm=0.1)
        meeting = end + timedelta(days=rng.randint(1, 7))
        size = person.company.employee_count if person.company else 1
        self._event(
            person,
            "track",
            "Demo Booked",
            end,
            {"meeting_at": meeting.replace(minute=0, second=0, microsecond=0).isoformat(),
             "meeting_type": "product demo", "team_size": min(size, rng.choice((3, 5, 10, 25)))},
        )  # fmt: skip

    def _store(self, person: ContactRecord, start: datetime) -> None:
        """Checkouts: customers buy add-ons (a quarter abandon); trialists and free users
        start checkouts they do not finish."""
        rng = self.rng
        customer = person.stage in ("customer", "evangelist")
        plan = person.attributes.get("plan")
        if customer:
            if rng.random() >= 0.22:
                return
            abandon = rng.random() < 0.25
            catalog = [p for p in data.PRODUCTS if p[2] != "Plans"]
        elif plan in ("trial", "free"):
            if rng.random() >= 0.12:
                return
            abandon = True
            catalog = list(data.PRODUCTS)
        else:
            return
        floor = max(start, person.trial_started_at or start)
        at = self._session_time(person, floor)
        at = self._visit(person, at, [], landing=("/pricing", "Pricing"), utm=0.0)
        currency = data.COUNTRY_BY_CODE[person.country].currency
        chosen = rng.sample(catalog, rng.choice((1, 1, 2, 3)))
        products: list[dict[str, Any]] = []
        for sku, name, category, price in chosen:
            quantity = rng.randint(1, 3) if sku == "NW-SEATS-10" else 1
            item = {"product_id": sku, "sku": sku, "name": name, "category": category,
                    "price": price, "quantity": quantity}  # fmt: skip
            products.append(item)
            self._event(person, "track", "Product Added", at, {**item, "currency": currency})
            at += timedelta(seconds=rng.randint(15, 120))
        total = round(sum(p["price"] * p["quantity"] for p in products), 2)
        order_id = f"NW-{rng.randint(100000, 999999)}"
        checkout = {
            "order_id": order_id,
            "value": total,
            "currency": currency,
            "products": products,
        }
        self._event(person, "track", "Checkout Started", at, checkout)
        done = self._after(at, 2, 12)
        if abandon or done is None:
            return
        self._event(
            person,
            "track",
            "Order Completed",
            done,
            {"order_id": order_id, "total": total, "revenue": total, "tax": 0.0,
             "currency": currency, "products": products},
            server=True,
        )  # fmt: skip

    def _in_market_accounts(
        self, companies: list[CompanyRecord], people: list[ContactRecord]
    ) -> None:
        """Accounts where several people looked at pricing in the last few days (for ABM)."""
        rng = self.rng
        staff: dict[str, list[ContactRecord]] = {}
        for person in people:
            if person.company is not None and person.created_at < self.now - timedelta(days=7):
                staff.setdefault(person.company.domain, []).append(person)
        candidates = [c for c in companies if len(staff.get(c.domain, [])) >= 3]
        chosen = rng.sample(candidates, min(len(candidates), max(3, len(companies) // 16)))
        for company in chosen:
            team = staff[company.domain]
            for person in rng.sample(team, rng.randint(3, min(6, len(team)))):
                floor = self.now - timedelta(days=6)
                at = self._office_hours(self._between(floor), person.timezone, floor)
                groups = [
                    "pricing",
                    *rng.sample(["product", "docs", "pricing", "product"], rng.randint(0, 2)),
                ]
                self._visit(person, at, groups, utm=0.15)

    def _anonymous_visitors(self, count: int) -> None:
        """Visitors who never signed up: page views with only a browser id."""
        rng = self.rng
        for _ in range(count):
            country = _weighted(rng, [(c, c.weight) for c in data.COUNTRIES])
            visitor: dict[str, Any] = {
                "anonymous_id": _uuid(rng),
                "ip": self._ip(),
                "locale": country.locales[0].language,
                "timezone": country.timezones[0][0],
                "user_agent": rng.choice(data.USER_AGENTS),
            }
            for _ in range(rng.choice((1, 1, 1, 2, 3))):
                moment = self._between(self.window_start)
                at = self._office_hours(moment, visitor["timezone"], self.window_start)
                groups = [rng.choice(("blog", "home", "product", "pricing"))]
                groups += [
                    rng.choice(("product", "blog", "pricing")) for _ in range(rng.randint(0, 2))
                ]
                self._visit(None, at, groups, utm=0.3, **visitor)

    def _settle_times(self, companies: list[CompanyRecord], people: list[ContactRecord]) -> None:
        """Last-touched times follow from the history; companies exist from their first contact."""
        touched: dict[str, list[datetime]] = {p.email: [p.created_at] for p in people}
        for m in self.memberships:
            touched[m.email] += [t for t in (m.recorded_at, m.confirmed_at, m.unsubscribed_at) if t]
        first_seen: dict[str, datetime] = {}
        for person in people:
            if person.trial_started_at is not None:
                touched[person.email].append(person.trial_started_at)
            person.updated_at = min(max(touched[person.email]), self.now)
            domain = person.company_domain
            if domain is not None:
                first_seen[domain] = min(
                    first_seen.get(domain, person.created_at), person.created_at
                )
        for company in companies:
            seen = first_seen.get(company.domain, self.now - timedelta(days=30))
            if company.customer_since is not None:
                since = datetime.combine(company.customer_since, datetime.min.time(), UTC)
                seen = min(seen, since)
            company.created_at = seen - timedelta(hours=self.rng.uniform(0, 72))
            company.updated_at = self._between(seen)
