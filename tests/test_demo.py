"""`make demo` keeps working: the scripted session runs end to end and shows each capability's answer."""

from __future__ import annotations

import re

import pytest

from tests import demo


async def test_demo_plays_every_scene(capsys: pytest.CaptureFixture[str]) -> None:
    assert await demo.main() == 0
    output = capsys.readouterr().out
    assert "Concord commands" in output  # /help
    assert "Pong! Gateway:" in output  # /ping, in a channel and a DM
    assert "Hi Bob! I can chat" in output  # /chat streamed to its final text
    assert "You asked what I can do" in output  # a mention, answered with the channel's memory
    assert "this DM is our own conversation" in output  # a DM message
    # Three questions at once, the last answered first by the model, shown in question order.
    answers = [output.index(a) for a in ("2 + 2 = 4.", "Red is a primary colour.", "Hi, cy!")]
    assert answers == sorted(answers)
    assert "Chat models" in output  # /models
    assert "Settings of Concord Test" in output  # /config show
    assert "Usage of bob" in output  # /usage
    assert "Movie night" in output  # /embed send, as everyone sees it in the channel
    assert "made by OpenAI and released in November 2022." in output  # /ask, streamed
    assert "1. <https://en.wikipedia.org/wiki/ChatGPT>" in output  # its sources, numbered once each
    assert "2. <https://openai.com/chatgpt>" in output
    assert "Song request finished" in output  # /suno: the status embed, edited by the runner
    assert output.count("📎 song-") == 2  # both clips delivered with their audio attached
    assert "Your songs" in output  # /suno status
    assert "a lighthouse at dawn" in output and "[Regenerate]" in output  # /imagine with its buttons
    assert "Image settings" in output  # Details, privately
    assert output.count("📎 image_") >= 5  # one /imagine image and a /flux gallery of four
    assert "An orange sunset over a calm sea." in output  # /vision on an attachment
    assert "spoken in #Voice: “Hello ada, see a link”" in output  # /tts say, normalised
    assert re.search(r"voice: \d+ Opus packets for [\d.]+ s of audio, (4[5-9]|5[0-4])\.\d per second", output)
    assert "📎 speech.mp3" in output  # the fallback when the caller is not in voice
    assert output.rstrip().endswith("Demo finished.")
