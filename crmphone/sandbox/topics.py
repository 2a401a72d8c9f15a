"""Which topics a sandbox channel may subscribe to, and why not.

Genesys Cloud's rules as the sandbox plays them:

* System topics (``channel.metadata``, ``v2.system.*``) arrive without subscribing and are refused
  in a subscription request (400).
* A combined topic ``v2.users.{id}?presence&routingStatus`` expands to one topic per suffix
  (``v2.users.{id}.presence``, ``v2.users.{id}.routingStatus``); each counts against the
  per-channel limit. The string as sent must not exceed the configured length (200).
* A topic is *Permitted* when its pattern is known and the entity it names exists; otherwise it is
  *Rejected* with a reason and the permissions a real organisation would want. A test can also deny
  a whole prefix (:meth:`TopicRules.deny_prefix`) to see how a client copes with missing
  permissions.

The permission names are plausible Genesys permission strings chosen for the sandbox; they are not a
claim about which permission each real topic needs.
"""

from __future__ import annotations

import enum
import re

import attrs

from crmphone.errors import BadRequestError

__all__ = [
    "TopicRules",
    "TopicState",
    "TopicVerdict",
    "expand_topic",
    "is_system_topic",
]

# Suffixes of v2.users.{id}.* topics the sandbox knows, and the permission it reports as missing
# when it rejects one.
USER_TOPIC_PERMISSIONS: dict[str, str] = {
    "conversations": "conversation:communication:view",
    "conversations.calls": "conversation:call:view",
    "conversations.callbacks": "conversation:callback:view",
    "conversations.chats": "conversation:webchat:view",
    "conversations.emails": "conversation:email:view",
    "conversations.messages": "conversation:message:view",
    "presence": "directory:user:view",
    "routingStatus": "routing:agent:view",
    "station": "telephony:station:view",
    "persistentconnection": "telephony:phone:view",
    "activity": "directory:user:view",
}

QUEUE_TOPIC_PERMISSIONS: dict[str, str] = {
    "conversations": "routing:queue:view",
    "conversations.calls": "routing:queue:view",
    "users": "routing:queue:view",
}

_USER_TOPIC = re.compile(r"v2\.users\.(?P<id>[^.?&]+)\.(?P<suffix>.+)")
_QUEUE_TOPIC = re.compile(r"v2\.routing\.queues\.(?P<id>[^.?&]+)\.(?P<suffix>.+)")


class TopicState(enum.StrEnum):
    """The per-topic outcome of a subscription request, spelled as the platform spells it."""

    PERMITTED = "Permitted"
    REJECTED = "Rejected"


@attrs.frozen
class TopicVerdict:
    """What the sandbox decided about one (expanded) topic."""

    topic: str
    state: TopicState
    rejection_reason: str | None = None
    missing_permissions: tuple[str, ...] = ()

    @property
    def permitted(self) -> bool:
        """True when the channel may subscribe to this topic."""
        return self.state is TopicState.PERMITTED

    def to_genesys(self) -> dict[str, object]:
        """The ``ChannelTopic`` JSON the REST API answers with."""
        body: dict[str, object] = {"id": self.topic, "state": self.state.value}
        if not self.permitted:
            body["rejectionReason"] = self.rejection_reason
            body["missingPermissions"] = list(self.missing_permissions)
        return body


def is_system_topic(topic: str) -> bool:
    """True for topics the platform sends unasked and that must never be subscribed."""
    return topic == "channel.metadata" or topic.startswith("v2.system.")


def expand_topic(entry: str, *, max_length: int) -> tuple[str, ...]:
    """Expand one requested topic (possibly combined) into plain topics.

    Raises :class:`~crmphone.errors.BadRequestError` for an empty, too long, malformed or system
    topic: the platform refuses the whole request for those.
    """
    if not entry or entry != entry.strip():
        raise BadRequestError(f"Invalid topic {entry!r}.", status=400, code="bad.request")
    if len(entry) > max_length:
        raise BadRequestError(
            f"Topic {entry[:40]!r}... is {len(entry)} characters long; "
            f"the maximum is {max_length} characters.",
            status=400,
            code="bad.request",
        )
    prefix, mark, query = entry.partition("?")
    if not mark:
        topics: tuple[str, ...] = (entry,)
    else:
        suffixes = query.split("&")
        if not prefix or any(not suffix for suffix in suffixes):
            raise BadRequestError(
                f"Invalid combined topic {entry!r}: expected prefix?suffix&suffix.",
                status=400,
                code="bad.request",
            )
        topics = tuple(f"{prefix}.{suffix}" for suffix in suffixes)
    for topic in topics:
        if is_system_topic(topic):
            raise BadRequestError(
                f"Topic {topic!r} is a system topic; system topics are sent to every channel "
                "and cannot be subscribed to.",
                status=400,
                code="bad.request",
            )
    return topics


@attrs.frozen
class _Denial:
    missing: tuple[str, ...]
    reason: str


@attrs.define
class TopicRules:
    """Judges topics against the entities the sandbox organisation has.

    ``user_ids`` and ``queue_ids`` are the entities that exist; :meth:`deny_prefix` adds a
    permission the (imaginary) OAuth client lacks.
    """

    user_ids: frozenset[str]
    queue_ids: frozenset[str]
    _denied: dict[str, _Denial] = attrs.field(factory=dict)

    def deny_prefix(
        self, prefix: str, *, missing: str | tuple[str, ...], reason: str | None = None
    ) -> None:
        """Reject every topic starting with ``prefix`` from now on (existing subscriptions stay)."""
        missing_tuple = (missing,) if isinstance(missing, str) else tuple(missing)
        text = reason or f"Missing permission(s): {', '.join(missing_tuple)}"
        self._denied[prefix] = _Denial(missing_tuple, text)

    def allow_prefix(self, prefix: str) -> None:
        """Undo :meth:`deny_prefix` for ``prefix`` (no effect when it was not denied)."""
        self._denied.pop(prefix, None)

    @property
    def denied_prefixes(self) -> dict[str, tuple[str, ...]]:
        """The denied prefixes and the permissions reported missing for each."""
        return {prefix: denial.missing for prefix, denial in self._denied.items()}

    def judge(self, topic: str) -> TopicVerdict:
        """Decide whether ``topic`` (already expanded, not a system topic) is permitted."""
        for prefix, denial in self._denied.items():
            if topic.startswith(prefix):
                return TopicVerdict(topic, TopicState.REJECTED, denial.reason, denial.missing)
        if match := _USER_TOPIC.fullmatch(topic):
            return self._judge_entity(topic, match, self.user_ids, USER_TOPIC_PERMISSIONS, "user")
        if match := _QUEUE_TOPIC.fullmatch(topic):
            return self._judge_entity(
                topic, match, self.queue_ids, QUEUE_TOPIC_PERMISSIONS, "queue"
            )
        return TopicVerdict(
            topic,
            TopicState.REJECTED,
            f"Unsupported topic: the sandbox publishes nothing on {topic!r}.",
            (),
        )

    @staticmethod
    def _judge_entity(
        topic: str,
        match: re.Match[str],
        known: frozenset[str],
        permissions: dict[str, str],
        kind: str,
    ) -> TopicVerdict:
        entity_id, suffix = match["id"], match["suffix"]
        permission = permissions.get(suffix)
        if permission is None:
            return TopicVerdict(
                topic,
                TopicState.REJECTED,
                f"Unsupported topic: no {kind} topic ends in {suffix!r}.",
                (),
            )
        if entity_id not in known:
            return TopicVerdict(
                topic,
                TopicState.REJECTED,
                f"The {kind} {entity_id!r} does not exist or is not visible to this client.",
                (permission,),
            )
        return TopicVerdict(topic, TopicState.PERMITTED)
