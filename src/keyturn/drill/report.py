"""The drill report for people: one line per verifier, then the verdict."""

from __future__ import annotations

from keyturn.drill.run import DrillReport


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"


def render_report(report: DrillReport) -> str:
    """A plain-text table (the same facts as ``DrillReport.to_dict``)."""
    rows = [
        ("verifier", "verified", "valid rejected", "old key refused after", "promise", "fetches",
         "result"),
    ]  # fmt: skip
    for v in report.verifiers:
        result = ("PASS" if v.passed else "FAIL") if v.keyturn else "info"
        rows.append(
            (
                v.name,
                str(v.verifications),
                str(v.valid_rejected),
                _secs(v.old_rejected_after) if report.revoked else "n/a (nothing revoked)",
                _secs(v.promise),
                str(v.fetches),
                result if v.why in ("ok", "") else f"{result}: {v.why}",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    head = [
        f"keyturn drill: {report.action} on tenant {report.tenant} ({report.issuer})",
        f"old current key {report.old_kid} -> new current key {report.new_kid or '-'}; "
        f"revoked: {', '.join(report.revoked) or 'none'}",
        f"action took {report.action_seconds:.3f}s; {report.signed} tokens signed, "
        f"{sum(report.sign_errors.values())} sign errors; drill ran {report.duration:.1f}s",
        "",
    ]
    tail = ["", "drill PASSED" if report.passed else "drill FAILED"]
    for error, count in sorted(report.sign_errors.items()):
        tail.append(f"sign error x{count}: {error}")
    return "\n".join(head + lines + tail)
