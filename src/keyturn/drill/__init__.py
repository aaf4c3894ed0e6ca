"""``keyturn drill``: rehearse a key compromise against a running deployment, under load.

Signs tokens continuously through the management API, verifies them with several verifiers at
once (keyturn's in its default, stream and poll configurations, and a naive cache-only verifier
for contrast), performs the action (rotate, rotate-and-revoke, revoke-all) in the middle of it,
and reports per verifier the valid tokens rejected (0 for keyturn's), how soon the revoked key's
tokens were refused and the fetches made. Imports nothing from the server: it judges from
outside, over HTTP, as a rehearsal must.
"""

from keyturn.drill.probes import DEFAULT_KINDS, KINDS
from keyturn.drill.report import render_report
from keyturn.drill.run import (
    ACTIONS,
    Action,
    DrillConfig,
    DrillError,
    DrillReport,
    VerifierResult,
    run_drill,
)

__all__ = [
    "ACTIONS",
    "DEFAULT_KINDS",
    "KINDS",
    "Action",
    "DrillConfig",
    "DrillError",
    "DrillReport",
    "VerifierResult",
    "render_report",
    "run_drill",
]
