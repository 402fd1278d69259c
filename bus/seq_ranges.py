"""Reading a log table onwards from a mark, the way the sealer, the console's pulse and the
route redrive sweep do: a bounded range of seq at a time.

Not `seq > mark ORDER BY seq LIMIT n`: PostgreSQL, with no statistics on a table it has never
analysed (autovacuum off, as on the development machine), takes `seq > $1` for a third of the
table and plans a scan of all of it, the prepared statement's generic plan too; the sealer's read
of 5 new events took all 314 pages of a 10,000-message log, 1 as a range. A range can be empty
where a hole in the sequence is as long as it (a large batch rolled back), so the reader then
goes on from the next seq there is."""
from __future__ import annotations

from typing import Callable

from sqlalchemy import func, select


def rows_after(conn, column, mark: int, span: int, read: Callable[[int, int], list]) -> list:
    """read(low, high) gives the rows with low < column <= high, in order; returns those of the
    first `span` seqs after the mark, or after the hole that follows it."""
    rows = read(mark, mark + span)
    if not rows:
        following = conn.scalar(select(func.min(column)).where(column > mark))
        if following is not None:
            rows = read(following - 1, following - 1 + span)
    return rows
