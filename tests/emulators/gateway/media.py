"""Small valid media files built in code: a PNG and a second of silent MP3."""

from __future__ import annotations

import struct
import zlib


def png(width: int = 16, height: int = 16, rgb: tuple[int, int, int] = (88, 101, 242)) -> bytes:
    """A solid-colour RGB PNG that any decoder accepts."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    row = b"\x00" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


def mp3(frames: int = 39) -> bytes:
    """MPEG-1 Layer III, 128 kbit/s, 44.1 kHz, mono frames of silence (39 frames ≈ 1 s).

    Each frame is a 4-byte header, 17 bytes of zeroed side information (no main data: silence)
    and zero padding up to the frame length of 144 * 128000 / 44100 = 417 bytes.
    """
    header = bytes([0xFF, 0xFB, 0x90, 0xC0])
    frame = header + bytes(417 - len(header))
    return frame * frames
