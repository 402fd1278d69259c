"""Messages the route worker threads of this process are delivering right now.

Two consumer threads of one process can hold copies of the same message at once: the relay
published it twice (a crash before PUBLISHED was recorded), or a retry publication met the
original. The delivery states each thread reads cannot show what the other has not
committed yet, so both would deliver. The second copy is left alone instead (and acked
with its batch): the first either commits its outcome or goes back to the queue with its
own batch, so the message is neither lost nor delivered twice by this process. (Separate
`huitong worker` processes do not share this; see the README on scaling.)"""
from __future__ import annotations

import threading
from collections.abc import Iterable


class InFlight:
    def __init__(self):
        self._lock = threading.Lock()
        self._held: set[tuple[str, int]] = set()

    def claim(self, route: str, seqs: Iterable[int]) -> set[int]:
        """Take the messages (by log seq) on this route that no other thread holds; returns
        those the caller now holds and must release()."""
        with self._lock:
            mine = {seq for seq in seqs if (route, seq) not in self._held}
            self._held.update((route, seq) for seq in mine)
        return mine

    def release(self, route: str, seqs: Iterable[int]) -> None:
        with self._lock:
            self._held.difference_update((route, seq) for seq in seqs)
