"""A loopback Discord (REST + gateway) that the real discord.py client logs into, for end-to-end tests."""

from .emulator import DiscordEmulator
from .errors import ApiError
from .interactions import AutocompleteResult, Interaction
from .models import Channel, Guild, Member, Role, User
from .ratelimits import DEFAULT_BUCKETS
from .router import RecordedRequest, UploadedFile

__all__ = [
    "DEFAULT_BUCKETS",
    "ApiError",
    "AutocompleteResult",
    "Channel",
    "DiscordEmulator",
    "Guild",
    "Interaction",
    "Member",
    "RecordedRequest",
    "Role",
    "UploadedFile",
    "User",
]
