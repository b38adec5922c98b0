"""`make demo`: the real bot against the loopback emulators, a scripted session, printed as a user sees it.

No keys, no network: Discord and the AI gateways are the emulators in tests/emulators/.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import sys
import tempfile
import textwrap
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.e2e.harness import (
    World,
    build_world,
    emulator_settings,
    running_bot,
    sqlite_url,
    until,
    write_providers_file,
)
from tests.e2e.voice_loopback import LoopbackVoiceClient, mp3_seconds, speech_mp3
from tests.emulators.discord_emulator import DiscordEmulator
from tests.emulators.gateway import GatewayEmulator, media

WIDTH = 88


REGENERATE_BUTTON = "concord:chat:regen:"


def reply_is_final(message: dict[str, Any] | None) -> bool:
    """A streamed chat reply is done when its last message offers Regenerate instead of Stop."""
    rows = (message or {}).get("components") or []
    return any(
        item.get("custom_id", "").startswith(REGENERATE_BUTTON) for row in rows for item in row["components"]
    )


@dataclass
class Demo:
    emu: DiscordEmulator
    gateway: GatewayEmulator
    world: World
    bot: Any
    flux_gateway: GatewayEmulator | None = None

    def say(self, who: str, text: str) -> None:
        print(f"\n{who} ▸ {text}")

    def show_message(self, message: dict[str, Any] | None, *, ephemeral: bool = False) -> None:
        if message is None:
            print("  (no message)")
            return
        label = "Concord (only you can see this)" if ephemeral else "Concord"
        if message.get("content"):
            print(f"  {label}:")
            for line in message["content"].splitlines() or [""]:
                print(textwrap.indent(textwrap.fill(line, WIDTH) if line else "", "    "))
        for embed in message.get("embeds") or []:
            self._show_embed(embed, label if not message.get("content") else None)
        for attachment in message.get("attachments") or []:
            print(f"    📎 {attachment.get('filename')} ({attachment.get('size', '?')} bytes)")
        labels = [c.get("label") for row in message.get("components") or [] for c in row["components"]]
        if labels:
            print("    " + " ".join(f"[{label}]" for label in labels))

    def _show_embed(self, embed: dict[str, Any], label: str | None) -> None:
        if label:
            print(f"  {label}:")
        print("    ┌" + "─" * (WIDTH - 6))
        if embed.get("title"):
            print(f"    │ {embed['title']}")
        if embed.get("description"):
            self._show_box_lines(embed["description"], "    │ ")
        for field in embed.get("fields") or []:
            print(f"    │ ▸ {field['name']}")
            self._show_box_lines(str(field["value"]), "    │   ")
        if (embed.get("footer") or {}).get("text"):
            print(f"    │ — {embed['footer']['text']}")
        print("    └" + "─" * (WIDTH - 6))

    @staticmethod
    def _show_box_lines(text: str, prefix: str) -> None:
        for line in text.splitlines():
            for piece in textwrap.wrap(line, WIDTH - len(prefix)) or [""]:
                print(prefix + piece)

    async def slash(self, user: Any, command: str, *, where: Any, **options: Any) -> Any:
        shown = " ".join(f"{name}:{getattr(value, 'name', value)}" for name, value in options.items())
        place = "DM" if where is self.emu.dm_channel(user) else f"#{where.name}"
        self.say(f"{user.name} in {place}", f"/{command} {shown}".rstrip())
        itx = await self.emu.run_command(user, command, options=options, channel=where)
        # Wait until the user sees something: a deferred reply's "thinking…" message shows nothing yet.
        await itx.wait_for(lambda h: bool(h.original and (h.original["content"] or h.original["embeds"])), 10)
        return itx


Scene = Callable[[Demo], Awaitable[None]]


async def scene_help_and_ping(demo: Demo) -> None:
    itx = await demo.slash(demo.world.member, "help", where=demo.world.general)
    demo.show_message(itx.original, ephemeral=itx.ephemeral)
    itx = await demo.slash(demo.world.member, "ping", where=demo.world.general)
    demo.show_message(itx.original, ephemeral=itx.ephemeral)
    itx = await demo.slash(demo.world.member, "ping", where=demo.emu.dm_channel(demo.world.member))
    demo.show_message(itx.original, ephemeral=itx.ephemeral)


async def scene_chat(demo: Demo) -> None:
    world, emu = demo.world, demo.emu
    demo.gateway.reply = (
        "Hi Bob! I can chat, remember this channel's conversation, and answer when you mention me "
        "or reply to me."
    )
    itx = await demo.slash(world.member, "chat", where=world.general, prompt="Hi! What can you do?")
    await itx.wait_for(lambda handle: reply_is_final(handle.original), timeout=10)
    demo.show_message(itx.original)

    demo.gateway.reply = "You asked what I can do, and I told you: chat, with memory of this channel."
    me = emu.bot_user.id
    demo.say("bob in #general", f"@Concord what did I just ask you?  (a mention, <@{me}>)")
    asked = await emu.send_message(world.member, world.general, f"<@{me}> what did I just ask you?")
    answer = await emu.wait_for_message(
        world.general, lambda m: m["_author_id"] == me and reply_is_final(m), after=asked
    )
    demo.show_message(answer)

    dm = emu.dm_channel(world.member)
    demo.gateway.reply = "Sure, this DM is our own conversation."
    demo.say("bob in DM", "can we talk here too?")
    asked = await emu.send_message(world.member, dm, "can we talk here too?")
    answer = await emu.wait_for_message(
        dm, lambda m: m["_author_id"] == me and reply_is_final(m), after=asked
    )
    demo.show_message(answer)

    # Three people ask at once; the model answers the last question first, yet the replies appear in
    # question order.
    cy = emu.create_user("cy")
    world.guild.add_member(cy)
    questions = [
        (world.member, "what is 2 + 2?", "2 + 2 = 4.", 0.6),
        (world.admin, "name a primary colour", "Red is a primary colour.", 0.3),
        (cy, "say hi", "Hi, cy!", 0.0),
    ]
    script = {question: (answer, delay) for _, question, answer, delay in questions}
    demo.gateway.chat_script = lambda body: script[str(body["messages"][-1]["content"]).split("\n")[-1]]
    asked = []
    for user, question, _, _ in questions:
        demo.say(f"{user.name} in #general", f"@Concord {question}  (all three at once)")
        asked.append(await emu.send_message(user, world.general, f"<@{me}> {question}"))

    def all_answered() -> bool:
        done = [m for m in emu.messages(world.general) if m["_author_id"] == me and reply_is_final(m)]
        return len([m for m in done if int(m["id"]) > int(asked[0]["id"])]) == len(questions)

    await until(all_answered, 10)
    first = int(asked[0]["id"])
    for reply in [m for m in emu.messages(world.general) if m["_author_id"] == me and int(m["id"]) > first]:
        demo.show_message(reply)
    demo.gateway.chat_script = None

    itx = await demo.slash(world.member, "models", where=world.general)
    await itx.wait_for(lambda handle: bool(handle.original and handle.original["embeds"]), timeout=10)
    demo.show_message(itx.original, ephemeral=itx.ephemeral)


async def scene_governance(demo: Demo) -> None:
    world = demo.world
    itx = await demo.slash(world.admin, "config chat-everywhere", where=world.general, enabled=False)
    demo.show_message(itx.original, ephemeral=itx.ephemeral)
    itx = await demo.slash(world.admin, "config show", where=world.general)
    demo.show_message(itx.original, ephemeral=itx.ephemeral)
    itx = await demo.slash(world.member, "usage", where=world.general)
    demo.show_message(itx.original, ephemeral=itx.ephemeral)
    payload = '{"content": "Server news", "embeds": [{"title": "Movie night", "description": "Friday 8 pm"}]}'
    itx = await demo.slash(
        world.admin, "embed send", where=world.general, channel=world.general, json=payload
    )
    demo.show_message(itx.original, ephemeral=itx.ephemeral)
    posted = demo.emu.messages(world.general)[-1]
    print("  In #general everyone now sees:")
    demo.show_message(posted)


def image_done(handle: Any) -> bool:
    """An image command is done once its progress line ("🎨 Generating…", "👀 Looking…") is replaced."""
    message = handle.original or {}
    return bool(message.get("embeds") or message.get("content", "").startswith("⚠️"))


async def scene_images(demo: Demo) -> None:
    world, emu = demo.world, demo.emu
    itx = await demo.slash(world.member, "imagine", where=world.general, prompt="a lighthouse at dawn")
    await itx.wait_for(image_done, timeout=15)
    demo.show_message(itx.original)
    result = itx.original
    details = next(c for row in result["components"] for c in row["components"] if c["label"] == "Details")
    demo.say("ada in #general", "presses [Details]")
    pressed = await emu.press_button(world.admin, result, details["custom_id"])
    await pressed.wait_for(lambda h: bool(h.original and h.original["embeds"]), timeout=10)
    demo.show_message(pressed.original, ephemeral=pressed.ephemeral)

    itx = await demo.slash(world.member, "flux", where=world.general, prompt="a nebula", count=4)
    await itx.wait_for(image_done, timeout=15)
    demo.show_message(itx.original)

    image = media.png(64, 48, (230, 126, 34))
    demo.say("bob in #general", "/vision image:sunset.png question:What is in this picture?")
    itx = await emu.run_command(
        world.member,
        "vision",
        options={"image": ("sunset.png", image, "image/png"), "question": "What is in this picture?"},
        channel=world.general,
    )
    await itx.wait_for(image_done, timeout=15)
    demo.show_message(itx.original)


async def scene_voice(demo: Demo) -> None:
    """/tts: the real FFmpeg → Opus → player path; only the voice server is loopback (no Discord voice)."""
    world = demo.world
    demo.bot.voice.client_cls = LoopbackVoiceClient
    if shutil.which("espeak-ng"):
        demo.gateway.mp3 = speech_mp3("Hello Ada, welcome to the voice channel.")
    world.guild.set_voice_state(world.member, world.voice)
    demo.say("bob", f"joins the voice channel #{world.voice.name}")
    itx = await demo.slash(
        world.member,
        "tts say",
        where=world.general,
        text=f"Hello **<@{world.admin.id}>**, see https://example.com",
    )
    demo.show_message(itx.original)
    player = demo.bot.voice.player(world.guild.id)
    await until(lambda: not player.busy, within=20)
    spoken = demo.gateway.requests_for("audio")[-1].query["text"]
    client = LoopbackVoiceClient.instances[-1]
    seconds = mp3_seconds(demo.gateway.mp3)
    print(f"  (spoken in #{world.voice.name}: “{spoken}”)")
    print(
        f"  (voice: {client.audio_packets} Opus packets for {seconds:.2f} s of audio, "
        f"{client.audio_packets / seconds:.1f} per second)"
    )
    world.guild.set_voice_state(world.member, None)
    itx = await demo.slash(world.member, "tts say", where=world.general, text="Anyone there?")
    await itx.wait_for(lambda h: bool(h.original and h.original.get("attachments")), timeout=10)
    demo.show_message(itx.original)


async def scene_ask(demo: Demo) -> None:
    world = demo.world
    demo.gateway.ask_chunks = [
        ("ChatGPT is a chatbot ", "https://en.wikipedia.org/wiki/ChatGPT"),
        ("made by OpenAI ", "https://openai.com/chatgpt"),
        ("and released in November 2022.", "https://en.wikipedia.org/wiki/ChatGPT"),
    ]
    itx = await demo.slash(world.member, "ask", where=world.general, prompt="What is ChatGPT?")
    await itx.wait_for(
        lambda handle: bool(handle.original and "**Sources**" in handle.original["content"]), timeout=10
    )
    demo.show_message(itx.original)


def _song_is_done(message: dict[str, Any] | None) -> bool:
    embeds = (message or {}).get("embeds") or []
    return bool(embeds) and embeds[0].get("title", "").endswith("finished")


async def scene_song(demo: Demo) -> None:
    world, emu = demo.world, demo.emu
    demo.gateway.suno_polls_before_finished = 2
    itx = await demo.slash(
        world.member,
        "suno create",
        where=world.general,
        prompt="A cheerful song about the sea",
        style="shanty",
    )
    print("  (the status embed, as first shown)")
    demo.show_message(itx.original)
    await itx.wait_for(lambda handle: _song_is_done(handle.original), timeout=30)
    print("  (the same message, once the runner has seen both clips finish)")
    demo.show_message(itx.original)
    me = emu.bot_user.id
    for message in emu.messages(world.general):
        footer = ((message.get("embeds") or [{}])[0].get("footer") or {}).get("text", "")
        if message["_author_id"] == me and footer.startswith("song job "):
            demo.show_message(message)
    itx = await demo.slash(world.member, "suno status", where=world.general)
    demo.show_message(itx.original, ephemeral=itx.ephemeral)


# Each capability adds its scene here, in the order a new user would meet them.
SCENES: list[Scene] = [
    scene_help_and_ping,
    scene_chat,
    scene_governance,
    scene_images,
    scene_voice,
    scene_ask,
    scene_song,
]


async def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="  [log] %(levelname)s %(name)s: %(message)s")
    emu = DiscordEmulator()
    gateway = GatewayEmulator("airforce")
    flux_gateway = GatewayEmulator("digicord", vision_reply="An orange sunset over a calm sea.")
    await emu.start()
    await gateway.start()
    await flux_gateway.start()
    world = build_world(emu)
    try:
        with tempfile.TemporaryDirectory() as folder:
            settings = emulator_settings(
                emu,
                sqlite_url(Path(folder)),
                log_level="WARNING",
                providers_file=write_providers_file(Path(folder), [gateway, flux_gateway]),
                fetch_allowlist=["127.0.0.1"],
                # Songs are checked quickly here.
                song_poll_first=0.2,
                song_poll_max=0.5,
            )
            print(
                f"Concord demo: Discord emulator at {emu.api_base}; AI gateway emulator "
                f"({gateway.profile}) at {gateway.base_url}, and one ({flux_gateway.profile}) for FLUX "
                f"and vision at {flux_gateway.base_url}; guild '{world.guild.name}'."
            )
            async with running_bot(emu, settings) as bot:
                demo = Demo(emu=emu, gateway=gateway, world=world, bot=bot, flux_gateway=flux_gateway)
                for scene in SCENES:
                    await scene(demo)
    finally:
        await flux_gateway.close()
        await gateway.close()
        await emu.close()
    print("\nDemo finished.")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
