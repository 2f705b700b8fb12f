"""Routing is data: each handler module declares a Router; the Dispatcher is generic and short.

As in aiogram 3, a handler declares what it answers next to it, and receives its dependencies as
keyword arguments picked by parameter name from the context the pipeline builds.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from handlers.types import Inbound

Filter = Callable[[Inbound], bool]
Handler = Callable[..., Awaitable[str | None]]
H = TypeVar("H", bound=Handler)


@dataclass(frozen=True)
class Route:
    filters: tuple[Filter, ...]
    handler: Handler
    params: tuple[str, ...]

    def matches(self, msg: Inbound) -> bool:
        return all(f(msg) for f in self.filters)


class Router:
    def __init__(self, name: str) -> None:
        self.name = name
        self.routes: list[Route] = []

    def message(self, *filters: Filter) -> Callable[[H], H]:
        def register(handler: H) -> H:
            params = tuple(inspect.signature(handler).parameters)
            self.routes.append(Route(filters, handler, params))
            return handler

        return register


class SkipHandler(Exception):
    """Raised by a handler that matched but has nothing to do: the next matching route gets the message
    (aiogram's SkipHandler)."""


class Dispatcher:
    """Offers a message to the routers in order; the first matching route answers."""

    def __init__(self, *routers: Router) -> None:
        self.routers = routers

    async def feed(self, msg: Inbound, context: dict[str, Any]) -> str | None:
        for router in self.routers:
            for route in router.routes:
                if route.matches(msg):
                    kwargs = {name: context[name] for name in route.params}
                    try:
                        return await route.handler(**kwargs)
                    except SkipHandler:
                        continue
        return None


def kind(*kinds: str) -> Filter:
    return lambda m: m.kind in kinds


def event(*names: str) -> Filter:
    wanted = {n.lower() for n in names}
    return lambda m: m.kind == "event" and (m.event or "").lower() in wanted


def has_text(m: Inbound) -> bool:
    return bool(m.text and m.text.strip())
