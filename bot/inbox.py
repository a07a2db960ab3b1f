"""After-ack work that survives the process: each lazy listener call is an inbox row first.

Bolt would queue a listener's lazy half in memory and answer Slack, and Slack
does not send a 200'd request again: a process killed after the ack lost the
work. Here Bolt's lazy listener runner is replaced by one that writes the
verified payload (and what the ack half left in the context) to the inbox
before the ack goes out; workers on the listener executor claim rows, run the
same lazy function on a request rebuilt from the row, and mark them done. A row
left by a dead process is claimed by the next sweep of any process once its
lease runs out (storage.inbox).

Running a row twice must be harmless (its claimer may die between the work and
"done"): the use cases recognise their own replay (a request by its
request_key, a vote by the person's vote in the round), and rows of one person
are applied one at a time, in the order they were acknowledged, so a re-run is
only ever of that person's latest action.
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Executor
from datetime import timedelta
from typing import Callable, Optional

from slack_bolt import App, BoltRequest, BoltResponse
from slack_bolt.lazy_listener import LazyListenerRunner
from slack_bolt.lazy_listener.internals import build_runnable_function
from slack_bolt.util.utils import get_name_for_callable
from sqlalchemy.exc import SQLAlchemyError

from storage import inbox as rows
from storage.db import Busy
from storage.replay import Claimed

from bot import replay
from bot.services import Services

log = logging.getLogger(__name__)

# Context keys an ack half leaves for its lazy half (bot/listeners/release.py: the request form's outcome).
CARRIED = ("outcome",)
# A row whose work killed its process this many times is given up on instead of killing the next one.
MAX_ATTEMPTS = 5
# A worker about to start a row waits this long at most while Slack's acks are being answered (AckYield).
ACK_YIELD = 0.5  # seconds
# Acks closer together than this are one burst: after-ack work waits for a gap this long without one.
ACK_GAP = 0.02  # seconds


class AckYield:
    """Acks first: workers do not start after-ack work while this process is answering Slack's requests.

    Acks and after-ack work share one interpreter, and Python runs one thread at a time: eight workers
    building releases took most of the CPU from the HTTP threads answering a burst, and every ack took
    several times as long as a bare Bolt app's. A worker waits for a quiet moment before it claims its next
    row, but never longer than ACK_YIELD, so a steady stream of acks cannot starve after-ack work.

    Quiet is ACK_GAP without an ack, not merely none being answered at this instant: the requests of a
    burst reach the app one by one (waitress's one socket thread reads them, a couple of milliseconds each
    here), and in the moments between two of them no ack was inside the app. Workers took those moments
    and started rows (4-8 ms of CPU each) in the middle of the burst."""

    def __init__(self, gap: float = ACK_GAP, clock: Callable[[], float] = time.monotonic) -> None:
        self._cond = threading.Condition()
        self._answering = 0
        self._last = float("-inf")  # when the last ack was answered (clock)
        self._gap, self._clock = gap, clock

    def answering(self, handler: Callable) -> Callable:
        """Wrap a WSGI app that answers Slack (bot/server.py)."""
        def application(environ, start_response):
            with self._cond:
                self._answering += 1
            try:
                return handler(environ, start_response)
            finally:
                with self._cond:
                    self._answering -= 1
                    self._last = self._clock()
                    if not self._answering:
                        self._cond.notify_all()
        return application

    def quiet(self, timeout: float = ACK_YIELD) -> bool:
        """Wait until no ack has been answered for ACK_GAP and none is being answered (True), or `timeout`
        seconds (False)."""
        deadline = self._clock() + timeout
        with self._cond:
            while True:
                now = self._clock()
                calm = None if self._answering else self._last + self._gap - now  # how long until quiet
                if calm is not None and calm <= 0:
                    return True
                left = deadline - now
                if left <= 0:
                    return False
                self._cond.wait(left if calm is None else min(calm, left))


def stream_of(body: dict) -> Optional[str]:
    """Whose delivery this is: one person's rows are applied in order."""
    user = body.get("user_id") or (body.get("user") or {}).get("id")
    return f"user:{user}" if user else None


class Inbox:
    def __init__(self, svc: Services, app: App, executor: Executor, workers: int, lease: timedelta = rows.LEASE):
        self._svc, self._app, self._executor, self._workers, self.lease = svc, app, executor, workers, lease
        self._stopping = threading.Event()
        self.acks = AckYield()
        self._sweeping = threading.Semaphore(workers)  # sweeps never queue more than the pool can run

    # ---- the ack path ---------------------------------------------------------------------------------

    def record(self, kind: str, request: BoltRequest) -> None:
        """Write the work down (raises storage.db.Busy) and hand it to a worker."""
        body = request.body
        context = {k: request.context[k] for k in CARRIED if request.context.get(k) is not None}
        # raises storage.replay.Claimed when a copy of this delivery claimed it first (nothing written)
        row_id = rows.put(self._svc.db, kind=kind, body=body, context=context, now=self._svc.clock.now(),
                          stream=stream_of(body), claim=replay.deferred_claim())
        replay.settle_claim()
        self._executor.submit(self.work, row_id)

    def in_memory(self, runnable: Callable[[], None]) -> None:
        def after_the_acks() -> None:
            self.acks.quiet()
            runnable()
        self._executor.submit(after_the_acks)

    def busy(self, request: BoltRequest) -> BoltResponse:
        """The answer when the inbox did not take the delivery: nothing was done, say so inside the ack.
        Unless a copy of it was done already (Slack's retry of an ack that came late): nothing is looked up
        before a delivery is recorded, so it is looked up here."""
        body = request.body
        key = replay.identity(body)
        if replay.claim_pending() and replay.done_already(self._svc, key):
            return self.second(request)
        # nothing was done: the same delivery, sent again, must not be "already done" (a deferred claim
        # still owed was rolled back with the row: there is nothing to forget)
        if key and not replay.claim_pending():
            replay.forget(self._svc, key, self._executor)
        replay.settle_claim()
        return replay.busy_answer(self._svc, body, self._executor)

    def second(self, request: BoltRequest) -> BoltResponse:
        """A copy of this delivery took its claim first: this one did nothing."""
        replay.settle_claim()
        return replay.second_delivery(self._svc, request, self._executor)

    # ---- workers ----------------------------------------------------------------------------------------

    def work(self, row_id: Optional[int] = None) -> None:
        """Apply that row (or the oldest claimable one), then that person's next rows, while there are any."""
        row = self._claim(row_id=row_id)
        while row is not None:
            self._apply(row)
            if self._stopping.is_set() or row.stream is None:
                return
            row = self._claim(stream=row.stream)

    def sweep(self) -> int:
        """Start workers for rows nobody is working on: left by a dead or stopped process, or waiting their
        turn. Runs on the scheduler in every process. Returns how many workers it started."""
        try:
            waiting = min(rows.waiting(self._svc.db, self._svc.clock.now()), self._workers)
        except SQLAlchemyError:
            log.exception("could not look at the inbox; the next sweep tries again")
            return 0
        started = 0
        for _ in range(waiting):
            if self._stopping.is_set() or not self._sweeping.acquire(blocking=False):
                break
            self._executor.submit(self._swept)
            started += 1
        return started

    def stop(self) -> None:
        """Shutting down: the rows under way finish; nothing new is claimed. What is left stays in the
        inbox for the next process (unclaimed rows at once, none is lost)."""
        self._stopping.set()

    def _swept(self) -> None:
        try:
            self.work()
        finally:
            self._sweeping.release()

    def _claim(self, **which):
        self.acks.quiet()
        if self._stopping.is_set():
            return None
        try:
            return rows.claim(self._svc.db, self._svc.clock.now(), self.lease, **which)
        except SQLAlchemyError:
            log.exception("could not claim an inbox row; a later sweep takes it")
            return None

    def _apply(self, row) -> None:
        if row.attempts > MAX_ATTEMPTS:
            log.error("inbox row %s (%s) was started %s times and never finished; given up on", row.id, row.kind,
                      row.attempts - 1)
            rows.finish(self._svc.db, row, self._svc.clock.now(), result="given up: never finished")
            return
        # Rebuilt as Bolt rebuilds a lazy request: it runs only the named lazy function of the listener the
        # body matches. The payload was verified when it arrived; a signature is not checked again (it
        # expires after five minutes, and the row may be older), which the socket_mode request mode means.
        request = BoltRequest(body=row.body, context=dict(row.context), mode="socket_mode")
        request.lazy_only = True
        request.lazy_function_name = row.kind
        try:
            self._app.dispatch(request)
        except Exception:  # noqa: BLE001 - a listener's failure is told to its person by the listener
            log.exception("inbox row %s (%s) failed", row.id, row.kind)
        try:
            rows.finish(self._svc.db, row, self._svc.clock.now())
        except SQLAlchemyError:
            # Applied, not marked: it runs again after its lease, which the use cases recognise as a replay.
            log.exception("could not mark inbox row %s done", row.id)


class _InboxLazyRunner(LazyListenerRunner):
    """Bolt's hook for starting a lazy function: record it instead of queueing it in memory.
    A rebuilt request (lazy_function_name set) runs synchronously through the inherited run()."""

    def __init__(self, box: Inbox, logger: logging.Logger):
        self.box, self.logger = box, logger

    def start(self, function: Callable[..., None], request: BoltRequest) -> None:
        # Not reached: install() starts lazy halves itself (start_lazy). Kept for Bolt's interface.
        self.box.in_memory(build_runnable_function(func=function, logger=self.logger, request=request))


def install(app: App, svc: Services, executor: Executor, workers: int, lease: timedelta = rows.LEASE) -> Inbox:
    """Route every lazy listener of `app` through the inbox; the returned Inbox sweeps and stops."""
    box = Inbox(svc, app, executor, workers, lease)
    runner = app.listener_runner
    runner.lazy_listener_runner = _InboxLazyRunner(box, runner.logger)
    run = runner.run

    def run_or_busy(request, response, listener_name, listener, starting_time=None):
        # The lazy half is recorded after the ack half ran and before the answer goes back to Slack;
        # when the inbox does not take it in time, the answer becomes "busy, try again" instead.
        try:
            return run(request=request, response=response, listener_name=listener_name, listener=listener,
                       starting_time=starting_time)
        except Busy:
            return box.busy(request)
        except Claimed:
            return box.second(request)

    runner.run = run_or_busy

    def start_lazy(function, request: BoltRequest) -> None:
        name = get_name_for_callable(function)
        if replay.reads_only(request):
            # A read (show, list, help, a button that opens a form) writes nothing, so it must not need the
            # write lock to be taken in: it runs in memory as Bolt would. Lost to a crash, it only has to
            # be asked again; it never does anything twice. Bolt deep-copies the request for it (about
            # 0.5 ms of CPU): the copy is made on the worker, after the acks, from the request this thread
            # no longer touches once it has answered.
            def read() -> None:
                copy = runner._build_lazy_request(request, name)  # slack_bolt ThreadListenerRunner, pinned
                build_runnable_function(func=function, logger=runner.logger, request=copy)()
            box.in_memory(read)
            return
        # A recorded one needs only the body and the context it carries, read on this thread.
        box.record(name, request)

    runner._start_lazy_function = start_lazy  # slack_bolt ThreadListenerRunner's hook, pinned version
    return box

