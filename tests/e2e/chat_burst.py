"""The chat burst scenario shared by its e2e test and bench/bench_chat.py: 20 mentions over 5 channels
(4 per channel, 5 users), the model's first token arriving sooner for later questions."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.e2e.harness import World, bot_messages, chat_settings, is_final, running_bot, until
from tests.emulators.discord_emulator import DiscordEmulator
from tests.emulators.gateway import GatewayEmulator

CHANNELS = 5
PER_CHANNEL = 4
USERS = 5
QUESTION = re.compile(r"question (\d+)-(\d+)\s*$")


@dataclass
class BurstResult:
    channels: list[Any]
    questions: dict[tuple[int, int], dict[str, Any]]
    asked_at: dict[tuple[int, int], float] = field(default_factory=dict)
    requested_at: dict[tuple[int, int], float] = field(default_factory=dict)

    def request_delays_ms(self) -> list[float]:
        return sorted((self.requested_at[k] - self.asked_at[k]) * 1000 for k in self.asked_at)


def expected_answer(channel: int, question: int) -> str:
    return f"Answer to question {channel}-{question}: it is {channel * 10 + question}."


async def run_burst(emu: DiscordEmulator, world: World, folder: Path, **overrides: Any) -> BurstResult:
    """Send the burst, wait for all 20 final replies, and return what was asked, when, and when the model
    was asked."""
    users = [world.member, world.admin] + [emu.create_user(f"user{i}") for i in range(USERS - 2)]
    for user in users[2:]:
        world.guild.add_member(user)
    channels = [world.general] + [world.guild.create_text_channel(f"burst-{i}") for i in range(CHANNELS - 1)]
    result = BurstResult(channels=channels, questions={})

    def script(body: dict[str, Any]) -> tuple[str, float]:
        found = QUESTION.search(str(body["messages"][-1]["content"]))
        if found is None:  # the warm-up turn
            return "Warm.", 0.0
        channel, question = int(found[1]), int(found[2])
        result.requested_at.setdefault((channel, question), time.monotonic())
        # Later questions get their first token first: 0.4 s for the first, 0.1 s for the fourth.
        return expected_answer(channel, question), 0.1 * (PER_CHANNEL - question)

    gateway = GatewayEmulator("openai", chat_script=script)
    async with gateway, running_bot(emu, chat_settings(emu, gateway, folder, **overrides)):
        me = emu.bot_user.id
        # A running bot has its connections open: one turn elsewhere first, so the burst meets a warm bot.
        warm_up = world.guild.create_text_channel("warm-up")
        await emu.send_message(world.member, warm_up, f"<@{me}> warm up")
        await until(lambda: any(is_final(m) for m in bot_messages(emu, warm_up)), 10)
        for question in range(PER_CHANNEL):
            for channel in range(CHANNELS):
                author = users[(channel + question) % USERS]
                result.asked_at[(channel, question)] = time.monotonic()
                result.questions[(channel, question)] = await emu.send_message(
                    author, channels[channel], f"<@{me}> question {channel}-{question}"
                )

        def all_final() -> bool:
            return all(len([m for m in bot_messages(emu, c) if is_final(m)]) == PER_CHANNEL for c in channels)

        await until(all_final, 20)
    return result
