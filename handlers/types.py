"""The parsed message every handler receives: transports build it, nothing here knows XML."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Inbound:
    channel: str  # "wechat" (the Official Account) or "wecom" (the WeCom self-built app, staff only)
    sender: str  # openid / userid, as authenticated by the transport's signature check
    kind: str  # text | image | voice | location | link | event | unknown
    created_at: datetime
    msg_id: int | None = None
    text: str | None = None  # text, or voice Recognition
    event: str | None = None  # subscribe, unsubscribe, LOCATION, CLICK …
    lat: float | None = None
    lon: float | None = None
    label: str | None = None  # the place name WeChat attaches to a location message
    media_id: str | None = None
    url: str | None = None  # picture or link URL
    title: str | None = None

    def to_payload(self) -> dict[str, Any]:
        # Every field is a plain value: a shallow copy does what dataclasses.asdict does (which
        # deep-copies recursively, a tenth of a millisecond on each webhook call).
        data = dict(self.__dict__)
        data["created_at"] = self.created_at.isoformat()
        return data

    @classmethod
    def from_payload(cls, data: dict[str, Any]) -> Inbound:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["created_at"] = datetime.fromisoformat(values["created_at"])
        return cls(**values)
