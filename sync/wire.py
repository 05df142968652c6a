"""Framing of sync messages on the wire: versioned, compressed CBOR. Pure.

A frame is ``b"SSY" + version (1 byte) + codec (1 byte) + body``:

    codec 0  body is CBOR
    codec 1  body is zstd-compressed CBOR (what devices send: a batch of similar entries shrinks ~3x)

CBOR here is plain (not canonical): entries inside a batch travel as the exact signed bytes they
were journaled as, so the frame's own encoding never touches what was signed. Decompressed size is
bounded (MAX_FRAME) while decompressing, whatever the frame header declares, so a hostile frame
cannot exhaust memory (:func:`_inflate`).
"""

from __future__ import annotations

from typing import Any

import cbor2
import zstandard

from sync.errors import WireError

MAGIC = b"SSY"
VERSION = 1
RAW, ZSTD = 0, 1
MAX_FRAME = 64 * 1024 * 1024
_CHUNK = 1024 * 1024
CONTENT_TYPE = "application/x-settle-sync"



def encode(message: Any, *, compress: bool = True) -> bytes:
    body = cbor2.dumps(message)
    if compress:
        # ZstdCompressor objects are not thread-safe; one per call is cheap enough at this size.
        return MAGIC + bytes((VERSION, ZSTD)) + zstandard.ZstdCompressor(level=3).compress(body)
    return MAGIC + bytes((VERSION, RAW)) + body


def _inflate(body: bytes) -> bytes:
    """zstd-decompress at most MAX_FRAME bytes, whatever the frame header declares.

    ``ZstdDecompressor.decompress`` trusts a frame that states its content size (it allocates that
    much: an 8 KB frame declaring 256 MiB is 256 MiB, one declaring 1 TiB is a MemoryError) and
    ignores ``max_output_size`` then. A stream reader allocates only what it returns, so reading in
    chunks and stopping at MAX_FRAME + 1 bounds memory for every frame."""
    out = bytearray()
    try:
        with zstandard.ZstdDecompressor().stream_reader(body, read_across_frames=True) as reader:
            while chunk := reader.read(_CHUNK):
                out += chunk
                if len(out) > MAX_FRAME:
                    raise WireError(f"sync frame expands beyond {MAX_FRAME} bytes: refused (send smaller batches)",
                                    code="frame_too_large", status=413)
    except zstandard.ZstdError as exc:
        raise WireError(f"sync frame is not valid zstd ({exc}): the body was truncated or altered") from exc
    return bytes(out)


def decode(frame: bytes) -> Any:
    if len(frame) < 5 or frame[:3] != MAGIC:
        raise WireError("not a sync frame (bad magic): the peer is not a settlement centre/agent, or a proxy "
                        "altered the body")
    version, codec = frame[3], frame[4]
    if version != VERSION:
        raise WireError(f"sync frame version {version} is not supported (this side speaks {VERSION}): "
                        "upgrade the older side")
    body = frame[5:]
    if codec == ZSTD:
        body = _inflate(body)
    elif codec != RAW:
        raise WireError(f"unknown sync frame codec {codec}")
    if len(body) > MAX_FRAME:
        raise WireError("sync frame is too large", code="frame_too_large", status=413)
    try:
        return cbor2.loads(body)
    except Exception as exc:  # cbor2 raises several types for truncated/garbage input
        raise WireError(f"sync frame body is not CBOR ({exc.__class__.__name__}): truncated or altered") from exc
