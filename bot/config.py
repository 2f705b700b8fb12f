"""Configuration from GRIDBOT_* environment variables (and an optional .env file)."""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DATA_DIR = Path(__file__).parent / "data"
DEMO_GRID_FILE = DATA_DIR / "demo_grid.yaml"
DEFAULT_CATEGORIES_FILE = DATA_DIR / "categories.yaml"
WECHAT_API = "https://api.weixin.qq.com"
DEMO_CREDENTIALS = {
    "wechat_token": "gridbot-demo-token",
    "wechat_appid": "wx0000000000demo",
    "wechat_secret": "demo-secret",
}


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
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 8080
    timezone: str = "Asia/Shanghai"
    # WeChat waits 5 s; past this budget we answer "success" and reply through customer service.
    reply_budget_seconds: Annotated[float, Field(gt=0, le=4.5)] = 3.0
    max_body_bytes: int = 64 * 1024
    replay_window_seconds: int = 300
    # How long a resident's location pin or an unanswered "where?" question stays attached.
    place_window_minutes: int = 30
    outbound_timeout_seconds: Annotated[float, Field(gt=0)] = 5.0
    # Where photos and voice notes are saved (fetched through the WeChat media API; WeChat keeps
    # them only 3 days). Empty: keep the media id only.
    media_dir: Path | None = None
    # The trained category model (`gridbot train`); empty: the keyword table alone.
    model_file: Path | None = None
    # Below this confidence a case's category is flagged for the leader to confirm.
    confirm_below: Annotated[float, Field(ge=0, le=1)] = 0.5

    @field_validator("database_url")
    @classmethod
    def _known_driver(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        return value

    @field_validator("wechat_aes_key")
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

    @field_validator("wechat_api_base")
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

    @field_validator("grid_file", "categories_file", "model_file")
    @classmethod
    def _file_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"file not found: {value}")
        return value

    def check_real_account(self) -> None:
        """Against the real WeChat API the demo credentials can only fail: say so at start."""
        if self.wechat_api_base != WECHAT_API:
            return
        for name, demo in DEMO_CREDENTIALS.items():
            if getattr(self, name) == demo:
                raise ConfigError(
                    f"GRIDBOT_{name.upper()}: set your Official Account's value "
                    "(the demo value only works with the local fake API)"
                )

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
        name = "GRIDBOT_" + str(err["loc"][0]).upper() if err["loc"] else "GRIDBOT_*"
        raise ConfigError(f"{name}: {err['msg']}") from None
