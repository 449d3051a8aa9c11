#!/usr/bin/python3
"""The Python reference the C++ image workload must match: how a PNG, JPEG or DICOM file
becomes an 8-bit image (load_8bit), and how that image becomes the model's input tensor the
way a torchvision pipeline on a PIL image makes it (preprocess). data_schemas/image_library.md
("Decoding to 8 bits") states the same rules in words.

  /usr/bin/python3 tests/image_reference.py FILE [--preprocess JSON|FILE] [--npy OUT.npy]
                                                 [--u8 OUT.npy]
  /usr/bin/python3 tests/image_reference.py --check DIR

FILE alone prints the decoded 8-bit image's shape and checksum (or "reject: reason", exit 2).
With --preprocess (a JSON object, inline or a file holding one) it prints the tensor's shape
and checksum; --npy saves the float32 tensor ([3,H,W], or [10,3,H,W] for ten crops), --u8 the
decoded [H,W,C] uint8 image. --check runs over a corpus written by tests/make_test_images.py:
every "ok" file must decode to its index's size and be preprocessed identically by this
module and by a torchvision Compose, every "reject" must be refused; it also cross-checks the
PNG decoder here against PIL, the window formula against pydicom's apply_voi_lut, and a few
other claims the rules rest on. Exit status 1 when a check fails.

Needs numpy, Pillow, pydicom, torch, torchvision, and gdcmconv (for compressed DICOM other
than JPEG baseline/extended 8-bit).
"""
import argparse
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import warnings
import zlib

import numpy as np

# The largest image accepted, in pixels (width * height), checked from the header before any
# pixel is decoded. It is Pillow's default Image.MAX_IMAGE_PIXELS (the point where Pillow starts
# to warn of a decompression bomb), fixed here so that the rule does not move with Pillow.
MAX_PIXELS = 89_478_485

PNG_SIG = b"\x89PNG\r\n\x1a\n"
ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}

# DICOM transfer syntaxes
UNCOMPRESSED_TS = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.1.99",
                   "1.2.840.10008.1.2.2"}
JPEG_LOSSY_TS = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51"}  # baseline, extended
GDCM_TS = {
    "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70",  # JPEG lossless (process 14, SV1)
    "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81",  # JPEG-LS lossless, near-lossless
    "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91",  # JPEG 2000 lossless, lossy
    "1.2.840.10008.1.2.5",  # RLE lossless
}


class Reject(Exception):
    """The file is not an image the workload reads; str(e) is the reason."""


# ============================================================================================
# format
# ============================================================================================

def sniff(head):
    """The format told from the first bytes, never from the name: 'png', 'jpeg', 'dicom' or None."""
    if head.startswith(PNG_SIG):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    return None


def load_8bit(path):
    """The decoded 8-bit image of a PNG, JPEG or DICOM file: a uint8 array [H, W, C], C 1 (grey)
    or 3 (RGB). Raises Reject(reason) for anything the workload refuses.

    PNG: grey (colour types 0, 4) gives C=1, everything else (2, 3, 6) C=3. Palette entries
    are expanded, alpha (an alpha channel or tRNS) is dropped, never composited; gAMA, iCCP,
    sRGB, cHRM are ignored. Samples of 1, 2, 4 bits are scaled to v * 255 / (2^bits - 1)
    (exactly: 0/255; x85; x17). 16-bit samples are reduced with THE rule
        v8 = (v16 + 128) // 257          (round(v16 / 257), never a tie)
    which PIL does not do: PIL opens 16-bit grey as mode "I" and convert("L") clips at 255,
    and it opens 16-bit colour with the high byte only (v16 >> 8). Every chunk's CRC must be
    right, IHDR valid, and the IDAT data one zlib stream that ends and inflates to exactly the
    bytes IHDR implies (png_image_data): PIL checks neither the IDAT CRC nor whether the rows
    are all there, so those are checked here. Bytes after IEND are ignored.

    JPEG: greyscale gives C=1, YCbCr/RGB C=3 (libjpeg's colour conversion: ISLOW IDCT, fancy
    upsampling, as Pillow decodes). CMYK and YCCK (Pillow reports both as mode CMYK) are
    rejected. EXIF orientation is ignored, as Image.open ignores it. A truncated file is a
    reject (Pillow raises "image file is truncated"; libjpeg alone would pad it grey).

    DICOM: see _load_dicom.
    """
    with open(path, "rb") as f:
        head = f.read(132)
    fmt = sniff(head)
    if fmt is None:
        raise Reject("not a PNG, JPEG or DICOM file" if head else "empty file")
    if fmt == "png":
        return _load_png(path)
    if fmt == "jpeg":
        return _load_jpeg(path)
    return _load_dicom(path)


# ============================================================================================
# PNG
# ============================================================================================

def parse_png(data):
    """Checks a PNG's structure and returns (ihdr dict, palette or None, zlib data of IDAT)."""
    if not data.startswith(PNG_SIG):
        raise Reject("PNG: bad signature")
    pos, ihdr, plte, idat, seen_idat, idat_done, end = 8, None, None, [], False, False, False
    while pos < len(data):
        if pos + 8 > len(data):
            raise Reject("PNG: truncated chunk header")
        n, ctype = struct.unpack(">I", data[pos:pos + 4])[0], data[pos + 4:pos + 8]
        if n > 0x7FFFFFFF:
            raise Reject("PNG: chunk length over 2^31-1")
        if pos + 12 + n > len(data):
            raise Reject(f"PNG: file ends inside the {ctype.decode('latin-1')} chunk")
        body = data[pos + 8:pos + 8 + n]
        (crc,) = struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])
        if zlib.crc32(ctype + body) & 0xFFFFFFFF != crc:
            raise Reject(f"PNG: CRC error in the {ctype.decode('latin-1')} chunk")
        pos += 12 + n
        if ihdr is None and ctype != b"IHDR":
            raise Reject("PNG: first chunk is not IHDR")
        if ctype == b"IHDR":
            if ihdr is not None or n != 13:
                raise Reject("PNG: bad IHDR")
            w, h, bd, ct, comp, filt, inter = struct.unpack(">IIBBBBB", body)
            if not (1 <= w <= 0x7FFFFFFF and 1 <= h <= 0x7FFFFFFF):
                raise Reject(f"PNG: invalid size {w}x{h}")
            if ct not in PNG_DEPTHS or bd not in PNG_DEPTHS[ct] or comp or filt or inter > 1:
                raise Reject(f"PNG: invalid IHDR (bit depth {bd}, colour type {ct})")
            if w * h > MAX_PIXELS:
                raise Reject(f"PNG: {w}x{h} is over the {MAX_PIXELS}-pixel limit")
            ihdr = dict(width=w, height=h, bit_depth=bd, color_type=ct, interlace=inter)
        elif ctype == b"PLTE":
            if n % 3 or n == 0 or n > 768:
                raise Reject("PNG: bad PLTE")
            plte = np.frombuffer(body, np.uint8).reshape(-1, 3)
        elif ctype == b"IDAT":
            if idat_done:
                raise Reject("PNG: IDAT chunks are not consecutive")
            seen_idat = True
            idat.append(body)
        elif ctype == b"IEND":
            end = True
            break
        if seen_idat and ctype != b"IDAT":
            idat_done = True
    if ihdr is None:
        raise Reject("PNG: no IHDR")
    if not seen_idat:
        raise Reject("PNG: no IDAT")
    if not end:
        raise Reject("PNG: no IEND (truncated)")
    if ihdr["color_type"] == 3 and plte is None:
        raise Reject("PNG: palette image without PLTE")
    return ihdr, plte, b"".join(idat)


def _unfilter(raw, pos, rows, rowbytes, bpp):
    """Undoes PNG filtering of `rows` rows starting at raw[pos]; returns (array, new pos)."""
    out = np.zeros((rows, rowbytes), np.uint8)
    prev = np.zeros(rowbytes, np.int32)
    for r in range(rows):
        ftype = raw[pos]
        line = np.frombuffer(raw, np.uint8, rowbytes, pos + 1).astype(np.int32)
        pos += 1 + rowbytes
        if ftype == 0:
            cur = line
        elif ftype == 1:
            pad = (-rowbytes) % bpp
            lanes = np.concatenate([line, np.zeros(pad, np.int32)]).reshape(-1, bpp)
            cur = (np.cumsum(lanes, axis=0) & 0xFF).reshape(-1)[:rowbytes]
        elif ftype == 2:
            cur = (line + prev) & 0xFF
        elif ftype in (3, 4):
            cur = line.copy()
            for i in range(rowbytes):
                a = int(cur[i - bpp]) if i >= bpp else 0
                b = int(prev[i])
                if ftype == 3:
                    p = (a + b) >> 1
                else:
                    c = int(prev[i - bpp]) if i >= bpp else 0
                    pp = a + b - c
                    pa, pb, pc = abs(pp - a), abs(pp - b), abs(pp - c)
                    p = a if (pa <= pb and pa <= pc) else (b if pb <= pc else c)
                cur[i] = (cur[i] + p) & 0xFF
        else:
            raise Reject(f"PNG: unknown filter type {ftype}")
        out[r] = cur
        prev = cur.astype(np.int32)
    return out, pos


def _unpack(rowsbytes, width, channels, bd):
    """Filtered-away rows [rows, rowbytes] -> samples [rows, width, channels] (uint16)."""
    rows = rowsbytes.shape[0]
    if bd == 16:
        s = rowsbytes.reshape(rows, -1).view(">u2").astype(np.uint16)
    elif bd == 8:
        s = rowsbytes.astype(np.uint16)
    else:
        bits = np.unpackbits(rowsbytes, axis=1).reshape(rows, -1, bd)
        weights = (1 << np.arange(bd - 1, -1, -1)).astype(np.uint16)
        s = (bits.astype(np.uint16) * weights).sum(axis=2).astype(np.uint16)
    return s[:, :width * channels].reshape(rows, width, channels)


def _png_passes(ihdr):
    """[(x0, y0, dx, dy, pass width, pass rows)] of the non-empty passes (one when not interlaced)."""
    w, h = ihdr["width"], ihdr["height"]
    if not ihdr["interlace"]:
        return [(0, 0, 1, 1, w, h)]
    passes = [(x0, y0, dx, dy, (w - x0 + dx - 1) // dx, (h - y0 + dy - 1) // dy)
              for x0, y0, dx, dy in ADAM7]
    return [p for p in passes if p[4] > 0 and p[5] > 0]  # empty passes have no bytes at all


def png_image_data(data):
    """Checks a PNG completely without unfiltering it and returns (ihdr, plte, raw): the
    decompressed, still filtered rows. Beyond parse_png: the IDAT data must be one valid zlib
    stream that ends (its Adler-32 checked), with nothing after it, decompressing to exactly
    the bytes IHDR implies (fewer or more is a reject), and every row's filter type must be
    0..4."""
    ihdr, plte, z = parse_png(data)
    ch, bd = PNG_CHANNELS[ihdr["color_type"]], ihdr["bit_depth"]
    passes = _png_passes(ihdr)
    need = sum(pr * (1 + (pw * ch * bd + 7) // 8) for _, _, _, _, pw, pr in passes)
    d = zlib.decompressobj()
    try:
        raw = d.decompress(z, need + 1)
        while len(raw) <= need and not d.eof and d.unconsumed_tail:  # e.g. empty final blocks
            tail = d.unconsumed_tail
            raw += d.decompress(tail, need + 1 - len(raw))
            if d.unconsumed_tail == tail:
                break
        if len(raw) <= need and not d.eof:
            raw += d.flush()
    except zlib.error as e:
        raise Reject(f"PNG: corrupt zlib data ({e})")
    if len(raw) < need:
        raise Reject(f"PNG: not enough image data ({len(raw)} of {need} bytes)")
    if len(raw) > need:
        raise Reject(f"PNG: too much image data (more than the {need} bytes IHDR implies)")
    if not d.eof:
        raise Reject("PNG: the zlib stream does not end")
    if d.unused_data:
        raise Reject("PNG: bytes after the end of the zlib stream")
    pos = 0
    for _, _, _, _, pw, pr in passes:
        rowbytes = (pw * ch * bd + 7) // 8
        ftypes = np.frombuffer(raw, np.uint8)[pos:pos + pr * (1 + rowbytes):1 + rowbytes]
        if (ftypes > 4).any():
            raise Reject(f"PNG: invalid filter type {int(ftypes.max())}")
        pos += pr * (1 + rowbytes)
    return ihdr, plte, raw


def decode_png_samples(data):
    """A PNG's samples as stored: uint16 array [H, W, channels] (palette indices for colour
    type 3, sub-byte samples unscaled), plus (ihdr, plte). Rejects what png_image_data rejects."""
    ihdr, plte, raw = png_image_data(data)
    w, h, bd, ct = ihdr["width"], ihdr["height"], ihdr["bit_depth"], ihdr["color_type"]
    ch = PNG_CHANNELS[ct]
    bpp = max(1, ch * bd // 8)
    out = np.zeros((h, w, ch), np.uint16)
    pos = 0
    for x0, y0, dx, dy, pw, pr in _png_passes(ihdr):
        rows, pos = _unfilter(raw, pos, pr, (pw * ch * bd + 7) // 8, bpp)
        out[y0::dy, x0::dx] = _unpack(rows, pw, ch, bd)
    return out, ihdr, plte


def _load_png(path):
    with open(path, "rb") as f:
        data = f.read()
    ihdr, _, _ = png_image_data(data)  # checks what PIL does not (CRCs, missing rows)
    bd, ct = ihdr["bit_depth"], ihdr["color_type"]
    if ct == 3:  # an index beyond PLTE is an error (PNG spec 11.2.3); PIL gives it grey v,v,v
        indices, _, plte = decode_png_samples(data)
        if int(indices.max()) >= len(plte):
            raise Reject(f"PNG: palette index {int(indices.max())} beyond the PLTE's {len(plte)} entries")
    if bd == 16:
        samples, _, _ = decode_png_samples(data)
        v = ((samples.astype(np.uint32) + 128) // 257).astype(np.uint8)
        return v[:, :, :1] if ct in (0, 4) else v[:, :, :3]
    from PIL import Image
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Palette images with Transparency ..." is irrelevant
        with Image.open(path) as im:
            im.load()
            if ct in (0, 4):
                return np.asarray(im.convert("L"))[:, :, None].copy()
            return np.asarray(im.convert("RGB")).copy()


# ============================================================================================
# JPEG
# ============================================================================================

def _load_jpeg(path):
    from PIL import Image, ImageFile
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with Image.open(path) as im:
            if im.format not in ("JPEG", "MPO"):  # MPO (camera multi-picture): first image
                raise Reject(f"JPEG: Pillow reads it as {im.format}")
            w, h = im.size
            if w * h > MAX_PIXELS:
                raise Reject(f"JPEG: {w}x{h} is over the {MAX_PIXELS}-pixel limit")
            if im.mode == "CMYK":
                raise Reject("JPEG: CMYK/YCCK colour is not supported (no colour management)")
            if im.mode not in ("L", "RGB"):
                raise Reject(f"JPEG: unsupported mode {im.mode}")
            im.load()
            a = np.asarray(im)
    except Reject:
        raise
    except Exception as e:  # UnidentifiedImageError, "image file is truncated", bomb errors
        raise Reject(f"JPEG: {e}")
    return a[:, :, None].copy() if a.ndim == 2 else a.copy()


# ============================================================================================
# DICOM
# ============================================================================================

def window_linear(x, center, width):
    """PS3.3 C.11.2.1.2.1 (VOI LUT Function LINEAR) mapping to the output range [0, 255], in
    float64, operations in this order:
        x <= c - 0.5 - (w - 1) / 2  ->  0
        x >  c - 0.5 + (w - 1) / 2  ->  255
        else                        ->  ((x - (c - 0.5)) / (w - 1) + 0.5) * 255
    (w == 1: only the first two cases can occur, a threshold at c - 0.5.)"""
    x = np.asarray(x, np.float64)
    lo = center - 0.5 - (width - 1) / 2
    hi = center - 0.5 + (width - 1) / 2
    out = np.empty_like(x)
    below, above = x <= lo, x > hi
    mid = ~(below | above)
    out[below] = 0.0
    out[above] = 255.0
    if mid.any():
        out[mid] = ((x[mid] - (center - 0.5)) / (width - 1) + 0.5) * 255.0
    return out


def min_max(x):
    """(x - min) / (max - min) * 255 in float64; an image of one value maps to all 0."""
    x = np.asarray(x, np.float64)
    lo, hi = x.min(), x.max()
    if hi == lo:
        return np.zeros_like(x)
    return (x - lo) / (hi - lo) * 255.0


def round_u8(v):
    """floor(v + 0.5) clipped to 0..255 (round half up)."""
    return np.clip(np.floor(np.asarray(v, np.float64) + 0.5), 0, 255).astype(np.uint8)


def _first(value):
    """The first value of a DICOM element that may be multi-valued."""
    from pydicom.multival import MultiValue
    if isinstance(value, (MultiValue, list, tuple)):
        return value[0] if len(value) else None
    return value


def _read_dicom(path):
    import pydicom
    try:
        return pydicom.dcmread(path)
    except Exception as e:
        raise Reject(f"DICOM: cannot parse ({type(e).__name__}: {e})")


def _dicom_pixels(ds, path):
    """(stored samples as numpy, photometric after decoding) for a single-frame dataset."""
    ts = str(ds.file_meta.get("TransferSyntaxUID", ""))
    phot = str(ds.get("PhotometricInterpretation", "")).strip()
    if ts in JPEG_LOSSY_TS and ds.BitsAllocated == 8:
        # decode the JPEG stream with libjpeg (Pillow): the stream, not the DICOM label,
        # decides the colour transform; gdcm does not convert YBR_FULL_422 and returns YCbCr
        # samples for files it labelled RGB itself.
        import io
        from PIL import Image, ImageFile
        from pydicom.encaps import generate_pixel_data_frame
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        try:
            frame = next(generate_pixel_data_frame(ds.PixelData, 1))
            with Image.open(io.BytesIO(frame)) as im:
                im.load()
                a = np.asarray(im)
        except Exception as e:
            raise Reject(f"DICOM: JPEG frame does not decode ({type(e).__name__}: {e})")
        if ds.SamplesPerPixel == 1 and a.ndim == 2:
            return a, phot
        if ds.SamplesPerPixel == 3 and a.ndim == 3 and a.shape[2] == 3:
            return a, "RGB"
        raise Reject(f"DICOM: JPEG frame has mode {im.mode} for SamplesPerPixel {ds.SamplesPerPixel}")
    if ts in UNCOMPRESSED_TS:
        src = ds
    elif ts in GDCM_TS or ts in JPEG_LOSSY_TS:
        # pydicom 2.3 has no decoder for these without pylibjpeg/gdcm bindings: let gdcmconv
        # decompress to explicit VR little endian and read that.
        if shutil.which("gdcmconv") is None:
            raise RuntimeError("gdcmconv is needed to decode compressed DICOM")
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "raw.dcm")
            r = subprocess.run(["gdcmconv", "--raw", path, out], capture_output=True, text=True)
            if r.returncode != 0 or not os.path.exists(out):
                raise Reject(f"DICOM: compressed pixel data does not decode ({r.stderr.strip()[:200]})")
            src = _read_dicom(out)
            src.PixelData  # read it before the file goes
    else:
        raise Reject(f"DICOM: unsupported transfer syntax {ts}")
    try:
        a = src.pixel_array
    except Exception as e:
        raise Reject(f"DICOM: pixel data does not decode ({type(e).__name__}: "
                     f"{str(e).split('. ')[0][:160]})")
    return a, str(src.PhotometricInterpretation).strip()


RLE_TS = "1.2.840.10008.1.2.5"


def _frame_header(stream):
    """(width, height, components, precision) from a compressed frame's own header: JPEG SOFn or
    JPEG-LS SOF55 (ITU-T T.81 B.2.2, T.87 C.2.2), JPEG 2000 SIZ (T.800 A.5.1, in a raw codestream
    or a JP2 file's jp2c box); None where there is none. A frame that disagrees with Rows,
    Columns, SamplesPerPixel and BitsAllocated is a reject: a decoder that sizes its output from
    the attributes would write past it."""
    if stream[:2] == b"\xff\xd8":
        p = 2
        while p + 4 <= len(stream):
            if stream[p] != 0xFF:
                return None
            m = stream[p + 1]
            if m == 0xFF:
                p += 1
                continue
            if m == 0x01 or 0xD0 <= m <= 0xD7:
                p += 2
                continue
            if (0xC0 <= m <= 0xCF and m not in (0xC4, 0xC8, 0xCC)) or m == 0xF7:
                if p + 10 > len(stream):
                    return None
                prec, y, x, nf = struct.unpack(">BHHB", stream[p + 4:p + 10])
                return x, y, nf, prec
            if m in (0xDA, 0xD9):
                return None
            p += 2 + struct.unpack(">H", stream[p + 2:p + 4])[0]
        return None
    at = stream.find(b"\xff\x4f\xff\x51", 0, 1 << 16)
    if at < 0 or at + 4 + 39 > len(stream):
        return None
    _, _, x, y, x0, y0, _, _, _, _, c = struct.unpack(">HHIIIIIIIIH", stream[at + 4:at + 42])
    return (x - x0, y - y0, c, (stream[at + 42] & 0x7F) + 1) if x >= x0 and y >= y0 else None


def _load_dicom(path):
    """DICOM. Single frame only (NumberOfFrames > 1 is a reject: which frame, or all, would be a
    choice the workload does not make). Stored samples are the low BitsStored bits of each
    BitsAllocated (8 or 16) sample, two's complement when PixelRepresentation is 1.

    Grey (MONOCHROME1/2, SamplesPerPixel 1):
      1. modality: if RescaleSlope and RescaleIntercept are both present,
         x = stored * slope + intercept (float64), else x = stored
         (pydicom's apply_modality_lut; a Modality LUT Sequence is a reject);
      2. VOI: if WindowCenter and WindowWidth are present, the FIRST center/width and the
         LINEAR function of PS3.3 C.11.2.1.2.1 onto [0, 255] (window_linear); width < 1 or a
         VOILUTFunction other than LINEAR is a reject. Otherwise min-max over the image
         (min_max). A VOI LUT Sequence is ignored.
      3. MONOCHROME1: v = 255 - v (on the float, before rounding);
      4. floor(v + 0.5) clipped to 0..255.
    RGB, 8 bits (either PlanarConfiguration): the samples as they are; rescale and window
    are ignored. JPEG baseline colour (YBR_FULL_422 or RGB label): libjpeg's YCbCr->RGB.
    Other photometric interpretations, and 16-bit colour, are rejects.
    """
    ds = _read_dicom(path)
    if "PixelData" not in ds:
        raise Reject("DICOM: no PixelData")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames != 1:
        raise Reject(f"DICOM: {frames} frames; only single-frame images are read")
    for k in ("Rows", "Columns", "BitsAllocated", "BitsStored", "SamplesPerPixel",
              "PhotometricInterpretation", "PixelRepresentation"):
        if ds.get(k) is None:
            raise Reject(f"DICOM: no {k}")
    rows, cols = int(ds.Rows), int(ds.Columns)
    if rows < 1 or cols < 1 or rows * cols > MAX_PIXELS:
        raise Reject(f"DICOM: size {cols}x{rows} out of range")
    ba, bs, spp = int(ds.BitsAllocated), int(ds.BitsStored), int(ds.SamplesPerPixel)
    signed = int(ds.PixelRepresentation) == 1
    phot = str(ds.PhotometricInterpretation).strip()
    if ba not in (8, 16) or not 1 <= bs <= ba or int(ds.get("HighBit", bs - 1)) != bs - 1:
        raise Reject(f"DICOM: BitsAllocated {ba} BitsStored {bs} HighBit {ds.get('HighBit')}")
    if spp == 1 and phot not in ("MONOCHROME1", "MONOCHROME2"):
        raise Reject(f"DICOM: photometric interpretation {phot} is not supported")
    if spp == 3 and not (ba == 8 and (phot == "RGB" or (
            phot in ("YBR_FULL_422", "YBR_FULL")
            and str(ds.file_meta.TransferSyntaxUID) in JPEG_LOSSY_TS))):
        raise Reject(f"DICOM: colour {phot} with {ba} bits is not supported")
    if spp not in (1, 3):
        raise Reject(f"DICOM: SamplesPerPixel {spp}")
    if "ModalityLUTSequence" in ds:
        raise Reject("DICOM: Modality LUT Sequence is not supported")

    ts = str(ds.file_meta.TransferSyntaxUID)
    if ds.file_meta.TransferSyntaxUID.is_compressed and ts not in JPEG_LOSSY_TS and ts != RLE_TS:
        from pydicom.encaps import generate_pixel_data_frame
        stream = next(generate_pixel_data_frame(ds.PixelData), b"")
        f = _frame_header(stream)
        if f is None:
            raise Reject("DICOM: no JPEG, JPEG-LS or JPEG 2000 frame header in the pixel data")
        w, h, nc, prec = f
        if (w, h, nc) != (cols, rows, spp) or not 1 <= prec <= ba or (prec + 7) // 8 != ba // 8:
            raise Reject(f"DICOM: the compressed frame is {w}x{h}, {nc} components of {prec} bits; "
                         f"the header says {cols}x{rows}, {spp} of {ba} bits allocated")

    arr, phot = _dicom_pixels(ds, path)
    want = (rows, cols) if spp == 1 else (rows, cols, 3)
    if arr.shape != want:
        raise Reject(f"DICOM: decoded shape {arr.shape}, expected {want}")
    if spp == 3:
        return arr.astype(np.uint8)

    # stored value = low BitsStored bits (pydicom sign-extends signed data but does not mask
    # unsigned data with bits above HighBit)
    a = arr.astype(np.int64)
    if bs < ba:
        a &= (1 << bs) - 1
        if signed:
            a = np.where(a >= (1 << (bs - 1)), a - (1 << bs), a)
    from pydicom.pixel_data_handlers.util import apply_modality_lut
    x = apply_modality_lut(a, ds).astype(np.float64)

    wc, ww = ds.get("WindowCenter"), ds.get("WindowWidth")
    c = _first(wc.value if hasattr(wc, "value") else wc) if wc is not None else None
    w = _first(ww.value if hasattr(ww, "value") else ww) if ww is not None else None
    if c is not None and w is not None and str(c).strip() != "" and str(w).strip() != "":
        func = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").strip().upper()
        if func != "LINEAR":
            raise Reject(f"DICOM: VOI LUT Function {func} is not supported")
        c, w = float(c), float(w)
        if not (np.isfinite(c) and np.isfinite(w)) or w < 1:
            raise Reject(f"DICOM: window width {w} (must be >= 1)")
        v = window_linear(x, c, w)
    else:
        v = min_max(x)
    if phot == "MONOCHROME1":
        v = 255.0 - v
    return round_u8(v)[:, :, None]


# ============================================================================================
# preprocessing
# ============================================================================================

SPEC_KEYS = {"resize", "interpolation", "crop", "crop_size", "color", "scale", "mean", "std"}
DEFAULT_SPEC = {"resize": 256, "interpolation": "bilinear", "crop": "center", "crop_size": 224,
                "color": "rgb", "scale": 255.0, "mean": [0.485, 0.456, 0.406],
                "std": [0.229, 0.224, 0.225]}


def check_spec(spec):
    unknown = set(spec) - SPEC_KEYS
    if unknown:
        raise ValueError(f"unknown preprocess keys {sorted(unknown)}")
    s = dict(DEFAULT_SPEC, **spec)
    if s["interpolation"] != "bilinear":
        raise ValueError("interpolation must be 'bilinear'")
    if s["color"] != "rgb":
        raise ValueError("color must be 'rgb'")
    if not (isinstance(s["scale"], (int, float)) and s["scale"] > 0):
        raise ValueError("scale must be a positive number (the divisor; 255 for ToTensor)")
    if s["crop"] not in ("center", "ten", "none"):
        raise ValueError("crop must be center, ten or none")
    r = s["resize"]
    if not (isinstance(r, int) and r > 0) and not (
            isinstance(r, list) and len(r) == 2 and all(isinstance(v, int) and v > 0 for v in r)):
        raise ValueError("resize must be a positive int (shorter side) or [h, w]")
    return s


def to_pil(img):
    """The PIL image a torchvision user would have: grey is replicated to RGB (mode L, then
    convert('RGB'))."""
    from PIL import Image
    img = np.ascontiguousarray(img, np.uint8)
    if img.ndim == 3 and img.shape[2] == 1:
        return Image.fromarray(img[:, :, 0], "L").convert("RGB")
    if img.ndim == 3 and img.shape[2] == 3:
        return Image.fromarray(img, "RGB")
    raise ValueError(f"image shape {img.shape}: expected [H, W, 1|3]")


def _to_tensor(pil, scale, mean, std):
    """uint8 -> float32 CHW divided by `scale` (a float32 division: for scale 255 exactly what
    ToTensor does; multiplying by 1/255 instead differs in 126 of the 256 values), then
    Normalize ((x - mean) / std, float32)."""
    import torch
    t = torch.from_numpy(np.asarray(pil, np.uint8).copy()).permute(2, 0, 1).contiguous().float()
    t = t / torch.tensor(float(scale), dtype=torch.float32)
    m = torch.as_tensor(mean, dtype=torch.float32).view(-1, 1, 1)
    s = torch.as_tensor(std, dtype=torch.float32).view(-1, 1, 1)
    return (t - m) / s


def preprocess(img_uint8, spec):
    """torch.float32 tensor [3, h, w] (or [10, 3, h, w] for crop 'ten'): Resize (PIL bilinear,
    antialiased; an int resizes the shorter side to it and the longer to
    int(size * long / short)), CenterCrop / TenCrop / nothing, ToTensor (x / scale; scale
    255 is ToTensor), Normalize. The spec is tools/hpcscreen_py/chexnet.py's
    metadata["preprocess"]; resize may also be [h, w] here."""
    import torch
    from torchvision import transforms as T
    s = check_spec(spec)
    pil = to_pil(img_uint8)
    size = s["resize"] if isinstance(s["resize"], int) else list(s["resize"])
    pil = T.Resize(size, interpolation=T.InterpolationMode.BILINEAR)(pil)
    if s["crop"] == "center":
        pil = T.CenterCrop(s["crop_size"])(pil)
    elif s["crop"] == "ten":
        crops = T.TenCrop(s["crop_size"])(pil)
        return torch.stack([_to_tensor(c, s["scale"], s["mean"], s["std"]) for c in crops])
    return _to_tensor(pil, s["scale"], s["mean"], s["std"])


def resized_size(h, w, resize):
    """torchvision 0.14's output size: [h, w] as given, or for an int the shorter side becomes
    `resize` and the longer int(resize * long / short) (Python float division, truncated)."""
    if not isinstance(resize, int):
        return resize[0], resize[1]
    if w <= h:
        return int(resize * h / w), resize
    return resize, int(resize * w / h)


def _pil_bilinear_weights(in_size, out_size):
    """Pillow's (Resample.c) fixed-point bilinear weights: a dense [out, in] int64 matrix."""
    prec = 22  # PRECISION_BITS = 32 - 8 - 2
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 1.0 * filterscale  # the bilinear (triangle) filter's support is 1
    m = np.zeros((out_size, in_size), np.int64)
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)  # int() truncates toward 0, as C does
        xmax = min(int(center + support + 0.5), in_size)
        xs = np.arange(xmin, xmax)
        t = np.abs((xs - center + 0.5) * (1.0 / filterscale))  # Pillow multiplies by ss = 1/fs
        k = np.where(t < 1.0, 1.0 - t, 0.0)
        ww = k.sum()
        if ww != 0.0:
            k = k / ww
        m[xx, xmin:xmax] = (0.5 + k * (1 << prec)).astype(np.int64)  # all k >= 0
    return m


def pil_bilinear_resize(img, out_h, out_w):
    """Pillow 9.4's Image.resize(BILINEAR) of a uint8 [H, W, C] image, written out so that the
    C++ can follow it (check_corpus compares it with Pillow): per output pixel, weights of the
    triangle filter stretched by max(in/out, 1) around center = (i + 0.5) * in/out, taken over
    input indices [int(center - support + 0.5), int(center + support + 0.5)) clipped to the
    image, normalised to sum 1, then rounded to fixed point with 22 fractional bits
    (int(0.5 + k * 2^22)); the sum starts at 2^21 and the result is clamp(sum >> 22, 0, 255).
    The horizontal pass runs first (only if the width changes), its 8-bit result feeds the
    vertical pass (only if the height changes)."""
    a = np.asarray(img, np.uint8)
    h, w = a.shape[:2]
    out = a.astype(np.int64)
    if out_w != w:
        m = _pil_bilinear_weights(w, out_w)
        out = np.clip((np.einsum("ox,yxc->yoc", m, out) + (1 << 21)) >> 22, 0, 255)
    if out_h != h:
        m = _pil_bilinear_weights(h, out_h)
        out = np.clip((np.einsum("oy,yxc->oxc", m, out) + (1 << 21)) >> 22, 0, 255)
    return out.astype(np.uint8)


def torchvision_pipeline(spec):
    """The same pipeline as a user writes it, for cross-checking preprocess()."""
    import torch
    from torchvision import transforms as T
    s = check_spec(spec)
    size = s["resize"] if isinstance(s["resize"], int) else list(s["resize"])
    steps = [T.Resize(size, interpolation=T.InterpolationMode.BILINEAR)]
    if float(s["scale"]) != 255.0:
        raise ValueError("the torchvision pipeline is ToTensor: scale 255 only")
    norm = T.Compose([T.ToTensor(), T.Normalize(s["mean"], s["std"])])
    if s["crop"] == "center":
        steps += [T.CenterCrop(s["crop_size"]), norm]
    elif s["crop"] == "ten":
        steps += [T.TenCrop(s["crop_size"]),
                  T.Lambda(lambda crops: torch.stack([norm(c) for c in crops]))]
    else:
        steps += [norm]
    return T.Compose(steps)


def checksum(a):
    """'sum=... sha256=...' of an array: float64 sum and the sha256 of its little-endian bytes."""
    a = np.ascontiguousarray(a)
    le = a.astype(a.dtype.newbyteorder("<"), copy=False)
    return f"sum={float(a.astype(np.float64).sum()):.6f} sha256={hashlib.sha256(le.tobytes()).hexdigest()[:16]}"


# ============================================================================================
# corpus check
# ============================================================================================

def _png_expected_8bit(path):
    """The PNG rules applied to this module's own decoder's samples (independent of PIL)."""
    with open(path, "rb") as f:
        samples, ihdr, plte = decode_png_samples(f.read())
    bd, ct = ihdr["bit_depth"], ihdr["color_type"]
    if ct == 3:
        return plte[np.minimum(samples[:, :, 0], len(plte) - 1)]
    if bd == 16:
        v = (samples.astype(np.uint32) + 128) // 257
    else:
        v = samples.astype(np.uint32) * 255 // (2 ** bd - 1)
    v = v.astype(np.uint8)
    return v[:, :, :1] if ct in (0, 4) else v[:, :, :3]


def _library_alone(path):
    """Whether Pillow (PNG, JPEG) or pydicom (DICOM) alone would have read the file: the rejects
    that Pillow or pydicom accept are the ones this module's own checks catch."""
    with open(path, "rb") as f:
        fmt = sniff(f.read(132))
    try:
        if fmt == "dicom":
            import pydicom
            pydicom.dcmread(path).pixel_array
            return "pydicom alone decodes it"
        from PIL import Image
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                im.load()
        return "Pillow alone decodes it"
    except Exception as e:
        lib = "pydicom" if fmt == "dicom" else "Pillow"
        return f"{lib} alone refuses it too: {type(e).__name__}"


def _voi_vs_pydicom(path):
    """max |window_linear - apply_voi_lut mapped linearly onto 0..255| and how many rounded
    values differ, for a windowed grey DICOM; None when the file has no window."""
    import pydicom
    from pydicom.pixel_data_handlers.util import apply_modality_lut, apply_voi_lut
    ds = pydicom.dcmread(path)
    if "WindowCenter" not in ds or int(ds.SamplesPerPixel) != 1:
        return None
    if str(ds.file_meta.TransferSyntaxUID) not in UNCOMPRESSED_TS:
        return None
    x = apply_modality_lut(ds.pixel_array, ds)
    ours = window_linear(x, float(_first(ds.WindowCenter)), float(_first(ds.WindowWidth)))
    theirs = apply_voi_lut(x.copy(), ds, index=0)
    # pydicom's output range: [0, 2^BitsStored - 1] unsigned, [-2^(bs-1), 2^(bs-1) - 1] signed,
    # both passed through the rescale when one is present
    bs = int(ds.BitsStored)
    y_min, y_max = (0, 2 ** bs - 1) if int(ds.PixelRepresentation) == 0 else (-2 ** (bs - 1), 2 ** (bs - 1) - 1)
    if "RescaleSlope" in ds and "RescaleIntercept" in ds:
        y_min = y_min * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        y_max = y_max * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    mapped = (np.asarray(theirs, np.float64) - y_min) / (y_max - y_min) * 255.0
    return float(np.abs(mapped - ours).max()), int((round_u8(mapped) != round_u8(ours)).sum())


def check_corpus(root):
    import torch
    from PIL import Image
    from torchvision import transforms as T
    with open(os.path.join(root, "index.json")) as f:
        index = json.load(f)
    specs = {
        "center": dict(DEFAULT_SPEC),
        "ten": dict(DEFAULT_SPEC, resize=[40, 50], crop="ten", crop_size=31),
        "none": dict(DEFAULT_SPEC, resize=65, crop="none"),
        # (255 - 224) / 2 = 15.5 and (365 - 224) / 2 = 70.5: CenterCrop's round() ties
        "center_ties": dict(DEFAULT_SPEC, resize=255),
        # crop larger than the image: CenterCrop pads with 0 (before ToTensor/Normalize)
        "center_pad": dict(DEFAULT_SPEC, resize=[20, 27], crop_size=[32, 30]),
    }
    pipes = {k: torchvision_pipeline(v) for k, v in specs.items()}
    failures = []
    voi_max = 0.0
    for e in index:
        path = os.path.join(root, e["file"])
        name = e["file"]
        try:
            img = load_8bit(path)
        except Reject as r:
            if e["expect"] == "reject":
                print(f"{name:48s} reject (as expected): {r} [{_library_alone(path)}]")
            else:
                failures.append(f"{name}: expected ok, rejected: {r}")
                print(f"{name:48s} FAIL rejected: {r}")
            continue
        if e["expect"] == "reject":
            failures.append(f"{name}: expected a reject, decoded {img.shape}")
            print(f"{name:48s} FAIL decoded, expected a reject")
            continue
        want_c = 1 if e["channels"] in (1, 2) else 3
        if img.shape != (e["height"], e["width"], want_c) or img.dtype != np.uint8:
            failures.append(f"{name}: decoded {img.shape} {img.dtype}, index says "
                            f"{e['height']}x{e['width']}x{want_c}")
        extra = []
        if e["format"] == "png":
            own = _png_expected_8bit(path)
            if not np.array_equal(own, img):
                failures.append(f"{name}: PIL and the PNG decoder here disagree")
            extra.append("png-decoder==PIL" if e["bit_depth"] <= 8 else "16-bit rule")
            if e["bit_depth"] == 16 and want_c == 1 and e["channels"] == 1:
                with Image.open(path) as im:  # PIL's mode I holds the exact 16-bit values
                    with open(path, "rb") as f:
                        s16, _, _ = decode_png_samples(f.read())
                    if not np.array_equal(np.asarray(im).astype(np.int64), s16[:, :, 0]):
                        failures.append(f"{name}: 16-bit samples disagree with PIL mode I")
                    pil_l = np.asarray(im.convert("L")) if im.mode != "I" else np.clip(np.asarray(im), 0, 255)
                extra.append(f"PIL-convert-L differs on {(pil_l != img[:, :, 0]).mean():.0%}")
        if e["format"] == "dicom":
            d = _voi_vs_pydicom(path)
            if d is not None:
                voi_max = max(voi_max, d[0])
                extra.append(f"voi-vs-pydicom max {d[0]:.2e}, rounded diffs {d[1]}")
                if d[0] > 1e-9 or d[1]:
                    failures.append(f"{name}: window formula and apply_voi_lut differ by {d}")
        if e.get("same_as"):
            other = load_8bit(os.path.join(root, e["same_as"]))
            ok = np.array_equal(other, img)
            extra.append(f"== {e['same_as']}" if ok else f"!= {e['same_as']}")
            if not ok:
                failures.append(f"{name}: differs from {e['same_as']}")
        for kind, spec in specs.items():
            t = preprocess(img, spec)
            ref = pipes[kind](to_pil(img))
            if t.dtype != torch.float32 or t.shape != ref.shape or not torch.equal(t, ref):
                failures.append(f"{name}: preprocess({kind}) != torchvision pipeline")
        if img.shape[2] == 1:  # resizing grey then replicating == resizing the RGB copy
            g = T.Resize(256)(Image.fromarray(img[:, :, 0], "L"))
            rgb = T.Resize(256)(to_pil(img))
            if not np.array_equal(np.repeat(np.asarray(g)[:, :, None], 3, 2), np.asarray(rgb)):
                failures.append(f"{name}: resizing grey differs from resizing its RGB copy")
        for size in (256, 65, 7, [40, 50], [53, 37], [3, 200]):  # the written-out resize
            oh, ow = resized_size(img.shape[0], img.shape[1], size)
            pil = np.asarray(to_pil(img).resize((ow, oh), Image.BILINEAR))
            mine = pil_bilinear_resize(np.repeat(img, 3 // img.shape[2], axis=2), oh, ow)
            if not np.array_equal(pil, mine):
                failures.append(f"{name}: pil_bilinear_resize != Pillow at {oh}x{ow} "
                                f"(max diff {np.abs(pil.astype(int) - mine).max()})")
            tv = np.asarray(T.Resize(size)(to_pil(img)))
            if tv.shape[:2] != (oh, ow):
                failures.append(f"{name}: resized_size {oh}x{ow} != torchvision {tv.shape[:2]}")
        t = preprocess(img, specs["center"])
        print(f"{name:48s} ok {img.shape[1]}x{img.shape[0]}x{img.shape[2]} u8 "
              f"[{img.min()},{img.max()}] -> {tuple(t.shape)} [{t.min():.3f},{t.max():.3f}]"
              + (" | " + "; ".join(extra) if extra else ""))
    print(f"\n{len(index)} files; window formula vs pydicom apply_voi_lut: max |diff| {voi_max:.2e}")
    for f in failures:
        print("FAIL", f)
    print("all checks passed" if not failures else f"{len(failures)} failures")
    return not failures


# ============================================================================================

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("file", nargs="?")
    ap.add_argument("--preprocess", help="JSON object, inline or in a file")
    ap.add_argument("--npy", help="save the float32 tensor here")
    ap.add_argument("--u8", help="save the decoded uint8 [H,W,C] image here")
    ap.add_argument("--check", metavar="DIR", help="check a corpus from make_test_images.py")
    args = ap.parse_args()
    if args.check:
        sys.exit(0 if check_corpus(args.check) else 1)
    if not args.file:
        ap.error("FILE or --check DIR")
    try:
        img = load_8bit(args.file)
    except Reject as r:
        print(f"reject: {r}")
        sys.exit(2)
    if args.u8:
        np.save(args.u8, img)
    if not args.preprocess:
        print(f"decoded {list(img.shape)} uint8 {checksum(img)}")
        return
    p = args.preprocess
    spec = json.loads(p) if p.lstrip().startswith("{") else json.load(open(p))
    t = preprocess(img, spec).numpy()
    if args.npy:
        np.save(args.npy, t)
    print(f"tensor {list(t.shape)} float32 min={t.min():.6f} max={t.max():.6f} {checksum(t)}")


if __name__ == "__main__":
    main()
