"""Per-person memory for App Home: the data last read for them, and how often their tab was published.

Opening the Home tab sends app_home_opened every time, and people flick between tabs: a new open
within `fresh` (a minute) redraws from the data already read instead of reading the database again.
An action taken on the tab drops that person's data, so what they did shows at once.

views.publish is rate-limited by Slack; at most `publishes` publishes per person per `window` go out
from this process, and a 429's Retry-After holds that person's publishes until it has passed.
Everything is in memory and per process on purpose: it is a cache, so losing it costs one read.
The clock is injected, so tests move time instead of sleeping."""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from commands.clock import Clock

FRESH = timedelta(minutes=1)
PUBLISHES, WINDOW = 10, timedelta(minutes=1)
MAX_PEOPLE = 10_000  # beyond this, the oldest entries go (a cache never grows with the workspace's history)


@dataclass
class _Entry:
    data: Any = None
    read_at: datetime | None = None
    published: deque = None  # times of this person's recent publishes
    held_until: datetime | None = None  # Slack answered 429: nothing before this


class HomeCache:
    def __init__(self, clock: Clock, fresh: timedelta = FRESH, publishes: int = PUBLISHES,
                 window: timedelta = WINDOW):
        self._clock, self.fresh, self.publishes, self.window = clock, fresh, publishes, window
        self._people: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def _entry(self, user: str) -> _Entry:
        entry = self._people.get(user)
        if entry is None:
            if len(self._people) >= MAX_PEOPLE:
                oldest = min(self._people, key=lambda u: self._people[u].read_at or datetime.min.replace(
                    tzinfo=self._clock.now().tzinfo))
                del self._people[oldest]
            entry = self._people[user] = _Entry(published=deque())
        return entry

    def cached(self, user: str) -> Any | None:
        """The data read for this person less than `fresh` ago, else None (read it again)."""
        now = self._clock.now()
        with self._lock:
            entry = self._people.get(user)
            if entry is None or entry.read_at is None or not now - entry.read_at < self.fresh:
                return None
            return entry.data

    def store(self, user: str, data: Any) -> Any:
        with self._lock:
            entry = self._entry(user)
            entry.data, entry.read_at = data, self._clock.now()
        return data

    def forget(self, user: str) -> None:
        """The person acted on their tab: the next draw reads the record again."""
        with self._lock:
            entry = self._people.get(user)
            if entry is not None:
                entry.data, entry.read_at = None, None

    def may_publish(self, user: str) -> bool:
        """Whether a publish for this person may go out now; if so it is counted."""
        now = self._clock.now()
        with self._lock:
            entry = self._entry(user)
            if entry.held_until is not None and now < entry.held_until:
                return False
            while entry.published and not now - entry.published[0] < self.window:
                entry.published.popleft()
            if len(entry.published) >= self.publishes:
                return False
            entry.published.append(now)
            return True

    def hold(self, user: str, seconds: float) -> None:
        """Slack said 429 for this person: no publish for them until Retry-After has passed."""
        with self._lock:
            self._entry(user).held_until = self._clock.now() + timedelta(seconds=max(1.0, seconds))
