"""The error tree drawn in ``keyturn.errors``' docstring is the tree of classes, codes included."""

from __future__ import annotations

import re

import pytest

from keyturn import errors as E

_LINE = re.compile(r"^(?P<indent>[ │├└─]*)(?P<name>[A-Za-z]+Error)\s+(?P<code>[a-z_]+)")


def _docstring_tree() -> dict[str, tuple[str | None, str]]:
    """name -> (parent name, code), read from the box-drawing tree in the docstring."""
    assert E.__doc__ is not None
    block = E.__doc__.split("Tree::", 1)[1].split("\n\n", 2)[1]
    tree: dict[str, tuple[str | None, str]] = {}
    stack: list[tuple[int, str]] = []
    for line in block.splitlines():
        line = line[4:]  # the literal block's indent
        m = _LINE.match(line) if line.strip() != "KeyturnError" else None
        if line.strip() == "KeyturnError":
            tree["KeyturnError"] = (None, E.KeyturnError.code)
            stack = [(-1, "KeyturnError")]
            continue
        assert m is not None, f"unreadable tree line: {line!r}"
        depth = len(m.group("indent"))
        while stack and stack[-1][0] >= depth:
            stack.pop()
        tree[m.group("name")] = (stack[-1][1], m.group("code"))
        stack.append((depth, m.group("name")))
    return tree


def _class_tree() -> dict[str, tuple[str | None, str]]:
    tree: dict[str, tuple[str | None, str]] = {"KeyturnError": (None, E.KeyturnError.code)}
    todo: list[type[E.KeyturnError]] = [E.KeyturnError]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            if sub.__module__ == "keyturn.errors":
                tree[sub.__name__] = (cls.__name__, sub.code)
                todo.append(sub)
    return tree


def test_docstring_tree_matches_the_classes() -> None:
    assert _docstring_tree() == _class_tree()


def test_every_error_class_lives_in_errors_and_has_its_own_code() -> None:
    tree = _class_tree()
    codes = [code for _, code in tree.values()]
    assert len(codes) == len(set(codes))
    # The key_turn root's default code belongs to the root alone.
    assert codes.count("keyturn_error") == 1


@pytest.mark.parametrize(
    ("cls", "parent", "code"),
    [
        pytest.param(E.TokenLifetimeError, E.InvalidInputError, "token_lifetime_exceeded", id="lt"),
        pytest.param(E.ApiKeyNotFoundError, E.NotFoundError, "api_key_not_found", id="apikey"),
        pytest.param(E.DiscoveryError, E.JWKSUnavailableError, "discovery_failed", id="disc"),
        pytest.param(E.FeedError, E.JWKSUnavailableError, "revocation_feed_failed", id="feed"),
        pytest.param(E.CacheBusyError, E.KeyturnError, "cache_busy", id="busy"),
    ],
)
def test_formerly_outside_errors_are_in_the_tree(
    cls: type[E.KeyturnError], parent: type[E.KeyturnError], code: str
) -> None:
    assert cls.__bases__ == (parent,)
    assert cls.code == code


def test_old_import_paths_still_work() -> None:
    from keyturn.server.documents import CacheBusyError
    from keyturn.store.apikeys import ApiKeyNotFoundError
    from keyturn.verifier import DiscoveryError, FeedError
    from keyturn.verifier._feed import FeedError as FeedError2
    from keyturn.verifier._http import DiscoveryError as DiscoveryError2

    assert CacheBusyError is E.CacheBusyError
    assert ApiKeyNotFoundError is E.ApiKeyNotFoundError
    assert DiscoveryError is DiscoveryError2 is E.DiscoveryError
    assert FeedError is FeedError2 is E.FeedError


def test_no_keyturn_error_is_defined_outside_errors() -> None:
    import importlib
    import pkgutil

    import keyturn

    for mod in pkgutil.walk_packages(keyturn.__path__, "keyturn."):
        if ".migrations." not in mod.name:  # Alembic scripts run only under Alembic
            importlib.import_module(mod.name)
    todo: list[type[E.KeyturnError]] = [E.KeyturnError]
    outside: list[str] = []
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            todo.append(sub)
            if sub.__module__ != "keyturn.errors" and sub.__module__.startswith("keyturn."):
                outside.append(f"{sub.__module__}.{sub.__qualname__}")
    assert outside == []
