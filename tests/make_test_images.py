#!/usr/bin/python3
"""Writes a small corpus of test images for the image workload: every PNG, JPEG and DICOM
flavour the workload must read, plus hostile files it must reject, and DIR/index.json that
describes each file.

  /usr/bin/python3 tests/make_test_images.py --out DIR [--seed S]

index.json is a list of objects, one per file:
  {"file": path relative to DIR, "format": "png"|"jpeg"|"dicom",
   "expect": "ok"|"reject", "width", "height", "channels", "bit_depth", "note"}
width/height/channels/bit_depth describe what the file says it holds (for DICOM bit_depth is
BitsStored, channels SamplesPerPixel); for a reject they are what the header claims, or null
where there is no header. "channels" counts the samples in the file, alpha included (palette:
3); the decoded image (tests/image_reference.py) has 1 channel where it is 1 or 2, else 3.
An optional "same_as" names another file that must decode to the identical 8-bit image.
data_schemas/image_library.md describes the corpus and the decoding rules.

Images are small (odd sizes too) and hold gradients plus noise, so resizing is exercised.
The output is a function of the seed: the pixel values, the PNG encoder below and every
header field are seeded or fixed (no clock, no random UIDs). The zlib, libjpeg (under PIL)
and gdcm versions are the only other inputs: another version can change the compressed
bytes (never the decoded pixels of lossless files).

PNGs are written by the minimal encoder in this file (zlib + struct), because PIL cannot
write 1/2/4-bit grey, 16-bit colour, or Adam7 interlacing; rows use all five filter types.
JPEGs are written by PIL. DICOMs are written uncompressed by pydicom and transcoded to the
compressed transfer syntaxes with gdcmconv (gdcm 3: --jpeg is JPEG lossless process 14
selection value 1 unless --lossy is given, then baseline for 8 bits; --jpegls and --j2k are
lossless by default; --rle).
"""
import argparse
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

import numpy as np

PNG_SIG = b"\x89PNG\r\n\x1a\n"
ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
UID_ROOT = "1.2.826.0.1.3680043.8.498."  # pydicom's example root; UIDs below are derived from the seed


# --------------------------------------------------------------------------------------------
# content
# --------------------------------------------------------------------------------------------

def content(rng, h, w, c, maxval):
    """Integer samples in 0..maxval, shape [h, w, c]: a different gradient per channel, a
    ripple, and noise, so no channel is constant and neighbouring pixels differ."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    out = np.empty((h, w, c), np.float64)
    for ch in range(c):
        ang = rng.uniform(0, 2 * np.pi)
        g = (np.cos(ang) * x / max(w - 1, 1) + np.sin(ang) * y / max(h - 1, 1))
        g = (g - g.min()) / max(g.max() - g.min(), 1e-9)
        ripple = 0.12 * np.sin(x * rng.uniform(0.3, 0.9) + y * rng.uniform(0.2, 0.7) + ch)
        noise = rng.normal(0, 0.06, (h, w))
        v = 0.08 + 0.84 * g + ripple + noise
        out[:, :, ch] = v
    out = np.clip(out, 0, 1) * maxval
    return np.rint(out).astype(np.int64)


# --------------------------------------------------------------------------------------------
# minimal PNG encoder
# --------------------------------------------------------------------------------------------

def _chunk(ctype, data):
    return struct.pack(">I", len(data)) + ctype + data + struct.pack(">I", zlib.crc32(ctype + data) & 0xFFFFFFFF)


def _pack_row(row, bit_depth):
    """row: int array [w, c] -> bytes (big-endian samples, sub-byte depths packed MSB first)."""
    flat = row.reshape(-1)
    if bit_depth == 16:
        return flat.astype(">u2").tobytes()
    if bit_depth == 8:
        return flat.astype(np.uint8).tobytes()
    per = 8 // bit_depth
    pad = (-len(flat)) % per
    f = np.concatenate([flat, np.zeros(pad, np.int64)]).reshape(-1, per)
    shifts = 8 - bit_depth * (np.arange(per) + 1)
    return (f << shifts).sum(axis=1).astype(np.uint8).tobytes()


def _paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def _filter_row(ftype, cur, prev, bpp):
    out = bytearray(len(cur))
    for i in range(len(cur)):
        a = cur[i - bpp] if i >= bpp else 0
        b = prev[i]
        c = prev[i - bpp] if i >= bpp else 0
        if ftype == 0:
            p = 0
        elif ftype == 1:
            p = a
        elif ftype == 2:
            p = b
        elif ftype == 3:
            p = (a + b) >> 1
        else:
            p = _paeth(a, b, c)
        out[i] = (cur[i] - p) & 0xFF
    return bytes(out)


def _encode_image_rows(samples, bit_depth, channels, rng):
    h, w = samples.shape[:2]
    bpp = max(1, channels * bit_depth // 8)
    raw = bytearray()
    prev = None
    for yy in range(h):
        cur = _pack_row(samples[yy], bit_depth)
        if prev is None:
            prev = bytes(len(cur))
        ftype = int(rng.integers(0, 5))
        raw.append(ftype)
        raw += _filter_row(ftype, cur, prev, bpp)
        prev = cur
    return bytes(raw)


def encode_png(samples, bit_depth, color_type, rng, palette=None, trns=None, interlace=False, extra_chunks=()):
    """samples: int array [h, w, c] (palette indices for colour type 3). Returns PNG bytes."""
    h, w, channels = samples.shape
    assert channels == {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color_type]
    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 1 if interlace else 0)
    if not interlace:
        raw = _encode_image_rows(samples, bit_depth, channels, rng)
    else:
        raw = b""
        for x0, y0, dx, dy in ADAM7:
            sub = samples[y0::dy, x0::dx]
            if sub.shape[0] == 0 or sub.shape[1] == 0:
                continue  # empty passes have no rows and no filter bytes
            raw += _encode_image_rows(sub, bit_depth, channels, rng)
    out = PNG_SIG + _chunk(b"IHDR", ihdr)
    for ctype, data in extra_chunks:
        out += _chunk(ctype, data)
    if palette is not None:
        out += _chunk(b"PLTE", bytes(np.asarray(palette, np.uint8).reshape(-1)))
    if trns is not None:
        out += _chunk(b"tRNS", trns)
    out += _chunk(b"IDAT", zlib.compress(raw, 9))
    out += _chunk(b"IEND", b"")
    return out


def png_chunks(data):
    """[(offset of the length field, type, data offset, length)] of a PNG byte string."""
    pos, out = 8, []
    while pos + 8 <= len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        out.append((pos, data[pos + 4:pos + 8], pos + 8, n))
        pos += 12 + n
    return out


# --------------------------------------------------------------------------------------------
# DICOM
# --------------------------------------------------------------------------------------------

def _uid(seed, name):
    import hashlib
    digest = int(hashlib.sha256(f"{seed}/{name}".encode()).hexdigest()[:24], 16)
    return UID_ROOT + str(digest)


def make_dicom(path, seed, name, pixels, *, bits_allocated, bits_stored, signed=False,
               photometric="MONOCHROME2", implicit=False, planar=0, frames=None, **attrs):
    """pixels: int array [h, w] or [h, w, 3] (or [f, h, w] with frames=f). Writes an
    uncompressed little-endian file with pydicom."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

    ts = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    sop_class = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture Image Storage
    if attrs.get("Modality") == "CT":
        sop_class = "1.2.840.10008.5.1.4.1.1.2"  # CT Image Storage
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = _uid(seed, name + "/sop")
    meta.TransferSyntaxUID = ts
    meta.ImplementationClassUID = UID_ROOT + "1"
    meta.ImplementationVersionName = "HPCSCREEN_TEST"

    ds = Dataset()
    ds.file_meta = meta
    ds.preamble = b"\0" * 128
    ds.is_little_endian = True
    ds.is_implicit_VR = implicit
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = _uid(seed, "study")
    ds.SeriesInstanceUID = _uid(seed, name + "/series")
    ds.PatientName = "Test^Phantom"
    ds.PatientID = "HPCSCREEN-0001"
    ds.StudyDate = "20240101"
    ds.Modality = attrs.pop("Modality", "OT")
    ds.ConversionType = "SYN"
    ds.InstanceNumber = 1
    spp = 3 if photometric == "RGB" else 1
    if frames is None:
        h, w = pixels.shape[:2]
    else:
        h, w = pixels.shape[1:3]
        ds.NumberOfFrames = frames
    ds.Rows, ds.Columns = h, w
    ds.SamplesPerPixel = spp
    ds.PhotometricInterpretation = photometric
    if spp == 3:
        ds.PlanarConfiguration = planar
    ds.BitsAllocated = bits_allocated
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0
    for k, v in attrs.items():
        setattr(ds, k, v)
    if bits_allocated == 8:
        arr = pixels.astype(np.uint8)
    else:
        arr = (pixels & 0xFFFF).astype("<u2")  # two's complement bit patterns for signed data
    if spp == 3 and planar == 1:
        arr = np.moveaxis(arr, -1, -3)  # [.., 3, h, w]
    data = arr.tobytes()
    if len(data) % 2:
        data += b"\0"
    ds.PixelData = data
    ds["PixelData"].VR = "OB" if bits_allocated == 8 else "OW"
    ds.save_as(path, write_like_original=False)


def gdcmconv(src, dst, *opts):
    r = subprocess.run(["gdcmconv", *opts, src, dst], capture_output=True, text=True)
    if r.returncode != 0 or not os.path.exists(dst):
        raise RuntimeError(f"gdcmconv {' '.join(opts)} {src} failed: {r.stderr.strip()}")


# --------------------------------------------------------------------------------------------
# corpus
# --------------------------------------------------------------------------------------------

class Corpus:
    def __init__(self, out):
        self.out = out
        self.index = []

    def add(self, rel, data, fmt, expect, width, height, channels, bit_depth, note, same_as=None):
        path = os.path.join(self.out, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if data is not None:
            with open(path, "wb") as f:
                f.write(data)
        entry = {"file": rel, "format": fmt, "expect": expect, "width": width,
                 "height": height, "channels": channels, "bit_depth": bit_depth, "note": note}
        if same_as:
            entry["same_as"] = same_as
        self.index.append(entry)


def make_pngs(c, rng):
    def png(name, samples, bd, ct, note, same_as=None, **kw):
        h, w, ch = samples.shape
        c.add(f"png/{name}.png", encode_png(samples, bd, ct, rng, **kw), "png", "ok", w, h,
              3 if ct == 3 else ch, bd, note, same_as)
        return samples

    arrays = {}
    for bd, (w, h) in ((1, (37, 53)), (2, (37, 53)), (4, (29, 31)), (8, (37, 53)), (16, (64, 48))):
        arrays[bd] = png(f"gray{bd}", content(rng, h, w, 1, 2 ** bd - 1), bd, 0,
            f"{bd}-bit grey; decoded v*255/(2^{bd}-1)" if bd < 8 else
            ("8-bit grey" if bd == 8 else "16-bit grey; decoded (v+128)//257"))
    ga = content(rng, 48, 64, 2, 255)
    png("gray_alpha8", ga, 8, 4, "grey + alpha 8-bit; alpha dropped")
    ga = content(rng, 31, 45, 2, 65535)
    png("gray_alpha16", ga, 16, 4, "grey + alpha 16-bit; alpha dropped, grey (v+128)//257 "
        "(PIL would open it as RGBA with the high bytes)")
    rgb8 = png("rgb8", content(rng, 53, 37, 3, 255), 8, 2, "RGB 8-bit")
    png("rgb16", content(rng, 48, 64, 3, 65535), 16, 2,
        "RGB 16-bit; decoded (v+128)//257 per sample (PIL truncates to the high byte)")
    rgba = content(rng, 37, 53, 4, 255)
    png("rgba8", rgba, 8, 6, "RGBA 8-bit; alpha dropped, not composited")
    png("rgba16", content(rng, 21, 34, 4, 65535), 16, 6,
        "RGBA 16-bit; alpha dropped, (v+128)//257")
    # palette: 200 colours of a colour ramp, indices follow the content
    pal = content(rng, 1, 200, 3, 255)[0]
    idx = content(rng, 53, 37, 1, 199)
    png("palette8", idx, 8, 3, "palette, 8-bit indices; expanded to RGB", palette=pal)
    trns = bytes(int(v) for v in rng.integers(0, 256, 120))
    png("palette8_trns", idx[::-1], 8, 3, "palette with tRNS transparency; expanded to RGB, "
        "alpha dropped", palette=pal, trns=trns)
    pal4 = content(rng, 1, 16, 3, 255)[0]
    png("palette4", content(rng, 31, 29, 1, 15), 4, 3, "palette, 4-bit indices", palette=pal4)
    png("gray8_trns", content(rng, 30, 40, 1, 255), 8, 0,
        "grey with a tRNS colour key; transparency ignored", trns=struct.pack(">H", 128))
    png("interlaced_rgb8", rgb8, 8, 2, "Adam7 interlaced RGB 8-bit (the samples of rgb8)",
        same_as="png/rgb8.png", interlace=True)
    png("interlaced_gray8", arrays[8], 8, 0, "Adam7 interlaced grey 8-bit (the samples of gray8)",
        same_as="png/gray8.png", interlace=True)
    png("interlaced_gray16_5x3", content(rng, 3, 5, 1, 65535), 16, 0,
        "Adam7 interlaced 16-bit grey, 5x3: some passes are empty", interlace=True)
    png("interlaced_gray2", arrays[2], 2, 0, "Adam7 interlaced 2-bit grey (sub-byte rows per "
        "pass; the samples of gray2)", same_as="png/gray2.png", interlace=True)
    png("gray8_gamma_text", content(rng, 17, 50, 1, 255), 8, 0,
        "grey with gAMA and tEXt chunks; both ignored (no gamma correction)",
        extra_chunks=[(b"gAMA", struct.pack(">I", 45455)), (b"tEXt", b"Comment\0test")])
    png("rgb8_1x1", content(rng, 1, 1, 3, 255), 8, 2, "1x1 RGB")
    # Ancillary chunks whose contents are wrong but whose CRCs are right: the decode ignores
    # them (libpng would warn about each, and a warning is a reject), as Pillow does.
    plain = png("rgb8_plain", content(rng, 30, 40, 3, 255), 8, 2, "RGB 8-bit, no ancillary chunks")
    for name, chunks in [("gama_zero", [(b"gAMA", struct.pack(">I", 0))]),
                         ("chrm_zero", [(b"cHRM", bytes(32))]),
                         ("srgb_bad_intent", [(b"sRGB", bytes([9]))]),
                         ("srgb_and_iccp", [(b"sRGB", bytes([0])),
                                            (b"iCCP", b"profile\0\0" + zlib.compress(bytes(200)))]),
                         ("itxt_bad_flag", [(b"iTXt", b"Comment\0\x05\x00\0\0text")]),
                         ("time_invalid", [(b"tIME", struct.pack(">HBBBBB", 2020, 13, 40, 25, 61, 61))])]:
        png(f"rgb8_{name}", plain, 8, 2, f"RGB 8-bit with a {name.replace('_', ' ')} chunk of wrong "
            "contents (right CRC): ignored, the image of rgb8_plain", same_as="png/rgb8_plain.png",
            extra_chunks=chunks)
    pal2 = content(rng, 1, 4, 3, 255)[0]
    pal_idx = content(rng, 20, 24, 1, 3)
    png("palette_trns_long", pal_idx, 8, 3, "palette of 4 entries with a tRNS of 10 (longer than "
        "PLTE: wrong, and ignored, since alpha is dropped)", palette=pal2, trns=bytes(range(10)))


def make_jpegs(c, rng):
    from PIL import Image

    def jpg(name, arr, mode, note, expect="ok", same_as=None, **kw):
        b = io.BytesIO()
        Image.fromarray(arr.astype(np.uint8), mode).save(b, "JPEG", **kw)
        h, w = arr.shape[:2]
        c.add(f"jpeg/{name}.jpg", b.getvalue(), "jpeg", expect, w, h,
              1 if arr.ndim == 2 else arr.shape[2], 8, note, same_as)
        return b.getvalue()

    jpg("gray_baseline", content(rng, 53, 37, 1, 255)[:, :, 0], "L", "baseline greyscale", quality=90)
    rgb420 = content(rng, 48, 64, 3, 255)
    jpg("rgb_baseline_420", rgb420, "RGB", "baseline YCbCr 4:2:0", quality=90)
    jpg("rgb_baseline_420_odd", content(rng, 53, 37, 3, 255), "RGB",
        "baseline YCbCr 4:2:0, odd size (partial MCUs, chroma upsampling at the edges)", quality=85)
    jpg("rgb_baseline_444", content(rng, 31, 45, 3, 255), "RGB", "baseline 4:4:4",
        quality=95, subsampling=0)
    jpg("rgb_baseline_422", content(rng, 40, 33, 3, 255), "RGB", "baseline 4:2:2",
        quality=90, subsampling=1)
    jpg("rgb_progressive", content(rng, 48, 64, 3, 255), "RGB", "progressive YCbCr 4:2:0",
        quality=90, progressive=True)
    jpg("gray_progressive", content(rng, 37, 29, 1, 255)[:, :, 0], "L", "progressive greyscale",
        quality=90, progressive=True)
    jpg("rgb_optimized", content(rng, 33, 47, 3, 255), "RGB", "optimized Huffman tables",
        quality=75, optimize=True)
    # EXIF orientation 6 (rotate 90 CW to display): torchvision on Image.open ignores it
    exif = Image.Exif()
    exif[0x0112] = 6
    jpg("rgb_exif_orientation6", rgb420, "RGB",
        "rgb_baseline_420 plus an EXIF Orientation=6 (rotate 90 degrees to display): ignored, "
        "as PIL's Image.open ignores it, so it decodes exactly as rgb_baseline_420",
        same_as="jpeg/rgb_baseline_420.jpg", quality=90, exif=exif.tobytes())
    jpg("cmyk", content(rng, 48, 64, 4, 255), "CMYK",
        "CMYK (Adobe APP14) JPEG: rejected with a reason; PIL would convert it with a naive "
        "formula and no ICC profile", expect="reject", quality=90)
    big = jpg("rgb_for_truncation", content(rng, 96, 128, 3, 255), "RGB", "intact source of "
              "jpeg/truncated_half.jpg", quality=95)
    c.add("hostile/truncated_half.jpg", big[:len(big) // 2], "jpeg", "reject", 128, 96, 3, 8,
          "JPEG cut at half its bytes, inside the entropy-coded data; libjpeg would fill the "
          "rest grey with a warning: must be a reject")


def make_dicoms(c, rng, seed, tmp):
    def add(rel, path, expect, w, h, ch, bits, note, same_as=None):
        with open(path, "rb") as f:
            c.add(rel, f.read(), "dicom", expect, w, h, ch, bits, note, same_as)

    def mk(name, pixels, note, expect="ok", same_as=None, **kw):
        p = os.path.join(tmp, name + ".dcm")
        make_dicom(p, seed, name, pixels, **kw)
        h, w = (pixels.shape[:2] if kw.get("frames") is None else pixels.shape[1:3])
        ch = 3 if kw.get("photometric") == "RGB" else 1
        add(f"dicom/{name}.dcm", p, expect, w, h, ch, kw["bits_stored"], note, same_as)
        return p, w, h, ch, kw["bits_stored"], f"dicom/{name}.dcm"

    m8 = content(rng, 53, 37, 1, 255)[:, :, 0]
    src8 = mk("mono2_8bit_explicit", m8, "MONOCHROME2 8-bit, explicit VR LE, window 128/200",
              bits_allocated=8, bits_stored=8, WindowCenter=128, WindowWidth=200)
    m12 = content(rng, 48, 64, 1, 4095)[:, :, 0]
    src12 = mk("mono2_12in16", m12, "MONOCHROME2 12 bits stored in 16, unsigned, window 2048/4096",
               bits_allocated=16, bits_stored=12, WindowCenter=2048, WindowWidth=4096)
    ct = content(rng, 64, 48, 1, 3200)[:, :, 0] - 200  # raw -200..3000 -> HU -1224..1976
    src_ct = mk("ct_signed16_rescale", ct,
                "CT-like 16-bit signed, RescaleSlope 1 RescaleIntercept -1024, window 40/400 "
                "(soft tissue): many pixels saturate to 0 and 255",
                bits_allocated=16, bits_stored=16, signed=True, Modality="CT",
                RescaleSlope=1, RescaleIntercept=-1024, RescaleType="HU",
                WindowCenter=40, WindowWidth=400)
    mk("ct_signed16_multiwindow", ct[::-1],
       "two windows (1500/-600 lung first, 40/400 second): the FIRST is used",
       bits_allocated=16, bits_stored=16, signed=True, Modality="CT",
       RescaleSlope=1, RescaleIntercept=-1024, WindowCenter=[-600, 40], WindowWidth=[1500, 400])
    mk("mono2_16bit_fractional_rescale", content(rng, 37, 53, 1, 60000)[:, :, 0],
       "16-bit unsigned, RescaleSlope 0.5 RescaleIntercept 100.25, window 7000.5/9001",
       bits_allocated=16, bits_stored=16, RescaleSlope="0.5", RescaleIntercept="100.25",
       WindowCenter="7000.5", WindowWidth="9001")
    overlay = (((np.indices(m12.shape).sum(axis=0) // 4) % 2) << 12) | (rng.integers(0, 8, m12.shape) << 13)
    mk("mono2_12in16_highbits", m12 | overlay,
       "as mono2_12in16, with junk in bits 12-15 (an old-style overlay plane and noise): only "
       "the low BitsStored bits count, so it decodes exactly as mono2_12in16 (pydicom 2.3's "
       "pixel_array does not mask them)", same_as="dicom/mono2_12in16.dcm",
       bits_allocated=16, bits_stored=12, WindowCenter=2048, WindowWidth=4096)
    s12 = content(rng, 37, 41, 1, 4095)[:, :, 0] - 2048
    s12 = np.where(rng.random(s12.shape) < 0.5, s12 & 0x0FFF, s12)  # half not sign-extended
    mk("mono2_signed12_in16", s12,
       "signed, 12 bits stored in 16, values -2048..2047; half the negative samples are "
       "written without sign extension (upper 4 bits 0): bit 11 is the sign either way "
       "(pydicom 2.3's pixel_array does not sign-extend them); window 0/4096",
       bits_allocated=16, bits_stored=12, signed=True, WindowCenter=0, WindowWidth=4096)
    mk("mono2_implicit_le", content(rng, 31, 29, 1, 1023)[:, :, 0],
       "implicit VR little endian, 10 bits stored in 16, no window: min-max",
       bits_allocated=16, bits_stored=10, implicit=True)
    mk("mono1_12in16", content(rng, 40, 45, 1, 4095)[:, :, 0],
       "MONOCHROME1 (white is 0): window 1000/1800 then inverted (255 - v, before rounding)",
       bits_allocated=16, bits_stored=12, photometric="MONOCHROME1",
       WindowCenter=1000, WindowWidth=1800)
    mk("mono1_8bit_nowindow", content(rng, 29, 31, 1, 200)[:, :, 0] + 20,
       "MONOCHROME1 8-bit, no window: min-max then inverted",
       bits_allocated=8, bits_stored=8, photometric="MONOCHROME1")
    mk("mono2_16bit_nowindow", content(rng, 48, 64, 1, 50000)[:, :, 0] + 3000,
       "16-bit unsigned, no window, no rescale: min-max over the image",
       bits_allocated=16, bits_stored=16)
    mk("mono2_constant", np.full((20, 30), 777, np.int64),
       "every pixel equal, no window: min-max of a constant image is all 0",
       bits_allocated=16, bits_stored=16)
    mk("mono2_window_width1", content(rng, 30, 20, 1, 255)[:, :, 0],
       "WindowWidth 1 (the smallest allowed): a threshold at center - 0.5",
       bits_allocated=8, bits_stored=8, WindowCenter=128, WindowWidth=1)
    rgb = content(rng, 48, 64, 3, 255)
    src_rgb = mk("rgb8_planar0", rgb, "RGB 8-bit, PlanarConfiguration 0 (interleaved): as is",
                 bits_allocated=8, bits_stored=8, photometric="RGB", planar=0)
    mk("rgb8_planar1", content(rng, 37, 53, 3, 255), "RGB 8-bit, PlanarConfiguration 1 "
       "(colour-by-plane): as is", bits_allocated=8, bits_stored=8, photometric="RGB", planar=1)
    frames = np.stack([content(rng, 32, 24, 1, 4095)[:, :, 0] for _ in range(3)])
    mk("multiframe_3", frames, "3 frames (NumberOfFrames 3): rejected with a reason, the "
       "workload reads single-frame images only", expect="reject",
       bits_allocated=16, bits_stored=12, frames=3)

    # compressed transfer syntaxes, via gdcmconv
    import pydicom
    def conv(name, src, opts, note, expect="ok", photometric=None, same_as="source"):
        p, w, h, ch, bits, rel = src
        dst = os.path.join(tmp, name + ".dcm")
        gdcmconv(p, dst, *opts)
        # gdcm gives lossy output new, clock-derived UIDs: set seeded ones (and one per file)
        ds = pydicom.dcmread(dst)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = _uid(seed, name + "/sop")
        ds.SeriesInstanceUID = _uid(seed, name + "/series")
        if photometric:
            ds.PhotometricInterpretation = photometric
        ds.save_as(dst, write_like_original=False)
        add(f"dicom/{name}.dcm", dst, expect, w, h, ch, bits, note,
            rel if same_as == "source" else same_as)

    conv("jpeg_baseline_mono8", src8, ["--jpeg", "--lossy", "-q", "90"],
         "JPEG baseline (1.2.840.10008.1.2.4.50), 8-bit MONOCHROME2, lossy", same_as=None)
    conv("jpeg_baseline_ybr8", src_rgb, ["--jpeg", "--lossy", "-q", "90"],
         "JPEG baseline, colour: the stream is YCbCr 4:2:0 (component ids 1,2,3, no JFIF or "
         "Adobe marker), labelled YBR_FULL_422 as the standard asks; decoded to RGB by libjpeg",
         photometric="YBR_FULL_422", same_as=None)
    conv("jpeg_baseline_ybr8_labelled_rgb", src_rgb, ["--jpeg", "--lossy", "-q", "90"],
         "as jpeg_baseline_ybr8, but labelled RGB, as gdcmconv writes it: the JPEG stream, not "
         "the label, decides the colour transform (libjpeg's rule), so it decodes to the same "
         "pixels. gdcmconv --raw gets this file wrong (returns YCbCr samples labelled RGB)",
         same_as="dicom/jpeg_baseline_ybr8.dcm")
    conv("jpeg_lossless_ct", src_ct, ["--jpeg"],
         "JPEG lossless process 14 SV1 (1.2.840.10008.1.2.4.70), 16-bit signed CT")
    conv("jpeg_lossless_12in16", src12, ["--jpeg"], "JPEG lossless SV1, 12 bits stored")
    conv("jpegls_ct", src_ct, ["--jpegls"], "JPEG-LS lossless (1.2.840.10008.1.2.4.80), 16-bit signed CT")
    conv("jpegls_mono8", src8, ["--jpegls"], "JPEG-LS lossless, 8-bit")
    conv("j2k_ct", src_ct, ["--j2k"], "JPEG 2000 lossless (1.2.840.10008.1.2.4.90), 16-bit signed CT")
    conv("j2k_rgb8", src_rgb, ["--j2k"], "JPEG 2000 lossless, RGB 8-bit")
    conv("rle_ct", src_ct, ["--rle"], "RLE lossless (1.2.840.10008.1.2.5), 16-bit signed CT")
    conv("rle_rgb8", src_rgb, ["--rle"], "RLE lossless, RGB 8-bit")
    conv("rle_12in16", src12, ["--rle"], "RLE lossless, 12 bits stored")

    # A compressed frame whose own header disagrees with Rows/Columns: GDCM decodes into a
    # buffer sized from the attributes, so a larger frame would overrun it.
    for name, opts, (rows, cols) in [("j2k_frame_larger", ["--j2k"], (26, 18)),
                                     ("j2k_frame_smaller", ["--j2k"], (106, 74)),
                                     ("jpegls_frame_smaller", ["--jpegls"], (106, 74)),
                                     ("jpeg_lossless_frame_larger", ["--jpeg"], (26, 18))]:
        dst = os.path.join(tmp, name + ".dcm")
        gdcmconv(src8[0], dst, *opts)
        ds = pydicom.dcmread(dst)
        ds.Rows, ds.Columns = rows, cols
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = _uid(seed, name + "/sop")
        ds.SeriesInstanceUID = _uid(seed, name + "/series")
        ds.save_as(dst, write_like_original=False)
        add(f"hostile/dicom_{name}.dcm", dst, "reject", cols, rows, 1, 8,
            f"{opts[0][2:]} frame of 37x53 under a header of {cols}x{rows}: the frame's own header "
            "must agree with the attributes")
    # Sequences nested 5,000 deep (180 KB): GDCM parses them by recursion and overflows the stack.
    with open(src8[0], "rb") as f:
        plain = f.read()
    at = plain.find(b"\xe0\x7f\x10\x00")  # PixelData
    levels = 5000
    nested = ((b"\x08\x00\x40\x11SQ\x00\x00\xff\xff\xff\xff" + b"\xfe\xff\x00\xe0\xff\xff\xff\xff") * levels
              + (b"\xfe\xff\x0d\xe0\x00\x00\x00\x00" + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00") * levels)
    c.add("hostile/dicom_sequences_5000_deep.dcm", plain[:at] + nested + plain[at:], "dicom", "reject",
          37, 53, 1, 8, "5,000 nested sequences (undefined lengths) before PixelData: a reject, "
          "not a stack overflow")
    # The same inside a private UN element of undefined length, whose items are implicit VR.
    item, seq_end, item_end = b"\xfe\xff\x00\xe0\xff\xff\xff\xff", b"\xfe\xff\xdd\xe0\0\0\0\0", b"\xfe\xff\x0d\xe0\0\0\0\0"
    un = (b"\x09\x00\x10\x10UN\0\0\xff\xff\xff\xff" + (item + b"\x09\x00\x10\x10\xff\xff\xff\xff") * levels
          + seq_end + (item_end + seq_end) * levels)
    c.add("hostile/dicom_un_sequences_5000_deep.dcm", plain[:at] + un + plain[at:], "dicom", "reject",
          37, 53, 1, 8, "5,000 nested sequences inside a UN element of undefined length (its items "
          "implicit VR, PS3.5 6.2.2): a reject, not a stack overflow")
    # An element claiming 4 GiB in a file of a few hundred bytes: refused before anything
    # allocates what it claims.
    c.add("hostile/dicom_length_4gib.dcm", plain[:at] + b"\x09\x00\x11\x10OB\0\0\xf0\xff\xff\xff" + bytes(64),
          "dicom", "reject", 37, 53, 1, 8, "a private OB element whose length says 4 GiB, 64 bytes "
          "before the end of the file: truncated")

    conv("deflated_ct", src_ct, ["--deflated"], "Deflated Explicit VR Little Endian "
         "(1.2.840.10008.1.2.1.99): the whole dataset is deflate-compressed")
    ds = pydicom.dcmread(src_ct[0])
    arr = ds.pixel_array
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRBigEndian
    ds.is_little_endian, ds.is_implicit_VR = False, False
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = _uid(seed, "big_endian/sop")
    ds.PixelData = arr.astype(">i2").tobytes()
    p = os.path.join(tmp, "be.dcm")
    ds.save_as(p, write_like_original=False)
    add("dicom/explicit_big_endian_ct.dcm", p, "ok", 48, 64, 1, 16, "Explicit VR Big Endian "
        "(1.2.840.10008.1.2.2, retired but still met): 16-bit samples big-endian",
        src_ct[5])

    # hostile
    ds = pydicom.dcmread(src8[0])
    del ds.PixelData
    p = os.path.join(tmp, "nopixels.dcm")
    ds.save_as(p, write_like_original=False)
    add("hostile/dicom_no_pixel_data.dcm", p, "reject", ds.Columns, ds.Rows, 1, 8,
        "DICOM image attributes but no PixelData element")
    with open(src12[0], "rb") as f:
        full = f.read()
    expected = 48 * 64 * 2
    c.add("hostile/dicom_truncated_pixels.dcm", full[:len(full) - expected // 2], "dicom",
          "reject", 64, 48, 1, 12, "DICOM cut halfway through PixelData (the element's "
          "length says more bytes than the file holds)")


def make_hostile(c, rng):
    c.add("hostile/zero_bytes.png", b"", "png", "reject", None, None, None, None, "empty file")
    c.add("hostile/text_named.png", b"This is not an image, only text with a .png name.\n",
          "png", "reject", None, None, None, None, "plain text named .png")
    big = encode_png(content(rng, 96, 128, 3, 255), 8, 2, rng)
    idat = [ch for ch in png_chunks(big) if ch[1] == b"IDAT"][0]
    cut = idat[2] + idat[3] // 2
    c.add("hostile/png_truncated_idat.png", big[:cut], "png", "reject", 128, 96, 3, 8,
          "PNG cut in the middle of IDAT (no IDAT CRC, no IEND)")
    bad = bytearray(big)
    crc_at = idat[2] + idat[3]
    bad[crc_at:crc_at + 4] = bytes(b ^ 0xFF for b in bad[crc_at:crc_at + 4])
    c.add("hostile/png_idat_crc_error.png", bytes(bad), "png", "reject", 128, 96, 3, 8,
          "IDAT's CRC is wrong (its data and zlib stream are intact): a CRC error in a "
          "critical chunk is a reject (PIL does not check IDAT CRCs)")
    # decompression bomb: IHDR claims 60000x60000 grey, IDAT holds 64 zero rows
    rows = (b"\0" + bytes(60000)) * 64
    bomb = (PNG_SIG + _chunk(b"IHDR", struct.pack(">IIBBBBB", 60000, 60000, 8, 0, 0, 0, 0))
            + _chunk(b"IDAT", zlib.compress(rows, 9)) + _chunk(b"IEND", b""))
    c.add("hostile/png_bomb_60000x60000.png", bomb, "png", "reject", 60000, 60000, 1, 8,
          "IHDR says 60000x60000 (3.6 gigapixels): refused from the header, before any "
          "allocation")
    # complete zlib stream, but fewer rows than IHDR says
    short = content(rng, 40, 30, 1, 255)
    full = encode_png(short, 8, 0, rng)
    ihdr_fix = bytearray(full)
    ch = png_chunks(full)
    ihdr = ch[0]
    data = bytearray(full[ihdr[2]:ihdr[2] + 13])
    data[4:8] = struct.pack(">I", 80)  # height 80, IDAT holds 40 rows
    ihdr_fix[ihdr[0]:ihdr[0] + 25] = _chunk(b"IHDR", bytes(data))
    c.add("hostile/png_short_idat.png", bytes(ihdr_fix), "png", "reject", 30, 80, 1, 8,
          "IHDR says 80 rows, the (complete, valid) zlib stream holds 40: not enough image data")
    zero = bytearray(full)
    data = bytearray(full[ihdr[2]:ihdr[2] + 13])
    data[0:4] = struct.pack(">I", 0)
    zero[ihdr[0]:ihdr[0] + 25] = _chunk(b"IHDR", bytes(data))
    c.add("hostile/png_width_zero.png", bytes(zero), "png", "reject", 0, 40, 1, 8,
          "IHDR width 0 (invalid per the PNG spec)")
    # zlib stream problems that libpng reports only as (benign) warnings and Pillow ignores
    rows_raw = b"".join(b"\0" + bytes(int(v) for v in r) for r in short[:, :, 0])
    ihdr_30x40 = _chunk(b"IHDR", struct.pack(">IIBBBBB", 30, 40, 8, 0, 0, 0, 0))
    co = zlib.compressobj(9)
    no_end = co.compress(rows_raw) + co.flush(zlib.Z_SYNC_FLUSH)
    c.add("hostile/png_zlib_no_end.png", PNG_SIG + ihdr_30x40 + _chunk(b"IDAT", no_end)
          + _chunk(b"IEND", b""), "png", "reject", 30, 40, 1, 8,
          "every row is there, but the zlib stream has no final block (and no Adler-32): "
          "Pillow decodes it, libpng only warns")
    c.add("hostile/png_too_much_data.png", PNG_SIG + ihdr_30x40
          + _chunk(b"IDAT", zlib.compress(rows_raw + rows_raw[:31 * 5], 9)) + _chunk(b"IEND", b""),
          "png", "reject", 30, 40, 1, 8,
          "the zlib stream holds 5 rows more than IHDR implies: Pillow ignores them, libpng warns")
    text = bytearray(encode_png(short, 8, 0, rng, extra_chunks=[(b"tEXt", b"Comment\0hello")]))
    t = [ch for ch in png_chunks(bytes(text)) if ch[1] == b"tEXt"][0]
    text[t[2] + t[3]] ^= 0x55
    c.add("hostile/png_text_crc_error.png", bytes(text), "png", "reject", 30, 40, 1, 8,
          "CRC error in an ancillary chunk (tEXt): a CRC error anywhere is a reject (libpng's "
          "default only warns and drops an ancillary chunk)")
    pal_idx = content(rng, 20, 24, 1, 5)
    c.add("hostile/png_palette_index_beyond_plte.png",
          encode_png(pal_idx, 8, 3, rng, palette=content(rng, 1, 2, 3, 255)[0]), "png", "reject",
          24, 20, 3, 8, "palette of 2 entries, indices up to 5: an error (PNG spec 11.2.3); Pillow "
          "gives such pixels grey, libpng black")
    c.add("hostile/jpeg_header_only.jpg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00"
          b"\x01\x00\x01\x00\x00\xff\xd9", "jpeg", "reject", None, None, None, None,
          "SOI, JFIF APP0, EOI: no frame header, no scan")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    if shutil.which("gdcmconv") is None:
        sys.exit("gdcmconv is needed (Debian: libgdcm-tools)")
    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    c = Corpus(args.out)
    make_pngs(c, rng)
    make_jpegs(c, rng)
    with tempfile.TemporaryDirectory() as tmp:
        make_dicoms(c, rng, args.seed, tmp)
    make_hostile(c, rng)
    with open(os.path.join(args.out, "index.json"), "w") as f:
        json.dump(c.index, f, indent=1)
        f.write("\n")
    n_ok = sum(e["expect"] == "ok" for e in c.index)
    print(f"{len(c.index)} files ({n_ok} ok, {len(c.index) - n_ok} reject) in {args.out}")


if __name__ == "__main__":
    main()
