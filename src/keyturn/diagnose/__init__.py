"""Runbook tooling: diagnose a failing token against an issuer or JWKS, and inspect any JWKS."""

from keyturn.diagnose._http import CacheControl, Fetch
from keyturn.diagnose.core import ASSUMED_OVERLAP, diagnose
from keyturn.diagnose.jwks import JwksReport, KeyInfo, inspect_jwks
from keyturn.diagnose.report import (
    EXIT_CODES,
    CachingAssessment,
    DiagnoseReport,
    DiscoveryReport,
    Finding,
    TokenInfo,
    Verdict,
)

__all__ = [
    "ASSUMED_OVERLAP",
    "EXIT_CODES",
    "CacheControl",
    "CachingAssessment",
    "DiagnoseReport",
    "DiscoveryReport",
    "Fetch",
    "Finding",
    "JwksReport",
    "KeyInfo",
    "TokenInfo",
    "Verdict",
    "diagnose",
    "inspect_jwks",
]
