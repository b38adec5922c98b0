"""Operator grants (`/owner grant`, `/owner revoke`): a global plan for one user or everyone in a server.

Rows are never deleted: a grant that is replaced or revoked keeps who gave it, who took it back and when,
so the table is its own audit trail. Expiry is checked when quotas are read (QuotaService.context), so a
grant ends on time without any background task.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from sqlalchemy import ColumnElement, or_, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.errors import InvalidInput
from bot.services.config_cache import ConfigCache
from bot.store.models import OperatorGrant

log = logging.getLogger(__name__)

SubjectType = Literal["user", "server"]
_DURATION = re.compile(r"^(\d{1,5})\s*([mhdw])$")
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
EXPIRY_MAX = timedelta(days=3660)


def parse_expiry(text: str | None, now: datetime) -> datetime | None:
    """`30d`, `12h`, `90m`, `2w`, or a date `2027-01-31` (UTC midnight); empty means never."""
    if text is None or not text.strip():
        return None
    raw = text.strip().lower()
    match = _DURATION.match(raw)
    if match:
        expires = now + timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])
    else:
        try:
            expires = datetime.strptime(raw, "%Y-%m-%d").replace(tzinfo=UTC)
        except ValueError:
            raise InvalidInput(
                "`expires` is a duration like `30d`, `12h`, `90m`, `2w`, or a date like `2027-01-31`."
            ) from None
    if expires <= now:
        raise InvalidInput("`expires` must be in the future.")
    if expires - now > EXPIRY_MAX:
        raise InvalidInput("`expires` may be at most ten years away; leave it empty for no end.")
    return expires


@dataclass(frozen=True)
class GrantInfo:
    id: int
    subject_type: str
    subject_id: int
    plan: str
    expires_at: datetime | None
    granted_by: int


class PlanGrants:
    """Stores and revokes grants; QuotaService reads the active ones."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        known_plans: Collection[str],
        clock: Callable[[], float] = time.time,
        cache: ConfigCache | None = None,
    ) -> None:
        self.sessions = sessions
        self.known_plans = known_plans
        self.clock = clock
        self.cache = cache
        """The plans QuotaService keeps for a few seconds; a grant or revoke here invalidates them."""

    def _changed(self) -> None:
        if self.cache is not None:
            self.cache.invalidate()

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    def _active(self, subject_type: str, subject_id: int) -> tuple[ColumnElement[bool], ...]:
        return (
            OperatorGrant.subject_type == subject_type,
            OperatorGrant.subject_id == subject_id,
            OperatorGrant.revoked_at.is_(None),
            or_(OperatorGrant.expires_at.is_(None), OperatorGrant.expires_at > self.now()),
        )

    async def grant(
        self,
        subject_type: SubjectType,
        subject_id: int,
        plan: str,
        *,
        expires_at: datetime | None,
        actor_id: int,
    ) -> GrantInfo:
        """Give the subject `plan` (replacing its active grant, which is marked revoked by the actor)."""
        if plan not in self.known_plans:
            raise InvalidInput(f"Plans are {', '.join(self.known_plans)}.")
        now = self.now()
        async with self.sessions() as session:
            await session.execute(
                update(OperatorGrant)
                .where(*self._active(subject_type, subject_id))
                .values(revoked_at=now, revoked_by=actor_id)
            )
            row = OperatorGrant(
                subject_type=subject_type,
                subject_id=subject_id,
                plan=plan,
                expires_at=expires_at,
                granted_by=actor_id,
                created_at=now,
            )
            session.add(row)
            await session.commit()
            self._changed()
            info = GrantInfo(row.id, subject_type, subject_id, plan, expires_at, actor_id)
        log.info(
            "Owner %s granted %s %s the %s plan until %s",
            actor_id,
            subject_type,
            subject_id,
            plan,
            expires_at,
        )
        return info

    async def revoke(self, subject_type: SubjectType, subject_id: int, *, actor_id: int) -> int:
        """End the subject's active grant; returns how many were ended (0 or 1)."""
        async with self.sessions() as session:
            result = await session.execute(
                update(OperatorGrant)
                .where(*self._active(subject_type, subject_id))
                .values(revoked_at=self.now(), revoked_by=actor_id)
            )
            await session.commit()
        self._changed()
        ended = int(getattr(result, "rowcount", 0) or 0)
        log.info("Owner %s revoked the grant of %s %s (%d ended)", actor_id, subject_type, subject_id, ended)
        return ended
