import pytest

from dsocr_connectors.deep.numbers import detect_scale, parse_value


@pytest.mark.parametrize(
    ("raw", "value", "kind", "unit"),
    [
        ("(1,234.5)", -1234.5, "number", None),
        ("（1,234）", -1234.0, "number", None),  # full-width parentheses
        ("-", None, "nil", None),
        ("—", None, "nil", None),
        ("–", None, "nil", None),
        ("n/a", None, "nil", None),
        ("", None, "empty", None),
        ("12.5%", 12.5, "percent", "%"),
        ("-12.3 %", -12.3, "percent", "%"),
        ("$ 3.2bn", 3.2e9, "number", "USD"),
        ("€3m", 3e6, "number", "EUR"),
        ("US$1,000", 1000.0, "number", "USD"),
        ("1,234(a)", 1234.0, "number", None),
        ("1,234¹", 1234.0, "number", None),
        ("1,234*", 1234.0, "number", None),
        ("1.234.567,89", 1234567.89, "number", None),
        ("１２３", 123.0, "number", None),
        ("50bps", 50.0, "number", "bp"),
        ("1,234.5-", -1234.5, "number", None),
        ("Total revenue", None, "text", None),
        ("12)", None, "text", None),  # unbalanced: not silently a negative
        ("(a)", None, "text", None),
        ("1,2,3", None, "text", None),
    ],
)
def test_parse_value(raw, value, kind, unit):
    parsed = parse_value(raw)
    assert parsed.raw == raw
    assert parsed.kind == kind
    assert parsed.unit == unit
    if value is None:
        assert parsed.value is None
    else:
        assert parsed.value == pytest.approx(value)


def test_footnote_markers_are_kept_not_read_as_digits():
    assert parse_value("1,234¹").footnotes == ["¹"]
    assert parse_value("1,234(a)").footnotes == ["(a)"]
    assert parse_value("(1,234)(b)").value == -1234.0


def test_table_scale_applies_to_numbers_not_percentages():
    assert parse_value("1,234", scale=1e6).value == pytest.approx(1.234e9)
    assert parse_value("12%", scale=1e6).value == 12.0


@pytest.mark.parametrize(
    ("text", "scale", "currency"),
    [
        ("(in millions of US dollars)", 1e6, "USD"),
        ("Figures in thousands", 1e3, None),
        ("单位：万元", 1e4, "CNY"),
        ("人民币千元", 1e3, "CNY"),
        ("($m)", 1e6, "USD"),
        ("USD bn", 1e9, "USD"),
        ("Revenue by segment", 1.0, None),
    ],
)
def test_detect_scale(text, scale, currency):
    assert detect_scale(text) == (scale, currency)
