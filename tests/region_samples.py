"""A synthetic, labelled set of figure crops for measuring the region router.

Charts (bar, line, pie, scatter) and diagrams are drawn with PIL, chemical structures with
RDKit, photos are smooth random colour fields with noise and texture, "other" is text set as
an image and box-and-arrow diagrams. Deterministic for a seed.
"""

from __future__ import annotations

import math
import random

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SMILES = [
    "c1ccccc1O", "CC(=O)Oc1ccccc1C(=O)O", "CN1C=NC2=C1C(=O)N(C(=O)N2C)C", "C1CCCCC1",
    "c1ccc2ccccc2c1", "CC(C)Cc1ccc(cc1)C(C)C(=O)O", "OC(=O)C1=CC=CC=C1", "C1=CC=C(C=C1)N",
    "CCN(CC)CC", "O=C1NC(=O)C(N1)(c1ccccc1)c1ccccc1", "c1ccncc1", "CC1=CC(=O)C=CC1=O",
    "C1CC2CCC1C2", "NC(Cc1ccccc1)C(=O)O", "c1ccc(cc1)-c1ccccc1", "OCC(O)CO",
]
PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (23, 190, 207)]


def make_samples(seed: int = 0, per_kind: int = 16) -> list[tuple[str, Image.Image]]:
    rng = random.Random(seed)
    samples = []
    makers = {"chart": [_bar, _line, _pie, _scatter], "photo": [_photo],
              "chemistry": [_molecule], "other": [_text, _diagram]}
    for kind, options in makers.items():
        for i in range(per_kind):
            samples.append((kind, options[i % len(options)](rng, i)))
    return samples


def _canvas(rng: random.Random) -> tuple[Image.Image, ImageDraw.ImageDraw, int, int]:
    w, h = rng.randint(360, 720), rng.randint(260, 520)
    image = Image.new("RGB", (w, h), "white")
    return image, ImageDraw.Draw(image), w, h


def _axes(draw: ImageDraw.ImageDraw, w: int, h: int) -> tuple[int, int, int, int]:
    left, bottom, right, top = int(w * 0.12), int(h * 0.85), int(w * 0.95), int(h * 0.08)
    draw.line([(left, top), (left, bottom), (right, bottom)], fill="black", width=2)
    for k in range(5):
        y = bottom - (bottom - top) * k // 5
        draw.line([(left - 5, y), (left, y)], fill="black")
        draw.text((4, y - 6), str(k * 20), fill="black")
    return left, bottom, right, top


def _bar(rng: random.Random, i: int) -> Image.Image:
    image, draw, w, h = _canvas(rng)
    left, bottom, right, top = _axes(draw, w, h)
    n = rng.randint(3, 8)
    step = (right - left) / n
    for k in range(n):
        value = rng.uniform(0.1, 1.0)
        colour = PALETTE[(k if i % 2 else 0) % len(PALETTE)]
        x0 = left + k * step + step * 0.2
        draw.rectangle([x0, bottom - (bottom - top) * value, x0 + step * 0.6, bottom], fill=colour)
        draw.text((x0, bottom + 4), f"Q{k + 1}", fill="black")
    return image


def _line(rng: random.Random, i: int) -> Image.Image:
    image, draw, w, h = _canvas(rng)
    left, bottom, right, top = _axes(draw, w, h)
    for s in range(rng.randint(1, 3)):
        points = [(left + (right - left) * k / 9, bottom - (bottom - top) * rng.uniform(0.1, 0.9))
                  for k in range(10)]
        draw.line(points, fill=PALETTE[s], width=3)
    return image


def _pie(rng: random.Random, i: int) -> Image.Image:
    image, draw, w, h = _canvas(rng)
    r = min(w, h) * 0.4
    cx, cy = w / 2, h / 2
    start = 0.0
    shares = [rng.uniform(1, 5) for _ in range(rng.randint(3, 6))]
    for k, share in enumerate(shares):
        end = start + 360 * share / sum(shares)
        draw.pieslice([cx - r, cy - r, cx + r, cy + r], start, end, fill=PALETTE[k])
        start = end
    return image


def _scatter(rng: random.Random, i: int) -> Image.Image:
    image, draw, w, h = _canvas(rng)
    left, bottom, right, top = _axes(draw, w, h)
    for _ in range(60):
        x, y = rng.uniform(left + 5, right), rng.uniform(top, bottom - 5)
        draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=PALETTE[rng.randint(0, 2)])
    return image


def _photo(rng: random.Random, i: int) -> Image.Image:
    w, h = rng.randint(300, 600), rng.randint(240, 480)
    np_rng = np.random.default_rng(rng.randint(0, 10**6))
    coarse = np_rng.uniform(0, 255, size=(6, 8, 3)).astype(np.uint8)
    base = Image.fromarray(coarse).resize((w, h), Image.BICUBIC)
    noise = np_rng.normal(0, 12, size=(h, w, 3))
    pixels = np.clip(np.asarray(base, dtype=np.float32) + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(0.6))


def _molecule(rng: random.Random, i: int) -> Image.Image:
    from rdkit import Chem
    from rdkit.Chem import Draw

    size = rng.randint(260, 420)
    return Draw.MolToImage(Chem.MolFromSmiles(SMILES[i % len(SMILES)]), size=(size, size))


def _text(rng: random.Random, i: int) -> Image.Image:
    image, draw, w, h = _canvas(rng)
    words = "the quick brown fox jumps over the lazy dog revenue grew in the third quarter".split()
    y = 10
    while y < h - 20:
        draw.text((10, y), " ".join(rng.choice(words) for _ in range(rng.randint(6, 12))),
                  fill="black")
        y += 16
    return image


def _diagram(rng: random.Random, i: int) -> Image.Image:
    image, draw, w, h = _canvas(rng)
    boxes = []
    for k in range(rng.randint(3, 5)):
        x, y = rng.randint(10, w - 130), rng.randint(10, h - 60)
        draw.rectangle([x, y, x + 110, y + 40], outline="black", width=2)
        draw.text((x + 8, y + 14), f"step {k + 1}", fill="black")
        boxes.append((x + 55, y + 20))
    for a, b in zip(boxes, boxes[1:]):
        draw.line([a, b], fill="black", width=1)
        angle = math.atan2(b[1] - a[1], b[0] - a[0])
        draw.line([b, (b[0] - 8 * math.cos(angle - 0.4), b[1] - 8 * math.sin(angle - 0.4))],
                  fill="black")
    return image
