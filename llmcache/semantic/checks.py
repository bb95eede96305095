"""Checks a semantic candidate must pass besides its similarity.

Embeddings place "order 48213" next to "order 48231" and "10 USD to EUR" next to "10 EUR to
USD": short edits that change the answer barely move a sentence vector. So a candidate is
served only when both questions carry the same answer-determining tokens, in the same
order: numbers (dates and amounts included), units and currencies, quoted strings,
identifiers, URLs, names, symbols and words of other scripts (``C++`` is not ``C#``); the
same negations and question words ("where" is not "when"); no word of one whose opposite is
in the other (``first``/``last``, ``to``/``from``, ``safe``/``unsafe``); and lengths within
a bound. Each check errs towards a miss: a miss costs one upstream call, a wrong hit a wrong
answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["Signature", "length_ok", "same_answer_tokens", "signature"]

_URL = re.compile(r"(?:https?://|www\.)\S+|\b[\w.+-]+@[\w-]+\.[\w.]+\b", re.I)
_QUOTED = re.compile(r"\"([^\"]+)\"|“([^”]+)”|`([^`]+)`|(?<!\w)'([^']+)'(?!\w)")
_NUMBER = re.compile(r"(?<![\w.])[-+]?\d[\d,]*(?:\.\d+)?(?:st|nd|rd|th)?")
_WORD = re.compile(r"[A-Za-z][A-Za-z'\u2019_-]*|\d\w*")
# C++ and C#, "=" and "==", words in other scripts: what the word pattern does not see
_SYMBOLIC = re.compile(
    r"\b[A-Za-z]\w*[#+]+|[^\w\s.,!?;:'\"()\[\]{}\u2019\u201c\u201d-]+|[^\x00-\x7f]+"
)
_IDENTIFIER = re.compile(r"\b(?=\w*[\d_])(?=\w*[A-Za-z])\w+\b|\b\w+(?:\.\w+)+\b")

UNITS = frozenset(
    [
        "usd",
        "eur",
        "gbp",
        "jpy",
        "chf",
        "cny",
        "inr",
        "cad",
        "aud",
        "rub",
        "brl",
        "krw",
        "mxn",
        "sek",
        "nok",
        "dkk",
        "pln",
        "btc",
        "eth",
        "dollar",
        "dollars",
        "euro",
        "euros",
        "pound",
        "pounds",
        "yen",
        "rupee",
        "rupees",
        "yuan",
        "franc",
        "francs",
        "bitcoin",
        "percent",
        "mm",
        "cm",
        "m",
        "km",
        "mi",
        "mile",
        "miles",
        "meter",
        "meters",
        "metre",
        "metres",
        "kilometer",
        "kilometers",
        "centimeter",
        "centimeters",
        "millimeter",
        "millimeters",
        "inch",
        "inches",
        "foot",
        "feet",
        "ft",
        "yard",
        "yards",
        "mg",
        "g",
        "kg",
        "gram",
        "grams",
        "kilogram",
        "kilograms",
        "lb",
        "lbs",
        "ounce",
        "ounces",
        "oz",
        "ton",
        "tons",
        "tonne",
        "tonnes",
        "ml",
        "l",
        "liter",
        "liters",
        "litre",
        "litres",
        "gallon",
        "gallons",
        "gal",
        "pint",
        "pints",
        "quart",
        "quarts",
        "cup",
        "cups",
        "celsius",
        "fahrenheit",
        "kelvin",
        "degree",
        "degrees",
        "c",
        "f",
        "k",
        "sec",
        "second",
        "seconds",
        "min",
        "minute",
        "minutes",
        "h",
        "hr",
        "hour",
        "hours",
        "day",
        "days",
        "week",
        "weeks",
        "month",
        "months",
        "year",
        "years",
        "decade",
        "decades",
        "century",
        "centuries",
        "ms",
        "ns",
        "kb",
        "mb",
        "gb",
        "tb",
        "kib",
        "mib",
        "gib",
        "byte",
        "bytes",
        "bit",
        "bits",
        "hz",
        "khz",
        "mhz",
        "ghz",
        "w",
        "kw",
        "mw",
        "kwh",
        "v",
        "volt",
        "volts",
        "amp",
        "amps",
        "mph",
        "kph",
        "kmh",
        "knot",
        "knots",
        "calorie",
        "calories",
        "kcal",
        "joule",
        "joules",
        "psi",
        "bar",
        "pa",
    ]
)
MONTHS = frozenset(
    [
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
        "jan",
        "feb",
        "mar",
        "apr",
        "jun",
        "jul",
        "aug",
        "sep",
        "sept",
        "oct",
        "nov",
        "dec",
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ]
)
NEGATIONS = {
    "not": "not",
    "no": "not",
    "never": "not",
    "none": "not",
    "nothing": "not",
    "nobody": "not",
    "neither": "not",
    "nor": "not",
    "cannot": "not",
    "without": "without",
}
_OPPOSITES = [
    ("to", "from"),
    ("into", "out"),
    ("before", "after"),
    ("above", "below"),
    ("over", "under"),
    ("up", "down"),
    ("left", "right"),
    ("north", "south"),
    ("east", "west"),
    ("increase", "decrease"),
    ("more", "less"),
    ("more", "fewer"),
    ("higher", "lower"),
    ("high", "low"),
    ("bigger", "smaller"),
    ("larger", "smaller"),
    ("big", "small"),
    ("large", "small"),
    ("longer", "shorter"),
    ("long", "short"),
    ("buy", "sell"),
    ("buying", "selling"),
    ("first", "last"),
    ("first", "later"),
    ("first", "second"),
    ("earlier", "later"),
    ("earliest", "latest"),
    ("oldest", "newest"),
    ("older", "younger"),
    ("old", "new"),
    ("best", "worst"),
    ("good", "bad"),
    ("gain", "lose"),
    ("gain", "loss"),
    ("profit", "loss"),
    ("save", "spend"),
    ("benefits", "risks"),
    ("better", "worse"),
    ("most", "least"),
    ("max", "min"),
    ("maximum", "minimum"),
    ("ascending", "descending"),
    ("plus", "minus"),
    ("add", "remove"),
    ("add", "subtract"),
    ("import", "export"),
    ("input", "output"),
    ("inside", "outside"),
    ("upper", "lower"),
    ("top", "bottom"),
    ("next", "previous"),
    ("next", "last"),
    ("start", "end"),
    ("open", "close"),
    ("win", "lose"),
    ("won", "lost"),
    ("true", "false"),
    ("yes", "no"),
    ("cheaper", "expensive"),
    ("cheap", "expensive"),
    ("faster", "slower"),
    ("fast", "slow"),
    ("hot", "cold"),
    ("male", "female"),
    ("men", "women"),
    ("man", "woman"),
    ("boy", "girl"),
    ("positive", "negative"),
    ("pros", "cons"),
    ("advantages", "disadvantages"),
    ("legal", "illegal"),
    ("include", "exclude"),
    ("allow", "deny"),
    ("enable", "disable"),
    ("encrypt", "decrypt"),
    ("encode", "decode"),
    ("compress", "decompress"),
    ("upload", "download"),
    ("push", "pull"),
    ("send", "receive"),
    ("give", "take"),
    ("lend", "borrow"),
]
OPPOSITE: dict[str, frozenset[str]] = {}
for _a, _b in _OPPOSITES:
    OPPOSITE[_a] = OPPOSITE.get(_a, frozenset()) | {_b}
    OPPOSITE[_b] = OPPOSITE.get(_b, frozenset()) | {_a}
# What kind of answer a question asks for: "where was he born" is not "when".
# words too common to carry the order of a question's meaning
_FILLER = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "in",
        "on",
        "at",
        "for",
        "to",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "do",
        "does",
        "did",
        "i",
        "you",
        "we",
        "it",
        "this",
        "that",
        "and",
        "or",
        "but",
        "with",
        "by",
        "as",
        "can",
        "could",
        "would",
        "should",
        "will",
        "shall",
        "may",
        "might",
        "must",
        "my",
        "your",
        "our",
    ]
)
ASKS = frozenset(["how", "what", "why", "where", "when", "who", "whom", "whose", "which"])
_PREFIXES = ("un", "in", "im", "il", "ir", "dis", "non", "non-", "anti", "a")


@dataclass(frozen=True, slots=True)
class Signature:
    """What one question says that decides its answer.

    :param key: numbers, units, quoted strings, identifiers, URLs and names, in order.
    :param negations: the negations, counted.
    :param asks: the question words (how, why, where...).
    :param words: every word, lower-cased.
    :param content: the words that are not fillers, in order.
    :param length: the length of the question in characters, spaces collapsed.
    """

    key: tuple[str, ...]
    negations: tuple[str, ...]
    asks: frozenset[str]
    words: frozenset[str]
    content: tuple[str, ...]
    length: int


def _number(text: str) -> str:
    return text.replace(",", "").lstrip("+").lower()


@lru_cache(maxsize=4096)
def signature(text: str) -> Signature:
    """Return the :class:`Signature` of a question."""
    spans: list[tuple[int, str]] = []
    rest = text
    for match in _URL.finditer(text):
        spans.append((match.start(), "url:" + match.group(0).rstrip(".,;:!?)").lower()))
    rest = _URL.sub(" ", rest)
    for match in _QUOTED.finditer(rest):
        quoted = next(g for g in match.groups() if g is not None)
        spans.append((match.start(), "q:" + quoted.strip().lower()))
    for match in _IDENTIFIER.finditer(rest):
        spans.append((match.start(), "id:" + match.group(0).lower()))
    for match in _SYMBOLIC.finditer(rest):
        spans.append((match.start(), "s:" + match.group(0).lower()))
    for match in _NUMBER.finditer(rest):
        spans.append((match.start(), "n:" + _number(match.group(0))))
    negations: list[str] = []
    words: list[str] = []
    sentence_start = True
    for match in _WORD.finditer(rest):
        raw = match.group(0)
        word = raw.lower().replace("\u2019", "'")
        if word.endswith("n't"):
            negations.append("not")
            word = word[:-3]
        elif word.endswith("'s"):  # what's, Python's
            word = word[:-2]
        words.append(word)
        if word in NEGATIONS:
            negations.append(NEGATIONS[word])
        if word in UNITS or word in MONTHS:
            spans.append((match.start(), "u:" + word))
        elif len(raw) > 1 and raw[0].isupper() and (not sentence_start or raw.isupper()):
            spans.append((match.start(), "name:" + word))
        sentence_start = rest[match.end() : match.end() + 2].strip()[:1] in (".", "?", "!")
    spans.sort()
    key = tuple(dict.fromkeys(s for _, s in spans))  # one token once, first place kept
    length = len(" ".join(text.split()))
    asks = frozenset(w for w in words if w in ASKS)
    content = tuple(w for w in words if w not in _FILLER)
    return Signature(key, tuple(sorted(negations)), asks, frozenset(words), content, length)


def _names(sig: Signature) -> set[str]:
    return {k[5:] for k in sig.key if k.startswith("name:")}


def _ordered(a: Signature, b: Signature) -> bool:
    """Tell whether both carry the same answer-determining tokens in the same order.

    Names are compared without case (Quora writes "python" and "Python"): a name of one must
    be a word of the other, and the names both capitalise come in the same order.
    """
    names_a, names_b = _names(a), _names(b)
    if not names_a <= b.words or not names_b <= a.words:
        return False
    common = names_a & names_b
    seq_a = [k for k in a.key if not k.startswith("name:") or k[5:] in common]
    seq_b = [k for k in b.key if not k.startswith("name:") or k[5:] in common]
    return seq_a == seq_b


def _opposed(a: Signature, b: Signature) -> bool:
    """Tell whether a word of one has its opposite in the other, and not in itself."""
    only_a, only_b = a.words - b.words, b.words - a.words
    for word in only_a:
        if OPPOSITE.get(word, frozenset()) & only_b:
            return True
        for prefix in _PREFIXES:  # safe / unsafe, legal / illegal
            if prefix + word in only_b or (
                word.startswith(prefix) and word[len(prefix) :] in only_b
            ):
                return True
    return False


def same_answer_tokens(a: str, b: str) -> bool:
    """Tell whether two questions agree on every answer-determining token (see the module
    docstring)."""
    sa, sb = signature(a), signature(b)
    if sa.negations != sb.negations or sa.asks != sb.asks:
        return False
    if not _ordered(sa, sb):
        return False
    # the same words in another order: "life after death", "death after life" (an embedding
    # that averages word vectors scores the two 1.0)
    if sa.content != sb.content and sorted(sa.content) == sorted(sb.content):
        return False
    return not _opposed(sa, sb)


def length_ok(a: str, b: str, ratio: float) -> bool:
    """Tell whether the longer question is at most ``ratio`` times the shorter one."""
    la, lb = signature(a).length, signature(b).length
    if not la or not lb:
        return la == lb
    return max(la, lb) <= ratio * min(la, lb)
