"""Make the simulator modules (world, paxos_group, checkers, nemesis, paxos_sim) importable.

tests/ has no packages; the later layers' simulations import these modules too, so the
directory goes on sys.path once, here.
"""

from __future__ import annotations

import sys
from pathlib import Path

_SIM_DIR = str(Path(__file__).resolve().parent)
if _SIM_DIR not in sys.path:
    sys.path.insert(0, _SIM_DIR)
