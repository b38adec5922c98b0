"""The Concord bot: receives its shared resources, loads the cogs and owns their lifetime."""

from __future__ import annotations

import gc
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import aiohttp
import discord
import yarl
from discord import app_commands
from discord.ext import commands
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.config import Settings
from bot.discordkit.rate_headers import rate_limit_trace
from bot.discordkit.tree import ConcordTree
from bot.discordkit.voice_queue import VoiceManager, VoiceOptions
from bot.discordkit.write_budget import ChannelWriteBudget
from bot.services.api_keys import ApiKeyService
from bot.services.config_cache import ConfigCache
from bot.services.conversations import ConversationStore
from bot.services.fetcher import GuardedFetcher
from bot.services.guild_config import GuildConfigService
from bot.services.image_generation import ImageGenerator
from bot.services.image_results import ImageResultStore
from bot.services.model_catalog import ModelCatalog
from bot.services.plan_grants import PlanGrants
from bot.services.quotas import QuotaService
from bot.services.send_audit import SendAuditLog
from bot.services.song_jobs import PollPolicy, SongJobRunner, SongJobStore
from bot.services.tts_settings import TtsSettingsService
from bot.services.vision import VisionService
from bot.store.group_commit import GroupCommit

if TYPE_CHECKING:
    from bot.http_api import SendDataServer
    from bot.providers import ProviderClient
    from bot.resources import Resources

log = logging.getLogger(__name__)

# Every capability is one extension; a failing one is logged and the rest still load.
EXTENSIONS: tuple[str, ...] = (
    "cogs.meta",
    "cogs.chat",
    "cogs.config",
    "cogs.usage",
    "cogs.owner",
    "cogs.embed",
    "cogs.ask",
    "cogs.songs",
    "cogs.imagine",
    "cogs.vision",
    "cogs.tts",
)


def point_discord_at(settings: Settings) -> None:
    """Send REST and gateway traffic where settings say (a REST proxy, or the test emulator)."""
    discord.http.Route.BASE = settings.discord_api_base.rstrip("/")
    if settings.discord_gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.discord_gateway_url)


def build_intents(settings: Settings) -> discord.Intents:
    intents = discord.Intents.default()  # guilds, guild + DM messages, voice states; no privileged ones
    intents.message_content = settings.message_content_intent
    intents.typing = False
    intents.presences = False
    return intents


class Concord(commands.AutoShardedBot):
    """The bot. Shared resources come in through the constructor; cogs reach them as attributes."""

    tree: ConcordTree

    def __init__(
        self,
        *,
        settings: Settings,
        http_session: aiohttp.ClientSession,
        db_engine: AsyncEngine,
        db_sessions: async_sessionmaker[AsyncSession],
        providers: ProviderClient,
        extensions: tuple[str, ...] = EXTENSIONS,
    ) -> None:
        # Every write the bot makes in a channel goes through one budget, whichever cog makes it; Discord's
        # rate-limit headers on those writes keep the budget's view of each channel's window exact.
        write_budget = ChannelWriteBudget()
        super().__init__(
            command_prefix=commands.when_mentioned,
            http_trace=rate_limit_trace(write_budget),
            help_command=None,
            intents=build_intents(settings),
            tree_cls=ConcordTree,
            shard_count=settings.shard_count,
            allowed_mentions=discord.AllowedMentions.none(),
            guild_ready_timeout=settings.guild_ready_timeout,
            # No message cache: nothing here reads it (a reply's parent comes with the reply), and keeping
            # it meant holding 1,000 messages and copying one on every edit event, the bot's own included.
            max_messages=None,
            allowed_contexts=app_commands.AppCommandContext(
                guild=True, dm_channel=True, private_channel=True
            ),
            allowed_installs=app_commands.AppInstallationType(guild=True, user=True),
        )
        self.settings = settings
        self.http_session = http_session
        self.db_engine = db_engine
        self.db_sessions = db_sessions
        self.providers = providers
        # The shared services, built once here; cogs reach them as `self.bot.<name>` and build none.
        self.write_budget = write_budget
        self.shutdown_hooks: list[Callable[[float], Awaitable[None]]] = []
        """Run by `shutdown()` on SIGTERM/SIGINT; a cog with work in flight adds one in cog_load."""
        # Guild settings and operator grants, kept a few seconds; a write through these services clears it.
        self.config_cache = ConfigCache(settings.config_cache_seconds)
        self.guild_config = GuildConfigService(db_sessions, cache=self.config_cache)
        # A turn's quota take and its question's insert, submitted as it arrives, commit together.
        self.group_commit = GroupCommit(db_engine)
        self.quotas = QuotaService(
            db_sessions,
            default_plan=settings.quota_default_plan,
            plans=settings.custom_plans,
            cache=self.config_cache,
            guild_config=self.guild_config,
            group=self.group_commit,
        )
        self.plan_grants = PlanGrants(
            db_sessions, known_plans=list(self.quotas.plans), cache=self.config_cache
        )
        self.conversations = ConversationStore(db_sessions, group=self.group_commit)
        self.api_keys = ApiKeyService(db_sessions)
        self.send_audit = SendAuditLog(db_sessions)
        # Every URL the bot downloads goes through this one door (public addresses only, size-capped).
        self.fetcher = GuardedFetcher(allowlist=settings.fetch_allowlist)
        # Images: drawing (provider URLs downloaded through the fetcher), the settings behind result
        # buttons, and describing attachments (for /vision, "Describe image" and chat turns alike).
        self.image_generator = ImageGenerator(providers, self.fetcher, max_bytes=settings.image_max_bytes)
        self.image_results = ImageResultStore(db_sessions)
        self.vision = VisionService(providers, self.fetcher, max_bytes=settings.image_max_bytes)
        # Voice: one speech queue per server (/tts and reading mode share it), and the stored /tts choices.
        self.voice = VoiceManager(
            self,
            VoiceOptions(
                idle_timeout=settings.tts_idle_timeout,
                connect_timeout=settings.tts_connect_timeout,
                queue_limit=settings.tts_queue_limit,
            ),
        )
        self.tts_settings = TtsSettingsService(db_sessions)
        # One catalog of every kind of model the providers offer; autocomplete answers from it.
        self.catalog = ModelCatalog(providers.list_models, fallback=[settings.chat_default_model or ""])
        # Song jobs survive restarts: the runner polls them; the songs cog starts it with its Discord side.
        self.song_jobs = SongJobRunner(
            SongJobStore(db_sessions),
            lambda clip_id, provider: providers.suno_status(clip_id, provider=provider),
            PollPolicy(
                first=settings.song_poll_first,
                longest=settings.song_poll_max,
                deadline=settings.song_deadline,
                lease=settings.song_lease,
            ),
        )
        # The send-data HTTP endpoint (HTTP_PORT) lives as long as the bot: started in setup_hook.
        self.http_server: SendDataServer | None = None
        self.extensions_to_load = extensions
        self.failed_extensions: dict[str, str] = {}

    @classmethod
    def from_resources(cls, resources: Resources, *, extensions: tuple[str, ...] = EXTENSIONS) -> Concord:
        return cls(
            settings=resources.settings,
            http_session=resources.http_session,
            db_engine=resources.db_engine,
            db_sessions=resources.db_sessions,
            providers=resources.providers,
            extensions=extensions,
        )

    async def load_extensions(self) -> None:
        for extension in self.extensions_to_load:
            try:
                await self.load_extension(extension)
            except Exception as exc:
                self.failed_extensions[extension] = f"{type(exc).__name__}: {exc}"
                log.exception("Extension %s failed to load; continuing without it", extension)

    async def setup_hook(self) -> None:
        # Writes the refusals counted in memory and prunes audit rows past AUDIT_RETENTION_DAYS.
        self.send_audit.start(self.settings.audit_retention_days)
        await self.load_extensions()
        self.song_jobs.enable()  # polls once the songs cog has attached its Discord side
        if self.providers.providers:  # nothing to ask when no provider is configured
            self.catalog.refresh_soon("chat")
        if self.settings.http_port is not None:
            from bot.http_api import SendDataServer  # aiohttp.web loads only when the endpoint is on

            self.http_server = SendDataServer(
                self,
                host=self.settings.http_host,
                port=self.settings.http_port,
                rate_per_minute=self.settings.send_data_rate_limit,
            )
            await self.http_server.start()
        if self.settings.dev_guild_id:
            guild = discord.Object(self.settings.dev_guild_id)
            self.tree.copy_global_to(guild=guild)
            synced = await self.tree.sync(guild=guild)
            log.info("Synced %d commands to dev guild %s", len(synced), self.settings.dev_guild_id)

    async def is_owner(self, user: discord.abc.User) -> bool:
        """Owners are OWNER_IDS plus the application's owner (or its team)."""
        if user.id in self.settings.owner_ids:
            return True
        return await super().is_owner(user)

    async def shutdown(self, grace: float) -> None:
        """SIGTERM/SIGINT: each hook stops taking work and lets work in flight finish (up to `grace`
        seconds), then the bot closes."""
        for hook in list(self.shutdown_hooks):
            try:
                await hook(grace)
            except Exception:
                log.exception("A shutdown hook failed")
        await self.close()

    async def close(self) -> None:
        if self.http_server is not None:
            await self.http_server.close()
            self.http_server = None
        await self.song_jobs.stop()
        await self.voice.close()
        await super().close()
        await self.send_audit.close()
        await self.catalog.close()
        await self.fetcher.close()
        await self.write_budget.close()
        await self.group_commit.close()  # last: writes of turns that ended at shutdown commit

    async def on_ready(self) -> None:
        assert self.user is not None
        log.info("Logged in as %s (%s) in %d guilds", self.user, self.user.id, len(self.guilds))
        if not gc.get_freeze_count():
            # What exists once the bot is ready (modules, caches, the guilds) lives as long as the bot.
            # Frozen, the cycle collector stops rescanning it: a full collection of a ready bot took
            # 150 ms, a pause every reply in flight felt.
            gc.collect()
            gc.freeze()
            gc.set_threshold(10_000, 20, 10)

    async def on_message(self, message: discord.Message, /) -> None:
        # Concord has only slash commands; cogs that read messages (chat) listen for them themselves.
        return
