"""Configuration from GRIDBOT_* environment variables (and an optional .env file)."""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DATA_DIR = Path(__file__).parent / "data"
DEMO_GRID_FILE = DATA_DIR / "demo_grid.yaml"
DEFAULT_CATEGORIES_FILE = DATA_DIR / "categories.yaml"
DEFAULT_POLICY_FILE = DATA_DIR / "policy.yaml"
WECHAT_API = "https://api.weixin.qq.com"
WECOM_API = "https://qyapi.weixin.qq.com"
DEMO_CREDENTIALS = {
    "wechat_token": "gridbot-demo-token",
    "wechat_appid": "wx0000000000demo",
    "wechat_secret": "demo-secret",
}
# The demo's WeCom self-built app (企业微信自建应用); only ever talks to the local fake.
DEMO_WECOM = {
    "wecom_corp_id": "ww00000000demo0000",
    "wecom_agent_id": 1000002,
    "wecom_secret": "demo-wecom-secret",
    "wecom_token": "gridbot-wecom-token",
    "wecom_aes_key": "gridbotDemoWeComKey0123456789abcdefghijklmn",
}


TEMPLATE_FIELD_NAMES = ("number", "status", "summary", "time")


def parse_template_fields(value: str) -> dict[str, str]:
    """ "number=character_string1,summary=thing3" → {"number": "character_string1", ...}."""
    fields: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in value.split(","))):
        ours, _, theirs = part.partition("=")
        if ours.strip() not in TEMPLATE_FIELD_NAMES or not theirs.strip():
            raise ValueError(f"{part!r}: expected one of {', '.join(TEMPLATE_FIELD_NAMES)} = a template key")
        fields[ours.strip()] = theirs.strip()
    return fields


class ConfigError(Exception):
    """Configuration that cannot work; the message is one line naming the variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GRIDBOT_", env_file=".env", extra="ignore")

    database_url: str = "sqlite+aiosqlite:///var/gridbot.sqlite3"
    wechat_token: Annotated[str, Field(min_length=3, max_length=32)] = DEMO_CREDENTIALS["wechat_token"]
    wechat_appid: str = DEMO_CREDENTIALS["wechat_appid"]
    wechat_secret: str = DEMO_CREDENTIALS["wechat_secret"]
    # 43 characters of base64 without the trailing "=", as the WeChat console shows it.
    wechat_aes_key: str = ""
    wechat_api_base: str = WECHAT_API
    grid_file: Path | None = None
    categories_file: Path = DEFAULT_CATEGORIES_FILE
    # Deadlines, reminders and escalation per kind of case; working days and holidays; quiet hours.
    policy_file: Path = DEFAULT_POLICY_FILE
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 8080
    timezone: str = "Asia/Shanghai"
    # WeChat waits 5 s, a resident less: past this budget (or when the queue ahead is longer) the
    # answer is 已收到 and the reply follows through customer service.
    reply_budget_seconds: Annotated[float, Field(gt=0, le=4.5)] = 1.0
    # inline: each web process processes what it stores. separate: web processes only store and
    # answer, and `gridbot process` (one process) processes, delivers and schedules.
    processing: Literal["inline", "separate"] = "inline"
    # `gridbot process` lowers its CPU priority by this much (nice): when the machine is short of
    # CPU (a flood), the servers answering WeChat within its 5 s come first and processing catches up
    # after, from the stored messages. 0: the same priority as the servers.
    process_nice: Annotated[int, Field(ge=0, le=19)] = 10
    max_body_bytes: int = 64 * 1024
    replay_window_seconds: int = 300
    # How long a resident's location pin or an unanswered "where?" question stays attached.
    place_window_minutes: int = 30
    outbound_timeout_seconds: Annotated[float, Field(gt=0)] = 5.0
    # Messages stored and acknowledged but never processed (the process died in between) are picked
    # up this often, once they are this old (younger ones may still be in another process's hands).
    recover_every_seconds: Annotated[float, Field(gt=0)] = 30.0
    recover_after_seconds: Annotated[float, Field(ge=0)] = 10.0
    # A batch of pushes is leased for this long; a process that died holding it is replaced after it.
    # At least 8 outbound timeouts: one delivery may make 4 calls (token, send, refresh, fallback)
    # and a worker starts none past half its lease.
    outbox_lease_seconds: Annotated[float, Field(gt=0)] = 60.0
    # Where photos and voice notes are saved (fetched through the WeChat media API; WeChat keeps
    # them only 3 days). Empty: keep the media id only.
    media_dir: Path | None = None
    # The trained category model (`gridbot train`); empty: the keyword table alone.
    model_file: Path | None = None
    # Below this confidence a case's category is flagged for the leader to confirm.
    confirm_below: Annotated[float, Field(ge=0, le=1)] = 0.5

    # WeCom (企业微信) self-built app for staff: callback /wecom, pushes as app messages.
    # Empty corp id: WeCom is off (staff are reached on the Official Account).
    wecom_corp_id: str = ""
    wecom_agent_id: int = 0
    wecom_secret: str = ""
    wecom_token: str = ""
    wecom_aes_key: str = ""
    wecom_api_base: str = WECOM_API

    # Customer-service messages reach a person only within this many hours of their last message,
    # and only this many times per message they send (WeChat's rules; both have changed before).
    cs_window_hours: Annotated[int, Field(ge=1)] = 48
    cs_quota_per_message: Annotated[int, Field(ge=1)] = 5
    # Outside the window or over the quota: a template message (模板消息, verified service accounts)
    # or a subscription message (订阅通知). Empty id: updates wait, merged, for the next message.
    wechat_fallback: Literal["template", "subscribe"] = "template"
    wechat_template_id: str = ""
    # Which template field carries what: our names (number, status, summary, time) = the template's keys.
    wechat_template_fields: str = "number=character_string1,status=phrase2,summary=thing3,time=time4"

    # Abuse: a resident's messages beyond these rates are stored but answered once and not turned
    # into cases; new cases per resident per hour are capped too. Staff are not limited.
    resident_max_per_minute: Annotated[int, Field(ge=1)] = 8
    resident_max_per_hour: Annotated[int, Field(ge=1)] = 40
    resident_max_cases_per_hour: Annotated[int, Field(ge=1)] = 5

    # When each grid group with a robot gets its daily summary (office time, HH:MM).
    group_summary_at: str = "08:30"

    # The web console (/console/). Secure cookies: set when it is served over https (it should be).
    console_secure_cookies: bool = False
    # The console's public origin (https://grid.example.gov.cn) when behind a proxy that rewrites
    # the Host header; empty: the request's own scheme and host. POSTs from elsewhere are refused.
    console_origin: str = ""
    console_session_hours: Annotated[int, Field(ge=1, le=24 * 30)] = 12
    # Failed logins per staff key and per address within the window, before login is refused.
    console_max_failures: Annotated[int, Field(ge=1)] = 5
    console_failure_window_minutes: Annotated[int, Field(ge=1)] = 15

    # Open311 (GeoReport v2) at /open311/v2: the API keys other systems file requests with, comma
    # separated. Empty: POST requests is refused (403); the GET endpoints still answer.
    open311_api_keys: str = ""
    # Whether GET requests (residents' descriptions, phone numbers masked) needs no api_key, as the
    # spec has it; False: only holders of a key may read them.
    open311_public_reads: bool = True
    # What /open311/discovery.{xml,json} tells clients: who to contact, where to ask for an api_key,
    # the v2 endpoint's public URL (empty: derived from the request) and whether it is a test one.
    open311_contact: str = ""
    open311_key_service: str = ""
    open311_url: str = ""
    open311_test_endpoint: bool = False

    @field_validator("database_url")
    @classmethod
    def _known_driver(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        return value

    @field_validator("wechat_aes_key", "wecom_aes_key")
    @classmethod
    def _aes_key_shape(cls, value: str) -> str:
        if not value:
            return value
        try:
            raw = base64.b64decode(value + "=", validate=True)
        except binascii.Error:
            raw = b""
        if len(value) != 43 or len(raw) != 32:
            raise ValueError("must be the 43-character EncodingAESKey from the WeChat console, or empty")
        return value

    @field_validator("group_summary_at")
    @classmethod
    def _clock_time(cls, value: str) -> str:
        try:
            hour, minute = (int(p) for p in value.split(":"))
        except ValueError:
            hour = minute = -1
        if not (0 <= hour < 24 and 0 <= minute < 60):
            raise ValueError("must be HH:MM, e.g. 08:30")
        return f"{hour:02d}:{minute:02d}"

    @field_validator("wechat_template_fields")
    @classmethod
    def _template_fields(cls, value: str) -> str:
        parse_template_fields(value)
        return value

    @field_validator("wechat_api_base", "wecom_api_base")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError("unknown time zone") from exc
        return value

    @field_validator("grid_file", "model_file", "media_dir", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        # `GRIDBOT_GRID_FILE=` as .env.example has it means "none", not the current directory.
        return None if value == "" else value

    @field_validator("grid_file", "categories_file", "policy_file", "model_file")
    @classmethod
    def _file_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"file not found: {value}")
        return value

    @model_validator(mode="after")
    def _lease_outlasts_a_delivery(self) -> Settings:
        if self.outbox_lease_seconds < 8 * self.outbound_timeout_seconds:
            raise ValueError("GRIDBOT_OUTBOX_LEASE_SECONDS must be at least 8 × GRIDBOT_OUTBOUND_TIMEOUT_SECONDS")
        return self

    def check_real_account(self) -> None:
        """Against the real WeChat/WeCom APIs the demo credentials can only fail: say so at start."""
        demo: list[tuple[str, object]] = []
        if self.wechat_api_base == WECHAT_API:
            demo += DEMO_CREDENTIALS.items()
        if self.wecom_api_base == WECOM_API:
            demo += [(k, v) for k, v in DEMO_WECOM.items() if k != "wecom_agent_id"]
        for name, value in demo:
            if getattr(self, name) == value:
                raise ConfigError(
                    f"GRIDBOT_{name.upper()}: set your own account's value "
                    "(the demo value only works with the local fake API)"
                )
        if self.wecom_corp_id and not (
            self.wecom_secret and self.wecom_token and self.wecom_aes_key and self.wecom_agent_id
        ):
            raise ConfigError(
                "GRIDBOT_WECOM_CORP_ID: WeCom also needs GRIDBOT_WECOM_SECRET, _TOKEN, _AES_KEY and _AGENT_ID"
            )

    @property
    def wecom_enabled(self) -> bool:
        return bool(self.wecom_corp_id)

    @property
    def template_fields(self) -> dict[str, str]:
        return parse_template_fields(self.wechat_template_fields)

    @property
    def open311_keys(self) -> tuple[str, ...]:
        return tuple(k for k in (p.strip() for p in self.open311_api_keys.split(",")) if k)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def safe_mode(self) -> bool:
        return bool(self.wechat_aes_key)


def load_settings(**overrides: object) -> Settings:
    """Read the settings, turning validation errors into one line naming the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        err = exc.errors()[0]
        if not err["loc"]:  # a rule between settings: its message names them
            raise ConfigError(str(err["msg"]).removeprefix("Value error, ")) from None
        name = "GRIDBOT_" + str(err["loc"][0]).upper()
        raise ConfigError(f"{name}: {err['msg']}") from None
