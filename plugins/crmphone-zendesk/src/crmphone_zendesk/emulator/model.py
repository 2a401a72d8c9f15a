"""The emulated Zendesk account as a sans-I/O store: records, ids, validation, search, credentials,
rate limit, idempotency, faults and counters. No sockets, no sleeps; time comes from the injected
``clock`` (monotonic seconds) and ``wall`` (aware UTC datetimes).

Everything is deterministic from ``seed``: ids, names, the seeded agents and customers. Credentials
are the exception: they are random unless given, so a running emulator never accepts a
guessable token.

Seeded data (:class:`ZendeskModel` with any seed):

* one admin, the API user (:attr:`ZendeskModel.admin`, email = the configured ``email``) and four
  agents (:attr:`ZendeskModel.agents`);
* 50 end-users (:attr:`ZendeskModel.customers`), customer *i* (1-based) with the number
  ``+1555010`` + ``i`` on four digits, stored in rotating real-world formats:
  ``(555) 010-0001``, ``+1 555 010 0002``, ``555.010.0003``, ``+15550100004``, …;
* :data:`SHARED_NUMBER` (``+15550100049``) belongs to customers 49 *and* 50 (the "many matches"
  case; customer 50 has no number of its own), :data:`NO_MATCH_NUMBER` (``+15550100099``) to
  nobody, and customer 13 (:data:`HTML_NAME_NUMBER`) is named :data:`HTML_NAME`.
"""

from __future__ import annotations

import base64
import binascii
import collections
import hmac
import html
import math
import random
import re
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, Literal, TypeVar

import attrs

from crmphone.errors import UsageError

from .faults import Faults
from .records import (
    CALL_FIELDS,
    Call,
    Comment,
    DisplayRequest,
    RequestRecord,
    Role,
    Ticket,
    User,
    Via,
)
from .search import SearchTerm, digits, matches, parse_query

__all__ = [
    "HTML_NAME",
    "HTML_NAME_NUMBER",
    "NO_MATCH_NUMBER",
    "ONE_MATCH_NUMBER",
    "SHARED_NUMBER",
    "Credentials",
    "IdempotencyStore",
    "Lookup",
    "RateLimiter",
    "RecordInvalidError",
    "Stats",
    "ZendeskModel",
    "iso_utc",
]

ONE_MATCH_NUMBER = "+15550100001"
"""Customer 1's number, stored as ``(555) 010-0001``: exactly one match."""
SHARED_NUMBER = "+15550100049"
"""Customers 49 and 50 share this number: the "many matches" case."""
NO_MATCH_NUMBER = "+15550100099"
"""No user has this number: the "no match" case."""
HTML_NAME_NUMBER = "+15550100013"
"""Customer 13's number; customer 13 is named :data:`HTML_NAME`."""
HTML_NAME = "<img src=x onerror=alert(1)> Mallory"
"""A caller name with HTML in it, for UI escaping tests."""

CUSTOMER_COUNT = 50
IDEMPOTENCY_TTL = 2 * 60 * 60.0
"""Zendesk keeps an ``Idempotency-Key`` answer for two hours."""

_FIRST_NAMES = (
    "Ada", "Ben", "Chloe", "Dev", "Elif", "Farid", "Grace", "Hugo", "Ines", "Jonas", "Kemi",
    "Liam", "Maya", "Noor", "Oscar", "Priya", "Quinn", "Rosa", "Sven", "Tara", "Umar", "Vera",
    "Wen", "Ximena", "Yusuf", "Zoe",
)  # fmt: skip
_LAST_NAMES = (
    "Abara", "Bianchi", "Castillo", "Dubois", "Eriksen", "Fischer", "Gupta", "Haddad", "Ito",
    "Jansen", "Kowalski", "Larsen", "Moreau", "Nakamura", "Okafor", "Petrov", "Quispe", "Rossi",
    "Silva", "Tanaka", "Ueda", "Varga", "Weber", "Xu", "Yilmaz", "Zhou",
)  # fmt: skip
_AGENT_NAMES = ("Alex Rivera", "Sam Okoye", "Jordan Lee", "Robin Müller")
_PHONE_FORMATS: tuple[Callable[[str], str], ...] = (
    lambda d: f"({d[1:4]}) {d[4:7]}-{d[7:]}",  # (555) 010-0001
    lambda d: f"+{d[0]} {d[1:4]} {d[4:7]} {d[7:]}",  # +1 555 010 0002
    lambda d: f"{d[1:4]}.{d[4:7]}.{d[7:]}",  # 555.010.0003
    lambda d: f"+{d}",  # +15550100004
)
_VIA_RELS = {44: "voicemail", 45: "inbound", 46: "outbound"}
_TICKET_STATUSES = frozenset({"new", "open", "pending", "hold", "solved", "closed"})
_CALL_INT_FIELDS = frozenset({
    "app_id", "agent_id", "brand_id", "end_user_id", "ticket_id", "duration", "wait_time",
    "time_to_answer", "queue_time", "ivr_time_spent", "ivr_hops", "talk_time", "hold_time",
    "consultation_time", "wrap_up_time", "call_abandoned_position", "recording_time",
    "not_recording_time", "recording_control_interactions",
})  # fmt: skip
_CALL_BOOL_FIELDS = frozenset({
    "exceeded_queue_time", "customer_requested_voicemail", "voicemail",
    "outside_business_hours", "overflowed", "callback",
})  # fmt: skip
_CALL_READ_ONLY = frozenset({"id", "account_id", "organization_id", "created_at", "updated_at"})
_CALL_REQUIRED = ("app_id", "from_line", "to_line", "call_started_at", "direction")
_VOICE_COMMENT_FIELDS = (
    "from", "to", "recording_url", "started_at", "call_duration", "answered_by_id",
    "transcription_text", "location",
)  # fmt: skip

T = TypeVar("T")


def iso_utc(moment: datetime) -> str:
    """Zendesk's timestamp format: ``2024-01-17T18:31:19Z`` (UTC, whole seconds)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _system_wall() -> datetime:
    return datetime.now(UTC)


def _humanise(field: str) -> str:
    return field.replace("_", " ").capitalize()


class RecordInvalidError(UsageError):
    """A record failed validation: Zendesk's 422 ``RecordInvalid``.

    ``details`` maps each offending field to ``[{"description": …, "error": …}]``, the shape of
    Zendesk's ``details`` member.
    """

    def __init__(self, details: Mapping[str, Sequence[Mapping[str, str]]]) -> None:
        self.details = {key: [dict(item) for item in value] for key, value in details.items()}
        fields = ", ".join(sorted(self.details))
        super().__init__(f"Record validation errors ({fields})")

    @classmethod
    def one(cls, field: str, description: str, error: str = "InvalidValue") -> RecordInvalidError:
        """The error for a single field."""
        return cls({field: [{"description": description, "error": error}]})


@attrs.frozen
class Credentials:
    """What the emulator accepts: HTTP Basic ``{email}/token:{api_token}`` or
    ``Authorization: Bearer {oauth_token}``. The tokens never appear in a repr."""

    email: str
    api_token: str = attrs.field(repr=False)
    oauth_token: str = attrs.field(repr=False)


@attrs.define
class Stats:
    """Request counters: per route kind, in total, and the most recent requests in order."""

    requests: collections.Counter[str] = attrs.field(factory=collections.Counter)
    """Requests per route kind (``search``, ``tickets.create``, …, ``unknown``)."""
    log: collections.deque[RequestRecord] = attrs.field(
        factory=lambda: collections.deque(maxlen=1000)
    )
    """The last requests answered (bounded; oldest dropped first)."""

    @property
    def total(self) -> int:
        """Every request counted so far."""
        return sum(self.requests.values())

    def record(self, record: RequestRecord) -> None:
        """Count one answered request."""
        self.requests[record.route] += 1
        self.log.append(record)


@attrs.define
class RateLimiter:
    """Zendesk's per-minute request budget as a fixed 60-second window (sans-I/O)."""

    limit: int
    window: float = 60.0
    _started: float | None = None
    _used: int = 0

    def _roll(self, now: float) -> None:
        if self._started is None or now - self._started >= self.window:
            self._started, self._used = now, 0

    def admit(self, now: float) -> tuple[bool, int]:
        """Spend one request: ``(True, remaining)``, or ``(False, retry_after)`` when the
        window's budget is gone (``retry_after`` in whole seconds, at least 1)."""
        self._roll(now)
        assert self._started is not None
        if self._used >= self.limit:
            return False, max(1, math.ceil(self._started + self.window - now))
        self._used += 1
        return True, self.limit - self._used

    def remaining(self, now: float) -> int:
        """Requests left in the current window."""
        self._roll(now)
        return max(0, self.limit - self._used)


@attrs.frozen
class Lookup(Generic[T]):
    """The result of an idempotency lookup: ``miss``, ``hit`` (with the stored answer) or
    ``mismatch`` (the key was used for a different request)."""

    outcome: Literal["miss", "hit", "mismatch"]
    answer: T | None = None


@attrs.define
class _Stored(Generic[T]):
    fingerprint: str
    answer: T
    stored_at: float


class IdempotencyStore(Generic[T]):
    """Answers kept per ``Idempotency-Key`` for ``ttl`` seconds (two hours on Zendesk)."""

    def __init__(self, ttl: float = IDEMPOTENCY_TTL) -> None:
        self.ttl = ttl
        self._entries: dict[str, _Stored[T]] = {}

    def lookup(self, key: str, fingerprint: str, now: float) -> Lookup[T]:
        """What a request with ``key`` and this request ``fingerprint`` gets at ``now``."""
        self._prune(now)
        entry = self._entries.get(key)
        if entry is None:
            return Lookup("miss")
        if not hmac.compare_digest(entry.fingerprint, fingerprint):
            return Lookup("mismatch")
        return Lookup("hit", entry.answer)

    def store(self, key: str, fingerprint: str, answer: T, now: float) -> None:
        """Keep ``answer`` for later requests with the same key and fingerprint."""
        self._entries[key] = _Stored(fingerprint, answer, now)

    def __len__(self) -> int:
        return len(self._entries)

    def _prune(self, now: float) -> None:
        expired = [k for k, e in self._entries.items() if now - e.stored_at >= self.ttl]
        for key in expired:
            del self._entries[key]


class _Ids:
    """Deterministic, Zendesk-looking ids: large and increasing with irregular gaps."""

    def __init__(self, rng: random.Random, start: int, gap: tuple[int, int]) -> None:
        self._rng = rng
        self._next = start
        self._gap = gap

    def __call__(self) -> int:
        value = self._next
        self._next += self._rng.randint(*self._gap)
        return value


class ZendeskModel:
    """One emulated Zendesk account: see the module docstring for the seeded data.

    ``rate_limit`` is the per-minute request budget (``X-Rate-Limit``); ``search_lag`` the
    seconds before a new user or ticket shows up in search; ``request_log_size`` bounds
    :attr:`Stats.log`. Credentials not given are generated.
    """

    def __init__(
        self,
        seed: int = 0,
        *,
        email: str = "admin@crmphone-emulator.example",
        api_token: str | None = None,
        oauth_token: str | None = None,
        rate_limit: int = 700,
        search_lag: float = 0.0,
        request_log_size: int = 1000,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] | None = None,
    ) -> None:
        if rate_limit < 1:
            raise UsageError(f"rate_limit must be at least 1 request per minute, got {rate_limit}")
        if search_lag < 0:
            raise UsageError(f"search_lag must not be negative, got {search_lag}")
        self.seed = seed
        self.clock = clock
        self.wall = wall or _system_wall
        self.credentials = Credentials(
            email=email,
            api_token=api_token if api_token is not None else secrets.token_urlsafe(24),
            oauth_token=oauth_token if oauth_token is not None else secrets.token_urlsafe(32),
        )
        self.credentials_revoked = False
        """True after :meth:`revoke_credentials`: every request gets 401."""
        self.search_lag = float(search_lag)
        """Seconds before a newly created user or ticket is visible to search."""
        self.rate_limiter = RateLimiter(rate_limit)
        self.stats = Stats(log=collections.deque(maxlen=request_log_size))
        self.faults = Faults(set_search_lag=self._set_search_lag)
        self.idempotency: IdempotencyStore[Any] = IdempotencyStore()
        self.users: dict[int, User] = {}
        """Every user by id, in creation order."""
        self.tickets: dict[int, Ticket] = {}
        """Every ticket by id, in creation order."""
        self.comments: list[Comment] = []
        """Every ticket comment, in creation order."""
        self.calls: dict[int, Call] = {}
        """Every call record by id, in creation order."""
        self.displays: list[DisplayRequest] = []
        """Every Talk Partner Edition display request, shown or not, in arrival order."""
        self._by_digits: dict[str, list[int]] = collections.defaultdict(list)

        rng = random.Random(seed)
        self.account_id = rng.randint(800_000, 999_999)
        self._user_ids = _Ids(rng, rng.randint(10**13, 2 * 10**13), (1_000, 99_999))
        self._ticket_ids = _Ids(rng, rng.randint(100, 999), (1, 1))
        self._call_ids = _Ids(rng, rng.randint(16 * 10**12, 17 * 10**12), (1_000, 99_999))
        self._event_ids = _Ids(rng, rng.randint(30 * 10**12, 31 * 10**12), (20, 200))
        self._seed_records(rng)

    # ------------------------------------------------------------------ seeded data

    def _seed_records(self, rng: random.Random) -> None:
        epoch = datetime(2024, 1, 8, 9, 0, tzinfo=UTC) + timedelta(days=rng.randint(0, 300))
        self.admin = self._insert_user(
            "Emulator Admin", "admin", epoch, email=self.credentials.email
        )
        self.agents: tuple[User, ...] = tuple(
            self._insert_user(
                name,
                "agent",
                epoch + timedelta(minutes=number),
                email=f"agent{number}@crmphone-emulator.example",
            )
            for number, name in enumerate(_AGENT_NAMES, start=1)
        )
        firsts = rng.sample(_FIRST_NAMES, len(_FIRST_NAMES))
        lasts = rng.sample(_LAST_NAMES, len(_LAST_NAMES))
        customers = []
        for number in range(1, CUSTOMER_COUNT + 1):
            # The second index also moves with the lap, so no two customers share a name.
            last = lasts[(number * 7 + number // len(firsts)) % len(lasts)]
            name = f"{firsts[number % len(firsts)]} {last}"
            if number == 13:
                name = HTML_NAME
            line = 49 if number == CUSTOMER_COUNT else number
            number_digits = f"1555010{line:04d}"
            phone = _PHONE_FORMATS[(number - 1) % len(_PHONE_FORMATS)](number_digits)
            slug = "mallory" if number == 13 else name.lower().replace(" ", ".")
            customers.append(
                self._insert_user(
                    name,
                    "end-user",
                    epoch + timedelta(days=1, minutes=number),
                    phone=phone,
                    email=f"{slug}.{number}@customers.example",
                )
            )
        self.customers: tuple[User, ...] = tuple(customers)

    # ------------------------------------------------------------------ time and settings

    def now(self) -> float:
        """The model's monotonic time."""
        return self.clock()

    def _set_search_lag(self, seconds: float) -> None:
        self.search_lag = seconds

    @property
    def rate_limit(self) -> int:
        """The per-minute request budget."""
        return self.rate_limiter.limit

    # ------------------------------------------------------------------ credentials

    def authenticate(self, authorization: str | None) -> User | None:
        """The user an ``Authorization`` header authenticates (the admin), or None."""
        if self.credentials_revoked or not authorization:
            return None
        scheme, _, value = authorization.strip().partition(" ")
        value = value.strip()
        if scheme.lower() == "bearer":
            return self.admin if _same(value, self.credentials.oauth_token) else None
        if scheme.lower() != "basic":
            return None
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        login, _, secret = decoded.partition(":")
        expected_login = f"{self.credentials.email}/token"
        if _same(login.lower(), expected_login.lower()) and _same(
            secret, self.credentials.api_token
        ):
            return self.admin
        return None

    def revoke_credentials(self) -> None:
        """Make every request fail with 401 until :meth:`restore_credentials`."""
        self.credentials_revoked = True

    def restore_credentials(self) -> None:
        """Accept the configured credentials again."""
        self.credentials_revoked = False

    # ------------------------------------------------------------------ users

    def user(self, user_id: int) -> User | None:
        """The user with this id, or None."""
        return self.users.get(user_id)

    def users_with_phone(self, number: str) -> list[User]:
        """Users whose phone is the same number as ``number``, whatever the formats and
        whether the ``+1`` country code is written (search lag does not apply)."""
        return [self.users[uid] for uid in self._by_digits.get(_phone_key(number), [])]

    def shares_phone(self, user: User) -> bool:
        """Whether another user has the same phone digits (Zendesk's ``shared_phone_number``)."""
        if not user.phone:
            return False
        return len(self._by_digits.get(_phone_key(user.phone), [])) > 1

    def add_user(
        self,
        name: str,
        *,
        phone: str | None = None,
        role: Role = "end-user",
        email: str | None = None,
        external_id: str | None = None,
        tags: Iterable[str] = (),
        indexed: bool = True,
    ) -> User:
        """Create a user as the API does, validating it (RecordInvalidError).

        ``indexed=False`` subjects it to the search lag like users created through the API;
        by default a user added from a test is searchable at once.
        """
        problems: dict[str, list[dict[str, str]]] = {}
        if not name or not name.strip():
            problems["name"] = [
                _problem("Name:  is too short (minimum is 1 character)", "BlankValue")
            ]
        if role not in ("end-user", "agent", "admin"):
            problems["role"] = [_problem(f"Role: {role} is not a valid role")]
        if phone is not None and not 7 <= len(digits(phone)) <= 15:
            problems["phone"] = [_problem(f"Phone: {phone} is invalid")]
        if email is not None:
            if "@" not in email:
                problems["email"] = [_problem(f"Email: {email} is not properly formatted")]
            elif any(u.email and u.email.lower() == email.lower() for u in self.users.values()):
                problems["email"] = [
                    _problem(
                        f"Email: {email} is already being used by another user", "DuplicateValue"
                    )
                ]
        if external_id is not None and any(
            u.external_id == external_id for u in self.users.values()
        ):
            problems["external_id"] = [
                _problem(f"External: {external_id} has already been taken", "DuplicateValue")
            ]
        if problems:
            raise RecordInvalidError(problems)
        now = self.wall()
        return self._insert_user(
            name.strip(),
            role,
            now,
            phone=phone,
            email=email,
            external_id=external_id,
            tags=tuple(tags),
            indexed_at=-math.inf if indexed else self.now(),
        )

    def _insert_user(
        self,
        name: str,
        role: Role,
        created_at: datetime,
        *,
        phone: str | None = None,
        email: str | None = None,
        external_id: str | None = None,
        tags: tuple[str, ...] = (),
        indexed_at: float = -math.inf,
    ) -> User:
        user = User(
            id=self._user_ids(),
            name=name,
            role=role,
            created_at=created_at,
            updated_at=created_at,
            phone=phone,
            email=email,
            external_id=external_id,
            tags=tags,
            indexed_at=indexed_at,
        )
        self.users[user.id] = user
        if phone:
            self._by_digits[_phone_key(phone)].append(user.id)
        return user

    # ------------------------------------------------------------------ search

    def visible(self, record: User | Ticket) -> bool:
        """Whether search sees the record yet (the search-index lag)."""
        return self.now() - record.indexed_at >= self.search_lag

    def search(self, query: str, *, only: Literal["user", "ticket"] | None = None) -> list[Any]:
        """Users and tickets matching ``query`` that the search index already holds.

        ``only`` restricts the record type as ``users/search.json`` does.
        """
        terms = parse_query(query)
        wanted = {term.value.lower() for term in terms if term.field == "type" and not term.negated}
        found: list[Any] = []
        if only in (None, "user") and (not wanted or "user" in wanted):
            found += [u for u in self.users.values() if self._hit(terms, u)]
        if only in (None, "ticket") and (not wanted or "ticket" in wanted):
            found += [t for t in self.tickets.values() if self._hit(terms, t)]
        return found

    def _hit(self, terms: Sequence[SearchTerm], record: User | Ticket) -> bool:
        return self.visible(record) and matches(terms, _search_fields(record))

    # ------------------------------------------------------------------ tickets

    def ticket(self, ticket_id: int) -> Ticket | None:
        """The ticket with this id, or None."""
        return self.tickets.get(ticket_id)

    def tickets_by_external_id(self, external_id: str) -> list[Ticket]:
        """Every ticket with this ``external_id`` (no lag: this is a list, not a search)."""
        return [t for t in self.tickets.values() if t.external_id == external_id]

    def calls_by_external_id(self, external_id: str) -> list[Call]:
        """Every call record with this ``external_id`` (one is right; more are duplicates)."""
        return [c for c in self.calls.values() if c.fields.get("external_id") == external_id]

    def comments_of(self, ticket_id: int) -> list[Comment]:
        """The ticket's comments, oldest first."""
        return [c for c in self.comments if c.ticket_id == ticket_id]

    def create_ticket(
        self,
        *,
        body: str | None,
        html_body: str | None = None,
        public: bool = True,
        subject: str | None = None,
        requester_id: int | None = None,
        submitter_id: int | None = None,
        author_id: int | None = None,
        assignee_id: int | None = None,
        external_id: str | None = None,
        tags: Iterable[str] = (),
        priority: str | None = None,
        ticket_type: str | None = None,
        status: str | None = None,
        via: Via | None = None,
        comment_type: str = "Comment",
        comment_data: Mapping[str, Any] | None = None,
        comment_title: str | None = None,
        indexed: bool = False,
    ) -> tuple[Ticket, Comment]:
        """Create a ticket with its first comment (RecordInvalidError when invalid).

        The requester defaults to the API user, as on Zendesk; the status to ``new``, or
        ``open`` when assigned.
        """
        problems: dict[str, list[dict[str, str]]] = {}
        text = body if body is not None else _strip_html(html_body or "")
        if not text.strip():
            problems["base"] = [_problem("Description: cannot be blank", "BlankValue")]
        if requester_id is not None and requester_id not in self.users:
            problems["requester"] = [_problem("Requester: is invalid")]
        if assignee_id is not None and not self._is_agent(assignee_id):
            problems["assignee"] = [_problem("Assignee: is invalid")]
        if status is not None and status not in _TICKET_STATUSES:
            problems["status"] = [_problem(f"Status: {status} is not valid")]
        if problems:
            raise RecordInvalidError(problems)
        now = self.wall()
        via = via or Via()
        requester = requester_id if requester_id is not None else self.admin.id
        author = author_id if author_id is not None else (submitter_id or self.admin.id)
        ticket = Ticket(
            id=self._ticket_ids(),
            subject=subject,
            description=text,
            status=status or ("open" if assignee_id is not None else "new"),
            requester_id=requester,
            submitter_id=submitter_id if submitter_id is not None else self.admin.id,
            created_at=now,
            updated_at=now,
            assignee_id=assignee_id,
            external_id=external_id,
            tags=_normalise_tags(tags),
            priority=priority,
            type=ticket_type,
            via=via,
            indexed_at=-math.inf if indexed else self.now(),
        )
        self.tickets[ticket.id] = ticket
        comment = self._add_comment(
            ticket.id,
            author,
            text,
            html_body if html_body is not None else _html_paragraphs(text),
            public,
            via,
            comment_type,
            comment_data or {},
            comment_title,
        )
        return ticket, comment

    def update_ticket(
        self,
        ticket_id: int,
        changes: Mapping[str, Any],
        *,
        comment: Mapping[str, Any] | None = None,
        author_id: int | None = None,
    ) -> tuple[Ticket, Comment | None]:
        """Apply ``changes`` (subject, status, assignee_id, requester_id, priority, type, tags,
        external_id) and add ``comment`` (``body``/``html_body``, ``public``); KeyError when the
        ticket does not exist, RecordInvalidError when a change is invalid."""
        ticket = self.tickets[ticket_id]
        problems: dict[str, list[dict[str, str]]] = {}
        updates: dict[str, Any] = {}
        for field in ("subject", "priority", "external_id"):
            if field in changes:
                updates[field] = changes[field]
        if "type" in changes:
            updates["type"] = changes["type"]
        if "tags" in changes:
            updates["tags"] = _normalise_tags(changes["tags"] or ())
        if "status" in changes:
            if changes["status"] not in _TICKET_STATUSES:
                problems["status"] = [_problem(f"Status: {changes['status']} is not valid")]
            updates["status"] = changes["status"]
        if "assignee_id" in changes:
            assignee = changes["assignee_id"]
            if assignee is not None and not self._is_agent(assignee):
                problems["assignee"] = [_problem("Assignee: is invalid")]
            updates["assignee_id"] = assignee
            if assignee is not None and ticket.status == "new" and "status" not in changes:
                updates["status"] = "open"
        if "requester_id" in changes:
            if changes["requester_id"] not in self.users:
                problems["requester"] = [_problem("Requester: is invalid")]
            updates["requester_id"] = changes["requester_id"]
        body = html_body = None
        if comment is not None:
            body, html_body = comment.get("body"), comment.get("html_body")
            if not (body or html_body):
                problems["comment"] = [_problem("Comment: cannot be blank", "BlankValue")]
        if problems:
            raise RecordInvalidError(problems)
        updated = attrs.evolve(ticket, updated_at=self.wall(), **updates)
        self.tickets[ticket_id] = updated
        added = None
        if comment is not None:
            text = body if body is not None else _strip_html(html_body or "")
            added = self._add_comment(
                ticket_id,
                comment.get("author_id") or author_id or self.admin.id,
                text,
                html_body if html_body is not None else _html_paragraphs(text),
                bool(comment.get("public", True)),
                Via(),
                "Comment",
                {},
            )
        return updated, added

    def _add_comment(
        self,
        ticket_id: int,
        author_id: int,
        body: str,
        html_body: str,
        public: bool,
        via: Via,
        comment_type: str,
        data: Mapping[str, Any],
        title: str | None = None,
    ) -> Comment:
        comment = Comment(
            id=self._event_ids(),
            ticket_id=ticket_id,
            audit_id=self._event_ids(),
            type=comment_type,
            author_id=author_id,
            body=body,
            html_body=html_body,
            public=public,
            created_at=self.wall(),
            via=via,
            data=data,
            title=title,
        )
        self.comments.append(comment)
        return comment

    def new_event_id(self) -> int:
        """A fresh id for an audit event."""
        return self._event_ids()

    def create_voice_ticket(
        self,
        *,
        via_id: int,
        voice_comment: Mapping[str, Any] | None = None,
        display_to_agent: int | None = None,
        **ticket: Any,
    ) -> Ticket:
        """``POST /api/v2/channels/voice/tickets``: a ticket with ``via_id`` 44 (voicemail), 45
        (inbound call) or 46 (outbound call) whose first comment is a private ``VoiceComment``
        built from ``voice_comment`` (``from``, ``to``, ``recording_url``, ``started_at``,
        ``call_duration``, ``answered_by_id``, ``transcription_text``, ``location``) when
        given. Shown to ``display_to_agent`` when given (recorded as a display request).
        ``ticket`` takes :meth:`create_ticket`'s arguments. RecordInvalidError when invalid.
        """
        if display_to_agent is not None and not self._is_agent(display_to_agent):
            raise RecordInvalidError.one("display_to_agent", "Display to agent: is invalid")
        if isinstance(via_id, bool) or via_id not in _VIA_RELS:
            raise RecordInvalidError.one(
                "via_id", "Via: must be 44 (voicemail), 45 (inbound) or 46 (outbound)"
            )
        rel = _VIA_RELS[via_id]
        voice = dict(voice_comment or {})
        via = Via(
            "voice",
            rel,
            {"phone": voice["from"]} if voice.get("from") else {},
            {"phone": voice["to"]} if voice.get("to") else {},
            via_id,
        )
        if voice_comment is not None:
            data = {key: voice.get(key) for key in _VOICE_COMMENT_FIELDS}
            answered = self.users.get(voice.get("answered_by_id"))  # type: ignore[arg-type]
            data["answered_by_name"] = answered.name if answered else None
            ticket.update(
                body=_voice_comment_text(data, rel),
                html_body=None,
                public=False,
                comment_type="VoiceComment",
                comment_data=data,
            )
        created, _ = self.create_ticket(via=via, **ticket)
        if display_to_agent is not None:
            self.display(display_to_agent, "ticket", created.id)
        return created

    # ------------------------------------------------------------------ Talk Partner Edition

    def display(self, agent_id: int, kind: Literal["user", "ticket"], target_id: int) -> bool:
        """Record a display (screen pop) request; True when agent and record exist."""
        exists = (self.users if kind == "user" else self.tickets).get(target_id) is not None
        shown = self._is_agent(agent_id) and exists
        self.displays.append(DisplayRequest(self.now(), agent_id, kind, target_id, shown))
        return shown

    def call(self, call_id: int) -> Call | None:
        """The call record with this id, or None."""
        return self.calls.get(call_id)

    def create_call(
        self, fields: Mapping[str, Any], *, comment: Mapping[str, Any] | None = None
    ) -> tuple[Call, Comment | None]:
        """``POST /api/v2/calls``: validate and store a call record; with ``comment``, add a
        voice comment to ``ticket_id`` or, without one, create the ticket for it."""
        missing = [name for name in _CALL_REQUIRED if fields.get(name) in (None, "")]
        if missing:
            raise RecordInvalidError(
                {
                    name: [_problem(f"{_humanise(name)}: cannot be blank", "BlankValue")]
                    for name in missing
                }
            )
        values: dict[str, Any] = dict.fromkeys(CALL_FIELDS)
        values.update(self._call_values(fields))
        call_id = self._call_ids()
        now = self.wall()
        values.update(id=call_id, account_id=self.account_id, organization_id=None)
        values.update(created_at=iso_utc(now), updated_at=iso_utc(now))
        self.calls[call_id] = Call(call_id, values, now, now)
        added = None
        if comment is not None:
            try:
                added = self.add_call_comment(call_id, comment)
            except RecordInvalidError:
                del self.calls[call_id]  # one request, one outcome: nothing is kept
                raise
        return self.calls[call_id], added

    def update_call(self, call_id: int, fields: Mapping[str, Any]) -> Call:
        """``PATCH /api/v2/calls/{id}``: KeyError when unknown, RecordInvalidError when invalid."""
        call = self.calls[call_id]
        values = dict(call.fields)
        values.update(self._call_values(fields))
        now = self.wall()
        values["updated_at"] = iso_utc(now)
        updated = attrs.evolve(call, fields=values, updated_at=now)
        self.calls[call_id] = updated
        return updated

    def add_call_comment(self, call_id: int, comment: Mapping[str, Any]) -> Comment:
        """``POST /api/v2/calls/{id}/comments``: a ``TpeVoiceComment`` on the call's ticket,
        creating the ticket (and linking it to the call) when the call has none."""
        call = self.calls[call_id]
        title = comment.get("title")
        call_fields = comment.get("call_fields") or []
        problems: dict[str, list[dict[str, str]]] = {}
        if title is not None and not isinstance(title, str):
            problems["title"] = [_problem("Title: must be text")]
        if not isinstance(call_fields, list) or not all(isinstance(f, str) for f in call_fields):
            problems["call_fields"] = [_problem("Call fields: is invalid")]
            call_fields = []
        author = comment.get("author_id") or call["agent_id"] or self.admin.id
        if not isinstance(author, int) or author not in self.users:
            problems["author_id"] = [_problem("Author: is invalid")]
        requester = comment.get("end_user_id") or call["end_user_id"]
        if requester is not None and (
            not isinstance(requester, int) or requester not in self.users
        ):
            problems["end_user_id"] = [_problem("End user: is invalid")]
        agent = comment.get("display_to_agent")
        if agent is not None and not self._is_agent(agent):
            problems["display_to_agent"] = [_problem("Display to agent: is invalid")]
        if problems:
            raise RecordInvalidError(problems)
        lines = [f"{_humanise(name)}: {call[name]}" for name in call_fields if name in call.fields]
        body = "\n\n".join(part for part in (title, "Summary\n" + "\n".join(lines)) if part)
        direction = call["direction"]
        via_id = 44 if call["voicemail"] else (46 if direction == "outbound" else 45)
        via = Via(
            "voice",
            _VIA_RELS[via_id],
            {"phone": call["from_line"]},
            {"phone": call["to_line"]},
            via_id,
        )
        data = {
            "app_id": call["app_id"],
            "app_name": "crmphone",
            "author_id": comment.get("author_id"),
            "call_id": call_id,
            "direction": direction,
            "external_id": call["external_id"],
            "title": title,
            "via_id": via_id,
            "recording_url": call["recording_url"] or "",
        }
        ticket_id = call["ticket_id"]
        if ticket_id is None:
            ticket, added = self.create_ticket(
                body=body,
                html_body=_html_paragraphs(body),
                public=False,
                subject=title or f"Call with {call['from_line']}",
                requester_id=requester,
                author_id=author,
                via=via,
                comment_type="TpeVoiceComment",
                comment_data=data,
                comment_title=title,
            )
            ticket_id = ticket.id
            self.calls[call_id] = attrs.evolve(call, fields={**call.fields, "ticket_id": ticket_id})
        else:
            added = self._add_comment(
                ticket_id,
                author,
                body,
                _html_paragraphs(body),
                False,
                via,
                "TpeVoiceComment",
                data,
                title,
            )
        if agent is not None:
            self.display(agent, "ticket", ticket_id)
        return added

    def _call_values(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        problems: dict[str, list[dict[str, str]]] = {}
        values: dict[str, Any] = {}
        for name, value in fields.items():
            if name not in CALL_FIELDS or name in _CALL_READ_ONLY:
                continue  # Zendesk drops unknown and read-only keys with a warning header
            label = _humanise(name)
            if value is None:
                values[name] = None
            elif name in _CALL_INT_FIELDS:
                if isinstance(value, bool) or not isinstance(value, int):
                    problems[name] = [_problem(f"{label}: is not a number")]
                values[name] = value
            elif name in _CALL_BOOL_FIELDS:
                if not isinstance(value, bool):
                    problems[name] = [_problem(f"{label}: must be true or false")]
                values[name] = value
            elif name in ("call_started_at", "call_ended_at"):
                moment = _parse_time(value)
                if moment is None:
                    problems[name] = [_problem(f"{label}: is not an ISO 8601 date and time")]
                values[name] = iso_utc(moment) if moment else value
            elif not isinstance(value, str):
                problems[name] = [_problem(f"{label}: must be text")]
            else:
                values[name] = value
        if values.get("direction") not in (None, "inbound", "outbound"):
            problems["direction"] = [_problem("Direction: must be inbound or outbound")]
        for name in ("agent_id",):
            if isinstance(values.get(name), int) and not self._is_agent(values[name]):
                problems[name] = [_problem(f"{_humanise(name)}: is not an agent")]
        if isinstance(values.get("end_user_id"), int) and values["end_user_id"] not in self.users:
            problems["end_user_id"] = [_problem("End user: is invalid")]
        if isinstance(values.get("ticket_id"), int) and values["ticket_id"] not in self.tickets:
            problems["ticket_id"] = [_problem("Ticket: is invalid")]
        if problems:
            raise RecordInvalidError(problems)
        return values

    def _is_agent(self, user_id: object) -> bool:
        user = self.users.get(user_id) if isinstance(user_id, int) else None
        return user is not None and user.is_agent


# ---------------------------------------------------------------------- helpers


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def _phone_key(phone: str) -> str:
    # Stored formats with and without the country code are the same number.
    number = digits(phone)
    return number[1:] if len(number) == 11 and number.startswith("1") else number


def _problem(description: str, error: str = "InvalidValue") -> dict[str, str]:
    return {"description": description, "error": error}


def _normalise_tags(tags: Iterable[str]) -> tuple[str, ...]:
    # Zendesk stores tags lower-cased, without duplicates, spaces splitting a tag in two.
    seen: dict[str, None] = {}
    for tag in tags:
        for part in str(tag).lower().split():
            seen.setdefault(part, None)
    return tuple(seen)


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _html_paragraphs(text: str) -> str:
    paragraphs = "".join(
        f'<p dir="auto">{html.escape(part).replace(chr(10), "<br>")}</p>'
        for part in text.split("\n\n")
    )
    return f'<div class="zd-comment" dir="auto">{paragraphs}</div>'


def _strip_html(markup: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", markup)).strip()


def _voice_comment_text(data: Mapping[str, Any], rel: str) -> str:
    heading = {"voicemail": "Voicemail", "inbound": "Inbound call", "outbound": "Outbound call"}
    lines = [
        f"{heading[rel]} from {data.get('from') or 'unknown'} to {data.get('to') or 'unknown'}"
    ]
    if data.get("started_at"):
        lines.append(f"Time of call: {data['started_at']}")
    if data.get("answered_by_name"):
        lines.append(f"Answered by: {data['answered_by_name']}")
    if data.get("call_duration") is not None:
        lines.append(f"Length of phone call: {data['call_duration']} seconds")
    if data.get("location"):
        lines.append(f"Location: {data['location']}")
    if data.get("recording_url"):
        lines.append(f"Recording: {data['recording_url']}")
    if data.get("transcription_text"):
        lines.append(f"Transcription: {data['transcription_text']}")
    return "\n".join(lines)


def _search_fields(record: User | Ticket) -> dict[str, str | Sequence[str] | None]:
    if isinstance(record, User):
        return {
            "type": "user",
            "name": record.name,
            "email": record.email,
            "phone": record.phone,
            "role": record.role,
            "external_id": record.external_id,
            "tags": record.tags,
        }
    return {
        "type": "ticket",
        "subject": record.subject,
        "description": record.description,
        "status": record.status,
        "external_id": record.external_id,
        "requester": str(record.requester_id),
        "assignee": str(record.assignee_id) if record.assignee_id is not None else None,
        "tags": record.tags,
    }
