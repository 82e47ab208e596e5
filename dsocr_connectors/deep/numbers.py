"""Numbers as financial tables write them: `(1,234.5)`, `—`, `12.5%`, `$ 3.2bn`, `1,234(a)`.

`parse_value` reads one cell; `detect_scale` reads a caption or header ("in millions",
"单位：万元") for the scale every number of a table is multiplied by. Nothing is guessed
silently: each parsed value keeps the string it came from, and a cell that is not a number
comes back with `value=None` and `kind="text"`.

Conventions (documented in docs/deep.md):
- Parentheses mean negative; a dash alone (`-`, `–`, `—`, `－`) means nil: `value=None`,
  `kind="nil"` (financial statements use it for zero or not applicable; we do not pick one).
- Percentages keep the written number: `12.5%` -> 12.5 with `unit="%"` (not 0.125).
- A scale word on the cell (`3.2bn`) multiplies the value; a table scale from `detect_scale`
  is passed in as `scale` and multiplies numbers that are not percentages.
- `1.234,5` (comma decimal, dot thousands) is read as 1234.5 only when the dots group digits
  in threes; `1,234` is always one thousand two hundred and thirty-four.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

_SUPERSCRIPTS = "¹²³⁴⁵⁶⁷⁸⁹⁰*†‡§"
_DASHES = {"-", "–", "—", "−", "－", "--", "—-", "n/a", "na", "nm", "n.m.", "/"}
_CURRENCIES = {
    "us$": "USD", "usd": "USD", "$": "USD", "hk$": "HKD", "hkd": "HKD", "€": "EUR", "eur": "EUR",
    "£": "GBP", "gbp": "GBP", "¥": "JPY/CNY", "rmb": "CNY", "cny": "CNY", "元": "CNY",
    "jpy": "JPY", "chf": "CHF", "₹": "INR", "inr": "INR", "us dollars": "USD",
    "dollars": "USD", "euros": "EUR", "pounds": "GBP", "yuan": "CNY", "yen": "JPY",
}
_SCALES = {
    "k": 1e3, "thousand": 1e3, "thousands": 1e3, "千": 1e3,
    "m": 1e6, "mn": 1e6, "mm": 1e6, "mio": 1e6, "million": 1e6, "millions": 1e6, "百万": 1e6,
    "b": 1e9, "bn": 1e9, "billion": 1e9, "billions": 1e9, "十亿": 1e9,
    "万": 1e4, "亿": 1e8, "万亿": 1e12, "tn": 1e12, "trillion": 1e12,
}
_FOOTNOTE = re.compile(r"(\((?:[a-z]|\d{1,2}|[ivx]{1,4})\)|\[[^\]]{1,4}\]|[" + _SUPERSCRIPTS + r"]+)$")
_CURRENCY_RE = "|".join(sorted((re.escape(c) for c in _CURRENCIES), key=len, reverse=True))
_SCALE_RE = "|".join(sorted((re.escape(s) for s in _SCALES), key=len, reverse=True))
_CELL = re.compile(
    rf"^(?P<neg1>[-−(])?\s*(?P<cur1>{_CURRENCY_RE})?\s*(?P<neg2>[-−(])?\s*"
    r"(?P<num>\d[\d,. '\u2009\u202f]*\d|\d)"
    rf"\s*(?P<scale>{_SCALE_RE})?\s*(?P<pct>%|bps?|pp)?\s*(?P<cur2>{_CURRENCY_RE})?\s*"
    r"(?P<close>\))?(?P<neg3>-)?$",
    re.IGNORECASE,
)


@dataclass
class ParsedValue:
    """One cell read as a number; `raw` is the string exactly as it was."""

    raw: str
    value: float | None = None
    kind: str = "text"  # number, percent, nil, empty, text
    unit: str | None = None  # "%", "bp", "pp", a currency code
    footnotes: list[str] = field(default_factory=list)


def parse_value(raw: str, *, scale: float = 1.0) -> ParsedValue:
    """Read one table cell. Never raises; a cell that is not a number has kind "text"."""
    text = _clean(raw)
    footnotes = []
    while text and (match := _FOOTNOTE.search(text)) and _FOOTNOTE.sub("", text).strip():
        stripped = text[: match.start()].rstrip()
        if not re.search(r"[\d%)]$", stripped):
            break
        footnotes.insert(0, match.group())
        text = stripped
    if not text:
        return ParsedValue(raw, kind="empty", footnotes=footnotes)
    if text.lower() in _DASHES:
        return ParsedValue(raw, kind="nil", footnotes=footnotes)
    match = _CELL.match(text)
    if not match:
        return ParsedValue(raw, footnotes=footnotes)
    number = _to_float(match["num"])
    if number is None:
        return ParsedValue(raw, footnotes=footnotes)
    is_paren = "(" in (match["neg1"] or "") + (match["neg2"] or "")
    if is_paren != bool(match["close"]):
        return ParsedValue(raw, footnotes=footnotes)  # unbalanced parenthesis: not a number
    is_negative = is_paren or any(
        (match[g] or "") in ("-", "−") for g in ("neg1", "neg2", "neg3")
    )
    pct = (match["pct"] or "").lower()
    currency = match["cur1"] or match["cur2"]
    if match["scale"]:
        number *= _SCALES[match["scale"].lower()]
    if pct:
        unit = "%" if pct == "%" else ("pp" if pct == "pp" else "bp")
        kind = "percent" if unit == "%" else "number"
    else:
        number *= scale
        unit = _CURRENCIES[currency.lower()] if currency else None
        kind = "number"
    return ParsedValue(raw, -number if is_negative else number, kind, unit, footnotes)


def detect_scale(text: str) -> tuple[float, str | None]:
    """The scale and currency a caption or header announces, e.g. "(in millions of USD)".

    Returns (1.0, None) when nothing is announced.
    """
    cleaned = _clean(text).lower()
    patterns = [
        r"in\s+(thousands|millions|billions|trillions|thousand|million|billion)",
        r"(thousands|millions|billions)\s+of",
        r"单位[:：]?\s*(?:人民币)?\s*(万亿|百万|千|万|亿)",
        r"(?:人民币|rmb)\s*(万亿|百万|千|万|亿)\s*元",
        r"\((?:[$€£¥]|usd|eur|gbp|rmb|cny)\s*(k|m|mn|bn|b)\)",
        r"(?:[$€£¥]|usd|eur|gbp|rmb|cny)\s*(k|m|mn|bn|b|millions?|billions?|thousands?)\b",
    ]
    scale = 1.0
    for pattern in patterns:
        if match := re.search(pattern, cleaned):
            scale = _SCALES[match.group(1)]
            break
    currency = None
    for token in re.findall(_CURRENCY_RE, cleaned):
        currency = _CURRENCIES[token.lower()]
        break
    return scale, currency


def _clean(raw: str) -> str:
    # Superscript footnote marks must survive NFKC, which would turn them into digits.
    marked = "".join(f"\uE000{c}" if c in "¹²³⁴⁵⁶⁷⁸⁹⁰" else c for c in raw)
    text = unicodedata.normalize("NFKC", marked)
    text = re.sub("\uE000(\\d)", lambda m: "¹²³⁴⁵⁶⁷⁸⁹⁰"["1234567890".index(m.group(1))], text)
    return text.replace("\u00a0", " ").replace("\u200b", "").strip()


def _to_float(digits: str) -> float | None:
    compact = re.sub(r"[ '\u2009\u202f]", "", digits)
    if re.fullmatch(r"\d{1,3}(\.\d{3})+(,\d+)?", compact):  # 1.234.567,89
        compact = compact.replace(".", "").replace(",", ".")
    elif re.fullmatch(r"\d+,\d{1,2}", compact):  # 12,5: a comma decimal
        compact = compact.replace(",", ".")
    elif re.fullmatch(r"\d{1,3}(,\d{3})*(\.\d+)?|\d+(\.\d+)?", compact):
        compact = compact.replace(",", "")
    else:
        return None
    try:
        return float(compact)
    except ValueError:
        return None
