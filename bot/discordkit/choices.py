"""Slash-command choices built from the one definition of each vocabulary (features, capabilities,
default-model settings), so a new member appears in every command at once."""

from __future__ import annotations

from discord import app_commands

from bot.services.guild_config import CAPABILITIES, MODEL_SETTINGS
from bot.services.quotas import FEATURE_LABELS, Feature

FEATURE_CHOICES: list[app_commands.Choice[str]] = [
    app_commands.Choice(name=FEATURE_LABELS[feature], value=feature.value) for feature in Feature
]
CAPABILITY_CHOICES: list[app_commands.Choice[str]] = [
    app_commands.Choice(name=capability, value=capability) for capability in CAPABILITIES
]
MODEL_SETTING_CHOICES: list[app_commands.Choice[str]] = [
    app_commands.Choice(name=setting, value=setting) for setting in MODEL_SETTINGS
]
