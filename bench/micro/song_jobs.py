"""Song job figures: how fast runners claim due jobs from one SQLite file (one and several at once), and
how long a runner takes to poll and deliver a batch with an instant provider. Prints one line per figure."""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bot.providers.types import SunoClip
from bot.services.song_jobs import PollPolicy, SongJob, SongJobRunner, SongJobStore
from bot.store.engine import create_engine, create_sessionmaker
from bot.store.migrate import upgrade

JOBS = 2000


async def make_store(folder: Path) -> tuple[SongJobStore, object]:
    engine = create_engine(f"sqlite+aiosqlite:///{folder / 'bench.db'}")
    await upgrade(engine)
    return SongJobStore(create_sessionmaker(engine)), engine


async def fill(store: SongJobStore, count: int, now: datetime, group: int = 100) -> None:
    for start in range(0, count, group):
        await store.create_group(
            user_id=1,
            guild_id=1,
            channel_id=1,
            provider="p",
            clip_ids=[f"clip-{start + i}" for i in range(min(group, count - start))],
            request={"prompt": "bench"},
            interaction_token=None,
            interaction_expires_at=None,
            first_poll_at=now,
            now=now,
        )


async def bench_claims() -> None:
    with tempfile.TemporaryDirectory() as folder:
        store, engine = await make_store(Path(folder))
        now = datetime.now(UTC)
        await fill(store, JOBS, now)
        later = now + timedelta(seconds=1)
        started = time.perf_counter()
        claimed = 0
        while batch := await store.claim("one", later, 60, 50):
            claimed += len(batch)
        elapsed = time.perf_counter() - started
        print(f"claims, one runner: {claimed / elapsed:,.0f} jobs/s ({claimed} jobs in batches of 50)")

        await store.release_all("one")
        started = time.perf_counter()

        async def runner(name: str) -> list[str]:
            ids: list[str] = []
            while batch := await store.claim(name, later, 60, 50):
                ids += [job.id for job in batch]
            return ids

        results = await asyncio.gather(*(runner(f"r{i}") for i in range(4)))
        elapsed = time.perf_counter() - started
        ids = [i for result in results for i in result]
        print(
            f"claims, four runners at once: {len(ids) / elapsed:,.0f} jobs/s, "
            f"{len(ids)} claimed, {len(ids) - len(set(ids))} claimed twice"
        )
        await engine.dispose()  # type: ignore[attr-defined]


class InstantDelivery:
    def __init__(self) -> None:
        self.sent = 0

    async def show_progress(self, group: Sequence[SongJob]) -> None:
        return None

    async def find_delivered(self, job: SongJob) -> int | None:
        return None

    async def deliver(self, job: SongJob) -> int:
        self.sent += 1
        return self.sent


async def bench_runner() -> None:
    with tempfile.TemporaryDirectory() as folder:
        store, engine = await make_store(Path(folder))
        now = datetime.now(UTC) - timedelta(seconds=1)
        count = 400
        await fill(store, count, now, group=2)  # a /suno request makes two clips

        async def finished(clip_id: str, provider: str) -> SunoClip:
            return SunoClip(
                clip_id=clip_id, status="finished", provider=provider, audio_url="https://x/a.mp3"
            )

        delivery = InstantDelivery()
        runner = SongJobRunner(
            store, finished, PollPolicy(first=1, longest=5, deadline=600, lease=60), batch=16
        )
        runner.attach(delivery)  # not enabled: driven by run_once below
        started = time.perf_counter()
        while delivery.sent < count:
            await runner.run_once()
            await runner.drain()
        elapsed = time.perf_counter() - started
        print(
            f"runner, poll + intent + deliver + record: {count / elapsed:,.0f} jobs/s "
            f"({elapsed / count * 1000:.1f} ms per job, 16 at a time, SQLite)"
        )
        await engine.dispose()  # type: ignore[attr-defined]


async def main() -> None:
    await bench_claims()
    await bench_runner()


if __name__ == "__main__":
    asyncio.run(main())
