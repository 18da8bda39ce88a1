"""How far a request's timestamp may run ahead of a node's clock (node rule 9), and how long
decision records must be kept for that. Sans-I/O: the node core and the config share it."""

from __future__ import annotations

import math

#: txn_status(settle=True) records an abort where it finds no decision, for transactions up
#: to txn.client.SETTLE_WINDOW_S old: their records must still be there.
MIN_DECISION_RETENTION_S = 120
#: Node rule 9: a timestamp from a request may run ahead of a node's wall clock by four clock
#: offsets (a client's clock, another node's, and a new leader's raise by two, rule 3) plus
#: this margin for a loaded machine; anything further is a broken clock or a forged request.
FUTURE_TS_MARGIN_S = 0.5


def fewest_decision_retention_s(max_clock_offset_ms: int) -> int:
    """The shortest `txn.decision_retention_s` a node takes with this clock offset: node
    rules P7 and O5 refuse a transaction's late request once a record of it may have been
    purged, judging by how far below the request's timestamp that record may be stamped
    (rule 9's four offsets and margin), which must stay within a quarter of the window
    (found by review: with a 60 s offset and a 120 s window, a late Prepare voted yes after
    its transaction's abort was recorded and purged)."""
    ahead_s = 4 * max_clock_offset_ms / 1000 + FUTURE_TS_MARGIN_S
    return max(MIN_DECISION_RETENTION_S, math.ceil(4 * ahead_s))
