"""Charts, chemistry and geometry read out of second-pass outputs; the region router."""

import sys
from pathlib import Path

import pytest
from PIL import Image

from dsocr_connectors.deep import (
    chart_to_table,
    classify_region,
    find_smiles,
    parse_chart,
    parse_geometry,
    read_smiles,
)
from dsocr_connectors.deep.literals import LiteralError, parse_literal

sys.path.insert(0, str(Path(__file__).parent))

PROSE = open("tests/data/raw_outputs/060_colab-parse-figure-photo-description.txt",
             encoding="utf-8").read() if __import__("os").path.exists(
    "tests/data/raw_outputs/060_colab-parse-figure-photo-description.txt") else (
    "The image shows a person standing in front of a building, wearing a red jacket.")


def test_markdown_chart_to_series_and_table():
    text = ("Quarterly revenue (USD millions)\n\n| Quarter | 2023 | 2024 |\n|---|---|---|\n"
            "| Q1 | 1,200 | 1,350 |\n| Q2 | 1,100 | (50) |\n| Q3 | — | 1,500 |")
    chart = parse_chart(text)
    assert chart.title == "Quarterly revenue (USD millions)"
    assert chart.categories == ["Q1", "Q2", "Q3"]
    assert [s.name for s in chart.series] == ["2023", "2024"]
    assert chart.series[0].values == [1200.0, 1100.0, None]
    assert chart.series[1].values[1] == -50.0 and chart.series[1].raw_values[1] == "(50)"
    assert chart.source_text == text
    table = chart_to_table(chart)
    assert table.grid()[0] == ["Quarter", "2023", "2024"] and table.grid()[3][1] == "—"


def test_dict_literal_chart_is_read_without_eval():
    text = ("{'title': 'Share', 'categories': ['A', 'B'], "
            "'series': {'2024': ['40%', '60%']}}")
    chart = parse_chart(text)
    assert chart.title == "Share" and chart.units == "%"
    assert chart.series[0].name == "2024" and chart.series[0].values == [40.0, 60.0]


def test_key_value_and_delimited_charts():
    chart = parse_chart("Apples: 10\nPears: 12.5\nPlums: 7")
    assert chart.categories == ["Apples", "Pears", "Plums"]
    assert chart.series[0].values == [10.0, 12.5, 7.0]
    chart = parse_chart("Year,Sales,Cost\n2022,10,5\n2023,12,6")
    assert [s.name for s in chart.series] == ["Sales", "Cost"]
    assert chart.categories == ["2022", "2023"]


def test_prose_is_not_a_chart():
    assert parse_chart(PROSE) is None
    assert parse_chart("") is None


def test_literal_reader_refuses_code():
    assert parse_literal("{'a': (1, 2.5, None), 'b': [True, \"x\"]}") == {
        "a": (1, 2.5, None), "b": [True, "x"]}
    for hostile in ["__import__('os').system('x')", "{'a': open('f')}", "{'a': 1} + 1",
                    "{'a': [1, 2}"]:
        with pytest.raises(LiteralError):
            parse_literal(hostile)


def test_geometry_output():
    text = ("{'Line': {'line': ['(0, 0) -- (3, 4)', '(3, 4) -- (6, 0)', 'junk'], "
            "'line_type': ['--', '-.'], 'line_endpoint': ['A: (0, 0)', 'B: (3, 4)']}, "
            "'Circle': {'circle_center': ['O: (1.5, 1)'], 'radius': [2.5]}}")
    geometry = parse_geometry(text)
    assert [(s.start, s.end, s.style) for s in geometry.segments] == [
        ((0, 0), (3, 4), "--"), ((3, 4), (6, 0), "-.")]
    assert geometry.points == {"A": (0, 0), "B": (3, 4)}
    assert geometry.circles == [((1.5, 1.0), 2.5)]
    assert geometry.flags == ["unreadable_part"]
    assert parse_geometry("a triangle ABC") is None


def test_smiles_found_validated_and_canonicalised():
    assert find_smiles("<smiles>CC(=O)Oc1ccccc1C(=O)O</smiles>") == ["CC(=O)Oc1ccccc1C(=O)O"]
    assert find_smiles("The structure is c1ccccc1O .") == ["c1ccccc1O"]
    assert find_smiles("The image shows a benzene ring") == []
    chem = read_smiles("c1ccccc1O")
    assert chem.is_valid and chem.canonical_smiles == "Oc1ccccc1"
    assert chem.inchikey == "ISWSIDIOOBJBQZ-UHFFFAOYSA-N"


def test_invalid_smiles_is_kept_and_flagged_never_fixed():
    chem = read_smiles("C1CC(")
    assert chem.smiles == "C1CC(" and chem.is_valid is False
    assert chem.flags == ["invalid_smiles"] and chem.canonical_smiles is None


def test_without_rdkit_smiles_is_unvalidated(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_rdkit(name, *args, **kwargs):
        if name.startswith("rdkit"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_rdkit)
    chem = read_smiles("CCO")
    assert chem.is_valid is None and chem.flags == ["unvalidated"]


@pytest.mark.slow
def test_router_accuracy_on_the_synthetic_set():
    """The accuracy documented in docs/deep.md: seeds 0-2, 20 crops per kind each."""
    from region_samples import make_samples

    total = correct = 0
    for seed in (0, 1, 2):
        for kind, image in make_samples(seed=seed, per_kind=20):
            total += 1
            correct += classify_region(image) == kind
    assert correct / total >= 0.97, f"{correct}/{total}"


def test_router_on_plain_pages():
    assert classify_region(Image.new("RGB", (300, 200), "white")) == "other"


def test_html_chart_output_goes_through_the_table_reader():
    text = ("<center>Revenue by region (%)</center>\n<table><tr><td>Region</td><td>2023</td>"
            "<td>2024</td></tr><tr><td>EU</td><td>40</td><td>45</td></tr><tr><td>US</td>"
            "<td>60</td><td>55</td></tr></table>")
    chart = parse_chart(text)
    assert chart.title == "Revenue by region (%)" and chart.units == "%"
    assert chart.categories == ["EU", "US"] and chart.series[1].values == [45.0, 55.0]
