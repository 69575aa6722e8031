"""Decode an image file, URL or its bytes into an ``H x W x 3`` RGB ``uint8`` array.

Pillow and numpy are imported on the first call, not with the module, so that
``import headrace.vision`` stays cheap in processes that never decode.
"""

from __future__ import annotations

import io
import os
from typing import IO, TYPE_CHECKING, Any, Final, NamedTuple, TypeAlias

from headrace.errors import DecodeError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    from PIL import Image

__all__ = ["DEFAULT_MAX_PIXELS", "ImageSource", "decode"]

#: Pillow's own default for ``Image.MAX_IMAGE_PIXELS``: about a quarter of a gigabyte
#: of 24-bit pixels, far above any training image and far below a decompression bomb.
DEFAULT_MAX_PIXELS: Final = 89_478_485

#: What :func:`decode` reads: a path, or the encoded bytes (a WebDataset sample's).
ImageSource: TypeAlias = "str | os.PathLike[str] | bytes | bytearray | memoryview"

_EXIF_ORIENTATION: Final = 0x0112
# EXIF orientations 5 to 8 swap width and height, so a draft request made before the
# rotation must ask for the transposed size.
_TRANSPOSING_ORIENTATIONS: Final = frozenset({5, 6, 7, 8})
_SIXTEEN_BIT_MODES: Final = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})


def decode(
    source: ImageSource,
    *,
    size: tuple[int, int] | None = None,
    resize: int | tuple[int, int] | None = None,
    interpolation: str = "bilinear",
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> npt.NDArray[np.uint8]:
    """Decode ``source`` into a new, writable ``(height, width, 3)`` RGB ``uint8`` array.

    >>> import io
    >>> from PIL import Image
    >>> png = io.BytesIO()
    >>> Image.new("L", (4, 2), color=200).save(png, format="PNG")
    >>> array = decode(png.getvalue())
    >>> array.shape, array.dtype, array[0, 0].tolist()
    ((2, 4, 3), dtype('uint8'), [200, 200, 200])

    Every mode Pillow reads becomes RGB: palette and grey images are expanded, an
    alpha channel is dropped (the stored colour of transparent pixels is kept, as
    ``Image.convert("RGB")`` does; compositing over a background is a transform's
    choice, not the decoder's), CMYK is converted, 16-bit images keep their top 8
    bits (``>> 8``) instead of being clipped, an EXIF orientation is applied, and an
    animated image gives its first frame.

    ``resize=`` decodes and resizes in one step, the fastest way to a training
    image: the result has the shape of ``resize(decode(source), resize)``, and equals
    ``resize(decode(source, size=...), shape)`` (a JPEG is decoded in draft mode
    first when it is much larger), but the full-size picture never becomes an array
    (copying it out of Pillow and back costs about a tenth of the work and holds the
    GIL, so threads scale worse).

    >>> decode(png.getvalue(), resize=(1, 2)).shape, decode(png.getvalue(), resize=1).shape
    ((1, 2, 3), (1, 2, 3))

    Args:
        source: a path, an fsspec URL (``s3://``, ``https://``: what
            :func:`headrace.image_folder` lists from remote storage), or the encoded
            bytes of one image.
        size: ``(height, width)``, the smallest size the caller will resize to. A JPEG
            much larger than that is decoded by libjpeg at 1/2, 1/4 or 1/8 scale (its
            draft mode), which is several times faster; the result is still at least
            ``size`` in each dimension (unless the image itself is smaller). Other
            formats ignore it. ``None`` decodes at full size, or at what ``resize``
            needs.
        resize: resize the decoded image to this ``(height, width)``, or make its
            shorter side this long, as :func:`headrace.vision.resize` does.
        interpolation: the filter for ``resize``, one of
            :data:`headrace.vision.INTERPOLATIONS`.
        max_pixels: the most pixels (width times height, read from the header before
            any pixel is decoded) an image may have; ``None`` for no limit. Pillow's
            own check at ``Image.MAX_IMAGE_PIXELS`` still runs inside ``Image.open``:
            headrace leaves that global alone, so a limit above it needs it raised too.

    Returns:
        A new array that the caller owns.

    Raises:
        DecodeError: the data is not an image Pillow can read, is empty or truncated,
            is in a format or variant Pillow does not implement (whatever Pillow
            raised: the message names its type), or has more than ``max_pixels``
            pixels; the message names the source (its path, or ``<bytes>``) and the
            reason. A ``MemoryError`` stays one, with a note naming the source.
        FileNotFoundError: and the other ``OSError`` of opening a path, as they are.
        ValueError: ``size`` or ``max_pixels`` is not positive.
        TypeError: ``source`` is neither a path nor bytes.
    """
    _check_arguments(size, max_pixels)
    request = _Request(size, None, None, max_pixels)
    if resize is not None:
        from headrace.vision.transforms import check_size, pillow_filter

        target = check_size("decode", "resize", resize, shorter=True)
        draft = size or ((target, target) if isinstance(target, int) else target)
        request = _Request(draft, target, pillow_filter("decode", interpolation), max_pixels)
    given: object = source  # typed callers cannot pass anything else; others can
    if isinstance(given, bytes | bytearray | memoryview):
        with io.BytesIO(given) as stream:
            return _decode_stream(stream, "<bytes>", request)
    if not isinstance(given, str | os.PathLike):
        msg = f"source must be a path or bytes, not {type(given).__name__}"
        raise TypeError(msg)
    from headrace.sources.files import is_url, local_path, open_binary

    name = os.fsdecode(given)
    # Opened here, not by Pillow, so that a missing or unreadable file raises its own
    # OSError and every error raised inside Pillow is about the image data.
    if is_url(name):
        # Read whole: Pillow seeks about in a file, which costs a request each remotely.
        with open_binary(name) as remote:
            data = remote.read()
        with io.BytesIO(data) as stream:
            return _decode_stream(stream, name, request)
    with open(local_path(name), "rb") as stream:
        return _decode_stream(stream, name, request)


def _check_arguments(size: tuple[int, int] | None, max_pixels: int | None) -> None:
    if size is not None and (len(size) != 2 or min(size) < 1):
        msg = f"size must be a (height, width) pair of positive integers, got {size!r}"
        raise ValueError(msg)
    if max_pixels is not None and max_pixels < 1:
        msg = f"max_pixels must be positive or None, got {max_pixels!r}"
        raise ValueError(msg)


class _Request(NamedTuple):
    """What :func:`decode` was asked for, checked."""

    draft: tuple[int, int] | None  # the (height, width) a JPEG may be drafted down to
    resize: int | tuple[int, int] | None  # the final size, or the shorter side
    resample: Any  # Pillow's filter for resize
    max_pixels: int | None


def _decode_stream(stream: IO[bytes], name: str, request: _Request) -> npt.NDArray[np.uint8]:
    from PIL import Image, UnidentifiedImageError

    if not stream.read(1):
        msg = f"cannot decode image {name}: it is empty (0 bytes)"
        raise DecodeError(msg)
    stream.seek(0)
    try:
        with Image.open(stream) as image:
            return _decode_image(image, name, request)
    except DecodeError:
        raise
    except UnidentifiedImageError:
        msg = f"cannot decode image {name}: not in a format Pillow can read"
        raise DecodeError(msg) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        # The warning arrives here only where warnings are turned into errors.
        msg = f"cannot decode image {name}: over Pillow's pixel limit: {error}"
        raise DecodeError(msg) from error
    except MemoryError as error:  # not bad data, but say which image it was
        error.add_note(f"headrace: while decoding image {name}")
        raise
    except Exception as error:
        # What Pillow raises for damaged or unsupported data: OSError("image file is
        # truncated"), SyntaxError from a plugin's parser, ValueError for a mode it
        # cannot convert, NotImplementedError for a DDS pixel format it lacks, and
        # whatever else a plugin meets (struct.error, IndexError, ...).
        msg = f"cannot decode image {name}: {type(error).__name__}: {error}"
        raise DecodeError(msg) from error


def _decode_image(image: Image.Image, name: str, request: _Request) -> npt.NDArray[np.uint8]:
    import numpy as np
    from PIL import ImageOps

    width, height = image.size
    max_pixels = request.max_pixels
    if max_pixels is not None and width * height > max_pixels:
        msg = (
            f"cannot decode image {name}: {width}x{height} is {width * height:,} pixels, "
            f"over the limit of max_pixels={max_pixels:,} (a decompression bomb?)"
        )
        raise DecodeError(msg)
    orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
    if orientation in _TRANSPOSING_ORIENTATIONS:
        height, width = width, height
    shape = None
    if request.resize is not None:
        from headrace.vision.transforms import resized_shape

        # From the full size, not a draft's: a draft's rounded sides would round the
        # other side of a shorter-side resize differently.
        shape = resized_shape(height, width, request.resize)
    if request.draft is not None and image.format == "JPEG":
        want_height, want_width = request.draft
        if orientation in _TRANSPOSING_ORIENTATIONS:
            want_height, want_width = want_width, want_height
        image.draft("RGB", (want_width, want_height))
    image.load()
    if orientation != 1:
        image = ImageOps.exif_transpose(image)
    image = _to_rgb(image)
    if shape is not None:
        image = image.resize((shape[1], shape[0]), request.resample)
    # np.array, not asarray: an array over Pillow's bytes would be read-only.
    return np.array(image, dtype=np.uint8)


def _to_rgb(image: Image.Image) -> Image.Image:
    import numpy as np
    from PIL import Image

    if image.mode in _SIXTEEN_BIT_MODES:
        # Pillow's convert() clips these to 0..255, which turns almost every pixel of
        # a 16-bit image white; keeping the top 8 bits keeps the picture. Mode "I"
        # (32-bit) is what some readers give 16-bit data, so it is taken as 16-bit.
        grey = np.clip(np.asarray(image, dtype=np.int64), 0, 0xFFFF) >> 8
        image = Image.fromarray(grey.astype(np.uint8))
    if image.mode in ("P", "PA") and "transparency" in image.info:
        # Straight to RGB, Pillow warns about palette transparency given as bytes.
        image = image.convert("RGBA")
    if image.mode != "RGB":
        image = image.convert("RGB")
    return image
