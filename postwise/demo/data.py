"""The word lists and tables the demo generator draws on.

Kept as data, apart from the logic in ``generator.py``, so that adding a country or an
industry is a table row. Company and place names are compounds of common words: they
look real but are made up, and none is a well-known brand.
"""

from __future__ import annotations

from dataclasses import dataclass

# --- people -------------------------------------------------------------------------

# First and last names by naming culture, common enough to look ordinary.
FIRST_NAMES: dict[str, tuple[str, ...]] = {
    "en": (
        "James", "Emily", "Michael", "Sarah", "David", "Jessica", "Daniel", "Laura", "Chris",
        "Rachel", "Andrew", "Megan", "Ryan", "Hannah", "Matthew", "Olivia", "Thomas", "Sophie",
        "Jonathan", "Amy", "Kevin", "Natalie", "Brian", "Claire", "Mark", "Lucy", "Jason",
        "Rebecca", "Peter", "Grace", "Sean", "Katie", "Eric", "Charlotte", "Adam", "Jennifer",
    ),
    "de": (
        "Lukas", "Anna", "Jonas", "Lea", "Felix", "Julia", "Maximilian", "Sophie", "Tobias",
        "Laura", "Florian", "Katharina", "Jan", "Lena", "Stefan", "Sabine", "Matthias",
        "Christina", "Jürgen", "Anja", "Markus", "Nicole", "Sebastian", "Franziska", "Andreas",
        "Jana", "Philipp", "Miriam", "Björn", "Ute",
    ),
    "fr": (
        "Julien", "Camille", "Nicolas", "Manon", "Thomas", "Léa", "Antoine", "Chloé", "Maxime",
        "Sarah", "Pierre", "Élodie", "Alexandre", "Pauline", "Guillaume", "Céline", "Mathieu",
        "Émilie", "Hugo", "Claire", "François", "Amélie", "Romain", "Aurélie", "Benoît",
        "Inès", "Sébastien", "Hélène",
    ),
    "nl": (
        "Daan", "Emma", "Sem", "Sanne", "Thijs", "Lotte", "Bram", "Anouk", "Jeroen", "Fleur",
        "Ruben", "Iris", "Stijn", "Eva", "Joost", "Femke", "Pieter", "Marloes", "Wouter",
        "Inge", "Lars", "Noor", "Maarten", "Esther",
    ),
    "sv": (
        "Erik", "Anna", "Lars", "Karin", "Johan", "Maria", "Anders", "Sara", "Oskar", "Emma",
        "Nils", "Elin", "Gustav", "Linnea", "Magnus", "Ebba", "Henrik", "Frida", "Fredrik",
        "Sofia", "Mattias", "Ida",
    ),
    "da": (
        "Mads", "Mette", "Rasmus", "Camilla", "Søren", "Line", "Jesper", "Sofie", "Kasper",
        "Anne", "Mikkel", "Signe", "Ole", "Ingrid", "Håkon", "Kari", "Sindre", "Marte",
    ),
    "fi": (
        "Mikko", "Laura", "Juha", "Anna", "Antti", "Johanna", "Ville", "Sanna", "Janne",
        "Heidi", "Tuomas", "Maria", "Lauri", "Elina",
    ),
    "es": (
        "Javier", "Lucía", "Carlos", "María", "Alejandro", "Carmen", "Pablo", "Laura",
        "Sergio", "Marta", "Diego", "Elena", "Daniel", "Ana", "Jorge", "Paula", "Alberto",
        "Cristina", "Raúl", "Sofía", "Miguel", "Isabel",
    ),
    "it": (
        "Luca", "Giulia", "Marco", "Francesca", "Alessandro", "Chiara", "Matteo", "Sara",
        "Davide", "Valentina", "Andrea", "Elena", "Simone", "Martina", "Federico", "Silvia",
        "Stefano", "Paola", "Lorenzo", "Alessia",
    ),
    "pl": (
        "Piotr", "Anna", "Tomasz", "Katarzyna", "Paweł", "Magdalena", "Michał", "Agnieszka",
        "Krzysztof", "Joanna", "Marcin", "Monika",
    ),
    "ja": (
        "Haruto", "Yui", "Takumi", "Aoi", "Daiki", "Sakura", "Kenji", "Yuki", "Hiroshi",
        "Akiko", "Shota", "Misaki", "Ryota", "Naoko", "Kazuki", "Emi", "Takeshi", "Mai",
    ),
}  # fmt: skip

LAST_NAMES: dict[str, tuple[str, ...]] = {
    "en": (
        "Smith", "Johnson", "Williams", "Brown", "Miller", "Davis", "Wilson", "Taylor",
        "Anderson", "Thomas", "Moore", "Martin", "Thompson", "White", "Harris", "Clark",
        "Lewis", "Walker", "Hall", "Young", "King", "Wright", "Scott", "Green", "Baker",
        "Adams", "Nelson", "Carter", "Mitchell", "Roberts", "Turner", "Phillips", "Campbell",
        "Parker", "Evans", "Edwards", "Collins", "Stewart", "Murphy", "Cook", "Morgan",
        "Bennett", "Hughes", "Foster", "Price", "Brooks", "Kelly", "Howard", "Ward", "Reed",
    ),
    "de": (
        "Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker",
        "Schulz", "Hoffmann", "Koch", "Richter", "Klein", "Wolf", "Schröder", "Neumann",
        "Schwarz", "Zimmermann", "Braun", "Krüger", "Hofmann", "Hartmann", "Lange", "Werner",
        "Krause", "Lehmann", "Köhler", "Maier", "Huber", "Kessler", "Brandt", "Vogel",
        "Graf", "Frank", "Berger", "Keller",
    ),
    "fr": (
        "Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand",
        "Leroy", "Moreau", "Simon", "Laurent", "Lefèvre", "Michel", "Garcia", "David",
        "Bertrand", "Roux", "Vincent", "Fournier", "Morel", "Girard", "André", "Mercier",
        "Dupont", "Lambert", "Bonnet", "François", "Fontaine", "Rousseau", "Chevalier",
        "Gauthier",
    ),
    "nl": (
        "de Jong", "Jansen", "de Vries", "van den Berg", "van Dijk", "Bakker", "Janssen",
        "Visser", "Smit", "Meijer", "de Boer", "Mulder", "de Groot", "Bos", "Vos", "Peters",
        "Hendriks", "van Leeuwen", "Dekker", "Brouwer", "de Wit", "Dijkstra", "Smits",
        "van der Meer", "Kok", "Willems",
    ),
    "sv": (
        "Andersson", "Johansson", "Karlsson", "Nilsson", "Eriksson", "Larsson", "Olsson",
        "Persson", "Svensson", "Gustafsson", "Pettersson", "Jonsson", "Lindberg", "Lindqvist",
        "Berg", "Holm", "Sandberg", "Lundgren", "Ekström", "Nyström",
    ),
    "da": (
        "Nielsen", "Jensen", "Hansen", "Pedersen", "Andersen", "Christensen", "Larsen",
        "Sørensen", "Rasmussen", "Jørgensen", "Johansen", "Olsen", "Berg", "Haugen", "Dahl",
        "Lund", "Bakke", "Strand",
    ),
    "fi": (
        "Korhonen", "Virtanen", "Mäkinen", "Nieminen", "Mäkelä", "Hämäläinen", "Laine",
        "Heikkinen", "Koskinen", "Järvinen", "Lehtonen", "Salminen",
    ),
    "es": (
        "García", "Fernández", "González", "Rodríguez", "López", "Martínez", "Sánchez",
        "Pérez", "Gómez", "Martín", "Jiménez", "Ruiz", "Hernández", "Díaz", "Moreno",
        "Álvarez", "Romero", "Navarro", "Torres", "Domínguez", "Vázquez", "Ramos", "Gil",
        "Serrano",
    ),
    "it": (
        "Rossi", "Russo", "Ferrari", "Esposito", "Bianchi", "Romano", "Colombo", "Ricci",
        "Marino", "Greco", "Bruno", "Gallo", "Conti", "De Luca", "Mancini", "Costa",
        "Giordano", "Rizzo", "Lombardi", "Moretti", "Barbieri", "Fontana", "Ferri", "Villa",
    ),
    "pl": (
        "Nowak", "Kowalski", "Wiśniewski", "Wójcik", "Kowalczyk", "Kamiński", "Lewandowski",
        "Zieliński", "Szymański", "Woźniak", "Dąbrowski", "Kozłowski",
    ),
    "ja": (
        "Sato", "Suzuki", "Takahashi", "Tanaka", "Watanabe", "Ito", "Yamamoto", "Nakamura",
        "Kobayashi", "Kato", "Yoshida", "Yamada", "Sasaki", "Yamaguchi", "Matsumoto", "Inoue",
        "Kimura", "Hayashi", "Shimizu", "Mori",
    ),
}  # fmt: skip

# --- countries ------------------------------------------------------------------------


@dataclass(frozen=True)
class Locale:
    """One way people in a country are named and spoken to."""

    culture: str
    language: str
    weight: float


@dataclass(frozen=True)
class Country:
    code: str
    weight: float
    locales: tuple[Locale, ...]
    timezones: tuple[tuple[str, float], ...]
    tlds: tuple[str, ...]
    legal: tuple[str, ...]  # company legal-form suffixes
    currency: str
    place_culture: str  # which place-name parts its towns use


COUNTRIES: tuple[Country, ...] = (
    Country("US", 30, (Locale("en", "en-US", 0.82), Locale("es", "en-US", 0.1),
                       Locale("it", "en-US", 0.04), Locale("de", "en-US", 0.04)),
            (("America/New_York", 0.45), ("America/Chicago", 0.25), ("America/Denver", 0.08),
             ("America/Los_Angeles", 0.22)),
            ("com", "com", "com", "io", "us"), ("Inc.", "LLC", "Corp."), "USD", "en"),
    Country("CA", 5, (Locale("en", "en-CA", 0.72), Locale("fr", "fr-CA", 0.28)),
            (("America/Toronto", 0.6), ("America/Vancouver", 0.25), ("America/Edmonton", 0.15)),
            ("ca", "com"), ("Inc.", "Ltd."), "USD", "en"),
    Country("GB", 12, (Locale("en", "en-GB", 1.0),),
            (("Europe/London", 1.0),), ("co.uk", "com", "co.uk", "io"), ("Ltd", "plc"), "GBP",
            "en"),
    Country("IE", 2, (Locale("en", "en-IE", 1.0),),
            (("Europe/Dublin", 1.0),), ("ie", "com"), ("Ltd", "DAC"), "EUR", "en"),
    Country("AU", 4, (Locale("en", "en-AU", 1.0),),
            (("Australia/Sydney", 0.45), ("Australia/Melbourne", 0.35),
             ("Australia/Brisbane", 0.12), ("Australia/Perth", 0.08)),
            ("com.au", "com"), ("Pty Ltd",), "USD", "en"),
    Country("DE", 14, (Locale("de", "de", 1.0),),
            (("Europe/Berlin", 1.0),), ("de", "de", "com", "io"), ("GmbH", "AG", "GmbH & Co. KG"),
            "EUR", "de"),
    Country("AT", 2, (Locale("de", "de-AT", 1.0),),
            (("Europe/Vienna", 1.0),), ("at", "com"), ("GmbH", "AG"), "EUR", "de"),
    Country("CH", 4, (Locale("de", "de-CH", 0.65), Locale("fr", "fr-CH", 0.25),
                      Locale("it", "it-CH", 0.1)),
            (("Europe/Zurich", 1.0),), ("ch", "com"), ("AG", "GmbH", "SA"), "CHF", "de"),
    Country("FR", 7, (Locale("fr", "fr", 1.0),),
            (("Europe/Paris", 1.0),), ("fr", "fr", "com", "io"), ("SAS", "SA", "SARL"), "EUR",
            "fr"),
    Country("BE", 2, (Locale("nl", "nl-BE", 0.55), Locale("fr", "fr-BE", 0.45)),
            (("Europe/Brussels", 1.0),), ("be", "com", "eu"), ("NV", "BV", "SA"), "EUR", "nl"),
    Country("NL", 6, (Locale("nl", "nl", 1.0),),
            (("Europe/Amsterdam", 1.0),), ("nl", "nl", "com", "io"), ("B.V.", "N.V."), "EUR", "nl"),
    Country("SE", 4, (Locale("sv", "sv", 1.0),),
            (("Europe/Stockholm", 1.0),), ("se", "com"), ("AB",), "EUR", "sv"),
    Country("DK", 2, (Locale("da", "da", 1.0),),
            (("Europe/Copenhagen", 1.0),), ("dk", "com"), ("A/S", "ApS"), "EUR", "sv"),
    Country("NO", 1.5, (Locale("da", "nb", 1.0),),
            (("Europe/Oslo", 1.0),), ("no", "com"), ("AS",), "EUR", "sv"),
    Country("FI", 1.5, (Locale("fi", "fi", 1.0),),
            (("Europe/Helsinki", 1.0),), ("fi", "com"), ("Oy",), "EUR", "sv"),
    Country("ES", 4, (Locale("es", "es", 1.0),),
            (("Europe/Madrid", 1.0),), ("es", "com"), ("S.L.", "S.A."), "EUR", "es"),
    Country("IT", 4, (Locale("it", "it", 1.0),),
            (("Europe/Rome", 1.0),), ("it", "com"), ("S.r.l.", "S.p.A."), "EUR", "it"),
    Country("PL", 1.5, (Locale("pl", "pl", 1.0),),
            (("Europe/Warsaw", 1.0),), ("pl", "com"), ("sp. z o.o.", "S.A."), "EUR", "de"),
    Country("JP", 3, (Locale("ja", "ja", 1.0),),
            (("Asia/Tokyo", 1.0),), ("co.jp", "jp", "com"), ("K.K.", "Co., Ltd."), "USD", "ja"),
)  # fmt: skip

COUNTRY_BY_CODE = {c.code: c for c in COUNTRIES}

# Free-mail providers and where their users live (None: anywhere). All are on the
# shipped free-mail list, so these contacts get no company.
FREE_MAIL: tuple[tuple[str, str | None, float], ...] = (
    ("gmail.com", None, 30), ("outlook.com", None, 10), ("hotmail.com", None, 5),
    ("yahoo.com", "US", 5), ("icloud.com", None, 6), ("proton.me", None, 2),
    ("aol.com", "US", 1), ("gmx.de", "DE", 5), ("web.de", "DE", 4), ("t-online.de", "DE", 2),
    ("gmx.at", "AT", 1), ("bluewin.ch", "CH", 1.5), ("orange.fr", "FR", 2.5),
    ("free.fr", "FR", 1.5), ("laposte.net", "FR", 1), ("libero.it", "IT", 1.5),
    ("btinternet.com", "GB", 1.5), ("hotmail.co.uk", "GB", 2), ("ziggo.nl", "NL", 1.5),
    ("live.se", "SE", 1), ("yahoo.co.jp", "JP", 1), ("shaw.ca", "CA", 0.5),
    ("bigpond.com", "AU", 0.8), ("yahoo.es", "ES", 1),
)  # fmt: skip

# --- companies ----------------------------------------------------------------------

# Coined company and town names: FIRST + SECOND ("Cedarbrook", "Ironvale").
NAME_FIRST = (
    "North", "Blue", "Iron", "Cedar", "Silver", "Stone", "Bright", "Clear", "Red", "Oak",
    "Pine", "Harbor", "Summit", "River", "Falcon", "Maple", "Granite", "Copper", "Amber",
    "Swift", "Lake", "High", "Green", "Fox", "Elm", "West", "East", "Ash", "Birch", "Crest",
    "Star", "Tide", "Wolf", "Raven", "Kestrel", "Willow", "Hazel", "Heron", "Otter", "Quarry",
    "Beacon", "Meadow", "Arrow", "Lantern", "Cobalt", "Juniper", "Alder", "Bramble",
)  # fmt: skip
NAME_SECOND = (
    "wind", "gate", "bridge", "field", "stone", "point", "ridge", "brook", "wood", "line",
    "path", "works", "haven", "peak", "port", "vale", "mark", "light", "well", "ford",
    "shore", "crest", "moor", "leaf", "hollow", "fall", "row", "mere", "spring", "worth",
)  # fmt: skip
# Endings for coined software names ("Brightly", "Vaultio").
SAAS_ENDINGS = ("", "", "", "ly", "io", "ify", "hq", "labs", "base", "stack")

# Town-name parts by culture, for municipalities and schools.
PLACE_PARTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "en": (("Ash", "Oak", "Elm", "Cedar", "Maple", "Fair", "Glen", "Brook", "Mill", "Red",
            "Stan", "Whit", "Gran", "Lang", "Hol"),
           ("ford", "field", "ton", "bury", "wood", "dale", "ham", "wick", "ridge", "brook")),
    "de": (("Linden", "Eichen", "Birken", "Tannen", "Rosen", "Falken", "Wolfs", "Buchen",
            "Erlen", "Hohen", "Neu", "Alt", "Stein", "Wiesen"),
           ("au", "feld", "bach", "berg", "dorf", "heim", "stein", "tal", "hausen", "brück")),
    "fr": (("Beau", "Mont", "Belle", "Font", "Roche", "Clair", "Val", "Ville"),
           ("mont", "fort", "ville", "lac", "bois", "pré", "rive", "champ")),
    "nl": (("Ooster", "Wester", "Zuider", "Noord", "Hoog", "Laag", "Linde", "Berken"),
           ("dam", "dijk", "veen", "hoven", "woude", "broek", "wijk", "horst")),
    "sv": (("Björk", "Ek", "Gran", "Sjö", "Lind", "Ström", "Berg", "Ål"),
           ("vik", "holm", "by", "sund", "stad", "berga", "ås", "näs")),
    "es": (("Villa", "Valde", "Monte", "Torre", "Puerto", "Campo"),
           ("rreal", "alba", "verde", "mayor", "nueva", "llano")),
    "it": (("Monte", "Castel", "Borgo", "Villa", "Poggio", "Roccia"),
           ("verde", "fiore", "nuovo", "alto", "franco", "rosso")),
    "ja": (("Kita", "Minami", "Higashi", "Nishi", "Aka", "Shira", "Kawa", "Yama"),
           ("hara", "kawa", "yama", "mura", "saki", "oka", "zawa", "shima")),
}  # fmt: skip


@dataclass(frozen=True)
class Industry:
    name: str
    weight: float
    words: tuple[str, ...]  # trailing words in English names
    local_words: dict[str, tuple[str, ...]]  # the same by culture, for surname-style names
    revenue_per_employee: tuple[int, int]  # USD range
    tlds: tuple[str, ...] = ()  # preferred over the country's, when set
    coined: bool = False  # software companies favour one coined word


INDUSTRIES: tuple[Industry, ...] = (
    Industry("SaaS", 20, ("Software", "Labs", "Cloud", "Analytics", "Systems", "Data"),
             {}, (150_000, 400_000), ("io", "com", "ai", "app"), coined=True),
    Industry("Manufacturing", 14, ("Industries", "Manufacturing", "Components", "Precision",
                                   "Tooling", "Fabrication", "Machinery"),
             {"de": ("Maschinenbau", "Werke", "Präzisionstechnik", "Metallbau"),
              "fr": ("Industrie", "Mécanique"), "it": ("Meccanica", "Industrie"),
              "sv": ("Industri", "Verkstad"), "nl": ("Machinefabriek", "Techniek"),
              "es": ("Mecanizados", "Industrial"), "ja": ("Seiki", "Kogyo", "Seisakusho")},
             (120_000, 300_000)),
    Industry("Healthcare", 10, ("Health", "Medical", "Clinics", "MedTech", "Diagnostics",
                                "Care"),
             {"de": ("Medizintechnik", "Kliniken", "Gesundheit"), "fr": ("Santé", "Médical"),
              "nl": ("Zorg", "Medisch"), "sv": ("Vård", "Medicin"), "it": ("Sanità", "Medica"),
              "es": ("Salud", "Médica")},
             (80_000, 250_000)),
    Industry("Financial Services", 10, ("Capital", "Financial", "Partners", "Bank",
                                        "Assurance", "Payments", "Wealth"),
             {"de": ("Finanz", "Bank", "Vermögen"), "fr": ("Finance", "Capital"),
              "nl": ("Financieel", "Bank"), "it": ("Finanza", "Capitali")},
             (200_000, 600_000)),
    Industry("Logistics", 10, ("Logistics", "Freight", "Shipping", "Transport", "Cargo"),
             {"de": ("Logistik", "Spedition", "Transporte"), "fr": ("Logistique", "Transports"),
              "nl": ("Transport", "Logistiek"), "sv": ("Logistik", "Frakt"),
              "es": ("Logística", "Transportes"), "it": ("Logistica", "Trasporti"),
              "ja": ("Butsuryu", "Unyu")},
             (100_000, 250_000)),
    Industry("Retail", 9, ("Outfitters", "Market", "Stores", "Goods", "Home", "Supply"),
             {"de": ("Handel", "Warenhaus"), "fr": ("Distribution", "Boutiques"),
              "nl": ("Winkels", "Handel"), "es": ("Tiendas", "Comercial")},
             (150_000, 350_000)),
    Industry("Education", 7, ("University", "College", "Academy", "Learning", "Institute"),
             {}, (60_000, 150_000)),
    Industry("Energy", 7, ("Energy", "Power", "Renewables", "Solar", "Grid", "Utilities"),
             {"de": ("Energie", "Stadtwerke", "Solar"), "fr": ("Énergie", "Solaire"),
              "nl": ("Energie",), "sv": ("Energi", "Kraft"), "es": ("Energía", "Renovables"),
              "it": ("Energia", "Rinnovabili")},
             (250_000, 700_000)),
    Industry("Consulting", 8, ("Consulting", "Advisory", "Group", "Partners", "Associates"),
             {"de": ("Beratung", "Consulting"), "fr": ("Conseil", "Associés"),
              "nl": ("Advies",), "es": ("Consultores",), "it": ("Consulenza",)},
             (120_000, 300_000)),
    Industry("Government", 5, (), {}, (0, 0)),
)  # fmt: skip

# (lowest, highest) employees per size band, matching contacts.fields.SIZE_BANDS.
BAND_RANGES: dict[str, tuple[int, int]] = {
    "1-10": (2, 10), "11-50": (11, 50), "51-200": (51, 200), "201-500": (201, 500),
    "501-1000": (501, 1000), "1001-5000": (1001, 5000), "5001-10000": (5001, 10000),
    "10001+": (10001, 90000),
}  # fmt: skip
BAND_WEIGHTS: dict[str, float] = {
    "1-10": 8, "11-50": 18, "51-200": 22, "201-500": 16, "501-1000": 11, "1001-5000": 13,
    "5001-10000": 6, "10001+": 6,
}  # fmt: skip

# How a company spells its people's addresses.
EMAIL_PATTERNS = ("first.last", "first.last", "flast", "first", "firstl", "f.last", "first_last")

# --- roles --------------------------------------------------------------------------

# department -> (title, seniority) pairs; seniorities are contacts.fields.SENIORITIES.
TITLES: dict[str, tuple[tuple[str, str], ...]] = {
    "Marketing": (
        ("Marketing Intern", "intern"), ("Marketing Coordinator", "entry"),
        ("Content Marketing Specialist", "entry"), ("Email Marketing Specialist", "entry"),
        ("Senior Marketing Specialist", "senior"), ("Marketing Operations Analyst", "senior"),
        ("CRM Manager", "manager"), ("Demand Generation Manager", "manager"),
        ("Product Marketing Manager", "manager"), ("Head of Growth", "director"),
        ("Director of Marketing", "director"), ("VP Marketing", "vp"),
        ("Chief Marketing Officer", "c_level"),
    ),
    "Sales": (
        ("Sales Development Representative", "entry"), ("Account Executive", "senior"),
        ("Senior Account Executive", "senior"), ("Key Account Manager", "senior"),
        ("Sales Manager", "manager"), ("Regional Sales Director", "director"),
        ("VP Sales", "vp"), ("Chief Revenue Officer", "c_level"),
    ),
    "Engineering": (
        ("Software Engineering Intern", "intern"), ("Software Engineer", "entry"),
        ("Senior Software Engineer", "senior"), ("Staff Engineer", "senior"),
        ("Engineering Manager", "manager"), ("Director of Engineering", "director"),
        ("VP Engineering", "vp"), ("Chief Technology Officer", "c_level"),
    ),
    "Product": (
        ("Product Analyst", "entry"), ("Product Manager", "senior"),
        ("Senior Product Manager", "senior"), ("Group Product Manager", "manager"),
        ("Head of Product", "director"), ("VP Product", "vp"),
        ("Chief Product Officer", "c_level"),
    ),
    "IT": (
        ("IT Support Specialist", "entry"), ("Systems Administrator", "senior"),
        ("IT Manager", "manager"), ("Director of IT", "director"),
        ("Chief Information Officer", "c_level"),
    ),
    "Operations": (
        ("Operations Associate", "entry"), ("Operations Analyst", "senior"),
        ("Operations Manager", "manager"), ("Director of Operations", "director"),
        ("VP Operations", "vp"), ("Chief Operating Officer", "c_level"),
    ),
    "Finance": (
        ("Accountant", "entry"), ("Financial Analyst", "senior"), ("Controller", "manager"),
        ("Finance Director", "director"), ("Chief Financial Officer", "c_level"),
    ),
    "Human Resources": (
        ("HR Coordinator", "entry"), ("HR Business Partner", "senior"),
        ("People Operations Manager", "manager"), ("Head of People", "director"),
        ("Chief People Officer", "c_level"),
    ),
    "Customer Success": (
        ("Customer Success Associate", "entry"), ("Customer Success Manager", "senior"),
        ("Customer Success Team Lead", "manager"), ("Director of Customer Success", "director"),
        ("VP Customer Success", "vp"),
    ),
    "Procurement": (
        ("Buyer", "entry"), ("Senior Buyer", "senior"), ("Procurement Manager", "manager"),
        ("Head of Procurement", "director"),
    ),
    "Executive": (
        ("Chief Executive Officer", "c_level"), ("Managing Director", "c_level"),
        ("President", "c_level"), ("Founder & CEO", "owner"), ("Co-Founder", "owner"),
    ),
}  # fmt: skip
DEPARTMENT_WEIGHTS: dict[str, float] = {
    "Marketing": 26, "Sales": 14, "Engineering": 11, "Product": 7, "IT": 7, "Operations": 9,
    "Finance": 5, "Human Resources": 4, "Customer Success": 7, "Procurement": 3, "Executive": 7,
}  # fmt: skip
# Titles only some industries have: (department, title, seniority).
INDUSTRY_TITLES: dict[str, tuple[tuple[str, str, str], ...]] = {
    "Manufacturing": (("Operations", "Plant Manager", "manager"),
                      ("Engineering", "Quality Engineer", "senior")),
    "Healthcare": (("Operations", "Clinical Operations Manager", "manager"),
                   ("Executive", "Medical Director", "director")),
    "Financial Services": (("Operations", "Compliance Officer", "senior"),
                           ("Finance", "Risk Analyst", "entry")),
    "Logistics": (("Operations", "Fleet Manager", "manager"),
                  ("Operations", "Dispatch Coordinator", "entry")),
    "Retail": (("Marketing", "E-commerce Manager", "manager"),
               ("Sales", "Category Manager", "manager")),
    "Education": (("Marketing", "Admissions Marketing Manager", "manager"),
                  ("IT", "Head of Digital Learning", "director")),
    "Energy": (("Engineering", "Grid Operations Engineer", "senior"),
               ("Sales", "Energy Sales Manager", "manager")),
    "Consulting": (("Executive", "Partner", "owner"), ("Operations", "Senior Consultant", "senior"),
                   ("Operations", "Consultant", "entry")),
    "Government": (("IT", "Digital Services Lead", "manager"),
                   ("Procurement", "Procurement Officer", "entry"),
                   ("Marketing", "Communications Officer", "senior")),
}  # fmt: skip
FREELANCE_TITLES = (
    "Freelance Marketing Consultant", "Independent Consultant", "Copywriter",
    "Freelance Designer", "Growth Advisor",
)  # fmt: skip

# --- the demo vendor's website and store ----------------------------------------------

SITE = "https://www.northwind.example"
# path -> page title; grouped by what a visit there says about the visitor.
PAGES: dict[str, tuple[tuple[str, str], ...]] = {
    "home": (("/", "Northwind: email for B2B teams"),),
    "pricing": (("/pricing", "Pricing"),),
    "product": (
        ("/features", "Features"), ("/features/automation", "Automation"),
        ("/features/segmentation", "Segmentation"),
        ("/features/deliverability", "Deliverability"), ("/integrations", "Integrations"),
        ("/customers", "Customer stories"), ("/security", "Security and compliance"),
    ),
    "docs": (
        ("/docs", "Documentation"), ("/docs/getting-started", "Getting started"),
        ("/docs/api/contacts", "API: contacts"), ("/docs/tracking", "Tracking events"),
        ("/docs/deliverability/dkim", "Setting up DKIM"), ("/docs/webhooks", "Webhooks"),
    ),
    "blog": (
        ("/blog/b2b-email-benchmarks", "B2B email benchmarks"),
        ("/blog/warming-up-a-sending-domain", "Warming up a new sending domain"),
        ("/blog/abm-email-playbook", "The ABM email playbook"),
        ("/blog/consent-records-that-hold-up", "Consent records that hold up"),
        ("/blog/lead-scoring-without-a-data-team", "Lead scoring without a data team"),
        ("/blog/onboarding-sequences", "Onboarding sequences that activate"),
    ),
}  # fmt: skip

REFERRERS = (
    ("", 40), ("https://www.google.com/", 30), ("https://www.bing.com/", 5),
    ("https://duckduckgo.com/", 4), ("https://www.linkedin.com/", 12),
    ("https://news.ycombinator.com/", 2), ("https://www.reddit.com/", 2),
)  # fmt: skip

# UTM campaigns: (name, source, medium, content, landing path).
CAMPAIGNS = (
    ("benchmark-report", "linkedin", "paid-social", "carousel", "/resources/benchmark-report"),
    ("abm-playbook", "newsletter", "email", "issue-42", "/blog/abm-email-playbook"),
    ("spring-webinar", "linkedin", "paid-social", "video", "/webinars"),
    ("brand-search", "google", "cpc", "northwind", "/"),
    ("pricing-retarget", "google", "display", "banner-300x250", "/pricing"),
    ("partner-launch", "partner", "referral", "co-marketing", "/integrations"),
)  # fmt: skip

LEAD_MAGNETS = (
    ("B2B Email Benchmark Report", "report", "/resources/benchmark-report"),
    ("Deliverability Checklist", "checklist", "/resources/deliverability-checklist"),
    ("ABM Email Templates", "templates", "/resources/abm-templates"),
    ("Consent and GDPR Guide", "ebook", "/resources/consent-guide"),
)  # fmt: skip

WEBINARS = (  # (id, title, days from now it starts; negative: past)
    ("wb-101", "Segmentation masterclass", -96),
    ("wb-102", "From trial to paid: onboarding emails", -61),
    ("wb-103", "Account-based email in practice", -26),
    ("wb-104", "Deliverability clinic", 9),
)  # fmt: skip

# (sku, name, category, price)
PRODUCTS = (
    ("NW-STARTER-Y", "Starter plan (annual)", "Plans", 588.0),
    ("NW-GROWTH-Y", "Growth plan (annual)", "Plans", 2388.0),
    ("NW-SEATS-10", "10 extra seats", "Add-ons", 480.0),
    ("NW-DEDICATED-IP", "Dedicated sending IP", "Add-ons", 360.0),
    ("NW-ONBOARDING", "Guided onboarding", "Services", 1500.0),
    ("NW-SUPPORT-PLUS", "Premium support (annual)", "Add-ons", 1200.0),
    ("NW-WORKSHOP", "Team training workshop", "Services", 900.0),
)  # fmt: skip

USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36 Edg/124.0.0.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
)

# Addresses reserved for documentation (RFC 5737): never anyone's real IP.
IP_PREFIXES = ("192.0.2.", "198.51.100.", "203.0.113.")

INTERESTS = (
    "email marketing", "automation", "analytics", "deliverability", "integrations",
    "webinars", "ecommerce", "abm", "lead scoring", "compliance",
)  # fmt: skip

# --- lists ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ListSpec:
    name: str
    description: str
    double_opt_in: bool
    consent_text: str


NEWSLETTER = "Newsletter"
PRODUCT_UPDATES = "Product Updates"
WEBINAR_ATTENDEES = "Webinar Attendees"
CUSTOMERS = "Customers"
BETA = "Beta Program"

LISTS: tuple[ListSpec, ...] = (
    ListSpec(NEWSLETTER, "Twice-monthly research and tips for B2B email teams.", True,
             "Yes, send me the Northwind newsletter (about twice a month). I can unsubscribe "
             "at any time; see the privacy notice."),
    ListSpec(PRODUCT_UPDATES, "Release notes and product announcements.", False,
             "Email me about new features and changes to the product."),
    ListSpec(WEBINAR_ATTENDEES, "People who attended one of our webinars.", False,
             "Register me for the webinar and send me the recording and related material."),
    ListSpec(CUSTOMERS, "Contacts at paying customer accounts: service and account news.",
             False, "Service and account communication to customer contacts."),
    ListSpec(BETA, "Early access to features in beta, with feedback requests.", False,
             "I want to join the beta program and receive early-access invitations."),
)  # fmt: skip
IMPORT_CONSENT_TEXT = "Opted in on a paper or event-badge form; imported from the CRM."

# How towns name their administration: country -> (name pattern, domain pattern).
GOVERNMENT: dict[str, tuple[str, str]] = {
    "US": ("City of {place}", "{slug}.gov"), "CA": ("City of {place}", "{slug}.ca"),
    "GB": ("{place} Borough Council", "{slug}.gov.uk"),
    "IE": ("{place} County Council", "{slug}coco.ie"),
    "AU": ("{place} City Council", "{slug}.nsw.gov.au"), "DE": ("Stadt {place}", "stadt-{slug}.de"),
    "AT": ("Stadtgemeinde {place}", "{slug}.gv.at"), "CH": ("Gemeinde {place}", "{slug}.ch"),
    "FR": ("Ville de {place}", "ville-{slug}.fr"), "BE": ("Gemeente {place}", "{slug}.be"),
    "NL": ("Gemeente {place}", "{slug}.nl"), "SE": ("{place} kommun", "{slug}.se"),
    "DK": ("{place} Kommune", "{slug}.dk"), "NO": ("{place} kommune", "{slug}.kommune.no"),
    "FI": ("{place} kaupunki", "{slug}.fi"), "ES": ("Ayuntamiento de {place}", "ayto-{slug}.es"),
    "IT": ("Comune di {place}", "comune.{slug}.it"), "PL": ("Urząd Miasta {place}", "um.{slug}.pl"),
    "JP": ("{place} City Office", "city.{slug}.lg.jp"),
}  # fmt: skip
# Where universities live on the web, by country (default: the country's first TLD).
EDUCATION_TLDS = {"US": "edu", "GB": "ac.uk", "AU": "edu.au", "JP": "ac.jp", "AT": "ac.at"}
