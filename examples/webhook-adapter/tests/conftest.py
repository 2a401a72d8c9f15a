"""Fixtures for crmphone-webhook's tests: a real receiver on loopback and an adapter aimed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from receiver import WebhookReceiver

from crmphone.adapters import AdapterContext
from crmphone_webhook import WebhookAdapter


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    """A webhook receiver serving on a free 127.0.0.1 port."""
    async with WebhookReceiver() as running:
        yield running


@pytest.fixture
async def adapter(receiver: WebhookReceiver) -> AsyncIterator[WebhookAdapter]:
    """A started webhook adapter posting to ``receiver``, built as the connector builds it.

    The conformance suite of ``crmphone.testing`` runs against this fixture too.
    """
    context = AdapterContext(name="webhook", timeout=5.0)
    webhook = WebhookAdapter.from_options({"url": receiver.url}, context)
    await webhook.start()
    try:
        yield webhook
    finally:
        await webhook.close()
        context.close()
