"""How much real content the parser's Markdown keeps, and how long parsing takes.

For each raw output (the real ones in tests/data/raw_outputs, and generated cases of the
classes in issue #10), it splits the content of the raw text (grounding tags and coordinate
payloads removed: `parsing.content_text`) and the Markdown export into words (HTML tags,
entities, math delimiters and equation-number wrappers removed, so a table re-rendered from
its cells or `\\quad (3)` written as `\\tag{3}` counts as kept) and counts the characters of
the content's words that the Markdown still has, as a multiset: order does not matter, but
every copy counts. Characters the Markdown does not keep are either loop copies the parser
cut (one copy stays) or losses. It also times `parse_page` + `to_markdown` per page.

    PYTHONPATH=. python benchmarks/parser_fidelity.py            # summary
    PYTHONPATH=. python benchmarks/parser_fidelity.py --per-file # one line per real output

Only `parse_page` and `Page.to_markdown()` with default options are used, so the same script
measures older versions of the parser too (run it with PYTHONPATH pointing at them).
"""

from __future__ import annotations

import argparse
import html
import random
import re
import statistics
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from dsocr_connectors.parsing import LABEL_TYPES, Kind, parse_page, tokenize

RAW = Path(__file__).resolve().parent.parent / "tests" / "data" / "raw_outputs"
HEAD = "<|ref|>{label}<|/ref|><|det|>[[{a}, {b}, {c}, {d}]]<|/det|>\n"
GRAM = 5
# what must never reach Markdown: grounding tag parts and coordinate groups
_LEAK_RE = re.compile(r"<\|/?(?:ref|det|grounding)\|>|\[\s*\d+\s*,\s*\d+\s*,\s*\d+\s*,\s*\d+\s*\]")
_MARKUP_RE = re.compile(r"<[^<>]*>|\\[\[\]()]|\$\$|\\q?quad|\\tag|[(){}]")


def words(text: str) -> Counter[str]:
    """The words of `text` once markup, entities and math delimiters are removed."""
    return Counter(_MARKUP_RE.sub(" ", html.unescape(text)).split())


def content(raw: str) -> str:
    """The raw text less its tag text (as this version of the parser reads it) and the known
    labels of refs (grammar words)."""
    tokens = tokenize(raw)
    parts = []
    for i, token in enumerate(tokens):
        is_label = (
            0 < i < len(tokens) - 1
            and tokens[i - 1].kind is Kind.REF_OPEN
            and tokens[i + 1].kind is Kind.REF_CLOSE
            and token.text.strip() in LABEL_TYPES
        )
        if token.kind is Kind.TEXT and not is_label:
            text = token.text
            if i + 1 < len(tokens) and tokens[i + 1].kind is Kind.REF_CLOSE:
                # a label whose <|ref|> is missing is a grammar word too
                head, _, last = text.rstrip().rpartition("\n")
                text = head if last.strip() in LABEL_TYPES else text
            parts.append(text)
    return " ".join(parts)


def grams(counts: Counter[str]) -> set[str]:
    """The distinct 5-character pieces of the words (shorter words whole)."""
    found = set()
    for word in counts:
        found.update(word[i : i + GRAM] for i in range(max(1, len(word) - GRAM + 1)))
    return found


def kept(text: str, markdown: str) -> tuple[int, int, int, int]:
    """Characters of the content's words and of those the Markdown keeps, every copy
    counted; then distinct 5-character pieces of the content and of those the Markdown
    keeps (what a loop cut, which keeps one copy, must never lower)."""
    have, got = words(text), words(markdown)
    total = sum(len(w) * n for w, n in have.items())
    total_kept = sum(len(w) * min(n, got[w]) for w, n in have.items())
    pieces = grams(have)
    return total, total_kept, len(pieces), len(pieces & grams(got))


def block(label: str, text: str, rng: random.Random) -> str:
    y = rng.randint(0, 900)
    return HEAD.format(label=label, a=rng.randint(0, 400), b=y, c=rng.randint(500, 999), d=y + 20) + text + "\n\n"


def distinct_list(rng: random.Random) -> tuple[str, bool]:
    items = [f"{i} [{rng.randint(0, 5)},{rng.randint(0, 5)},{rng.randint(0, 5)}]" for i in range(2, 40)]
    return block("text", ", ".join(items), rng), False


def answer_options(rng: random.Random) -> tuple[str, bool]:
    coef = [rng.randint(1, 4) for _ in range(4)]
    options = [
        f"{letter}. \\({c}\\mathrm{{CuSO}}_4 + {rng.randint(1, 9)}\\mathrm{{H}}_2\\mathrm{{O}} "
        f"\\rightarrow \\mathrm{{CuSO}}_4 \\cdot {c}\\mathrm{{H}}_2\\mathrm{{O}}\\)"
        for letter, c in zip("ABCD", coef)
    ]
    return block("text", "  \n".join(options), rng), False


def exact_loop(rng: random.Random) -> tuple[str, bool]:
    unit = "".join(rng.choice("abcdefghij klmn,") for _ in range(rng.randint(3, 30)))
    return block("text", "Intro sentence. " + unit * rng.randint(20, 80), rng), True


def math_loop(rng: random.Random) -> tuple[str, bool]:
    head = f"{rng.randint(1, 9)}. \\(0.8 = \\frac{{4}}{{5}}"
    return block("text", head + " = \\frac{16}{20}" * rng.randint(20, 60), rng), True


def row_cycle(rng: random.Random) -> tuple[str, bool]:
    rows = "".join(f"<tr><td>r{i}</td><td>{rng.randint(0, 99)}</td></tr>" for i in range(5))
    cycle = "<tr><td>a</td><td>b</td></tr><tr><td>c</td><td></td></tr>" * rng.randint(10, 40)
    return block("table", f"<table>{rows}{cycle}<tr><td>a", rng), True


def two_tables(rng: random.Random) -> tuple[str, bool]:
    one = "".join(f"<tr><td>x{i}</td><td>{i * 3}</td></tr>" for i in range(4))
    two = "".join(f"<tr><td>y{i}</td><td>{i * 7}</td></tr>" for i in range(5))
    text = f"<table>{one}</table><br><br><table>{two}</table>\n\nNote: values in tons."
    return block("table", text, rng), False


def bad_quote_cell(rng: random.Random) -> tuple[str, bool]:
    text = "<table><tr><td colspan='3\">Bname</td><td>C</td></tr><tr><td>1</td><td>2</td></tr></table>"
    return block("table", text, rng), False


def stray_tags(rng: random.Random) -> tuple[str, bool]:
    raw = block("text", "First paragraph.", rng)
    raw += "<|ref|>equation<|/ref|>[150, 533, 789, 620]]<|/det|>\n\\[ x^2 + y^2 = z^2 \\quad (3) \\]\n\n"
    raw += "equation<|/ref|><|det|>[[100, 200, 300, 400]]<|/det|>\n\\[ a = b \\]\n\n"
    return raw, False


CASES: dict[str, Callable[[random.Random], tuple[str, bool]]] = {
    "distinct list items": distinct_list,
    "similar answer options": answer_options,
    "exact loop of a unit": exact_loop,
    "loop inside inline math": math_loop,
    "cycle of table rows (open table)": row_cycle,
    "two tables and text in one block": two_tables,
    "cell with a bad quote": bad_quote_cell,
    "missing tag parts": stray_tags,
}


def measure(raw: str, repeat: int = 1) -> tuple[tuple[int, int, int, int, int], float]:
    """The counts for one raw output, and the fastest of `repeat` parse+export times."""
    seconds = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        page = parse_page(raw)
        markdown = page.to_markdown()
        seconds = min(seconds, time.perf_counter() - start)
    return (*kept(content(raw), markdown), len(_LEAK_RE.findall(markdown))), seconds


def line(name: str, counts: list[int]) -> str:
    total, got, distinct, distinct_got, leaks = counts
    return (f"{name}: content {total:6d} kept {got:6d} ({100 * got / max(total, 1):5.1f}%);"
            f" distinct pieces {distinct:5d} kept {distinct_got:5d}"
            f" ({100 * distinct_got / max(distinct, 1):5.1f}%); leaks {leaks}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-file", action="store_true", help="one line per real output")
    parser.add_argument("--samples", type=int, default=20, help="generated cases per class")
    parser.add_argument("--repeat", type=int, default=5, help="timing: fastest of N runs")
    args = parser.parse_args()

    sums = [0, 0, 0, 0, 0]
    times = []
    for path in sorted(RAW.glob("*.txt")):
        counts, seconds = measure(path.read_text(encoding="utf-8"), args.repeat)
        sums = [a + b for a, b in zip(sums, counts)]
        times.append(seconds)
        if args.per_file:
            print(line(f"{path.name[:36]:36s}", list(counts)) + f" {seconds * 1000:5.1f} ms")
    print(line(f"real outputs ({len(times)} pages)", sums))
    print(f"parse+markdown per page (fastest of {args.repeat}): "
          f"median {statistics.median(times) * 1000:.1f} ms, "
          f"max {max(times) * 1000:.1f} ms, total {sum(times):.2f} s")
    rng = random.Random(0)
    for name, make in CASES.items():
        sums = [0, 0, 0, 0, 0]
        for _ in range(args.samples):
            raw, _looping = make(rng)
            counts, _ = measure(raw)
            sums = [a + b for a, b in zip(sums, counts)]
        print(line(f"generated, {name:34s}", sums))


if __name__ == "__main__":
    main()
