"""Connectors by name: the built-in `ingest` and `demo`, or a platform's own as `package.module:Class`."""

from __future__ import annotations

import functools
import importlib

from app.catalog import EventCatalog
from app.connectors.base import (
    Connector,
    ConnectorError,
    ConnectorFactory,
    Emit,
    MonitoredAccount,
    Subscription,
)
from app.connectors.demo import DemoConnector
from app.connectors.ingest import IngestConnector
from app.settings import Settings

__all__ = [
    "BUILT_IN",
    "Connector",
    "ConnectorError",
    "ConnectorFactory",
    "Emit",
    "MonitoredAccount",
    "Subscription",
    "allowed_connectors",
    "connector_factory",
]

BUILT_IN = ("ingest", "demo")


def allowed_connectors(settings: Settings) -> tuple[str, ...]:
    """Connector names an account may choose: the built-ins, the default, and HOOKSTREAM_CONNECTORS."""
    # An allow-list, because a customer names the connector and loading one imports a module.
    names = [*BUILT_IN, settings.default_connector, *settings.connectors]
    return tuple(dict.fromkeys(names))


def connector_factory(name: str, settings: Settings, catalog: EventCatalog) -> ConnectorFactory:
    """What builds a fresh connector of that name; raises ConnectorError when it cannot be loaded."""
    if name == "ingest":
        return IngestConnector
    if name == "demo":
        return functools.partial(DemoConnector, rate=settings.demo_rate, catalog=catalog)
    module_name, _, attribute = name.partition(":")
    if not module_name or not attribute:
        raise ConnectorError(f"connector {name!r} is neither built in ({', '.join(BUILT_IN)}) nor package.module:Class")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConnectorError(f"cannot import {module_name!r} for connector {name!r}: {exc}") from None
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise ConnectorError(f"{module_name!r} has no class {attribute!r} for connector {name!r}")
    built: ConnectorFactory = factory
    return built
