"""The guarded fetcher against a real loopback server: what it refuses before connecting, what it returns."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from bot.config import load_settings
from bot.discordkit.tree import explain
from bot.errors import ConcordError, ConfigError
from bot.services.fetcher import (
    Allowlist,
    FetchRefused,
    GuardedFetcher,
    classify,
    is_public,
    safe_filename,
    sniff,
)

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(64)
MP3_ID3 = b"ID3\x04\x00\x00\x00\x00\x00\x00" + bytes(64)
MP3_FRAME = b"\xff\xfb\x90\x64" + bytes(64)
HTML = b"<!doctype html><html><body>not an image</body></html>"


# --- a loopback "remote" -----------------------------------------------------------------------


class Remote:
    def __init__(self) -> None:
        self.runner: web.AppRunner | None = None
        self.port = 0
        self.hits: list[str] = []

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    async def start(self) -> None:
        app = web.Application()
        app.middlewares.append(self._count)
        app.router.add_get("/png", self._bytes(PNG, "image/png"))
        app.router.add_get("/img/cat picture.jpeg", self._bytes(PNG, "image/png"))
        app.router.add_get("/mp3", self._bytes(MP3_ID3, "audio/mpeg"))
        app.router.add_get("/mp3-frames", self._bytes(MP3_FRAME, "application/octet-stream"))
        app.router.add_get("/lying-html", self._bytes(HTML, "image/png"))
        app.router.add_get("/text", self._bytes("héllo\n".encode(), "text/plain"))
        app.router.add_get("/missing", self._missing)
        app.router.add_get("/redirect", self._redirect)
        app.router.add_get("/hops/{n}", self._hops)
        app.router.add_get("/big-declared", self._big_declared)
        app.router.add_get("/big-streamed", self._big_streamed)
        app.router.add_get("/slow", self._slow)
        self.runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    @web.middleware
    async def _count(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.hits.append(request.path)
        return await handler(request)

    @staticmethod
    def _bytes(body: bytes, content_type: str) -> Any:
        async def handler(request: web.Request) -> web.Response:
            return web.Response(body=body, headers={"Content-Type": content_type})

        return handler

    async def _missing(self, request: web.Request) -> web.Response:
        return web.Response(status=404, text="no")

    async def _redirect(self, request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": request.query["to"]})

    async def _hops(self, request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        return web.Response(status=307, headers={"Location": f"/hops/{n - 1}" if n > 1 else "/png"})

    async def _big_declared(self, request: web.Request) -> web.StreamResponse:
        # Declares 100 MB, sends a little, then stalls: a fetcher that read on would time out instead.
        response = web.StreamResponse(headers={"Content-Type": "image/png", "Content-Length": str(10**8)})
        await response.prepare(request)
        await response.write(PNG)
        await asyncio.sleep(30)
        return response

    async def _big_streamed(self, request: web.Request) -> web.StreamResponse:
        # Chunked, no Content-Length, never ends: only counting while reading stops it.
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(PNG)
        while True:
            await response.write(bytes(16 * 1024))
            await asyncio.sleep(0)

    async def _slow(self, request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.Response(body=PNG)

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


class MapResolver(AbstractResolver):
    """Answers names from a table, the way a DNS server that lies would; never touches the network."""

    def __init__(self, table: dict[str, str]) -> None:
        self.table = table
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        address = self.table[host]
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [{"hostname": host, "host": address, "port": port, "family": family, "proto": 0, "flags": 0}]

    async def close(self) -> None:
        return None


@pytest.fixture(autouse=True)
async def no_traffic_off_loopback(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[list[Any]]:
    """Safety net: any connect to a non-loopback address fails here, and the test fails with it."""
    loop = asyncio.get_running_loop()
    real = loop.sock_connect
    attempts: list[Any] = []

    async def guarded(sock: socket.socket, address: Any) -> None:
        if not ipaddress.ip_address(str(address[0]).split("%")[0]).is_loopback:
            attempts.append(address)
            raise OSError("test safety net: connect off loopback blocked")
        await real(sock, address)

    monkeypatch.setattr(loop, "sock_connect", guarded)
    yield attempts
    assert attempts == [], f"a connection off loopback was attempted: {attempts}"


@pytest.fixture
async def remote() -> AsyncIterator[Remote]:
    server = Remote()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def fetcher() -> AsyncIterator[GuardedFetcher]:
    guarded = GuardedFetcher(
        allowlist=["127.0.0.1"],
        total_timeout=5.0,
        resolver=MapResolver(
            {"private.test": "10.0.0.1", "emu.test": "127.0.0.1", "meta.test": "169.254.169.254"}
        ),
    )
    yield guarded
    await guarded.close()


@pytest.fixture
async def strict() -> AsyncIterator[GuardedFetcher]:
    """The production shape: empty allowlist, the system resolver."""
    guarded = GuardedFetcher(total_timeout=5.0)
    yield guarded
    await guarded.close()


async def refused(fetcher: GuardedFetcher, url: str, **kwargs: Any) -> str:
    with pytest.raises(FetchRefused) as caught:
        await fetcher.fetch(url, max_bytes=kwargs.pop("max_bytes", 1 << 20), **kwargs)
    message = caught.value.user_message
    # One sentence for a person: no URL, host or address of what was refused.
    assert message.endswith(".") and "://" not in message and "127." not in message
    for forbidden in ("10.0", "169.254", "localhost", "::", "private.test", "0x7f", "0177", "2130706433"):
        assert forbidden not in message
    return message


# --- the happy path ------------------------------------------------------------------------------


async def test_png_bytes_come_back_typed_by_their_first_bytes(
    fetcher: GuardedFetcher, remote: Remote
) -> None:
    got = await fetcher.fetch(remote.url("/png"), max_bytes=1024, expect="image")
    assert got.data == PNG and got.content_type == "image/png" and got.kind == "image"
    assert got.url == remote.url("/png") and got.filename == "png.png"


async def test_mp3_is_recognised_by_id3_and_by_frame_sync(fetcher: GuardedFetcher, remote: Remote) -> None:
    tagged = await fetcher.fetch(remote.url("/mp3"), max_bytes=1024, expect="audio", filename="song")
    framed = await fetcher.fetch(remote.url("/mp3-frames"), max_bytes=1024, expect="audio")
    assert (tagged.content_type, tagged.kind, tagged.filename) == ("audio/mpeg", "audio", "song.mp3")
    assert (framed.content_type, framed.data) == ("audio/mpeg", MP3_FRAME)


async def test_the_filename_is_made_safe_and_takes_the_detected_extension(
    fetcher: GuardedFetcher, remote: Remote
) -> None:
    got = await fetcher.fetch(remote.url("/img/cat%20picture.jpeg"), max_bytes=1024)
    assert got.filename == "cat_picture.png"
    assert safe_filename("../../etc/passwd", URL("http://example.com/"), "text/plain") == "passwd.txt"
    assert safe_filename("...", URL("http://example.com/"), "application/octet-stream") == "file"


async def test_an_allowlisted_name_passes_the_resolver(fetcher: GuardedFetcher, remote: Remote) -> None:
    got = await fetcher.fetch(remote.url("/png", host="emu.test"), max_bytes=1024, expect="image")
    assert got.data == PNG


async def test_redirects_within_the_limit_are_followed(fetcher: GuardedFetcher, remote: Remote) -> None:
    got = await fetcher.fetch(remote.url("/hops/3"), max_bytes=1024, expect="image")
    assert got.url == remote.url("/png") and remote.hits == ["/hops/3", "/hops/2", "/hops/1", "/png"]


# --- refused addresses: each form, before any connection ------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/png",  # loopback, not allowlisted here
        "http://localhost:{port}/png",  # a name that resolves to loopback
        "http://10.1.2.3/png",
        "http://172.16.0.1/png",
        "http://192.168.1.1/png",
        "http://169.254.169.254/latest/meta-data/",
        "http://100.64.0.1/png",
        "http://224.0.0.1/png",
        "http://0.0.0.0:{port}/png",
        "http://[::1]:{port}/png",
        "http://[::ffff:127.0.0.1]:{port}/png",
        "http://[fe80::1]/png",
        "http://[fc00::1]/png",
        "http://2130706433:{port}/png",  # decimal 127.0.0.1
        "http://0177.0.0.1:{port}/png",  # octal
        "http://0x7f.0.0.1:{port}/png",  # hex
        "http://127.1:{port}/png",  # short form
    ],
)
async def test_non_public_addresses_are_refused(strict: GuardedFetcher, remote: Remote, url: str) -> None:
    message = await refused(strict, url.format(port=remote.port))
    assert "private or reserved network address" in message
    assert remote.hits == []


@pytest.mark.parametrize(
    ("url", "sentence"),
    [
        ("file:///etc/passwd", "Only http and https"),
        ("ftp://example.com/x.png", "Only http and https"),
        ("gopher://example.com/", "Only http and https"),
        ("javascript:alert(1)", "Only http and https"),
        ("http://user:pw@example.com/x.png", "user name or password"),
        ("http:///nohost", "not a valid web address"),
    ],
)
async def test_other_schemes_and_malformed_links_are_refused(
    strict: GuardedFetcher, url: str, sentence: str
) -> None:
    assert sentence in await refused(strict, url)


@pytest.mark.parametrize("name", ["private.test", "meta.test"])
async def test_a_name_that_resolves_to_a_private_address_is_refused_before_connecting(
    fetcher: GuardedFetcher, remote: Remote, no_traffic_off_loopback: list[Any], name: str
) -> None:
    message = await refused(fetcher, f"http://{name}:{remote.port}/png")
    assert "private or reserved" in message and no_traffic_off_loopback == []


@pytest.mark.parametrize(
    "target",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://private.test/png",
        "http://[::ffff:10.0.0.1]/png",
        "http://0x7f.0.0.1/png",
        "file:///etc/passwd",
    ],
)
async def test_a_redirect_to_a_refused_host_is_refused(
    fetcher: GuardedFetcher, remote: Remote, target: str
) -> None:
    await refused(fetcher, remote.url(f"/redirect?to={quote(target, safe='')}"))
    assert remote.hits == ["/redirect"]


async def test_a_redirect_to_loopback_is_refused_when_only_the_first_host_is_allowed(remote: Remote) -> None:
    guarded = GuardedFetcher(
        allowlist=[f"emu.test:{remote.port}"], resolver=MapResolver({"emu.test": "127.0.0.1"})
    )
    try:
        ok = await guarded.fetch(remote.url("/png", host="emu.test"), max_bytes=1024)
        assert ok.data == PNG
        await refused(
            guarded, remote.url(f"/redirect?to=http://127.0.0.1:{remote.port}/png", host="emu.test")
        )
        assert remote.hits == ["/png", "/redirect"]
    finally:
        await guarded.close()


async def test_too_many_redirects_are_refused(fetcher: GuardedFetcher, remote: Remote) -> None:
    assert "redirects too many times" in await refused(fetcher, remote.url("/hops/4"))
    assert "/png" not in remote.hits and len(remote.hits) == 4


# --- size, type, status, time -----------------------------------------------------------------------


async def test_a_declared_oversized_body_is_refused_without_reading_it(
    fetcher: GuardedFetcher, remote: Remote
) -> None:
    message = await refused(fetcher, remote.url("/big-declared"), max_bytes=1000)
    assert "larger than the 1000 bytes limit" in message  # not a timeout: the body was never waited for


async def test_an_undeclared_oversized_body_is_cut_off_while_reading(
    fetcher: GuardedFetcher, remote: Remote
) -> None:
    message = await refused(fetcher, remote.url("/big-streamed"), max_bytes=256 * 1024)
    assert "larger than the 256 KiB limit" in message


async def test_the_declared_content_type_is_not_believed(fetcher: GuardedFetcher, remote: Remote) -> None:
    assert "not an image" in await refused(fetcher, remote.url("/lying-html"), expect="image")
    assert "not audio" in await refused(fetcher, remote.url("/png"), expect="audio")
    assert "not plain UTF-8 text" in await refused(fetcher, remote.url("/png"), expect="text")
    text = await fetcher.fetch(remote.url("/text"), max_bytes=100, expect="text")
    assert (text.kind, text.content_type, text.data.decode()) == ("text", "text/plain", "héllo\n")
    anything = await fetcher.fetch(remote.url("/lying-html"), max_bytes=1000)
    assert anything.kind == "text"


async def test_a_non_2xx_answer_is_a_sentence(fetcher: GuardedFetcher, remote: Remote) -> None:
    assert await refused(fetcher, remote.url("/missing")) == (
        "The file could not be downloaded (its server answered 404)."
    )


async def test_a_slow_server_hits_the_total_timeout(remote: Remote) -> None:
    guarded = GuardedFetcher(allowlist=["127.0.0.1"], total_timeout=0.3)
    try:
        started = asyncio.get_running_loop().time()
        assert "took too long" in await refused(guarded, remote.url("/slow"))
        assert asyncio.get_running_loop().time() - started < 3
    finally:
        await guarded.close()


async def test_a_connect_that_hangs_hits_the_connect_timeout(
    remote: Remote, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = asyncio.get_running_loop()
    real = loop.sock_connect

    async def hanging(sock: socket.socket, address: Any) -> None:
        if address[1] == remote.port:
            await asyncio.sleep(30)  # a SYN that is never answered
        await real(sock, address)

    monkeypatch.setattr(loop, "sock_connect", hanging)
    guarded = GuardedFetcher(allowlist=["127.0.0.1"], connect_timeout=0.2, total_timeout=10)
    try:
        started = loop.time()
        assert "did not answer in time" in await refused(guarded, remote.url("/png"))
        assert loop.time() - started < 3 and remote.hits == []
    finally:
        await guarded.close()


async def test_a_closed_port_is_a_sentence(fetcher: GuardedFetcher) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert "could not be reached" in await refused(fetcher, f"http://127.0.0.1:{port}/png")


async def test_the_command_tree_shows_the_refusal_as_is() -> None:
    error = FetchRefused("That link redirects too many times.")
    assert isinstance(error, ConcordError)
    assert explain(error, where="test") == "That link redirects too many times."


# --- the pure parts ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (PNG, ("image/png", "image")),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", ("image/jpeg", "image")),
        (b"GIF89a\x01\x00", ("image/gif", "image")),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", ("image/webp", "image")),
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", ("audio/wav", "audio")),
        (b"OggS\x00\x02", ("audio/ogg", "audio")),
        (b"fLaC\x00\x00\x00\x22", ("audio/flac", "audio")),
        (b"\x00\x00\x00\x20ftypM4A \x00\x00", ("audio/mp4", "audio")),
        (b"\x00\x00\x00\x20ftypisom\x00\x00", ("video/mp4", "video")),
        (MP3_ID3, ("audio/mpeg", "audio")),
        (MP3_FRAME, ("audio/mpeg", "audio")),
    ],
)
def test_signatures(head: bytes, expected: tuple[str, str]) -> None:
    assert sniff(head[:16]) == expected


def test_unknown_bytes_are_text_or_other() -> None:
    assert sniff(HTML[:16]) is None and classify(HTML) == ("text/plain", "text")
    assert classify(b"\x00\x01\x02binary") == ("application/octet-stream", "other")
    assert sniff(b"\xff\xff\xff\xff") is None  # a frame sync with reserved fields is not MP3


@pytest.mark.parametrize(
    "address",
    ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"],
)
def test_public_addresses_pass(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "10.0.0.1", "172.31.255.255", "192.168.0.1", "169.254.169.254", "100.64.0.1",
        "100.127.255.254", "224.0.0.1", "239.255.255.250", "0.0.0.0", "255.255.255.255", "240.0.0.1",
        "198.18.0.1", "::", "::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "fe80::1", "fc00::1", "fd12::1",
        "ff02::1", "64:ff9b::a00:1", "2002:a00:1::1", "::7f00:1",
    ],
)  # fmt: skip
def test_special_purpose_addresses_are_not_public(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))


def test_allowlist_entries() -> None:
    allow = Allowlist.parse(["127.0.0.1", "10.0.0.0/8", "emu.test:8080", "[::1]:99", "192.168.1.1:5"])
    loopback = ipaddress.ip_address("127.0.0.1")
    assert allow.allows("127.0.0.1", 1, loopback)
    assert allow.allows("anything", 80, ipaddress.ip_address("10.9.9.9"))
    lan = ipaddress.ip_address("192.168.7.7")
    assert allow.allows("emu.test", 8080, lan) and not allow.allows("emu.test", 8081, lan)
    assert allow.allows("192.168.1.1", 5, ipaddress.ip_address("192.168.1.1"))
    assert not allow.allows("192.168.1.1", 6, ipaddress.ip_address("192.168.1.1"))
    assert allow.allows("x", 99, ipaddress.ip_address("::1")) and not allow.allows(
        "x", 98, ipaddress.ip_address("::1")
    )
    assert not allow.allows("x", 5, ipaddress.ip_address("::ffff:127.0.0.1"))
    for bad in ["not a host", "emu.test:0", "[::1]:x", "1.2.3.4:99999"]:
        with pytest.raises(ValueError):
            Allowlist.parse([bad])


def test_the_setting_is_empty_by_default_and_validated() -> None:
    assert load_settings(None).fetch_allowlist == []
    assert load_settings(None, fetch_allowlist="127.0.0.1, emu.test:9").fetch_allowlist == [
        "127.0.0.1",
        "emu.test:9",
    ]
    with pytest.raises(ConfigError, match="FETCH_ALLOWLIST"):
        load_settings(None, fetch_allowlist="no such thing!")
