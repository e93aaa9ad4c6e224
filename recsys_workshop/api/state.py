"""The API's shared state: users created through the API, feedback and the bandit's statistics, kept in the
database (:mod:`recsys_workshop.store`) and mirrored in this process's memory for the hot path.

Every write goes to the database first and answers only after its commit (a failure: ``StoreUnavailable``,
the API's 503, and nothing changed here either). Reads on the request path (is this user known, what did
they see, what do they like, which arm to play) come from memory, so a recommendation costs no query.

Several replicas share one database. Each keeps up with the others by tailing it every ``sync_interval``
seconds (:meth:`SharedState.sync`): users and feedback created elsewhere (by sequence number, in commit
order), the bandit's totals, and this replica's own pulls, which it counts in memory and adds to the
database in one increment per sync (a pull is a statistic, not a user's data: a crash loses at most one
interval of pull counts, never a committed write). A user created on another replica a moment ago is
looked up on demand (:meth:`SharedState.lookup_user`). At start-up the same tail replays everything that
was committed, so a restart (even after ``kill -9``) loses nothing.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
from typing import TYPE_CHECKING

from recsys_workshop.api.observability import LOG

if TYPE_CHECKING:
    from recsys_workshop.api.logic import Bandit
    from recsys_workshop.store import FeedbackResult, Store, StoredUser

__all__ = ["NewUser", "SharedState"]

REWARDING_ACTIONS = ("click", "like")
OWN_SEQS_LIMIT = 100_000


@dataclasses.dataclass
class NewUser:
    liked: list[int]
    age: int | None = None
    gender: str | None = None
    occupation: str | None = None


class SharedState:
    """Users, feedback and bandit statistics: in the store, mirrored here."""

    def __init__(self, store: Store, bandit: Bandit, first_id: int):
        self.store, self.bandit, self.first_id = store, bandit, first_id
        self.new_users: dict[int, NewUser] = {}
        self.extra_seen: dict[int, set[int]] = collections.defaultdict(set)
        self.extra_liked: dict[int, list[int]] = collections.defaultdict(list)
        self.pending_pulls: collections.Counter[str] = collections.Counter()
        self.stored_counts: dict[str, tuple[int, int]] = {}
        self.user_cursor = 0
        self.feedback_cursor = 0
        self._own_seqs: set[int] = set()  # events this replica applied when it wrote them (skipped by the tail)
        self.on_feedback_applied = None  # callback(user_id): invalidate per-user caches

    # ---- users
    def remember_user(self, user: StoredUser) -> None:
        self.new_users[user.user_id] = NewUser(list(user.liked), user.age, user.gender, user.occupation)

    async def create_user(self, liked: list[int], age, gender, occupation, idempotency_key: str | None) -> int:
        user_id = await asyncio.to_thread(
            self.store.create_user, liked, age, gender, occupation,
            first_id=self.first_id, idempotency_key=idempotency_key,
        )
        self.new_users[user_id] = NewUser(list(dict.fromkeys(liked)), age, gender, occupation)
        return user_id

    async def lookup_user(self, user_id: int) -> bool:
        """Whether ``user_id`` was created through the API, perhaps on another replica since the last sync."""
        if user_id in self.new_users:
            return True
        if user_id < self.first_id:
            return False
        user = await asyncio.to_thread(self.store.get_user, user_id)
        if user is None:
            return False
        self.remember_user(user)
        return True

    # ---- feedback
    async def add_feedback(self, event: dict, idempotency_key: str, rec_id: str, arm: str) -> FeedbackResult:
        reward = (rec_id, arm) if event["action"] in REWARDING_ACTIONS and arm in self.bandit.pulls else None
        result = await asyncio.to_thread(self.store.add_feedback, event, idempotency_key=idempotency_key,
                                         reward=reward)
        if result.stored:
            self._own_seqs.add(result.seq)
            if len(self._own_seqs) > OWN_SEQS_LIMIT:  # only seqs above the tail's cursor matter
                self._own_seqs = {s for s in self._own_seqs if s > self.feedback_cursor}
            self.apply_feedback(event)
        if result.rewarded:  # the database counted it; count it here too until the next sync
            self.bandit.rewards[arm] += 1.0
            self.bandit.pulls[arm] = max(self.bandit.pulls[arm], int(self.bandit.rewards[arm]))
        return result

    def apply_feedback(self, event) -> None:
        user, item = event["user_id"], event["item_id"]
        self.extra_seen[user].add(item)
        if event["action"] == "like":
            self.extra_liked[user].append(item)
        if self.on_feedback_applied is not None:
            self.on_feedback_applied(user)

    async def recent_feedback(self, user_id: int | None, limit: int) -> tuple[list[dict], int]:
        events, total = await asyncio.to_thread(self.store.recent_feedback, user_id, limit)
        return [dict(e) for e in events], total

    # ---- bandit
    def record_pull(self, arm: str) -> None:
        self.bandit.record_pull(arm)
        self.pending_pulls[arm] += 1

    def _set_bandit_counts(self, counts: dict[str, tuple[int, int]]) -> None:
        """The bandit's statistics = the database's totals + this replica's pulls not yet written. Rewards are
        committed with their feedback, pulls once per sync: after a crash an arm can have a few more rewards
        than recorded pulls, so its pulls count as at least its rewards (a rate never above 1)."""
        self.stored_counts = counts
        for arm in self.bandit.arms:
            pulls, rewards = counts.get(arm, (0, 0))
            self.bandit.rewards[arm] = float(rewards)
            self.bandit.pulls[arm] = max(pulls + self.pending_pulls.get(arm, 0), rewards)

    # ---- keeping up with the database
    def sync_once(self) -> None:
        """Write this replica's pulls, read what others wrote (blocking: run it in a thread)."""
        pulls, self.pending_pulls = self.pending_pulls, collections.Counter()
        try:
            if pulls:
                self.store.add_pulls(dict(pulls))
        except Exception:
            self.pending_pulls.update(pulls)  # not written: try again next time
            raise
        while True:
            users, self.user_cursor = self.store.users_after(self.user_cursor)
            for user in users:
                self.remember_user(user)
            if not users:
                break
        while True:
            events, cursor = self.store.feedback_after(self.feedback_cursor)
            for event in events:
                if event["seq"] in self._own_seqs:
                    self._own_seqs.discard(event["seq"])
                else:
                    self.apply_feedback(event)
            self.feedback_cursor = cursor
            if not events:
                break
        self._set_bandit_counts(self.store.bandit_counts())

    async def sync(self) -> None:
        await asyncio.to_thread(self.sync_once)

    async def run(self, interval: float) -> None:
        """Sync every ``interval`` seconds until cancelled; a database outage is logged, not fatal."""
        from recsys_workshop.store import StoreUnavailable

        failing = False
        while True:
            await asyncio.sleep(interval)
            try:
                await self.sync()
            except StoreUnavailable as error:
                if not failing:
                    LOG.warning("state sync failed", extra={"reason": error.reason})
                failing = True
            else:
                if failing:
                    LOG.info("state sync recovered")
                failing = False
