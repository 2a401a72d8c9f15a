"""What the bridge's pages see and do: the connector's, the phones' and the CRMs' news out, the
agent's commands in.

:class:`BridgeFeed` turns what happens into bridge messages: the connector's events
(:meth:`~crmphone.connector.Connector.watch`), the phones' connection and microphone events, and
the outbox's notices (:meth:`~crmphone.adapters.Outbox.watch`: who is calling, what was written).
It keeps the current state (the roster, each agent's latest status, the live calls, the records
just written) so that a page opened later starts from *now*: :meth:`BridgeFeed.replay` is the
bridge's ``replay`` hook.

Who sees what:

===============  ==========================================  =======================================
message          dashboard pages                             CRM pages (``salesforce``, ``zendesk``…)
===============  ==========================================  =======================================
agents           yes                                         yes
call, phone,     every agent                                 the desk's agents only (all when the
presence events                                              feed has no desk)
pop              every adapter's                             their own adapter's, for the desk
logged           every adapter's                             their own adapter's, for the desk
===============  ==========================================  =======================================

A page's adapter is its kind (the hello's ``client``) unless ``page_adapters`` maps it to another
adapter instance name.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable, Collection, Mapping
from typing import Any, Final

from crmphone.adapters import CallerMatched, OutboxNotice
from crmphone.bridge import ConnectedClient, agents_message, event_message, logged_message
from crmphone.bridge.protocol import pop_message
from crmphone.clock import Clock, SystemClock
from crmphone.events import BaseCallEvent, CallAlerting, CallEnded, CallEvent, Event

__all__ = ["DASHBOARD", "BridgeFeed"]

logger = logging.getLogger(__name__)

DASHBOARD: Final = "dashboard"
"""The page kind that sees every agent and every adapter."""

# A bound on what the feed remembers for late pages, whatever happens.
_MAX_LIVE_CALLS: Final = 2000
_MAX_STATUSES: Final = 20000

Send = Callable[..., int]
"""``BridgeServer.publish``: ``send(message, to=predicate)``."""


class BridgeFeed:
    """Publish events and CRM notices to the bridge's pages; replay the current state.

    ``send`` is :meth:`~crmphone.bridge.BridgeServer.publish` (or anything taking a message and
    ``to=``). ``agents`` maps agent ids to display names. ``desk_agents``: the agents whose calls
    CRM pages show (None: all). ``page_adapters``: page kind → adapter instance. ``recent``: how
    many written records a page opened later still sees.
    """

    def __init__(
        self,
        send: Send,
        *,
        agents: Mapping[str, str],
        desk_agents: Collection[str] | None = None,
        page_adapters: Mapping[str, str] | None = None,
        recent: int = 20,
        clock: Clock | None = None,
    ) -> None:
        self._send = send
        self.agents = dict(agents)
        self.desk_agents = None if desk_agents is None else frozenset(desk_agents)
        self.page_adapters = dict(page_adapters or {})
        self._recent = recent
        self._clock: Clock = clock or SystemClock()
        # Latest status per (event name, agent), in the order they last changed.
        self._statuses: collections.OrderedDict[tuple[str, str], Event] = collections.OrderedDict()
        # Every event of each live call, in order (a late page replays them to catch up).
        self._calls: collections.OrderedDict[str, list[CallEvent]] = collections.OrderedDict()
        self._pops: dict[tuple[str, str], dict[str, Any]] = {}
        self._logged: collections.OrderedDict[tuple[str, str], dict[str, Any]] = (
            collections.OrderedDict()
        )
        self.published = 0

    # ------------------------------------------------------------------ routing

    def _adapter_of(self, client: ConnectedClient) -> str:
        return self.page_adapters.get(client.kind, client.kind)

    def _for_agent(self, agent_id: str | None) -> Callable[[ConnectedClient], bool]:
        on_desk = self.desk_agents is None or agent_id in self.desk_agents

        def accepts(client: ConnectedClient) -> bool:
            return client.kind == DASHBOARD or on_desk

        return accepts

    def _for_adapter(self, adapter: str, agent_id: str) -> Callable[[ConnectedClient], bool]:
        on_desk = self.desk_agents is None or agent_id in self.desk_agents

        def accepts(client: ConnectedClient) -> bool:
            return client.kind == DASHBOARD or (on_desk and self._adapter_of(client) == adapter)

        return accepts

    def _publish(self, message: Any, to: Callable[[ConnectedClient], bool]) -> None:
        self.published += self._send(message, to=to)

    # ------------------------------------------------------------------ inputs

    def on_event(self, event: Event) -> None:
        """A call, phone or presence event: remember what a late page needs, and publish it."""
        if isinstance(event, BaseCallEvent):
            self._remember_call(event)
        else:
            key = (event.name, event.agent_id)
            self._statuses.pop(key, None)
            self._statuses[key] = event
            if len(self._statuses) > _MAX_STATUSES:
                self._statuses.popitem(last=False)
        self._publish(event, self._for_agent(event.agent_id))

    def on_notice(self, notice: OutboxNotice) -> None:
        """An outbox notice: a caller matched (a screen pop) or a call log written."""
        log = notice.log
        if isinstance(notice, CallerMatched):
            if notice.expired:
                return  # the pop came too late to show; the log still links to the record
            message = pop_message(
                log.conversation_id, notice.match, agent_id=log.agent_id, adapter=notice.adapter
            )
            if log.conversation_id in self._calls:
                self._pops[(notice.adapter, log.conversation_id)] = message
        else:
            message = logged_message(notice.adapter, log, self._clock.wall())
            key = (notice.adapter, log.conversation_id)
            self._logged.pop(key, None)
            self._logged[key] = message
            while len(self._logged) > self._recent:
                self._logged.popitem(last=False)
        self._publish(message, self._for_adapter(notice.adapter, log.agent_id))

    def _remember_call(self, event: CallEvent) -> None:
        conversation_id = event.conversation_id
        if isinstance(event, CallEnded):
            self._calls.pop(conversation_id, None)
            for key in [key for key in self._pops if key[1] == conversation_id]:
                del self._pops[key]
            return
        history = self._calls.get(conversation_id)
        if history is None:
            if not isinstance(event, CallAlerting):
                return  # wrap-up after the end, or a call first seen mid-way: nothing live
            history = self._calls[conversation_id] = []
            if len(self._calls) > _MAX_LIVE_CALLS:
                self._calls.popitem(last=False)
        history.append(event)

    # ------------------------------------------------------------------ late pages

    def replay(self, client: ConnectedClient) -> list[dict[str, Any]]:
        """What ``client``, just connected, needs to show the present: the roster, each agent's
        latest status, the live calls (their events, then their pops), the records just written
        (oldest first, so the newest ends on top)."""
        messages: list[dict[str, Any]] = [agents_message(self.agents)]
        messages.extend(
            event_message(event)
            for event in self._statuses.values()
            if self._for_agent(event.agent_id)(client)
        )
        for history in self._calls.values():
            if history and self._for_agent(history[0].agent_id)(client):
                messages.extend(event_message(event) for event in history)
        for (adapter, _call), pop in self._pops.items():
            if self._for_adapter(adapter, str(pop["agent_id"]))(client):
                messages.append(pop)
        for (adapter, _call), logged in self._logged.items():
            if self._for_adapter(adapter, str(logged["agent_id"]))(client):
                messages.append(logged)
        return messages
