"""A burst of concurrent mentions: every question answered exactly, first messages in question order."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.chat_burst import CHANNELS, PER_CHANNEL, expected_answer, run_burst
from tests.e2e.harness import World, bot_messages
from tests.emulators.discord_emulator import DiscordEmulator


async def test_a_burst_is_answered_exactly_and_in_question_order(
    discord_emu: DiscordEmulator, world: World, tmp_path: Path
) -> None:
    result = await run_burst(discord_emu, world, tmp_path)
    for channel, where in enumerate(result.channels):
        replies = bot_messages(discord_emu, where)
        assert len(replies) == PER_CHANNEL  # one message per answer: no duplicates, no error notes
        questions = [result.questions[(channel, q)]["id"] for q in range(PER_CHANNEL)]
        # Messages are listed in the order Discord received them: first messages in question order.
        assert [m["message_reference"]["message_id"] for m in replies] == questions
        for question, reply in enumerate(replies):
            assert reply["content"] == expected_answer(channel, question)
    assert len(result.requested_at) == CHANNELS * PER_CHANNEL  # each question asked the model once
    assert discord_emu.rate_limited == []
