"""`keyturn serve` hands the server a typed, frozen ServeOptions; workers get it as JSON."""

from __future__ import annotations

import dataclasses

import pytest

from keyturn.cli import build_parser
from keyturn.cli.serve import _options
from keyturn.server.serve import ServeOptions


def test_flags_become_typed_options() -> None:
    args = build_parser().parse_args(
        ["serve", "--no-scheduler", "--poll-interval", "2s", "--max-tenants", "7"]
    )
    options = _options(args)
    assert options == ServeOptions(
        scheduler_interval=None,
        poll_interval=2.0,
        max_tenants=7,
        stream_max_lifetime=3600.0,
        discovery_extra=None,
        metrics=True,
        metrics_token=None,
        metrics_tenant_gauges=1000,
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.max_tenants = 8  # type: ignore[misc]


def test_worker_json_round_trip() -> None:
    options = ServeOptions(
        scheduler_interval=30.0,
        poll_interval=0.5,
        max_tenants=10_000,
        stream_max_lifetime=60.0,
        discovery_extra={"*": {"token_endpoint": "https://as.test/token"}},
        metrics=False,
        metrics_token="s3cret",
        metrics_tenant_gauges=0,
    )
    assert ServeOptions.from_json(options.to_json()) == options
