"""Reading image files: the one reader for datasets, importers and prediction, at the stored depth or as model input.

Colour and grey follow one rule everywhere: an RGB image whose three channels are equal is grey (`grey_channel`).

TIFF files (told by their content) are decoded by tifffile, all pages at once. Without the optional
``imagecodecs`` package tifffile decodes uncompressed, deflate/zlib, LZMA and PackBits data (with or without a
horizontal predictor); what it cannot decode (LZW, ZSTD, JPEG, ...) and TIFFs whose pixels are not plain grey or
RGB values (palette, min-is-white, CMYK, YCbCr) are read by Pillow's libtiff instead, page by page. Every other
format is read by Pillow, 16-bit grey (I;16) as uint16 and float (F) as float32, exactly.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageSequence, UnidentifiedImageError

from utils.errors import UserError
from utils.io.intensity import Intensity
from utils.io.memory import check_fits

LIMIT_VARIABLE = "SEGMENTATION_MAX_IMAGE_PIXELS"
if os.environ.get(LIMIT_VARIABLE, "").isdigit():
    Image.MAX_IMAGE_PIXELS = int(os.environ[LIMIT_VARIABLE])

TIFF_MAGIC = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")
# Pillow modes whose pixels have more than 8 bits, and the numpy type they are read as.
WIDE_PILLOW_MODES = {"I;16": np.uint16, "I;16L": np.uint16, "I;16B": np.uint16, "I;16N": np.uint16,
                     "I": np.int32, "F": np.float32}
# Pixel modes that carry more than 8 bits: converting them to a model input would silently clip or rescale.
WIDE_MODES = ("I", "I;16", "I;16B", "I;16L", "F")
# Photometric interpretations (TIFF tag 262) whose samples tifffile returns as the pixel values themselves.
_PLAIN_PHOTOMETRIC = (1, 2)  # min-is-black, RGB
SCALING_OPTIONS = ("--window PRESET|WIDTH,LEVEL (a fixed range, e.g. CT in HU) or --percentile LOW,HIGH "
                   "(a range from each image's own values, e.g. 0.5,99.5)")


@dataclass(frozen=True)
class TiffHeader:
    """A TIFF header read without decoding pixels: page count, sample type, and if tifffile reads it plainly."""

    pages: int
    dtype: np.dtype
    plain: bool


def too_large(path: object, error: Exception) -> UserError:
    """A UserError for an image that Pillow refuses as a possible decompression bomb."""
    limit = Image.MAX_IMAGE_PIXELS
    return UserError(f"{path}: {error.args[0].split('exceeds limit')[0].strip() if error.args else 'image'} is over "
                     f"twice Pillow's safety limit of {limit} pixels (a possible decompression bomb). If the file "
                     f"is trusted, raise the limit: {LIMIT_VARIABLE}={4 * (limit or 0)} python ...")


def grey_channel(rgb: np.ndarray) -> np.ndarray | None:
    """The one channel of an (H, W, 3) array whose three channels are equal (a grey image stored as RGB), else None."""
    if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
        return np.ascontiguousarray(rgb[..., 0])
    return None


def is_tiff(path: Path) -> bool:
    """True when the file starts with a TIFF (or BigTIFF) signature, whatever its extension."""
    try:
        with open(path, "rb") as handle:
            return handle.read(4) in TIFF_MAGIC
    except OSError:
        return False


def _tifffile():
    """The tifffile module, imported on first use (only TIFF reading needs it)."""
    try:
        import tifffile
    except ImportError:
        raise UserError("reading TIFF stacks needs the 'tifffile' package: pip install tifffile") from None
    return tifffile


def _samples_last(shape: tuple[int, ...], axes: str) -> tuple[list[int], str]:
    """The axis order that puts tifffile's samples axis S (if any) last."""
    order = [i for i, axis in enumerate(axes) if axis != "S"] + [i for i, axis in enumerate(axes) if axis == "S"]
    return order, "".join(axes[i] for i in order)


def _page_count(shape: tuple[int, ...], axes: str) -> int:
    """Pages in a tifffile shape: everything before the final YX or YXS axes."""
    order, axes = _samples_last(shape, axes)
    tail = 3 if axes.endswith("YXS") else 2
    if not axes[:len(axes) - (tail - 2)].endswith("YX"):
        raise UserError(f"unexpected TIFF axes {axes}")
    return math.prod(shape[i] for i in order[:-tail])


def _as_pages(data: np.ndarray, axes: str) -> np.ndarray:
    """A tifffile array as (pages, H, W[, C])."""
    count = _page_count(data.shape, axes)
    order, axes = _samples_last(data.shape, axes)
    data = np.transpose(data, order)
    return data.reshape((count, *data.shape[len(data.shape) - (3 if axes.endswith("YXS") else 2):]))


def tiff_header(path: Path) -> TiffHeader | None:
    """What a TIFF file's header says (pages, sample type, plain pixels), or None when the file is not a TIFF."""
    if not is_tiff(path):
        return None
    try:
        with _tifffile().TiffFile(path) as tif:
            first = tif.pages[0]
            if len(tif.series) == 1:
                series = tif.series[0]
                pages, dtype = _page_count(tuple(series.shape), series.axes), np.dtype(series.dtype)
            else:
                pages, dtype = len(tif.pages), np.dtype(first.dtype)
            return TiffHeader(pages, dtype, int(first.photometric) in _PLAIN_PHOTOMETRIC)
    except UserError as err:
        raise UserError(f"cannot read {path}: {err}") from None
    except Exception as err:  # tifffile raises many kinds on a damaged header
        raise UserError(f"cannot read {path} as a TIFF: {err}") from None


def _pillow_array(image: Image.Image, source: str) -> np.ndarray:
    """A decoded Pillow image as an array: wide modes exact, palettes as colours, 1-bit as bool."""
    if image.mode in WIDE_PILLOW_MODES:
        return np.asarray(image).astype(WIDE_PILLOW_MODES[image.mode])
    if image.mode in ("L", "LA", "RGB", "RGBA", "1"):
        return np.asarray(image)
    if image.mode in ("P", "PA"):
        return np.asarray(image.convert("RGBA" if image.mode == "PA" or "transparency" in image.info else "RGB"))
    try:
        return np.asarray(image.convert("RGB"))
    except (ValueError, OSError) as err:
        raise UserError(f"cannot read {source}: mode {image.mode} ({err})") from None


def _truncated_by_pillow(image: Image.Image) -> bool:
    """True for 16-bit colour (or grey + alpha) data that Pillow would decode to 8 bits (e.g. RGB;16B PNG)."""
    for tile in image.tile or ():
        args = tile[3]
        rawmode = args if isinstance(args, str) else (args or ("",))[0]
        if isinstance(rawmode, str) and ";16" in rawmode and image.mode not in WIDE_PILLOW_MODES:
            return True
    return False


def open_pillow(path: Path) -> Image.Image:
    """Open (without decoding) an image with Pillow; unreadable files are a UserError naming the file."""
    try:
        return Image.open(path)
    except FileNotFoundError:
        raise UserError(f"missing file {path}") from None
    except Image.DecompressionBombError as err:
        raise too_large(path, err) from None
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise UserError(f"{path}: cannot read image ({err})") from None


def _check_pillow_memory(image: Image.Image, path: Path, pages: int = 1) -> None:
    """Refuse an image whose decoded pages would not fit in memory, judged from its header."""
    width, height = image.size
    bands = len(image.getbands())
    sample = 4 if image.mode in ("I", "F") else 2 if image.mode.startswith("I;16") else 1
    pages_text = f"{pages} pages of " if pages > 1 else ""
    # A grey image becomes three channels for a colour model, so three at least.
    check_fits(pages * width * height * max(bands, 3) * sample, str(path),
               f"{pages_text}{width}x{height} pixels x {bands} channel(s)")


def _pillow_pages(path: Path, first_only: bool = False) -> np.ndarray:
    """Every page (or the first) of a file decoded by Pillow, as (pages, H, W[, C])."""
    image = open_pillow(path)
    try:
        with image:
            _check_pillow_memory(image, path, 1 if first_only else getattr(image, "n_frames", 1))
            if _truncated_by_pillow(image):
                raise UserError(f"cannot read {path}: 16-bit colour data (mode {image.mode}) that Pillow decodes "
                                f"only to 8 bits; save it as a 16-bit TIFF")
            frames = [image] if first_only else ImageSequence.Iterator(image)
            pages = [_pillow_array(page, str(path)) for page in frames]
    except UserError:
        raise
    except (OSError, ValueError, SyntaxError) as err:
        raise UserError(f"cannot read {path}: {err}") from None
    return _stack(pages, path)


def _stack(pages: list[np.ndarray], path: Path) -> np.ndarray:
    """Pages of one size and type as one array; anything else is a UserError."""
    if len({(page.shape, page.dtype) for page in pages}) != 1:
        sizes = sorted({f"{page.shape[1]}x{page.shape[0]} {page.dtype}" for page in pages})
        raise UserError(f"cannot read {path} as one stack: its pages differ ({', '.join(sizes)})")
    return np.stack(pages)


def _tiff_pages(path: Path) -> np.ndarray | None:
    """Every page of a plain TIFF decoded by tifffile; None for pixels that are not plain grey/RGB values."""
    with _tifffile().TiffFile(path) as tif:
        if int(tif.pages[0].photometric) not in _PLAIN_PHOTOMETRIC:
            return None
        shape = tif.series[0].shape if len(tif.series) == 1 else (len(tif.pages), *tif.pages[0].shape)
        check_fits(math.prod(shape) * np.dtype(tif.pages[0].dtype).itemsize, str(path),
                   f"pixels of shape {'x'.join(map(str, shape))}")
        if len(tif.series) == 1:
            return _as_pages(tif.series[0].asarray(), tif.series[0].axes)
        # Pages of different sizes or types make several series: one stack only if they agree after all.
        return _stack([_as_pages(page.asarray(), page.axes)[0] for page in tif.pages], path)


def read_pages(path: Path) -> np.ndarray:
    """Decoded pixels of every page at their stored depth, always as (pages, H, W[, C]); one page for non-TIFF."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"missing file {path}")
    if not is_tiff(path):
        data = _pillow_pages(path, first_only=True)
    else:
        try:
            data = _tiff_pages(path)
        except UserError:
            raise
        except Exception as err:  # a codec tifffile lacks without imagecodecs (LZW, ZSTD, ...): Pillow's libtiff
            try:
                data = _pillow_pages(path)
            except UserError as pillow_err:
                raise UserError(f"{pillow_err} (tifffile: {err})") from None
        if data is None:
            data = _pillow_pages(path)
    return data.astype(data.dtype.newbyteorder("="), copy=False)


def read_array(path: Path) -> np.ndarray:
    """Decoded pixels of an image file at their stored depth: (H, W), (H, W, C), or (pages, H, W[, C]) for a
    multi-page TIFF."""
    pages = read_pages(path)
    return pages[0] if len(pages) == 1 else pages


def is_wide(array: np.ndarray) -> bool:
    """True for pixels of more than 8 bits: any dtype other than uint8 or bool."""
    return array.dtype not in (np.uint8, np.bool_)


def file_is_wide(path: Path) -> bool:
    """True when the file stores more than 8 bits per sample (read from its header; unreadable files: False)."""
    path = Path(path)
    try:
        header = tiff_header(path)
        if header is not None:
            return header.dtype not in (np.uint8, np.bool_)
        with Image.open(path) as image:
            return image.mode in WIDE_PILLOW_MODES or _truncated_by_pillow(image)
    except (UserError, OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
        return False  # reading the pixels reports the problem


def to_uint8(array: np.ndarray, intensity: Intensity | None, source: str) -> np.ndarray:
    """uint8 pixels: 8-bit data as it is; wider data scaled by `intensity` (a UserError naming --window/--percentile
    when None)."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * np.uint8(255)
    if array.dtype.kind not in "iuf":
        raise UserError(f"{source}: {array.dtype} pixels cannot be shown as an image")
    if intensity is None:
        raise UserError(f"{source}: {array.dtype} pixels (more than 8 bits); choose how they become 8-bit "
                        f"with {SCALING_OPTIONS}")
    return intensity.apply(array, source)


def array_to_image(array: np.ndarray, source: str) -> Image.Image:
    """A Pillow image of one page: uint8 as L/LA/RGB/RGBA, bool as 1, uint16 as I;16, other ints as I, float as F."""
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 2:
        if array.dtype in (np.uint8, np.bool_, np.uint16):
            return Image.fromarray(np.ascontiguousarray(array))
        if array.dtype.kind in "iu" and (array.size == 0 or (array.min() >= -2**31 and array.max() < 2**31)):
            return Image.fromarray(array.astype(np.int32))
        if array.dtype.kind == "f":
            return Image.fromarray(array.astype(np.float32))
    elif array.ndim == 3 and array.shape[2] in (2, 3, 4) and array.dtype == np.uint8:
        return Image.fromarray(np.ascontiguousarray(array))  # LA, RGB or RGBA by the channel count
    raise UserError(f"{source}: {array.dtype} pixels of shape {'x'.join(map(str, array.shape))} "
                    f"cannot be used without scaling them to 8 bits")


def load_model_input(path: Path, in_channels: int, intensity: Intensity | None) -> np.ndarray:
    """The H x W x in_channels uint8 array for inference: wide images scaled by `intensity`, others as the loader
    reads them (image_to_array)."""
    path = Path(path)
    if not file_is_wide(path):
        return image_to_array(open_image(path), in_channels, path)
    pages = read_pages(path)
    if len(pages) > 1:
        raise UserError(f"{path}: a stack of {len(pages)} pages; predict one image at a time, or import the "
                        f"stack with 'python import_dataset.py pairs ... --window/--percentile' (one image per page)")
    return array_model_input(pages[0], in_channels, intensity, str(path))


def array_model_input(array: np.ndarray, in_channels: int, intensity: Intensity | None,
                      source: str = "image") -> np.ndarray:
    """An image array (H x W or H x W x C; uint8, or wider scaled by `intensity`) as the H x W x in_channels uint8
    model input, prepared exactly as load_model_input prepares the same pixels read from a file."""
    array = np.asarray(array)
    if array.ndim not in (2, 3) or 0 in array.shape[:2]:
        raise UserError(f"{source}: an image must be H x W or H x W x C pixels, got shape {array.shape}")
    return image_to_array(array_to_image(to_uint8(array, intensity, source), source), in_channels, Path(source))


def image_to_array(image: Image.Image, in_channels: int, path: Path) -> np.ndarray:
    """H x W x in_channels uint8 array; grey is replicated to RGB, colour is refused for 1-channel models."""
    if image.mode in WIDE_MODES:
        raise UserError(f"{path}: {image.mode} image (more than 8 bits per pixel); import it scaled to 8 bits with "
                        f"'python import_dataset.py pairs IMAGES MASKS --out DATASET ... --window PRESET|WIDTH,LEVEL' "
                        f"or '... --percentile LOW,HIGH'")
    if in_channels == 3:
        return np.asarray(image.convert("RGB"))
    if image.mode in ("L", "1", "LA"):
        return np.asarray(image.convert("L"))[:, :, None]
    grey = grey_channel(np.asarray(image.convert("RGB")))
    if grey is None:
        raise UserError(f"{path}: colour image, but the model takes 1 (grey) channel; convert the image to grey, "
                        f"or use a model trained with --in-channels 3")
    return grey[:, :, None]


def open_image(path: Path, page: int | None = None) -> Image.Image:
    """Open and fully decode an image (or one page of a multi-page file) whatever its extension says;
    unreadable, empty or truncated files and missing pages raise a UserError naming the file."""
    path = Path(path)
    if path.is_file() and path.stat().st_size == 0:
        raise UserError(f"{path}: empty file (0 bytes)")
    image = open_pillow(path)  # missing, unidentified and too-large files are reported there
    try:
        with image:
            _check_pillow_memory(image, path)
            if page is not None:
                return ImageSequence.Iterator(image)[page].copy()
            image.load()
            return image
    except (OSError, ValueError, IndexError) as exc:  # truncated or corrupt pixel data, a missing page
        where = f"{path} (page {page})" if page is not None else str(path)
        raise UserError(f"{where}: cannot read image ({exc})") from None
