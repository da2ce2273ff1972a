"""The delivery loop: claim outbox rows, screen them, build, pace, hand over, record.

Per row, in this order:

1. **claim** a batch under a lease (``outbox.claim``);
2. **screen** the batch: ``suppressed_among`` (suppression list, erased addresses,
   domains), the contact's status (bounced/complained stop everything, unsubscribed
   stops marketing), for marketing to a list the membership, and the contact's topic
   opt-outs and frequency cap (``preferences.blocked_by_choice``); blocked rows become
   ``suppressed`` and are never handed over;
3. **build** the bytes (``compose.py``) in chunks of ``Policy.build_chunk`` rows, one
   session and one read of their contacts and companies per chunk, while the previous
   chunk is on the wire; a build error makes the row ``failed``;
4. **fence check** the chunk in one read (``outbox.fenced``) right after building: the
   lease still holds and no unsubscribe or bounce suppressed the row since the screen.
   A row whose check is older than ``FENCE_FRESH`` seconds when its turn comes (it
   waited for its pace) is checked again alone (``outbox.still_ours``);
5. **pace** (``throttle.Pacer``: per-destination connections and rate, global rate); a
   row whose wait would pass the run's deadline, or that waits when a stop is asked,
   is released untried (``outbox.release``), so a stop or a drain's end is prompt;
6. **deliver** through the transport;
7. **record** at once, committed in groups of up to 16 (or what finished within 2 ms),
   accepted ones by one statement per group (``outbox.mark_sent_many``): the duplicate
   window (the server said 250, the commit saying so has not happened) is that wait plus
   one short transaction.

Deferred rows come back after ``throttle.retry_delay``; a row first tried longer ago
than ``give_up_after`` bounces as ``expired``. See docs/delivery.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

import structlog
from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from postwise.core import clock
from postwise.delivery import outbox, preferences, throttle
from postwise.delivery.compose import BuildError, Built, Composer, prebuilt
from postwise.delivery.outbox import Claimed
from postwise.delivery.transports.base import (
    DeliveryResult,
    Envelope,
    MailTransport,
    Outcome,
    Phase,
    RecipientResult,
    wire_payload,
)
from postwise.privacy.hashing import AddressHasher
from postwise.privacy.suppression import suppressed_among
from postwise.storage.database import Database
from postwise.storage.tables import Contact, ListMembership

log = structlog.get_logger(__name__)
T = TypeVar("T")

# Hooks bounce handling plugs in (``delivery/service.py`` wires them): the persisted
# per-domain caps, and what to do with a message refused at send time.
Paces = Callable[[], Mapping[str, float]]
OnRejected = Callable[[Session, Claimed, RecipientResult, str], None]

BLOCK_ALL = frozenset({"bounced", "complained"})
# A fence check older than this when the row's turn comes is asked again, alone.
FENCE_FRESH = 1.0


def _timed(totals: Totals, stage: str, fn: Callable[..., T], *args: Any) -> T:
    started = time.thread_time()
    try:
        return fn(*args)
    finally:
        totals.add_cpu(stage, time.thread_time() - started)


@dataclass(frozen=True)
class Policy:
    batch_size: int = 100
    concurrency: int = 16
    lease_seconds: float = 300.0
    give_up_after: float = 5 * 24 * 3600.0
    retry_base: float = 60.0
    retry_cap: float = 4 * 3600.0
    record_group: int = 16  # at most `concurrency` results wait at once anyway
    record_wait: float = 0.002
    build_chunk: int = 32
    # First day of sending from a new domain/IP: the warm-up schedule caps each UTC day.
    warmup_start: date | None = None
    warmup_schedule: tuple[int, ...] = throttle.DEFAULT_WARMUP


@dataclass
class Totals:
    sent: int = 0
    deferred: int = 0
    bounced: int = 0
    failed: int = 0
    suppressed: int = 0
    lost_lease: int = 0
    released: int = 0  # given back untried: a stop, or a pace wait past the deadline
    by_status: dict[str, int] = field(default_factory=dict)
    # CPU seconds per stage (``time.thread_time`` around each stage's work in its
    # thread; "loop" is the event loop's thread: SMTP, pacing, scheduling).
    cpu: dict[str, float] = field(default_factory=dict)

    def add_cpu(self, stage: str, seconds: float) -> None:
        self.cpu[stage] = self.cpu.get(stage, 0.0) + seconds


def screen(db: Database, rows: Sequence[Claimed], hasher: AddressHasher) -> dict[int, str]:
    """Rows that must not be sent, with the reason; marks them ``suppressed``."""
    blocked: dict[int, str] = {}
    by_ws: dict[int, list[Claimed]] = defaultdict(list)
    for row in rows:
        by_ws[row.workspace_id].append(row)
    for workspace_id, group in by_ws.items():
        with db.tenant(workspace_id) as session:
            hits = suppressed_among(session, [r.email for r in group], hasher=hasher)
            contact_ids = {r.contact_id for r in group if r.contact_id is not None}
            statuses = {
                int(cid): str(status)
                for cid, status in session.execute(
                    select(Contact.id, Contact.status).where(Contact.id.in_(contact_ids))
                )
            }
            pairs = {
                (r.list_id, r.contact_id)
                for r in group
                if r.kind == "marketing" and r.list_id is not None and r.contact_id is not None
            }
            memberships = (
                {
                    (lid, cid): status
                    for lid, cid, status in session.execute(
                        select(
                            ListMembership.list_id,
                            ListMembership.contact_id,
                            ListMembership.status,
                        ).where(
                            tuple_(ListMembership.list_id, ListMembership.contact_id).in_(pairs)
                        )
                    )
                }
                if pairs
                else {}
            )
            for row in group:
                reason = hits.get(row.email)
                status = statuses.get(row.contact_id) if row.contact_id is not None else None
                if reason is None and status in BLOCK_ALL:
                    reason = f"contact_{status}"
                if reason is None and row.kind == "marketing":
                    if status == "unsubscribed":
                        reason = "contact_unsubscribed"
                    elif row.list_id is not None and row.contact_id is not None:
                        member = memberships.get((row.list_id, row.contact_id))
                        if member != "subscribed":
                            reason = f"list_{member or 'not_member'}"
                if reason is not None:
                    blocked[row.id] = reason
                    outbox.mark_suppressed(session, row, reason)
            # Topic opt-outs and frequency caps (docs/delivery.md, "Preference center").
            chosen = preferences.blocked_by_choice(
                session, [r for r in group if r.id not in blocked]
            )
            for row in group:
                if row.id in chosen:
                    blocked[row.id] = chosen[row.id]
                    outbox.mark_suppressed(session, row, chosen[row.id])
    return blocked


class Deliverer:
    def __init__(
        self,
        db: Database,
        transport: MailTransport,
        *,
        hasher: AddressHasher,
        worker_id: str,
        composer: Composer = prebuilt,
        policy: Policy | None = None,
        pacer: throttle.Pacer | None = None,
        final_hop: bool = False,
        rng: random.Random | None = None,
        paces: Paces | None = None,
        on_rejected: OnRejected | None = None,
    ) -> None:
        self.db = db
        self._autocommit = db.engine.execution_options(isolation_level="AUTOCOMMIT")
        self.transport = transport
        self.hasher = hasher
        self.worker_id = worker_id
        self.composer = composer
        self.policy = policy or Policy()
        self.pacer = pacer or throttle.Pacer(clock=time.monotonic)
        self.final_hop = final_hop  # direct-to-MX: a 250 is the recipient's own server
        self.rng = rng or random.Random()
        self.totals = Totals()
        self._held: dict[int, Claimed] = {}
        self._results: list[tuple[Claimed, Built, DeliveryResult, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._recorder: asyncio.Task[None] | None = None
        self.paces = paces
        self.on_rejected = on_rejected
        self._caps_read_at: float | None = None
        self._stop: asyncio.Event | None = None  # set by ``run``
        self._deadline: float | None = None  # monotonic; ``run``'s max_seconds
        self._gave_back = False  # a batch released rows: this run is over

    # --- one chunk of rows ---------------------------------------------------------------

    def _prepare(self, rows: Sequence[Claimed]) -> tuple[list[tuple[Claimed, Built]], set[int]]:
        """Build a chunk (one session per workspace, contacts and companies read once)
        and fence-check what was built in one read; returns the built rows and the ids
        still ours. Runs in a worker thread."""
        started = time.thread_time()
        built: list[tuple[Claimed, Built]] = []
        by_ws: dict[int, list[Claimed]] = defaultdict(list)
        for row in rows:
            if row.raw is not None:
                built.append((row, Built(row.mail_from or "", row.email, row.raw, row.message_id)))
            else:
                by_ws[row.workspace_id].append(row)
        for workspace_id, group in by_ws.items():
            with self.db.tenant(workspace_id) as session:
                preload = getattr(self.composer, "preload", None)
                # Held until the chunk is built: the identity map references weakly.
                loaded = preload(session, group) if preload is not None else []
                for row in group:
                    try:
                        built.append((row, self.composer(session, row)))
                    except BuildError as exc:
                        outbox.mark_failed(session, row, str(exc))
                        self.totals.failed += 1
                        log.warning("delivery.build_failed", outbox_id=row.id, error=str(exc))
                del loaded
        # The DATA payload (dot-stuffed, terminated) once here, in the build's thread.
        built = [(row, replace(b, wire=wire_payload(b.data))) for row, b in built]
        fence_started = time.thread_time()
        self.totals.add_cpu("build", fence_started - started)
        with self._autocommit.connect() as conn:
            ours = outbox.fenced(conn, [row for row, _ in built])
        self.totals.add_cpu("fence", time.thread_time() - fence_started)
        return built, ours

    def _still_ours(self, row: Claimed) -> bool:
        # One primary-key read in autocommit: no BEGIN and ROLLBACK round trips around it.
        with self._autocommit.connect() as conn:
            return outbox.still_ours(conn, row)

    def _release(self, rows: Sequence[tuple[Claimed, float]]) -> None:
        """Rows given back untried, each due again after its pace wait (seconds)."""
        if not rows:
            return
        now = clock.utcnow()
        with self.db.system() as session:
            released = outbox.release(
                session, [(row, now + timedelta(seconds=wait)) for row, wait in rows]
            )
        self.totals.released += released
        log.info("delivery.released", rows=released)

    def _record_many(self, done: list[tuple[Claimed, Built, DeliveryResult]]) -> None:
        """Settle finished deliveries: one transaction per workspace for the whole group,
        the accepted ones by one statement (``outbox.mark_sent_many``)."""
        by_ws: dict[int, list[tuple[Claimed, Built, DeliveryResult]]] = defaultdict(list)
        for item in done:
            by_ws[item[0].workspace_id].append(item)
        for workspace_id, items in by_ws.items():
            with self.db.tenant(workspace_id) as session:
                accepted: list[outbox.Accepted] = []
                for row, built, result in items:
                    answer = result.recipients.get(built.rcpt) or next(
                        iter(result.recipients.values())
                    )
                    if answer.outcome is Outcome.ACCEPTED:
                        accepted.append(
                            outbox.Accepted(
                                row, built.message_id, result.transport, answer.full_reply,
                                built.links,
                            )
                        )  # fmt: skip
                    else:
                        self._record_in(session, row, built, result)
                settled = outbox.mark_sent_many(session, accepted, final_hop=self.final_hop)
                self.totals.sent += len(settled)
                for lost in accepted:
                    if lost.row.id not in settled:
                        self.totals.lost_lease += 1
                        log.warning("delivery.lease_lost", outbox_id=lost.row.id)

    def _record_in(
        self, session: Session, row: Claimed, built: Built, result: DeliveryResult
    ) -> None:
        """A delivery the next hop did not accept: bounced (5xx, or expired) or deferred."""
        answer = result.recipients.get(built.rcpt) or next(iter(result.recipients.values()))
        reply = answer.full_reply
        if answer.outcome is Outcome.REJECTED:
            ok = outbox.mark_bounced(
                session,
                row,
                code=answer.code,
                enhanced_code=answer.enhanced_code,
                reply=reply,
                phase=answer.phase.value,
                transport=result.transport,
                message_id=built.message_id,
            )
            self.totals.bounced += ok
            if ok:
                self._rejected(session, row, answer, "rejected")
        else:
            age = (clock.utcnow() - row.first_attempt_at).total_seconds()
            if throttle.expired(age, self.policy.give_up_after):
                ok = outbox.mark_bounced(
                    session,
                    row,
                    code=answer.code,
                    enhanced_code=answer.enhanced_code,
                    reply=reply,
                    phase=answer.phase.value,
                    transport=result.transport,
                    reason="expired",
                    message_id=built.message_id,
                )
                self.totals.bounced += ok
                if ok:
                    self._rejected(session, row, answer, "expired")
            else:
                delay = throttle.retry_delay(
                    row.attempt,
                    base=self.policy.retry_base,
                    cap=self.policy.retry_cap,
                    rng=self.rng,
                )
                ok = outbox.mark_deferred(
                    session,
                    row,
                    next_attempt_at=clock.utcnow() + timedelta(seconds=delay),
                    reply=reply,
                    transport=result.transport,
                    message_id=built.message_id,
                )
                self.totals.deferred += ok
        if not ok:
            self.totals.lost_lease += 1
            log.warning("delivery.lease_lost", outbox_id=row.id, reply=reply)

    def _rejected(
        self, session: Session, row: Claimed, answer: RecipientResult, reason: str
    ) -> None:
        """Hand a send-time bounce to bounce handling, inside a savepoint: its failure is
        logged and never undoes (or retries, i.e. re-sends) the settled delivery."""
        if self.on_rejected is None:
            return
        try:
            with session.begin_nested():
                self.on_rejected(session, row, answer, reason)
        except Exception:
            log.exception("delivery.bounce_record_failed", outbox_id=row.id)

    def _refresh_caps(self) -> None:
        """Re-read the persisted per-domain caps every ``throttle.CAP_REFRESH`` seconds."""
        now = time.monotonic()
        if self.paces is None or (
            self._caps_read_at is not None and now - self._caps_read_at < throttle.CAP_REFRESH
        ):
            return
        self._caps_read_at = now
        try:
            self.pacer.set_caps(self.paces())
        except Exception:
            log.exception("delivery.caps_unreadable")

    def _stopping(self, wait: float = 0.0) -> bool:
        """Whether a row that would start after ``wait`` seconds should be given back."""
        if self._stop is not None and self._stop.is_set():
            return True
        return self._deadline is not None and time.monotonic() + wait > self._deadline

    async def _pause(self, seconds: float) -> None:
        """Sleep for the pace, waking early when a stop is asked."""
        if self._stop is None:
            await asyncio.sleep(seconds)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    async def _send(
        self,
        row: Claimed,
        built: Built,
        checked_at: float,
        slots: asyncio.Semaphore,
        released: list[tuple[Claimed, float]],
    ) -> None:
        async with slots:
            try:
                dest = row.domain
                while (wait := self.pacer.wait_time(dest)) > 0:
                    if self._stopping(wait):
                        released.append((row, wait))
                        return
                    await self._pause(wait)
                self.pacer.start(dest)
                try:
                    if time.monotonic() - checked_at > FENCE_FRESH and not await asyncio.to_thread(
                        _timed, self.totals, "fence", self._still_ours, row
                    ):
                        self.pacer.finish(dest, 250)
                        self.totals.lost_lease += 1
                        return
                    envelope = Envelope(
                        built.mail_from,
                        (built.rcpt,),
                        built.data,
                        built.message_id,
                        row.workspace_id,
                        row.id,
                        built.wire,
                    )
                    try:
                        result = await self.transport.deliver(envelope)
                    except Exception as exc:  # a transport bug must not lose the row
                        log.exception("delivery.transport_error", outbox_id=row.id)
                        failure = RecipientResult(
                            Outcome.DEFERRED, None, f"transport error: {exc!r}", Phase.LOCAL
                        )
                        result = DeliveryResult(self.transport.name, {built.rcpt: failure})
                    answer = next(iter(result.recipients.values()))
                    self.pacer.finish(dest, answer.code, dropped=answer.code is None)
                except BaseException:
                    self.pacer.finish(dest, None)
                    raise
                await self._settle(row, built, result)
            finally:
                self._held.pop(row.id, None)

    async def _settle(self, row: Claimed, built: Built, result: DeliveryResult) -> None:
        """Queue a finished delivery for the recorder and wait until it is committed.

        Results are committed in groups (up to ``Policy.record_group`` or whatever
        arrived within ``Policy.record_wait`` seconds): the duplicate window per message
        is that wait plus one commit, for a fraction of the per-message commits.
        """
        done = asyncio.get_running_loop().create_future()
        self._results.append((row, built, result, done))
        if len(self._results) >= self.policy.record_group:
            self._wake.set()
        elif self._recorder is None or self._recorder.done():
            self._recorder = asyncio.create_task(self._record_soon())
        await done

    async def _record_soon(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self.policy.record_wait)
        while self._results:
            self._wake.clear()
            group = self._results[: self.policy.record_group]
            del self._results[: len(group)]
            try:
                await asyncio.to_thread(
                    _timed,
                    self.totals,
                    "settle",
                    self._record_many,
                    [(r, b, res) for r, b, res, _ in group],
                )
            except Exception as exc:
                for *_, done in group:
                    done.set_exception(exc)
                continue
            for *_, done in group:
                done.set_result(None)

    # --- the loop ---------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.policy.lease_seconds / 3)
            held = list(self._held.values())
            if held:

                def extend(rows: list[Claimed] = held) -> None:
                    with self.db.system() as session:
                        outbox.extend_leases(
                            session, self.worker_id, rows, self.policy.lease_seconds
                        )

                await asyncio.to_thread(extend)

    def _warmup_room(self) -> int:
        """Messages still allowed today under the warm-up cap (counted in the database,
        so shared by every worker; concurrent claims may overshoot by one batch each)."""
        start = self.policy.warmup_start
        if start is None:
            return self.policy.batch_size
        now = clock.utcnow()
        cap = throttle.warmup_cap((now.date() - start).days, self.policy.warmup_schedule)
        midnight = datetime.combine(now.date(), datetime.min.time(), tzinfo=UTC)
        with self.db.system() as session:
            sent_today = outbox.sent_since(session, midnight)
        return max(0, min(self.policy.batch_size, cap - sent_today))

    async def run_batch(self) -> int:
        """Claim and settle one batch; returns how many rows were claimed."""
        await asyncio.to_thread(self._refresh_caps)
        room = await asyncio.to_thread(self._warmup_room)
        if room == 0:
            return 0
        rows = await asyncio.to_thread(
            _timed,
            self.totals,
            "claim",
            outbox.claim,
            self.db,
            self.worker_id,
            room,
            self.policy.lease_seconds,
        )
        if not rows:
            return 0
        self._held.update({r.id: r for r in rows})
        blocked = await asyncio.to_thread(
            _timed, self.totals, "screen", screen, self.db, rows, self.hasher
        )
        for row_id in blocked:
            self._held.pop(row_id, None)
        self.totals.suppressed += len(blocked)
        todo = [r for r in rows if r.id not in blocked]
        slots = asyncio.Semaphore(self.policy.concurrency)
        released: list[tuple[Claimed, float]] = []
        sending: list[asyncio.Task[None]] = []
        chunk = max(1, self.policy.build_chunk)
        try:
            for start in range(0, len(todo), chunk):
                part = todo[start : start + chunk]
                # Build at most one chunk ahead of the wire, so a fence check is fresh
                # when its row goes out, and stop between chunks when asked.
                ahead = [t for t in sending if not t.done()]
                if len(ahead) > chunk:
                    await asyncio.wait(ahead[: len(ahead) - chunk])
                if self._stopping():
                    released.extend((row, 0.0) for row in todo[start:])
                    break
                built, ours = await asyncio.to_thread(self._prepare, part)
                checked_at = time.monotonic()
                made = {row.id for row, _ in built}
                for row in part:
                    if row.id not in made:  # failed to build: settled as ``failed``
                        self._held.pop(row.id, None)
                for row, message in built:
                    if row.id not in ours:
                        self._held.pop(row.id, None)
                        self.totals.lost_lease += 1
                        continue
                    sending.append(
                        asyncio.create_task(self._send(row, message, checked_at, slots, released))
                    )
            await asyncio.gather(*sending)
        finally:
            # On an error, messages already on the wire still finish and are recorded.
            await asyncio.gather(*sending, return_exceptions=True)
            if released:
                for row, _ in released:
                    self._held.pop(row.id, None)
                await asyncio.to_thread(self._release, released)
                # What is left waits for a pace or a restart, not for this run.
                self._gave_back = True
        return len(rows)

    async def run(
        self,
        *,
        until_idle: bool = True,
        max_seconds: float | None = None,
        stop: asyncio.Event | None = None,
        poll_seconds: float = 1.0,
    ) -> Totals:
        """Deliver batch after batch; stop when idle, at ``max_seconds``, or on ``stop``."""
        started = time.monotonic()
        self._stop = stop
        self._deadline = started + max_seconds if max_seconds is not None else None
        self._gave_back = False
        loop_cpu = time.thread_time()
        beat = asyncio.create_task(self._heartbeat())
        try:
            while stop is None or not stop.is_set():
                if max_seconds is not None and time.monotonic() - started >= max_seconds:
                    break
                claimed = await self.run_batch()
                if self._gave_back:
                    break
                if claimed == 0:
                    if until_idle:
                        break
                    if stop is not None:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(stop.wait(), poll_seconds)
                    else:
                        await asyncio.sleep(poll_seconds)
        finally:
            beat.cancel()
            await self.transport.close()
            self.totals.add_cpu("loop", time.thread_time() - loop_cpu)
        return self.totals
