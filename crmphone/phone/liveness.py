"""Is the media path alive? A sans-I/O watchdog over "something arrived" signatures.

aiortc declares a silent far end dead only after ICE consent freshness fails, about 30 s. A phone
cannot wait that long. During a call RTP arrives every packetisation interval (20 ms); between calls
the far end's RTP sender still sends an RTCP sender report every 0.5-1.5 s. So the media layer
samples a signature that changes whenever either arrives, and :class:`MediaLiveness` declares the
path dead when it has not changed for ``window`` seconds. With a 2.5 s window sampled every
0.25 s, a path that dies is reported within 2.75 s of its last packet, and a healthy one — whose
longest quiet gap is 1.5 s — keeps a full second of margin.
"""

from __future__ import annotations

import attrs

__all__ = ["MediaLiveness"]


@attrs.define
class MediaLiveness:
    """Watches arrival signatures; :meth:`observe` returns True once, when the path is dead."""

    window: float = 2.5
    _signature: object = attrs.field(default=None, init=False)
    _changed_at: float | None = attrs.field(default=None, init=False)
    _dead: bool = attrs.field(default=False, init=False)

    def __attrs_post_init__(self) -> None:
        if self.window <= 0:
            raise ValueError("window must be positive")

    @property
    def dead(self) -> bool:
        """Whether the path has been declared dead."""
        return self._dead

    def silent_for(self, now: float) -> float:
        """Seconds since the signature last changed (0 before the first observation)."""
        return 0.0 if self._changed_at is None else now - self._changed_at

    def observe(self, signature: object, now: float) -> bool:
        """Record the signature sampled at ``now``; True the first time the path counts as dead."""
        if self._changed_at is None or signature != self._signature:
            self._signature = signature
            self._changed_at = now
            return False
        if not self._dead and now - self._changed_at >= self.window:
            self._dead = True
            return True
        return False
