"""A loopback emulator of the seed AI gateways (digicord, airforce, anyai, purlabs, openai)."""

from tests.emulators.gateway import faults, media
from tests.emulators.gateway.faults import (
    BadBase64,
    BadSseLine,
    Disconnect,
    EmptyAudio,
    Fault,
    Hang,
    HtmlOk,
    Oversized,
    RateLimited,
    ServerError,
    SlowFirstByte,
    Status,
    StreamCut,
    StreamEndsEarly,
    StreamStall,
    WrongShape,
)
from tests.emulators.gateway.server import PROFILES, GatewayEmulator, RecordedRequest

__all__ = [
    "PROFILES",
    "BadBase64",
    "BadSseLine",
    "Disconnect",
    "EmptyAudio",
    "Fault",
    "GatewayEmulator",
    "Hang",
    "HtmlOk",
    "Oversized",
    "RateLimited",
    "RecordedRequest",
    "ServerError",
    "SlowFirstByte",
    "Status",
    "StreamCut",
    "StreamEndsEarly",
    "StreamStall",
    "WrongShape",
    "faults",
    "media",
]
