"""The offline "embedded digits": real handwriting from scikit-learn and SVHN-like rendered digits.

Nothing is downloaded, and every random draw comes from a seeded generator, so the data are the
same on every machine with the same library versions (FreeType rasterisation could differ by a
grey level across Pillow builds). The parameters are the ones a prototype measured to give
learnable, SVHN-like data (measured by the classifiers' test accuracy, 0.97–0.98).

- ``hand``: ``load_digits`` (1,797 8×8 images, 0..16) resized bicubically to 20×20, clamped to
  [0,1] and padded to 1×28×28 like MNIST's 20×20 box in a 28×28 frame; split 80/20 stratified by
  source image with a fixed seed (1,437 / 360).
- ``street``: 3×32×32 crops of digits rendered in matplotlib's bundled fonts, with SVHN's nuisances
  (size, rotation, shift, neighbouring digits, blur, gradient, noise) and a biased colour scheme:
  mostly light text on a darker, muted background with brightness contrast ≥ 0.3. With text and
  background drawn alike, the class-average image is flat grey and hand→street generation stays
  at chance (§6).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt
from torch import Tensor

from mgmvae.data.cdcb import make_cdcb
from mgmvae.data.dataset import Dataset
from mgmvae.data.paired import SPLITS, DataError, PairedData
from mgmvae.data.pairing import class_matched_pairs, derive_seed
from mgmvae.params import IMPLICIT

HAND_SPLIT_SEED = 0  # fixed: the hand split must not move with the experiment seed
HAND_TEST_FRACTION = 0.2
STREET_SIZE = 32
STREET_STREAM, PAIRS_STREAM, CDCB_STREAM = 0, 1, 2  # derive_seed keys: one random stream per purpose
RENDER_SCALE = 4  # render at 128×128, then box-downsample: antialiased strokes like a camera's

# Bundled fonts whose digits render as ordinary lining figures (the families DejaVu except *Display,
# STIXGeneral, cmr/cmb/cmss/cmtt/cmti). Display/NonUni/Siz*/LastResort are
# empty or symbols; cmmi10 has old-style figures; cmex10/cmsy10 are symbol fonts.
STREET_FONTS = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSans-BoldOblique.ttf",
    "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf", "DejaVuSansMono-Oblique.ttf",
    "DejaVuSansMono-BoldOblique.ttf", "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf", "DejaVuSerif-BoldItalic.ttf", "STIXGeneral.ttf", "STIXGeneralBol.ttf",
    "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf", "cmr10.ttf", "cmb10.ttf", "cmss10.ttf",
    "cmtt10.ttf", "cmti10.ttf",
)  # fmt: skip

# Street nuisance ranges, as fractions of the 32-pixel crop where relevant.
DIGIT_HEIGHT = (0.55, 0.80)
ROTATION_DEG = 10.0
SHIFT = 0.06
NEIGHBOUR_P = 0.7  # probability of a partial neighbouring digit, per side
NEIGHBOUR_GAP = (0.0, 0.25)  # gap between digits, in digit heights
BLUR_PX = (0.3, 1.0)  # Gaussian blur radius in output pixels
GRADIENT = 0.15  # background brightness change across the crop, at most
NOISE = 0.05  # per-pixel Gaussian noise std, at most
LIGHT_TEXT_P = 0.8
MIN_CONTRAST = 0.3
MAX_CHROMA = 0.35  # colour offset from grey: muted, as street signs look in SVHN


# ----------------------------------------------------------------------------- hand
def hand_digits() -> tuple[Tensor, Tensor]:
    """All 1,797 scikit-learn digits as (uint8 [N,1,28,28], int64 [N])."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.from_numpy(digits.images).float().div(16.0).unsqueeze(1)
    x = F.interpolate(x, size=(20, 20), mode="bicubic", align_corners=False).clamp(0.0, 1.0)
    x = F.pad(x, (4, 4, 4, 4))
    images = x.mul(255.0).round().to(torch.uint8)
    return images, torch.from_numpy(digits.target.astype(np.int64))


def hand_split(labels: Tensor) -> dict[str, Tensor]:
    """Sorted source-image indices of the stratified 80/20 train/test split (1,437 / 360)."""
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(
        np.arange(len(labels)), test_size=HAND_TEST_FRACTION, stratify=labels.numpy(), random_state=HAND_SPLIT_SEED
    )
    return {"train": torch.from_numpy(np.sort(train)), "test": torch.from_numpy(np.sort(test))}


# --------------------------------------------------------------------------- street
def font_paths() -> list[Path]:
    import matplotlib

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    paths = [folder / name for name in STREET_FONTS]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise DataError(f"matplotlib's bundled fonts are missing: {missing}; reinstall matplotlib")
    return paths


@lru_cache(maxsize=4096)
def _font(index: int, size: int):
    from PIL import ImageFont

    return ImageFont.truetype(str(font_paths()[index]), size)


@lru_cache(maxsize=64)
def _digit_height_per_size(index: int) -> float:
    """Mean ink height of the ten digits per unit of font size, to size glyphs by their height."""
    font = _font(index, 100)
    return float(np.mean([font.getbbox(str(d))[3] - font.getbbox(str(d))[1] for d in range(10)])) / 100


def draw_street_params(labels: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Every random choice for len(labels) street images, drawn up front in one vectorised pass."""
    n = len(labels)

    def u(lo: float, hi: float, shape: tuple[int, ...] = (n,)) -> np.ndarray:
        return rng.uniform(lo, hi, shape)

    light = rng.random(n) < LIGHT_TEXT_P
    text_grey = np.where(light, u(0.6, 0.95), u(0.05, 0.4))
    # Background brightness at least MIN_CONTRAST away from the text, on the far side of it.
    reach = np.where(light, text_grey - MIN_CONTRAST, 1.0 - MIN_CONTRAST - text_grey)
    offset = MIN_CONTRAST + rng.random(n) * np.maximum(reach - 0.05, 0.0)
    back_grey = np.where(light, text_grey - offset, text_grey + offset)
    return {
        "label": labels,
        "font": rng.integers(0, len(STREET_FONTS), n),
        "height": u(*DIGIT_HEIGHT),
        "angle": u(-ROTATION_DEG, ROTATION_DEG),
        "shift": u(-SHIFT, SHIFT, (n, 2)),
        "neighbours": rng.random((n, 2)) < NEIGHBOUR_P,
        "neighbour_digits": rng.integers(0, 10, (n, 2)),
        "gap": u(*NEIGHBOUR_GAP, (n, 2)),
        "blur": u(*BLUR_PX),
        "text": _muted(text_grey, rng),
        "back": _muted(back_grey, rng),
        "gradient": u(0.0, GRADIENT),
        "gradient_angle": u(0.0, 2 * np.pi),
        "noise": u(0.0, NOISE)[:, None, None, None]
        * rng.standard_normal((n, 3, STREET_SIZE, STREET_SIZE), dtype=np.float32),
    }


def _muted(grey: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """RGB colours [n,3] with mean exactly ``grey``: grey plus a small zero-mean chroma offset."""
    chroma = rng.uniform(-1.0, 1.0, (len(grey), 3))
    chroma -= chroma.mean(axis=1, keepdims=True)
    room = np.minimum(grey, 1.0 - grey) / np.abs(chroma).max(axis=1).clip(min=1e-6)
    scale = np.minimum(rng.uniform(0.0, MAX_CHROMA, len(grey)), room)  # never clips: mean stays grey
    return grey[:, None] + chroma * scale[:, None]


def render_ink(p: dict[str, np.ndarray], i: int) -> np.ndarray:
    """Ink coverage [32,32] in [0,1] of street image ``i``: digit, neighbours, rotation, blur."""
    from PIL import Image, ImageDraw, ImageFilter

    side = STREET_SIZE * RENDER_SCALE
    font_index = int(p["font"][i])
    height = p["height"][i] * side
    font = _font(font_index, max(8, int(round(height / _digit_height_per_size(font_index)))))
    canvas = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(canvas)
    cx, cy = side * (0.5 + p["shift"][i])
    left, right = _place(draw, font, str(p["label"][i]), cx, cy)
    for k, direction in enumerate((-1, 1)):
        if p["neighbours"][i, k]:
            gap = p["gap"][i, k] * height
            edge = left - gap if direction < 0 else right + gap
            _place(draw, font, str(p["neighbour_digits"][i, k]), edge, cy, align=direction)
    canvas = canvas.rotate(float(p["angle"][i]), Image.Resampling.BICUBIC, center=(side / 2, side / 2))
    canvas = canvas.filter(ImageFilter.GaussianBlur(float(p["blur"][i]) * RENDER_SCALE))
    small = canvas.resize((STREET_SIZE, STREET_SIZE), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32) / 255.0


def _place(draw, font, text: str, x: float, cy: float, align: int = 0) -> tuple[float, float]:
    """Draw ``text`` with its ink box centred vertically on cy; horizontally centred on x
    (align 0), ending at x (align −1) or starting at x (align +1). Returns the ink's left/right."""
    x0, y0, x1, y1 = font.getbbox(text)
    width = x1 - x0
    left = x - width / 2 if align == 0 else (x - width if align < 0 else x)
    draw.text((left - x0, cy - (y0 + y1) / 2), text, font=font, fill=255)
    return left, left + width


def colour_street(ink: np.ndarray, p: dict[str, np.ndarray]) -> np.ndarray:
    """Vectorised colouring: a lighting ramp over background and text, blended by ink, plus noise.

    ``ink`` [N,32,32] in [0,1] -> uint8 [N,3,32,32].
    """
    coords = (np.arange(STREET_SIZE) + 0.5) / STREET_SIZE - 0.5
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    angle = p["gradient_angle"][:, None, None]
    ramp = (p["gradient"][:, None, None] * (np.cos(angle) * xx + np.sin(angle) * yy))[:, None]  # [N,1,H,W]
    back, text, alpha = p["back"][:, :, None, None] + ramp, p["text"][:, :, None, None] + ramp, ink[:, None]
    image = (1.0 - alpha) * back + alpha * text + p["noise"]
    return np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)


def street_digits(per_class: int, seed: int, progress: bool = True) -> tuple[Tensor, Tensor]:
    """``per_class`` street images of each digit as (uint8 [10·per_class,3,32,32], int64 labels).

    Labels cycle 0..9 so any prefix is class-balanced. Train and test use different ``seed``s
    (independent generator streams), hence disjoint random draws.
    """
    from tqdm.auto import tqdm

    rng = np.random.default_rng(seed)
    labels = np.tile(np.arange(10), per_class)
    params = draw_street_params(labels, rng)
    show = progress and len(labels) >= 2000  # ~2 ms an image: a bar only beyond a few seconds
    steps = tqdm(range(len(labels)), desc="street digits", disable=not show)
    ink = np.stack([render_ink(params, i) for i in steps])
    images = colour_street(ink, params)
    return torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))


# -------------------------------------------------------------------------- datasets
class DigitsStreet(Dataset):
    """Hand ↔ street pairs by MMVAE's class-matched rule (as MNIST-SVHN: iffsid/mmvae, bin/make-mnist-svhn-idx.py)."""

    name = "digits_street"
    modalities = ("hand", "street")
    shapes = {"hand": (1, 28, 28), "street": (3, STREET_SIZE, STREET_SIZE)}

    class Params(Dataset.Params):
        pairings: PositiveInt = 20  # as MNIST-SVHN's
        # 300 street images a class: the pairing uses ~150 (hand has ~144 a class), the rest help the
        # street classifier.
        street_per_class_train: PositiveInt = 300
        street_per_class_test: PositiveInt = 100
        max_per_class: PositiveInt = Field(10_000, json_schema_extra=IMPLICIT)  # caps nothing here

    def build(self, name: str, seed: int, data_dir: Path, download: bool) -> PairedData:
        hand, hand_labels = hand_digits()
        split = hand_split(hand_labels)
        p = self.params
        per_class = {"train": p["street_per_class_train"], "test": p["street_per_class_test"]}
        # Independent streams per (purpose, split): test draws never repeat train's.
        splits = {}
        for k, s in enumerate(SPLITS):
            street, street_labels = street_digits(per_class[s], derive_seed(seed, STREET_STREAM, k))
            labels = {"hand": hand_labels[split[s]], "street": street_labels}
            pairs = class_matched_pairs(
                labels["hand"], street_labels, p["pairings"], p["max_per_class"], derive_seed(seed, PAIRS_STREAM, k)
            )
            splits[s] = {"hand": hand[split[s]], "street": street}, labels, pairs
        meta = {**p, "hand_split_seed": HAND_SPLIT_SEED, "street_fonts": list(STREET_FONTS)}
        return self.paired(name, seed, splits, meta)


class DigitsCdcb(Dataset):
    """CD ↔ CB from the hand digits at 3×32×32; split by source image, so no digit is in both."""

    name = "digits_cdcb"
    modalities = ("cd", "cb")
    shapes = {"cd": (3, STREET_SIZE, STREET_SIZE), "cb": (3, STREET_SIZE, STREET_SIZE)}

    class Params(Dataset.Params):
        colourings: PositiveInt = 10  # colour draws per hand digit

    def build(self, name: str, seed: int, data_dir: Path, download: bool) -> PairedData:
        hand, hand_labels = hand_digits()
        split = hand_split(hand_labels)
        splits = {}
        for k, s in enumerate(SPLITS):
            seed_k = derive_seed(seed, CDCB_STREAM, k)
            cd, cb, source = make_cdcb(hand[split[s]], self.params["colourings"], seed_k, size=STREET_SIZE)
            labels = hand_labels[split[s]][source]
            splits[s] = {"cd": cd, "cb": cb}, {"cd": labels, "cb": labels}, self.identity_pairs(len(cd))
        meta = {**self.params, "size": STREET_SIZE, "hand_split_seed": HAND_SPLIT_SEED}
        return self.paired(name, seed, splits, meta)
