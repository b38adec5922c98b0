"""The one door for every URL the bot downloads itself: public addresses only, size-capped, type-checked."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import socket
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Literal

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from bot.errors import ConcordError
from bot.providers.transport import USER_AGENT

log = logging.getLogger(__name__)

Kind = Literal["image", "audio", "video", "text", "other"]
Expect = Literal["image", "audio", "text", "any"]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Enough leading bytes to tell every recognised format apart.
SNIFF_BYTES = 16
CHUNK_BYTES = 64 * 1024

ADDRESS_REFUSED = "That link points to a private or reserved network address, so it was not downloaded."


class FetchRefused(ConcordError):
    """A download was refused or failed; the message never names an internal host or address."""


@dataclass(frozen=True)
class FetchedFile:
    data: bytes
    content_type: str  # detected from the first bytes, never the server's word
    kind: Kind
    url: str  # after redirects
    filename: str  # safe to hand to Discord as an attachment name

    @property
    def size(self) -> int:
        return len(self.data)


# --- what is at an address -------------------------------------------------------------------

# Ranges refused even where `is_global` says otherwise (its answer differs across Python versions).
_ALWAYS_REFUSED: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(net)
    for net in (
        "0.0.0.0/8",  # "this network", 0.0.0.0 included
        "10.0.0.0/8",
        "100.64.0.0/10",  # CGNAT
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local, cloud metadata at 169.254.169.254
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, broadcast included
        "::/96",  # unspecified, loopback and the old IPv4-compatible form
        "64:ff9b:1::/48",  # local-use NAT64
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "fec0::/10",  # old site-local
        "ff00::/8",  # multicast
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries and would reach (mapped, NAT64, 6to4, Teredo)."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    return None


def is_public(address: IPAddress) -> bool:
    """True for an address on the public internet; every special-purpose range is refused.

    Callers pass addresses without an IPv6 zone (`%eth0`).
    """
    if isinstance(address, ipaddress.IPv6Address):
        inner = embedded_ipv4(address)
        if inner is not None and not is_public(inner):
            return False
    if any(address in net for net in _ALWAYS_REFUSED if net.version == address.version):
        return False
    return bool(
        address.is_global
        and not (
            address.is_private
            or address.is_loopback
            or address.is_link_local
            or address.is_multicast
            or address.is_reserved
            or address.is_unspecified
        )
    )


def literal_address(host: str) -> IPAddress | None:
    """The address a URL host spells, if it spells one in the canonical form; None for a name.

    Raises FetchRefused for a host a socket library would read as an IPv4 address but that is not
    written as four decimal parts (2130706433, 0177.0.0.1, 0x7f.0.0.1, 127.1): nobody links to a
    file that way except to slip past a check.
    """
    bare = host.strip("[]").rstrip(".")
    try:
        return ipaddress.ip_address(bare.split("%", 1)[0])
    except ValueError:
        pass
    try:
        socket.inet_aton(bare)
    except OSError:
        pass
    else:
        raise FetchRefused(ADDRESS_REFUSED)
    if ":" in bare or bare.replace(".", "").isdigit():
        # aiohttp takes such a host for an address and skips the resolver, so it must parse here.
        raise FetchRefused(ADDRESS_REFUSED)
    return None


# --- the allowlist (tests and emulators only) ------------------------------------------------

_HOST_RE = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")


@dataclass(frozen=True)
class Allowlist:
    """Non-public networks and host names a fetch may reach anyway; empty in production."""

    networks: tuple[tuple[IPNetwork, int | None], ...] = ()
    hosts: tuple[tuple[str, int | None], ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> Allowlist:
        networks: list[tuple[IPNetwork, int | None]] = []
        hosts: list[tuple[str, int | None]] = []
        for raw in entries:
            entry = raw.strip().lower()
            if not entry:
                continue
            network, port = _parse_network(entry)
            if network is not None:
                networks.append((network, port))
                continue
            name, _, port_text = entry.partition(":")
            name = name.rstrip(".")
            if not _HOST_RE.match(name) or (port_text and not _valid_port(port_text)):
                raise ValueError(f"{raw.strip()!r} is not a host[:port], an IP address or a CIDR network")
            hosts.append((name, int(port_text) if port_text else None))
        return cls(tuple(networks), tuple(hosts))

    def allows(self, host: str, port: int, address: IPAddress) -> bool:
        name = host.strip("[]").rstrip(".").lower()
        for allowed_name, allowed_port in self.hosts:
            if allowed_name == name and allowed_port in (None, port):
                return True
        for network, allowed_port in self.networks:
            if address.version == network.version and address in network and allowed_port in (None, port):
                return True
        return False


def _valid_port(text: str) -> bool:
    return text.isdigit() and 0 < int(text) < 65536


def _parse_network(entry: str) -> tuple[IPNetwork | None, int | None]:
    """An IP, a CIDR network, `a.b.c.d:port` or `[v6]:port`; (None, None) when the entry is a name."""
    port: int | None = None
    text = entry
    if entry.startswith("["):
        text, _, rest = entry[1:].partition("]")
        if rest:
            if not rest.startswith(":") or not _valid_port(rest[1:]):
                raise ValueError(f"{entry!r} has an invalid port")
            port = int(rest[1:])
    elif entry.count(":") == 1:
        head, _, tail = entry.partition(":")
        try:
            ipaddress.IPv4Address(head)
        except ValueError:
            return None, None
        if not _valid_port(tail):
            raise ValueError(f"{entry!r} has an invalid port")
        text, port = head, int(tail)
    try:
        return ipaddress.ip_network(text, strict=False), port
    except ValueError:
        if entry.startswith("["):
            raise ValueError(f"{entry!r} is not an IP address") from None
        return None, None


# --- the check at connect time ---------------------------------------------------------------


class AddressRefused(OSError):
    """Raised inside the connector when a host resolves to an address the guard refuses."""


class GuardedResolver(AbstractResolver):
    """Wraps a real resolver and refuses a name when any address it resolves to is not public."""

    def __init__(self, inner: AbstractResolver, allowlist: Allowlist) -> None:
        self._inner = inner
        self._allowlist = allowlist

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            address = ipaddress.ip_address(result["host"].split("%", 1)[0])
            if not (is_public(address) or self._allowlist.allows(host, result["port"], address)):
                raise AddressRefused("the host resolves to a refused address")
        if not results:
            raise AddressRefused("the host resolves to nothing")
        return results

    async def close(self) -> None:
        await self._inner.close()


# --- what the bytes are ----------------------------------------------------------------------

_AUDIO_MP4_BRANDS = frozenset({b"M4A ", b"M4B ", b"M4P ", b"F4A ", b"F4B "})
_EXTENSIONS = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/gif": ".gif",
    "image/webp": ".webp",
    "audio/mpeg": ".mp3",
    "audio/aac": ".aac",
    "audio/ogg": ".ogg",
    "audio/wav": ".wav",
    "audio/mp4": ".m4a",
    "audio/flac": ".flac",
    "video/mp4": ".mp4",
    "video/webm": ".webm",
    "text/plain": ".txt",
}


def sniff(head: bytes) -> tuple[str, Kind] | None:
    """The media type the first bytes announce, or None when no known signature matches."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png", "image"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg", "image"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif", "image"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp", "image"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "audio/wav", "audio"
    if head.startswith(b"ID3"):
        return "audio/mpeg", "audio"
    if len(head) >= 3 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        version, layer, bitrate = (head[1] >> 3) & 3, (head[1] >> 1) & 3, head[2] >> 4
        if layer == 0 and head[1] & 0xF6 == 0xF0:
            return "audio/aac", "audio"  # ADTS
        if version != 1 and layer != 0 and bitrate != 15:
            return "audio/mpeg", "audio"  # an MPEG audio frame header
    if head.startswith(b"OggS"):
        return "audio/ogg", "audio"
    if head.startswith(b"fLaC"):
        return "audio/flac", "audio"
    if head[4:8] == b"ftyp":
        return ("audio/mp4", "audio") if head[8:12] in _AUDIO_MP4_BRANDS else ("video/mp4", "video")
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video/webm", "video"
    return None


def classify(data: bytes) -> tuple[str, Kind]:
    found = sniff(data[:SNIFF_BYTES])
    if found is not None:
        return found
    if b"\x00" not in data:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            return "text/plain", "text"
    return "application/octet-stream", "other"


def _type_refusal(expect: Expect) -> str:
    return {
        "image": "That file is not an image Concord can use (PNG, JPEG, GIF or WEBP).",
        "audio": "That file is not audio Concord can use (MP3, OGG, WAV, M4A or FLAC).",
        "text": "That file is not plain UTF-8 text.",
        "any": "",
    }[expect]


def _matches(expect: Expect, content_type: str, kind: Kind) -> bool:
    if expect == "any":
        return True
    if expect == "audio":
        # MP4 audio is often labelled with a generic brand (isom, mp42); FFmpeg plays its sound either way.
        return kind == "audio" or content_type == "video/mp4"
    return kind == expect


def safe_filename(name: str | None, url: URL, content_type: str) -> str:
    """A name Discord and a file system accept: the given one or the URL's, with the detected extension."""
    raw = name if name is not None else url.name
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", raw.replace("\\", "/").rsplit("/", 1)[-1]).strip("._")
    extension = _EXTENSIONS.get(content_type)
    if extension is not None:
        if "." in stem:
            stem = stem.rsplit(".", 1)[0]
        stem = stem[: 100 - len(extension)].rstrip("._") or "file"
        return stem + extension
    return stem[:100].rstrip("._") or "file"


def describe_size(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.1f} MiB"
    if size >= 1024:
        return f"{size / 1024:.0f} KiB"
    return f"{size} bytes"


# --- the fetcher -----------------------------------------------------------------------------


class GuardedFetcher:
    """Downloads a URL for the bot, refusing non-public addresses at connect time and on every redirect.

    Owns its own aiohttp session (created on first use inside the running loop) so that its
    connector, resolver and policy apply to every download and to nothing else.
    """

    def __init__(
        self,
        *,
        allowlist: Collection[str] = (),
        connect_timeout: float = 5.0,
        total_timeout: float = 30.0,
        max_redirects: int = 3,
        user_agent: str = USER_AGENT,
        resolver: AbstractResolver | None = None,
    ) -> None:
        """`resolver` does the lookups (the threaded system resolver when None); the guard filters them."""
        self._allowlist = Allowlist.parse(allowlist)
        self._connect_timeout = connect_timeout
        self._total_timeout = total_timeout
        self._max_redirects = max_redirects
        self._user_agent = user_agent
        self._inner_resolver = resolver
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            inner = self._inner_resolver or aiohttp.ThreadedResolver()
            connector = aiohttp.TCPConnector(
                resolver=GuardedResolver(inner, self._allowlist), limit=16, ttl_dns_cache=10
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers={"User-Agent": self._user_agent, "Accept-Encoding": "identity"},
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._connect_timeout),
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,  # a proxy from the environment would connect on the fetcher's behalf
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def fetch(
        self, url: str, *, max_bytes: int, expect: Expect = "any", filename: str | None = None
    ) -> FetchedFile:
        """Download `url` (at most `max_bytes`), or raise FetchRefused with one sentence for the user."""
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        target = self._check_url(url)
        try:
            async with asyncio.timeout(self._total_timeout):
                return await self._follow(target, max_bytes=max_bytes, expect=expect, filename=filename)
        except TimeoutError:
            raise FetchRefused("The download took too long and was stopped.") from None

    def _check_url(self, url: str | URL) -> URL:
        try:
            target = url if isinstance(url, URL) else URL(url)
            host, port = target.host, target.port
        except (ValueError, TypeError):
            raise FetchRefused("That link is not a valid web address.") from None
        if target.scheme not in ("http", "https"):
            raise FetchRefused("Only http and https links can be downloaded.")
        if not host or port is None:
            raise FetchRefused("That link is not a valid web address.")
        if target.user is not None or target.password is not None:
            raise FetchRefused("Links with a user name or password in them are not downloaded.")
        address = literal_address(host)
        if address is not None and not (is_public(address) or self._allowlist.allows(host, port, address)):
            raise FetchRefused(ADDRESS_REFUSED)
        return target.with_fragment(None)

    async def _follow(
        self, target: URL, *, max_bytes: int, expect: Expect, filename: str | None
    ) -> FetchedFile:
        session = self._get_session()
        for hop in range(self._max_redirects + 1):
            try:
                async with session.get(target, allow_redirects=False) as response:
                    self._check_peer(response, target)
                    if response.status in REDIRECT_STATUSES:
                        location = response.headers.get("Location")
                        if not location:
                            raise FetchRefused("That link redirected without saying where to.")
                        if hop == self._max_redirects:
                            raise FetchRefused("That link redirects too many times.")
                        try:
                            next_url = target.join(URL(location))
                        except ValueError:
                            raise FetchRefused("That link redirected to an invalid address.") from None
                        target = self._check_url(next_url)
                        continue
                    if not 200 <= response.status < 300:
                        raise FetchRefused(
                            f"The file could not be downloaded (its server answered {response.status})."
                        )
                    data = await self._read(response, max_bytes=max_bytes, expect=expect)
                    content_type, kind = classify(data)
                    if not _matches(expect, content_type, kind):
                        raise FetchRefused(_type_refusal(expect))
                    return FetchedFile(
                        data=data,
                        content_type=content_type,
                        kind=kind,
                        url=str(response.url),
                        filename=safe_filename(filename, response.url, content_type),
                    )
            except aiohttp.ClientConnectorError as exc:
                if isinstance(exc.os_error, AddressRefused) or isinstance(exc.__cause__, AddressRefused):
                    raise FetchRefused(ADDRESS_REFUSED) from None
                log.info("fetch: could not connect: %s", type(exc).__name__)
                raise FetchRefused("The file's server could not be reached.") from None
            except aiohttp.ServerTimeoutError:
                raise FetchRefused("The file's server did not answer in time.") from None
            except aiohttp.InvalidURL:
                raise FetchRefused(ADDRESS_REFUSED) from None
            except aiohttp.ClientError as exc:
                log.info("fetch: transfer failed: %s", type(exc).__name__)
                raise FetchRefused("The download failed part-way; try again.") from None
        raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover

    def _check_peer(self, response: aiohttp.ClientResponse, target: URL) -> None:
        """Belt and braces: the socket's actual peer must pass the same test the resolver applied."""
        connection = response.connection
        peer = (
            connection.transport.get_extra_info("peername") if connection and connection.transport else None
        )
        if not peer:
            return
        address = ipaddress.ip_address(str(peer[0]).split("%", 1)[0])
        host, port = target.host or "", target.port or 0
        if not (is_public(address) or self._allowlist.allows(host, port, address)):
            raise FetchRefused(ADDRESS_REFUSED)

    @staticmethod
    async def _read(response: aiohttp.ClientResponse, *, max_bytes: int, expect: Expect) -> bytes:
        too_big = FetchRefused(f"That file is larger than the {describe_size(max_bytes)} limit.")
        if response.content_length is not None and response.content_length > max_bytes:
            raise too_big
        buffer = bytearray()
        sniffed = False
        async for chunk in response.content.iter_chunked(CHUNK_BYTES):
            buffer += chunk
            if len(buffer) > max_bytes:
                raise too_big
            if not sniffed and expect in ("image", "audio") and len(buffer) >= SNIFF_BYTES:
                # Refuse a wrong type as soon as its first bytes show it, before reading the rest.
                sniffed = True
                found = sniff(bytes(buffer[:SNIFF_BYTES]))
                if found is None or not _matches(expect, *found):
                    raise FetchRefused(_type_refusal(expect))
        return bytes(buffer)
