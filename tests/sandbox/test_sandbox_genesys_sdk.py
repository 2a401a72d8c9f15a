"""The official Genesys Cloud Python SDK, unmodified, against the sandbox.

The SDK derives its login host from ``host`` by replacing ``//api.`` with ``//login.``; the sandbox's
``http://127.0.0.1:<port>`` has no ``api.`` label, so login and API share the one port, as the
sandbox intends. The SDK is synchronous, so the sandbox runs in a :class:`SandboxThread`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import PureCloudPlatformClientV2 as PureCloud
import pytest
from sandbox_helpers import CLIENT_ID, CLIENT_SECRET, fast_config

from crmphone.sandbox import SandboxThread


def topic(name: str) -> Any:
    """A ChannelTopic model (its constructor takes no fields)."""
    channel_topic = PureCloud.ChannelTopic()
    channel_topic.id = name
    return channel_topic


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxThread]:
    """One sandbox in a background thread for the module's synchronous SDK calls."""
    with SandboxThread(fast_config(), host="127.0.0.1", port=0) as running:
        yield running


@pytest.fixture
def sdk(server: SandboxThread) -> Any:
    """An SDK ApiClient with a client-credentials token from the sandbox."""
    client = PureCloud.api_client.ApiClient(host=server.base_url)
    assert client.get_conf_url("login", client.host) == server.base_url
    returned = client.get_client_credentials_token(CLIENT_ID, CLIENT_SECRET)
    assert returned is client
    assert client.access_token
    return client


def test_sdk_creates_a_channel_subscribes_and_reads_back(sdk: Any, server: SandboxThread) -> None:
    """post channel, put subscriptions, get them back, head and list — all through the SDK models."""
    notifications = PureCloud.NotificationsApi(sdk)
    channel = notifications.post_notifications_channels()
    assert channel.connect_uri == f"ws://127.0.0.1:{server.port}/channels/{channel.id}"
    assert channel.expires.tzinfo is not None
    agent = server.sandbox.agents[0].id
    wanted = f"v2.users.{agent}.conversations.calls"
    put = notifications.put_notifications_channel_subscriptions(channel.id, [topic(wanted)])
    assert [(t.id, t.state) for t in put.entities] == [(wanted, "Permitted")]
    listed = notifications.get_notifications_channel_subscriptions(channel.id)
    assert [t.id for t in listed.entities] == [wanted]
    assert notifications.head_notifications_channel(channel.id) is None  # 200, no body
    channels = notifications.get_notifications_channels()
    assert channel.id in [c.id for c in channels.entities]
    assert server.invoke(lambda: server.sandbox.world.subscribed_sockets(wanted)) == [
        (channel.id, ())
    ]


def test_sdk_sees_rejections_with_ignore_errors(sdk: Any) -> None:
    """With ignore_errors the SDK's ChannelTopic carries state, reason and missing permissions."""
    notifications = PureCloud.NotificationsApi(sdk)
    channel = notifications.post_notifications_channels()
    result = notifications.post_notifications_channel_subscriptions(
        channel.id, [topic("v2.users.nobody.presence")], ignore_errors=True
    )
    (rejected,) = result.entities
    assert rejected.state == "Rejected"
    assert rejected.rejection_reason
    assert rejected.missing_permissions == ["directory:user:view"]


def test_sdk_errors_carry_genesys_bodies(sdk: Any, server: SandboxThread) -> None:
    """users/me with client credentials and a wrong secret raise the SDK's ApiException."""
    with pytest.raises(PureCloud.rest.ApiException) as info:
        PureCloud.UsersApi(sdk).get_users_me()
    assert info.value.status == 400
    assert "requires a user context" in info.value.body
    stranger = PureCloud.api_client.ApiClient(host=server.base_url)
    with pytest.raises(PureCloud.rest.ApiException) as bad_secret:
        stranger.get_client_credentials_token(CLIENT_ID, "wrong")
    assert bad_secret.value.status == 401
    assert CLIENT_SECRET not in bad_secret.value.body


def test_sdk_reads_users_stations_and_calls(sdk: Any, server: SandboxThread) -> None:
    """Paged users, a station and a live call deserialise into the SDK's models."""
    page = PureCloud.UsersApi(sdk).get_users(page_size=2, page_number=2)
    assert (page.total, page.page_count, page.page_number) == (3, 2, 2)
    assert [u.id for u in page.entities] == [server.sandbox.agents[2].id]
    agent = server.sandbox.agents[0]
    station = PureCloud.StationsApi(sdk).get_station(agent.station_id)
    assert (station.type, station.web_rtc_persistent_enabled) == ("inin_webrtc_softphone", True)
    conversation_id = server.run(server.sandbox.calls.place_inbound(agent.id, auto=False))
    call = PureCloud.ConversationsApi(sdk).get_conversations_call(conversation_id)
    legs = {p.purpose: p for p in call.participants}
    assert legs["agent"].state == "alerting"
    assert legs["agent"].user.id == agent.id
    assert legs["customer"].ani.startswith("tel:+1555")


def test_sdk_sets_an_agent_on_queue_and_reads_the_routing_status(
    sdk: Any, server: SandboxThread
) -> None:
    """PresenceApi lists definitions and patches a presence; UsersApi reads IDLE back."""
    agent = server.sandbox.agents[2].id
    presence_api = PureCloud.PresenceApi(sdk)
    definitions = presence_api.get_presence_definitions().entities
    on_queue = next(d for d in definitions if d.system_presence == "OnQueue")
    body = PureCloud.UserPresence()
    body.presence_definition = PureCloud.PresenceDefinition()
    body.presence_definition.id = on_queue.id
    patched = presence_api.patch_user_presence(agent, "purecloud", body)
    assert patched.presence_definition.system_presence == "On Queue"
    status = PureCloud.UsersApi(sdk).get_user_routingstatus(agent)
    assert status.status == "IDLE"
    assert status.start_time.tzinfo is not None
