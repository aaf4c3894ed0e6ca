"""``keyturn serve`` reads every option from ``KEYTURN_<OPTION>``: a container needs no args."""

from __future__ import annotations

import argparse

import pytest

from keyturn.cli.env_options import apply_env_defaults, option_env_names


def serve_parser(env: dict[str, str]) -> argparse.ArgumentParser:
    from keyturn.cli import serve
    from keyturn.cli._parsers import Parents

    sub = argparse.ArgumentParser(prog="keyturn").add_subparsers(dest="cmd")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true")
    serve.register(sub, Parents(common=common, tenant=argparse.ArgumentParser(add_help=False)))
    sp: argparse.ArgumentParser = sub.choices["serve"]
    apply_env_defaults(sp, env)
    return sp


def test_options_come_from_the_environment() -> None:
    sp = serve_parser(
        {
            "KEYTURN_HOST": "0.0.0.0",
            "KEYTURN_PORT": "9090",
            "KEYTURN_NO_SCHEDULER": "true",
            "KEYTURN_LOG_FORMAT": "json",
            "KEYTURN_ACCESS_LOG": "on",
            "KEYTURN_WORKERS": "2",
            "KEYTURN_METRICS_TENANT_GAUGES": "0",
        }
    )
    a = sp.parse_args([])
    assert (a.host, a.port, a.no_scheduler, a.log_format) == ("0.0.0.0", 9090, True, "json")
    assert (a.access_log, a.workers, a.metrics_tenant_gauges) == (True, 2, 0)


def test_the_command_line_wins_and_unset_or_empty_means_the_default() -> None:
    sp = serve_parser({"KEYTURN_PORT": "9090", "KEYTURN_HOST": "", "KEYTURN_NO_SCHEDULER": "0"})
    a = sp.parse_args(["--port", "7070"])
    assert (a.port, a.host, a.no_scheduler, a.scheduler_interval) == (
        7070,
        "127.0.0.1",
        False,
        "30s",
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        pytest.param(
            {"KEYTURN_NO_SCHEDULER": "maybe"}, "KEYTURN_NO_SCHEDULER must be one of", id="flag"
        ),
        pytest.param(
            {"KEYTURN_LOG_FORMAT": "xml"},
            "KEYTURN_LOG_FORMAT must be one of text, json",
            id="choice",
        ),
        pytest.param({"KEYTURN_HOST": "h" * 4097}, "longer than 4096", id="too-long"),
    ],
)
def test_a_bad_value_is_a_clear_error(
    env: dict[str, str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        serve_parser(env)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_a_bad_number_is_reported_as_a_bad_argument(capsys: pytest.CaptureFixture[str]) -> None:
    sp = serve_parser({"KEYTURN_PORT": "eighty"})
    with pytest.raises(SystemExit):
        sp.parse_args([])
    assert "argument --port: invalid int value: 'eighty'" in capsys.readouterr().err


def test_every_serve_option_has_its_variable() -> None:
    names = option_env_names(serve_parser({}))
    assert names["KEYTURN_PORT"] == "--port"
    assert names["KEYTURN_NO_SCHEDULER"] == "--no-scheduler"
    assert names["KEYTURN_METRICS_TOKEN"] == "--metrics-token"
    assert "KEYTURN_JSON" not in names and "KEYTURN_HELP" not in names
