"""The agent's phone: a persistent WebRTC connection that later calls ride with no new set-up."""

from __future__ import annotations
