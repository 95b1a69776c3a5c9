"""The real OCR models of the tests: PP-OCRv4 detection and recognition and the PP-OCR
direction classifier from the rapidocr-onnxruntime 1.4.4 wheel, imported through
`modelwire import rapidocr`; pages of known text rendered with Pillow (DejaVu for
English, WenQuanYi Micro Hei for Chinese); rapidocr itself as the reference."""

from __future__ import annotations

import io
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tomli_w
from PIL import Image, ImageDraw, ImageFont

from tests import processes
from tests.requirements import missing, need_module

__all__ = [
    "CHINESE",
    "ENGLISH",
    "character_accuracy",
    "font",
    "import_rapidocr",
    "ocr_variant",
    "page",
    "png",
    "rapidocr_lines",
]

_DATA = Path(__file__).parent / "data" / "ocr"
ENGLISH = (_DATA / "english.txt").read_text(encoding="utf-8").splitlines()
CHINESE = (_DATA / "chinese.txt").read_text(encoding="utf-8").splitlines()
_FONTS = {
    "sans": ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "fonts-dejavu-core"),
    "serif": ("/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf", "fonts-dejavu-core"),
    "mono": ("/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf", "fonts-dejavu-core"),
    "chinese": ("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc", "fonts-wqy-microhei"),
}


def import_rapidocr(repository: Path, name: str = "ocr") -> Path:
    need_module("rapidocr_onnxruntime", "rapidocr-onnxruntime 1.4.4 (the dev extra)")
    result = processes.run(
        [sys.executable, "-m", "modelwire", "import", "rapidocr", "--into", str(repository),
         "--name", name],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return repository / name


def ocr_variant(repository: Path, name: str, **ocr: Any) -> Path:
    """Another OCR pipeline over the same three models, with `ocr` changed in [ocr]."""
    source = repository / "ocr"
    target = repository / name
    target.mkdir()
    config = tomllib.loads((source / "model.toml").read_text())
    config["name"] = name
    config["ocr"].update(ocr)
    (target / "model.toml").write_text(tomli_w.dumps(config))
    (target / "characters.txt").write_bytes((source / "characters.txt").read_bytes())
    return target


def font(kind: str, size: int) -> ImageFont.FreeTypeFont:
    path, package = _FONTS[kind]
    if not Path(path).is_file():
        missing(f"the font {path} (Debian package {package})")
    return ImageFont.truetype(path, size)


def page(
    lines: Sequence[str],
    kind: str = "sans",
    size: int = 28,
    angle: float = 0.0,
    noise: float = 0.0,
    columns: int = 1,
) -> Image.Image:
    """Black text on white, a line every 2 * size pixels; `columns` side by side;
    rotated by `angle` degrees (counter-clockwise, the page grown to fit); Gaussian
    noise of standard deviation `noise` grey levels."""
    typeface = font(kind, size)
    per_column = -(-len(lines) // columns)
    width = max(int(typeface.getlength(line)) for line in lines) + 2 * size
    image = Image.new("RGB", (width * columns + size, (per_column + 1) * 2 * size), "white")
    draw = ImageDraw.Draw(image)
    for index, line in enumerate(lines):
        column, row = divmod(index, per_column)
        draw.text((size + column * width, size + row * 2 * size), line, fill="black", font=typeface)
    if angle:
        image = image.rotate(
            angle, expand=True, fillcolor="white", resample=Image.Resampling.BICUBIC
        )
    if noise:
        pixels = np.asarray(image).astype(np.float32)
        pixels += np.random.default_rng(0).normal(0, noise, pixels.shape)
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    return image


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def rapidocr_lines(data: bytes) -> list[str]:
    """What rapidocr itself reads in the picture, in its order."""
    engine = _rapidocr()
    result, _ = engine(data)
    return [text for _, text, _ in result or []]


_engine: Any = None


def _rapidocr() -> Any:
    global _engine
    if _engine is None:
        module = need_module("rapidocr_onnxruntime", "rapidocr-onnxruntime 1.4.4 (the dev extra)")
        _engine = module.RapidOCR()
    return _engine


def character_accuracy(truth: Sequence[str], read: Sequence[str]) -> float:
    """1 - the character error rate of `read` against `truth`, spaces ignored (the
    recogniser often drops them between words)."""
    jiwer = need_module("jiwer", "jiwer (the dev extra)")
    expected = "".join(truth).replace(" ", "")
    got = "".join(read).replace(" ", "")
    if not expected:
        return 1.0 if not got else 0.0
    rate: float = jiwer.cer(expected, got)
    return 1.0 - rate
