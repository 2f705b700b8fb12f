"""Tables. Times are aware UTC; display conversion happens at the edges."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from storage.types import UTCDateTime


def _utc(**kw: Any) -> Any:
    return Field(sa_type=UTCDateTime, **kw)


class GridNode(SQLModel, table=True):
    """A node of the grid hierarchy: 街道 → 社区 → 网格 (any depth)."""

    __tablename__ = "grid_node"
    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=64, unique=True)
    name: str = Field(max_length=100)
    level: str = Field(max_length=20)
    parent_id: int | None = Field(default=None, foreign_key="grid_node.id", index=True)
    # Materialised path of ids, "/1/4/9/": ancestors and descendants without recursion.
    path: str = Field(default="/", max_length=500, index=True)
    aliases: list[str] = Field(default_factory=list, sa_type=JSON)
    landmarks: list[str] = Field(default_factory=list, sa_type=JSON)
    # [[lng, lat], ...] in GCJ-02, as drawn on Tencent/AMap maps.
    polygon: list[list[float]] | None = Field(default=None, sa_type=JSON)
    # The key of the grid group's WeCom robot (群机器人 webhook): urgent cases and daily summaries.
    robot_key: str | None = Field(default=None, max_length=200)


class Staff(SQLModel, table=True):
    """网格员/网格长/调度员: a person who works cases."""

    __tablename__ = "staff"
    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=64, unique=True)
    name: str = Field(max_length=50)
    phone: str | None = Field(default=None, max_length=20)
    role: str = Field(max_length=20)  # leader | dispatcher | inspector
    grid_id: int = Field(foreign_key="grid_node.id", index=True)
    wechat_openid: str | None = Field(default=None, max_length=64, unique=True)
    wecom_userid: str | None = Field(default=None, max_length=64, unique=True)
    # Where pushes reach them: "wechat" (the Official Account) or "wecom" (企业微信 app).
    channel: str = Field(default="wechat", max_length=10)
    # The last short reference (#12) handed to this person on a case card; never reused.
    last_ref: int = 0
    active: bool = True
    # The web console's password: "scrypt$n$r$p$salt_hex$hash_hex" (None: no password login).
    password_hash: str | None = Field(default=None, max_length=300)
    # The last console login (by password or one-time link); None: never.
    last_login_at: datetime | None = _utc(default=None)


class Resident(SQLModel, table=True):
    __tablename__ = "resident"
    id: int | None = Field(default=None, primary_key=True)
    openid: str = Field(max_length=64, unique=True)
    phone: str | None = Field(default=None, max_length=20)
    first_seen_at: datetime = _utc()
    last_seen_at: datetime = _utc()
    # The last location pin, kept for a report that follows it.
    last_lat: float | None = None
    last_lon: float | None = None
    last_location_at: datetime | None = _utc(default=None)
    # A case waiting for the resident to say where it is.
    awaiting_place_case_id: int | None = Field(default=None)
    # 屏蔽: a dispatcher stopped this account's messages from becoming cases (kept, never lost).
    blocked_at: datetime | None = _utc(default=None)
    blocked_by: int | None = None
    block_reason: str | None = Field(default=None, max_length=200)
    # When the resident was last told to slow down (said once per window, not once per message).
    throttle_notice_at: datetime | None = _utc(default=None)


class Case(SQLModel, table=True):
    """工单: one reported problem."""

    __tablename__ = "cases"
    id: int | None = Field(default=None, primary_key=True)
    number: str = Field(max_length=32, unique=True)
    category: str = Field(max_length=50)
    description: str = Field(sa_type=Text)
    place_text: str | None = Field(default=None, max_length=500)
    lat: float | None = None
    lon: float | None = None
    grid_id: int | None = Field(default=None, foreign_key="grid_node.id", index=True)
    urgent: bool = False
    # How sure the classifier was of `category` (1.0 when a person set it).
    confidence: float = 1.0
    # 重复: this report repeats an open case; the resident follows that case instead.
    duplicate_of_id: int | None = Field(default=None, foreign_key="cases.id", index=True)
    status: str = Field(max_length=20, index=True)
    resident_id: int | None = Field(default=None, foreign_key="resident.id", index=True)
    assignee_id: int | None = Field(default=None, foreign_key="staff.id", index=True)
    created_at: datetime = _utc()
    updated_at: datetime = _utc()
    dispatched_at: datetime | None = _utc(default=None)
    accepted_at: datetime | None = _utc(default=None)
    resolved_at: datetime | None = _utc(default=None)
    closed_at: datetime | None = _utc(default=None)
    # The resolution deadline (办结时限); an approved 延期 moves it.
    due_at: datetime | None = _utc(default=None, index=True)
    # 转派 waiting for the receiving grid or department to take it (首接负责: the owner keeps it till then).
    transfer_grid_id: int | None = Field(default=None, foreign_key="grid_node.id")
    transfer_to_id: int | None = Field(default=None, foreign_key="staff.id", index=True)
    # 挂起: waiting on something outside, until this date.
    suspended_until: datetime | None = _utc(default=None, index=True)
    # 延期 asked for and not yet decided: the new deadline, and who decides.
    requested_due_at: datetime | None = _utc(default=None)
    extension_approver_id: int | None = Field(default=None, foreign_key="staff.id", index=True)
    # 核查: who confirms a 办结 for categories that need it; 返工 sent back how often.
    verifier_id: int | None = Field(default=None, foreign_key="staff.id", index=True)
    rework_count: int = 0
    reopen_count: int = 0
    # The resident's rating: 满意 | 基本满意 | 不满意 (None: not rated).
    rating: str | None = Field(default=None, max_length=10)
    rated_at: datetime | None = _utc(default=None)
    # The follow-up schedule (handlers/followup.py). step_at: when the current step began (a change of
    # status, or a 进展 note); its deadlines count from there. next_ping_at: when the engine looks at
    # the case next (None: nothing to chase: closed, 挂起, 待派遣). pinged_until: pings due up to this
    # moment have been sent, so a restart re-sends nothing.
    step_at: datetime | None = _utc(default=None)
    next_ping_at: datetime | None = _utc(default=None, index=True)
    pinged_until: datetime | None = _utc(default=None)


class PingLease(SQLModel, table=True):
    """A follow-up engine's claim on a due case (handlers/followup.py), until `lease_until`.

    Kept apart from `cases` so that claiming a thousand due cases writes a few pages of this narrow
    table, not a thousand pages of the wide one (and its dozen indexes). `seen_next_ping_at` is the
    case's `next_ping_at` when claimed: the chase is recorded only if it still holds (compare-and-set),
    so a leader's action in between, or another engine that reclaimed an expired lease, wins. No
    foreign key on purpose: on PostgreSQL its check would row-lock, hence write, every claimed case."""

    __tablename__ = "ping_lease"
    case_id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    lease_until: datetime = _utc()
    seen_next_ping_at: datetime = _utc()


class CaseFollower(SQLModel, table=True):
    """A resident who reported the same problem again, and gets the same updates."""

    __tablename__ = "case_follower"
    case_id: int = Field(foreign_key="cases.id", primary_key=True)
    resident_id: int = Field(foreign_key="resident.id", primary_key=True)
    since: datetime = _utc()


class LabelledExample(SQLModel, table=True):
    """A text with its right category: a leader's correction, for the next `gridbot train`."""

    __tablename__ = "labelled_example"
    id: int | None = Field(default=None, primary_key=True)
    text: str = Field(sa_type=Text)
    category: str = Field(max_length=50)
    source: str = Field(max_length=20)  # correction | import
    case_id: int | None = Field(default=None, index=True)
    created_at: datetime = _utc()


class CaseEvent(SQLModel, table=True):
    """One step on a case's timeline: who did what, when, with what note."""

    __tablename__ = "case_event"
    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="cases.id", index=True)
    at: datetime = _utc()
    action: str = Field(max_length=20)
    actor_kind: str = Field(max_length=20)  # resident | staff | system
    actor_id: int | None = None
    from_status: str | None = Field(default=None, max_length=20)
    to_status: str | None = Field(default=None, max_length=20)
    note: str | None = Field(default=None, sa_type=Text)
    media_id: str | None = Field(default=None, max_length=200)


class InboundMessage(SQLModel, table=True):
    """Every message WeChat delivered, once: the durable queue behind each answer."""

    __tablename__ = "inbound_message"
    id: int | None = Field(default=None, primary_key=True)
    # FromUserName+MsgId, or FromUserName+CreateTime+Event for events (which have no MsgId).
    dedupe_key: str = Field(max_length=200, unique=True)
    channel: str = Field(default="wechat", max_length=20)
    sender: str = Field(max_length=64, index=True)
    msg_type: str = Field(max_length=40)
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    received_at: datetime = _utc()
    status: str = Field(default="received", max_length=20)  # received | processed
    processed_at: datetime | None = _utc(default=None)
    reply: str | None = Field(default=None, sa_type=Text)
    reply_mode: str | None = Field(default=None, max_length=20)  # passive | customer_service | none
    case_id: int | None = None

    __table_args__ = (
        Index("ix_inbound_pending", "status", "received_at"),
        # Rate limits and the 48-hour window: one person's messages, newest last.
        Index("ix_inbound_sender_received", "sender", "received_at"),
    )


class OutboxMessage(SQLModel, table=True):
    """A push still to deliver (or delivered, or parked with the reason it never will be)."""

    __tablename__ = "outbox"
    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(default="wechat_cs", max_length=20)
    recipient: str = Field(max_length=64)
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    case_id: int | None = Field(default=None, index=True)
    status: str = Field(default="pending", max_length=20)  # pending | sent | parked | held | merged | cancelled
    attempts: int = 0
    next_attempt_at: datetime = _utc()
    claimed_until: datetime | None = _utc(default=None)
    last_error: str | None = Field(default=None, max_length=500)
    created_at: datetime = _utc()
    sent_at: datetime | None = _utc(default=None)
    # Delivered inside another message (pending updates merged into one): that message's id.
    merged_into_id: int | None = None
    # "ping" for the follow-up engine's reminders and escalations: cancelled when the case closes.
    kind: str | None = Field(default=None, max_length=20)

    __table_args__ = (
        Index("ix_outbox_due", "status", "next_attempt_at"),
        # Rate windows and the 48-hour quota: what went to one recipient lately.
        Index("ix_outbox_recipient_sent", "recipient", "channel", "sent_at"),
        # claim_due: is an older push to this person still pending? (migration 0011 says why)
        Index("ix_outbox_recipient_status", "recipient", "status", "id"),
    )


class CaseRef(SQLModel, table=True):
    """The short reference (#12) a staff member may quote instead of a case number: per person,
    handed out with the case card, never reused."""

    __tablename__ = "case_ref"
    staff_id: int = Field(foreign_key="staff.id", primary_key=True)
    ref: int = Field(primary_key=True)
    case_id: int = Field(foreign_key="cases.id", index=True)

    __table_args__ = (UniqueConstraint("staff_id", "case_id", name="uq_case_ref_staff_case"),)


class JobRun(SQLModel, table=True):
    """A scheduled job that must run once per key (e.g. one day's group summary), whichever
    process gets there first."""

    __tablename__ = "job_run"
    name: str = Field(primary_key=True, max_length=40)
    key: str = Field(primary_key=True, max_length=100)
    at: datetime = _utc()


class ConsoleSession(SQLModel, table=True):
    """A logged-in console user. The cookie holds the token; only its SHA-256 is stored, so a copy
    of the database logs nobody in."""

    __tablename__ = "console_session"
    token_hash: str = Field(primary_key=True, max_length=64)
    staff_id: int = Field(foreign_key="staff.id", index=True)
    # Sent with every form and compared on every POST (CSRF).
    csrf: str = Field(max_length=64)
    created_at: datetime = _utc()
    expires_at: datetime = _utc(index=True)
    # What the last action said, shown once on the page it redirected to (POST-redirect-GET):
    # {"path": "/console/cases/G…", "text": "…"}. Server-side, so no message travels in the URL.
    flash: dict[str, str] | None = Field(default=None, sa_type=JSON)


class LoginLink(SQLModel, table=True):
    """A one-time console login link sent to a staff member's WeChat/WeCom: only the token's SHA-256
    is stored; it works once (used_at) and briefly (expires_at)."""

    __tablename__ = "login_link"
    token_hash: str = Field(primary_key=True, max_length=64)
    staff_id: int = Field(foreign_key="staff.id", index=True)
    created_by: int | None = Field(default=None, foreign_key="staff.id")
    created_at: datetime = _utc()
    expires_at: datetime = _utc()
    used_at: datetime | None = _utc(default=None)


class LoginFailure(SQLModel, table=True):
    """One failed console login, kept to refuse guessing: by the staff key tried and by address."""

    __tablename__ = "login_failure"
    id: int | None = Field(default=None, primary_key=True)
    subject: str = Field(max_length=120)  # "key:<staff key>" | "ip:<address>"
    at: datetime = _utc()

    __table_args__ = (Index("ix_login_failure_subject_at", "subject", "at"),)


class Open311Request(SQLModel, table=True):
    """Who filed a case through the Open311 API, as they gave it (any of it may be missing). They are
    not WeChat residents: the case has no resident, so nothing is ever pushed to them; they follow
    the case through GET requests/{id}. Kept for the office, never returned by the API."""

    __tablename__ = "open311_request"
    case_id: int = Field(foreign_key="cases.id", primary_key=True)
    # Which API key filed it: the first 12 hex digits of its SHA-256, never the key.
    client: str = Field(max_length=12, index=True)
    account_id: str | None = Field(default=None, max_length=100)
    first_name: str | None = Field(default=None, max_length=100)
    last_name: str | None = Field(default=None, max_length=100)
    email: str | None = Field(default=None, max_length=200)
    phone: str | None = Field(default=None, max_length=40)
    device_id: str | None = Field(default=None, max_length=200)
    address_id: str | None = Field(default=None, max_length=100)
    media_url: str | None = Field(default=None, max_length=1000)
    # A retried POST must not file a second case: the client's Idempotency-Key header (unique per
    # client), and the SHA-256 of what was posted, matched within a short window when there is no key.
    idempotency_key: str | None = Field(default=None, max_length=255)
    fingerprint: str | None = Field(default=None, max_length=64)
    filed_at: datetime | None = _utc(default=None)

    __table_args__ = (
        UniqueConstraint("client", "idempotency_key", name="uq_open311_request_client_key"),
        Index("ix_open311_request_fingerprint", "client", "fingerprint", "filed_at"),
    )


class CaseCounter(SQLModel, table=True):
    """Daily sequence behind case numbers such as G20261122-0007."""

    __tablename__ = "case_counter"
    day: str = Field(primary_key=True, max_length=8)
    last: int = 0


class AccessToken(SQLModel, table=True):
    """An API access token, shared by every process (bot/tokens.py): each fetch invalidates the
    previous token within 5 minutes and the daily quota is 2,000, so one process refreshes at a time,
    holding the lease `refreshing_until`, and the others read what it stored."""

    __tablename__ = "access_token"
    key: str = Field(primary_key=True, max_length=100)  # wechat:<appid> | wecom:<corpid>:<agentid>
    token: str | None = Field(default=None, sa_type=Text)  # a credential: never logged
    expires_at: datetime | None = _utc(default=None)
    fetched_at: datetime | None = _utc(default=None)
    # The refresh lock: held until this moment by `refresher` (one attempt's random id), so a
    # crashed refresher's lease runs out and a late one cannot overwrite its successor's token.
    refreshing_until: datetime | None = _utc(default=None)
    refresher: str | None = Field(default=None, max_length=32)
    # Fetches on `fetch_day` (YYYYMMDD, Beijing time, as WeChat counts its quota).
    fetch_day: str | None = Field(default=None, max_length=8)
    day_fetches: int = 0


ALL_TABLES = [
    GridNode,
    Staff,
    Resident,
    Case,
    CaseFollower,
    LabelledExample,
    CaseEvent,
    InboundMessage,
    OutboxMessage,
    CaseRef,
    JobRun,
    ConsoleSession,
    LoginLink,
    LoginFailure,
    Open311Request,
    CaseCounter,
    AccessToken,
    PingLease,
]
