"""Open311 GeoReport v2 (http://wiki.open311.org/GeoReport_v2) through the real app: services, service
definitions, filing requests with an api_key, querying them, and the spec's shapes, fields and errors."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlmodel import select

from bot.app import FACTORY
from bot.config import Settings
from handlers import messages as m
from handlers.open311 import client_of
from handlers.places import gcj02_to_wgs84, wgs84_to_gcj02
from storage.db import transaction
from storage.lifecycle import Status
from storage.models import Open311Request, Staff
from tests.conftest import INSIDE_HP01, LEADER_HP01, RESIDENT, WeChat

KEY = "test-open311-key"
V2 = "/open311/v2"
STREET_LEADER = "o_demo_lijianguo_xf"  # 李建国, 幸福街道
W3C = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)$")
SERVICE_FIELDS = ["service_code", "service_name", "description", "metadata", "type", "keywords", "group"]
REQUEST_FIELDS = [
    "service_request_id",
    "status",
    "status_notes",
    "service_name",
    "service_code",
    "description",
    "agency_responsible",
    "service_notice",
    "requested_datetime",
    "updated_datetime",
    "expected_datetime",
    "address",
    "address_id",
    "zipcode",
    "lat",
    "long",
    "media_url",
]
# 幸福里小区 in WGS84, as an Open311 client's GPS gives it (our maps and polygons are GCJ-02).
HP01_GPS = gcj02_to_wgs84(*INSIDE_HP01)


@pytest.fixture
def open311_keys() -> str:
    return KEY


@pytest.fixture
def open311_public_reads() -> bool:
    return True


@pytest.fixture
def settings(settings: Settings, open311_keys: str, open311_public_reads: bool) -> Settings:
    return settings.model_copy(update={"open311_api_keys": open311_keys, "open311_public_reads": open311_public_reads})


async def get(wechat: WeChat, path: str, **params: Any) -> tuple[int, str, str]:
    resp = await wechat.client.get(V2 + path, params=params)
    return resp.status, resp.headers["Content-Type"], await resp.text()


async def post(wechat: WeChat, fmt: str = "xml", **form: Any) -> tuple[int, str]:
    resp = await wechat.client.post(f"{V2}/requests.{fmt}", data=form)
    return resp.status, await resp.text()


async def file_request(wechat: WeChat, **form: Any) -> str:
    """POST a request (lamp broken at 幸福里 by default) and return its service_request_id."""
    fields = {
        "api_key": KEY,
        "service_code": "roads",
        "lat": HP01_GPS[0],
        "long": HP01_GPS[1],
        "description": "3号楼东侧路灯坏了",
    }
    status, body = await post(wechat, "json", **(fields | form))
    assert status == 200, body
    [created] = json.loads(body)
    return str(created["service_request_id"])


def xml_items(body: str, root: str, item: str) -> list[dict[str, str | None]]:
    tree = ET.fromstring(body)
    assert tree.tag == root
    assert all(child.tag == item for child in tree)
    return [{field.tag: field.text for field in element} for element in tree]


def spec_error(body: str, fmt: str = "xml") -> tuple[int, str]:
    if fmt == "json":
        [error] = json.loads(body)
        assert set(error) == {"code", "description"}
        return int(error["code"]), str(error["description"])
    [error] = xml_items(body, "errors", "error")
    assert list(error) == ["code", "description"]
    return int(error["code"] or 0), str(error["description"])


async def requests(wechat: WeChat, **params: Any) -> list[dict[str, Any]]:
    status, _, body = await get(wechat, "/requests.json", **params)
    assert status == 200, body
    return list(json.loads(body))


# --- services -------------------------------------------------------------------------------------


async def test_services_in_xml_have_the_spec_elements(wechat: WeChat) -> None:
    status, content_type, body = await get(wechat, "/services.xml")
    assert status == 200 and content_type == "text/xml; charset=utf-8"
    assert body.startswith('<?xml version="1.0" encoding="utf-8"?>')
    services = xml_items(body, "services", "service")
    assert all(list(s) == SERVICE_FIELDS for s in services)
    roads = next(s for s in services if s["service_code"] == "roads")
    assert roads["service_name"] == "道路设施" and roads["group"] == "城市管理"
    assert roads["metadata"] == "false" and roads["type"] == "realtime"
    assert roads["keywords"] is not None and "路灯" in roads["keywords"].split(", ")
    assert all(s["type"] in ("realtime", "batch", "blackbox") and s["metadata"] in ("true", "false") for s in services)
    codes = [s["service_code"] for s in services]
    assert len(set(codes)) == len(codes) == 8 and "other" in codes


async def test_services_in_json_are_the_same_list(wechat: WeChat) -> None:
    status, content_type, body = await get(wechat, "/services.json")
    assert status == 200 and content_type == "application/json; charset=utf-8"
    services = json.loads(body)
    assert isinstance(services, list) and all(list(s) == SERVICE_FIELDS for s in services)
    assert {"service_code": "noise", "service_name": "噪音扰民", "metadata": False, "type": "realtime"}.items() <= next(
        s for s in services if s["service_code"] == "noise"
    ).items()
    xml_codes = [s["service_code"] for s in xml_items((await get(wechat, "/services.xml"))[2], "services", "service")]
    assert [s["service_code"] for s in services] == xml_codes


async def test_service_definition_has_no_attributes(wechat: WeChat) -> None:
    status, _, body = await get(wechat, "/services/roads.xml")
    assert status == 200
    tree = ET.fromstring(body)
    assert tree.tag == "service_definition" and [c.tag for c in tree] == ["service_code", "attributes"]
    assert tree.findtext("service_code") == "roads" and len(tree.find("attributes") or []) == 0
    status, _, body = await get(wechat, "/services/roads.json")
    assert status == 200 and json.loads(body) == {"service_code": "roads", "attributes": []}
    status, _, body = await get(wechat, "/services/potholes.json")
    assert status == 404 and spec_error(body, "json") == (404, "没有这个 service_code：potholes")


async def test_unknown_format_or_resource_is_a_404_in_the_spec_format(wechat: WeChat) -> None:
    for path in ("/services.csv", "/requests.html", "/discovery", "/services"):
        status, content_type, body = await get(wechat, path)
        assert status == 404 and content_type == "text/xml; charset=utf-8", path
        assert spec_error(body)[0] == 404
    status, _, body = await get(wechat, "/requests/G20261122-0999.json")
    assert status == 404 and spec_error(body, "json") == (404, "没有这个服务请求：G20261122-0999")


# --- POST requests --------------------------------------------------------------------------------


async def test_posted_request_is_routed_to_the_grid_leader_with_a_deadline_and_follow_up(wechat: WeChat) -> None:
    status, body = await post(
        wechat,
        api_key=KEY,
        jurisdiction_id="xf.gov.cn",
        service_code="roads",
        lat=f"{HP01_GPS[0]:.6f}",
        long=f"{HP01_GPS[1]:.6f}",
        description="3号楼东侧路灯坏了，晚上很黑，电话13812345678",
        first_name="明",
        last_name="李",
        email="li@example.com",
        phone="13812345678",
        account_id="acct-7",
        media_url="https://example.com/lamp.jpg",
    )
    assert status == 200, body
    [created] = xml_items(body, "service_requests", "request")
    assert list(created) == ["service_request_id", "service_notice", "account_id"]
    assert created["service_request_id"] == "G20261122-0001" and created["account_id"] == "acct-7"
    assert created["service_notice"] == "由和平里第一网格处理，办结时限 11月29日 10:00。"

    [case] = await wechat.cases()
    assert case.number == "G20261122-0001" and case.category == "道路设施" and case.confidence == 1.0
    assert case.status == Status.DISPATCHED and case.resident_id is None
    assert case.due_at is not None and case.next_ping_at == wechat.clock.now()  # chased like any case
    assert case.lat is not None and abs(case.lat - INSIDE_HP01[0]) < 1e-6  # stored in our maps' datum
    async with transaction(wechat.app[FACTORY]) as session:
        leader = await session.get(Staff, case.assignee_id)
        filed = (await session.exec(select(Open311Request))).one()
    assert leader is not None and leader.name == "张伟"
    assert filed.case_id == case.id and filed.client == client_of(KEY) and KEY not in filed.model_dump_json()
    assert (filed.email, filed.account_id, filed.media_url) == (
        "li@example.com",
        "acct-7",
        "https://example.com/lamp.jpg",
    )

    await wechat.deliver()
    card = wechat.pushes_to(LEADER_HP01)[-1]
    assert "新工单" in card and case.number in card and "路灯坏了" in card
    assert "138****5678" in card and "13812345678" not in card
    # Nobody but staff is ever pushed to: the requester is no WeChat user.
    staff = {LEADER_HP01, "o_demo_zhangxiuying_hp", STREET_LEADER}
    assert {m.recipient for m in await wechat.outbox() if m.channel == "wechat_cs"} <= staff


async def test_address_string_alone_places_the_request(wechat: WeChat) -> None:
    status, body = await post(
        wechat, "json", api_key=KEY, service_code="environment", address_string="幸福里小区5号楼门口"
    )
    assert status == 200, body
    [created] = json.loads(body)
    assert list(created) == ["service_request_id", "service_notice", "account_id"] and created["account_id"] is None
    [case] = await wechat.cases()
    assert case.category == "市容环境" and case.place_text == "幸福里小区5号楼门口"
    assert case.description == "市容环境"  # no description given: the service names it
    await wechat.deliver()
    assert case.number in wechat.pushes_to(LEADER_HP01)[-1]


async def test_an_unmapped_place_goes_to_the_street_for_dispatch_by_hand(wechat: WeChat) -> None:
    number = await file_request(wechat, lat="", long="", address_id="ADDR-0042", description="路灯坏了")
    [case] = await wechat.cases()
    assert case.number == number and case.status == Status.DISPATCHED and case.place_text is None
    await wechat.deliver()
    assert number in wechat.pushes_to(STREET_LEADER)[-1]
    [view] = await requests(wechat, service_request_id=number)
    assert view["agency_responsible"] == "幸福街道" and view["address_id"] == "ADDR-0042"


async def test_urgent_words_make_an_urgent_case(wechat: WeChat) -> None:
    await file_request(wechat, service_code="utilities", description="3号楼楼道里有煤气味，很浓")
    [case] = await wechat.cases()
    assert case.urgent and case.category == "供水供电供气"
    [view] = await requests(wechat)
    assert view["service_notice"].endswith("紧急情况请同时拨打 110/119/120。")


@pytest.mark.parametrize("fmt", ["xml", "json"])
async def test_a_missing_or_wrong_api_key_is_a_403_in_the_spec_format(wechat: WeChat, fmt: str) -> None:
    for key in ({}, {"api_key": "wrong"}, {"api_key": ""}):
        status, body = await post(wechat, fmt, service_code="roads", address_string="幸福里", **key)
        assert status == 403 and spec_error(body, fmt) == (403, "api_key 缺失或无效，不能提交。")
    assert await wechat.cases() == []


@pytest.mark.parametrize("open311_keys", [""])
async def test_without_configured_keys_nobody_may_post(wechat: WeChat) -> None:
    status, body = await post(wechat, api_key="", service_code="roads", address_string="幸福里")
    assert status == 403 and spec_error(body) == (403, "本系统未开放通过接口提交（没有配置 api_key）。")
    status, _, _ = await get(wechat, "/services.xml")
    assert status == 200


@pytest.mark.parametrize(
    ("form", "status", "description"),
    [
        ({"address_string": "幸福里"}, 400, "缺少 service_code。"),
        ({"service_code": " ", "address_string": "幸福里"}, 400, "缺少 service_code。"),
        (
            {"service_code": "roads", "description": "路灯坏了"},
            400,
            "缺少位置：请提供 lat 和 long，或 address_string，或 address_id。",
        ),
        ({"service_code": "roads", "lat": "39.9"}, 400, "lat 和 long 须同时提供，且为有效的 WGS84 经纬度。"),
        (
            {"service_code": "roads", "lat": "north", "long": "116.4"},
            400,
            "lat 和 long 须同时提供，且为有效的 WGS84 经纬度。",
        ),
        (
            {"service_code": "roads", "lat": "139.9", "long": "116.4"},
            400,
            "lat 和 long 须同时提供，且为有效的 WGS84 经纬度。",
        ),
        (
            {"service_code": "roads", "address_string": "幸福里", "description": "灯" * 4001},
            400,
            "description 过长（最多 4000 字）。",
        ),
        ({"service_code": "potholes", "address_string": "幸福里"}, 404, "没有这个 service_code：potholes"),
    ],
)
async def test_a_bad_post_says_what_is_wrong(
    wechat: WeChat, form: dict[str, str], status: int, description: str
) -> None:
    got, body = await post(wechat, "json", api_key=KEY, **form)
    assert got == status and spec_error(body, "json") == (status, description)
    assert await wechat.cases() == []


# --- GET requests ---------------------------------------------------------------------------------


async def test_requests_in_xml_have_the_spec_elements_and_w3c_datetimes(wechat: WeChat) -> None:
    number = await file_request(wechat)
    status, content_type, body = await get(wechat, "/requests.xml")
    assert status == 200 and content_type == "text/xml; charset=utf-8"
    [view] = xml_items(body, "service_requests", "request")
    assert list(view) == REQUEST_FIELDS
    assert view["service_request_id"] == number and view["status"] == "open"
    assert view["service_code"] == "roads" and view["service_name"] == "道路设施"
    assert view["agency_responsible"] == "和平里第一网格"
    assert view["status_notes"] == "已派遣：派给和平里第一网格 张伟"
    assert view["requested_datetime"] == view["updated_datetime"] == "2026-11-22T10:00:00+08:00"
    assert view["expected_datetime"] == "2026-11-29T10:00:00+08:00"
    for name in ("requested_datetime", "updated_datetime", "expected_datetime"):
        value = view[name]
        assert value is not None and W3C.match(value)
        assert datetime.fromisoformat(value).utcoffset() == timedelta(hours=8)
    [case] = await wechat.cases()
    assert case.due_at is not None and datetime.fromisoformat(view["expected_datetime"] or "") == case.due_at
    # Published in WGS84 to about 100 m: where the requester stood, not their door.
    assert (view["lat"], view["long"]) == (str(round(HP01_GPS[0], 3)), str(round(HP01_GPS[1], 3)))
    assert view["zipcode"] is None and view["media_url"] is None

    [one] = xml_items((await get(wechat, f"/requests/{number}.xml"))[2], "service_requests", "request")
    assert one == view


async def test_wechat_reports_are_listed_without_openids_or_phone_numbers(wechat: WeChat) -> None:
    await wechat.location(RESIDENT, *INSIDE_HP01, label="幸福里小区")
    await wechat.text(RESIDENT, "3号楼东侧路灯坏了，我的电话13912345678")
    status, _, body = await get(wechat, "/requests.xml")
    assert status == 200
    [view] = xml_items(body, "service_requests", "request")
    assert view["description"] == "3号楼东侧路灯坏了，我的电话139****5678"
    assert RESIDENT not in body and "13912345678" not in body
    assert view["lat"] == str(round(HP01_GPS[0], 3))


async def test_requests_filtered_by_status_service_and_ids(wechat: WeChat) -> None:
    lamp = await file_request(wechat)
    noise = await file_request(wechat, service_code="noise", description="3号楼装修噪音")
    await wechat.text(RESIDENT, "幸福里小区5号楼门口垃圾堆了三天没人清")
    litter = (await wechat.cases())[-1].number

    assert {v["service_request_id"] for v in await requests(wechat)} == {lamp, noise, litter}
    assert [v["service_request_id"] for v in await requests(wechat)] == [litter, noise, lamp]  # newest first
    assert [v["service_request_id"] for v in await requests(wechat, service_code="noise")] == [noise]
    picked = await requests(wechat, service_code="noise,environment")
    assert {v["service_request_id"] for v in picked} == {noise, litter}
    assert await requests(wechat, service_code="potholes") == []
    assert len(await requests(wechat, status="open")) == 3
    assert await requests(wechat, status="closed") == []
    assert len(await requests(wechat, status="open,closed")) == 3
    # service_request_id overrides every other filter.
    ids = await requests(wechat, service_request_id=f"{lamp}, {litter}", status="closed", service_code="noise")
    assert {v["service_request_id"] for v in ids} == {lamp, litter}
    assert await requests(wechat, service_request_id="G19990101-0001") == []


async def test_requests_default_to_the_last_90_days(wechat: WeChat) -> None:
    old = await file_request(wechat)
    wechat.clock.advance(days=60)
    recent = await file_request(wechat, service_code="noise", description="装修噪音")
    assert [v["service_request_id"] for v in await requests(wechat)] == [recent, old]
    wechat.clock.advance(days=31)  # `old` is 91 days old now
    assert [v["service_request_id"] for v in await requests(wechat)] == [recent]

    reported = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)
    around = {"start_date": "2026-11-22T09:00:00+08:00", "end_date": "2026-11-22T03:00:00Z"}
    assert [v["service_request_id"] for v in await requests(wechat, **around)] == [old]
    start_only = await requests(wechat, start_date=(reported - timedelta(days=1)).isoformat())
    assert [v["service_request_id"] for v in start_only] == [recent, old]  # 90 days from the start
    end_only = await requests(wechat, end_date="2026-11-23T00:00:00Z")
    assert [v["service_request_id"] for v in end_only] == [old]  # the 90 days up to the end
    # The id list is not held to the window.
    assert [v["service_request_id"] for v in await requests(wechat, service_request_id=old)] == [old]


@pytest.mark.parametrize(
    ("params", "description"),
    [
        ({"start_date": "2026-11-01"}, "start_date 须为带时区的 W3C 日期时间，如 2010-01-01T00:00:00Z。"),
        ({"end_date": "2026-11-01T00:00:00"}, "end_date 须为带时区的 W3C 日期时间，如 2010-01-01T00:00:00Z。"),
        ({"start_date": "yesterday"}, "start_date 须为带时区的 W3C 日期时间，如 2010-01-01T00:00:00Z。"),
        (
            {"start_date": "2026-01-01T00:00:00Z", "end_date": "2026-11-01T00:00:00Z"},
            "start_date 须早于 end_date，且时间范围不能超过 90 天。",
        ),
        (
            {"start_date": "2026-11-02T00:00:00Z", "end_date": "2026-11-01T00:00:00Z"},
            "start_date 须早于 end_date，且时间范围不能超过 90 天。",
        ),
        ({"status": "pending"}, "status 只能是 open 或 closed：pending"),
    ],
)
async def test_bad_filters_are_a_400(wechat: WeChat, params: dict[str, str], description: str) -> None:
    for fmt in ("xml", "json"):
        status, _, body = await get(wechat, f"/requests.{fmt}", **params)
        assert status == 400 and spec_error(body, fmt) == (400, description)


async def test_a_request_closes_when_the_leader_resolves_it_in_chat(wechat: WeChat) -> None:
    number = await file_request(wechat)
    await wechat.deliver()
    assert (await wechat.text(LEADER_HP01, "接单 #1") or "").startswith(f"已接单 {number}")
    wechat.clock.advance(hours=3)
    [view] = await requests(wechat, service_request_id=number)
    assert view["status"] == "open" and view["status_notes"] == "已接单：派给和平里第一网格 张伟"

    done = await wechat.text(LEADER_HP01, f"办结 {number} 已更换灯泡，恢复照明")
    assert done is not None and done.startswith(f"已办结 {number}")
    [case] = await wechat.cases()
    assert case.status == Status.CLOSED and case.next_ping_at is None  # nobody to ask for a rating
    [view] = await requests(wechat, service_request_id=number)
    assert view["status"] == "closed" and view["status_notes"] == "已结案：已更换灯泡，恢复照明"
    assert view["updated_datetime"] == "2026-11-22T13:00:00+08:00" and view["service_notice"] is None
    assert [v["service_request_id"] for v in await requests(wechat, status="closed")] == [number]
    assert await requests(wechat, status="open") == []


@pytest.mark.parametrize("open311_public_reads", [False])
async def test_reads_can_be_kept_to_key_holders(wechat: WeChat) -> None:
    number = await file_request(wechat)
    for path in ("/requests.json", f"/requests/{number}.json"):
        status, _, body = await get(wechat, path)
        assert status == 403 and spec_error(body, "json") == (403, "查询服务请求需要有效的 api_key。")
        status, _, body = await get(wechat, path, api_key=KEY)
        assert status == 200 and number in body
    assert (await get(wechat, "/services.json"))[0] == 200


# --- datums ---------------------------------------------------------------------------------------


def test_gps_and_chinese_map_coordinates_convert_both_ways() -> None:
    lat, lon = wgs84_to_gcj02(39.9, 116.4)  # Beijing: GCJ-02 sits ~150 m north, ~530 m east
    assert 0.0012 < lat - 39.9 < 0.0016 and 0.0060 < lon - 116.4 < 0.0064
    back = gcj02_to_wgs84(lat, lon)
    assert abs(back[0] - 39.9) < 1e-7 and abs(back[1] - 116.4) < 1e-7
    assert wgs84_to_gcj02(51.5, -0.12) == (51.5, -0.12)  # outside China the datums agree


# --- discovery ------------------------------------------------------------------------------------


async def test_discovery_names_the_v2_endpoint_in_both_formats(wechat: WeChat) -> None:
    status, ctype, body = await get_path(wechat, "/open311/discovery.xml")
    assert status == 200 and ctype.startswith("text/xml")
    tree = ET.fromstring(body)
    assert tree.tag == "discovery" and [c.tag for c in tree] == ["changeset", "contact", "key_service", "endpoints"]
    assert W3C.match(tree.findtext("changeset") or "")
    [endpoint] = tree.findall("endpoints/endpoint")
    assert endpoint.findtext("specification") == "http://wiki.open311.org/GeoReport_v2"
    assert endpoint.findtext("url") == str(wechat.client.make_url(V2))
    assert endpoint.findtext("type") == "production" and W3C.match(endpoint.findtext("changeset") or "")
    assert [f.text for f in endpoint.findall("formats/format")] == ["text/xml", "application/json"]
    status, ctype, body = await get_path(wechat, "/open311/discovery.json")
    assert status == 200 and ctype.startswith("application/json")
    data = json.loads(body)
    assert set(data) == {"changeset", "contact", "key_service", "endpoints"}
    assert data["endpoints"] == [
        {
            "specification": "http://wiki.open311.org/GeoReport_v2",
            "url": str(wechat.client.make_url(V2)),
            "changeset": data["changeset"],
            "type": "production",
            "formats": ["text/xml", "application/json"],
        }
    ]
    # The endpoint it names answers.
    assert (await get(wechat, "/services.json"))[0] == 200
    assert (await get_path(wechat, "/open311/discovery.yaml"))[0] == 404


async def get_path(wechat: WeChat, path: str) -> tuple[int, str, str]:
    resp = await wechat.client.get(path)
    return resp.status, resp.headers["Content-Type"], await resp.text()


# --- retried POSTs ----------------------------------------------------------------------------------


async def post_with_key(wechat: WeChat, key: str, **form: Any) -> tuple[int, str]:
    fields = {"api_key": KEY, "service_code": "roads", "lat": HP01_GPS[0], "long": HP01_GPS[1]}
    fields |= {"description": "3号楼东侧路灯坏了"} | form
    resp = await wechat.client.post(f"{V2}/requests.json", data=fields, headers={"Idempotency-Key": key})
    return resp.status, await resp.text()


async def test_a_retry_with_the_same_idempotency_key_files_one_case(wechat: WeChat) -> None:
    status, first = await post_with_key(wechat, '"retry-0001"')
    assert status == 200
    wechat.clock.advance(hours=2)  # a key holds beyond the no-key window
    status, again = await post_with_key(wechat, "retry-0001")
    assert status == 200 and json.loads(again)[0]["service_request_id"] == json.loads(first)[0]["service_request_id"]
    assert len(await wechat.cases()) == 1
    await wechat.deliver()
    assert len([p for p in wechat.pushes_to(LEADER_HP01) if "路灯" in p]) == 1  # one card, not two
    # Another key is another request, even with the same content.
    status, other = await post_with_key(wechat, "retry-0002")
    assert json.loads(other)[0]["service_request_id"] != json.loads(first)[0]["service_request_id"]
    # The key reused for something else: refused (the draft's 422), nothing filed.
    status, body = await post_with_key(wechat, "retry-0001", description="5号楼路灯也坏了")
    assert status == 422 and spec_error(body, "json") == (422, m.OPEN311_ERR_KEY_REUSED)
    status, body = await post_with_key(wechat, "x" * 300)
    assert status == 400
    assert len(await wechat.cases()) == 2


async def test_an_identical_post_without_a_key_within_ten_minutes_is_the_same_request(wechat: WeChat) -> None:
    first = await file_request(wechat, email="a@example.com")
    wechat.clock.advance(minutes=5)
    assert await file_request(wechat, email="a@example.com") == first
    assert len(await wechat.cases()) == 1
    # Anything different is a new request: another description, place, requester or photo.
    assert await file_request(wechat, email="b@example.com") != first
    assert await file_request(wechat, email="a@example.com", media_url="https://x.example/1.jpg") != first
    assert await file_request(wechat, email="a@example.com", description="路灯又坏了") != first
    assert len(await wechat.cases()) == 4
    wechat.clock.advance(minutes=11)  # past the window: a new report of the same thing
    assert await file_request(wechat, email="a@example.com") != first
    assert len(await wechat.cases()) == 5


@pytest.mark.parametrize("field", ["description", "first_name", "email", "address_string", "device_id", "service_code"])
async def test_a_nul_in_a_field_is_a_400_not_a_storage_error(wechat: WeChat, field: str) -> None:
    """PostgreSQL's text cannot hold NUL: once a 503 (retried by the client forever), now a 400."""
    fields = {
        "api_key": KEY,
        "service_code": "roads",
        "lat": HP01_GPS[0],
        "long": HP01_GPS[1],
        "description": "路灯坏了",
    }
    status, body = await post(wechat, "json", **(fields | {field: "x\x00y"}))
    assert status == 400 and field in body
    assert await wechat.cases() == []


@pytest.mark.parametrize("params", [{"service_request_id": "G1\x00"}, {"service_code": "\x00"}, {"status": "\x00"}])
async def test_a_nul_in_a_query_is_a_400_and_in_an_id_a_404(wechat: WeChat, params: dict[str, str]) -> None:
    resp = await wechat.client.get(f"{V2}/requests.json", params=params)
    assert resp.status == 400
    assert (await wechat.client.get(f"{V2}/requests/G20261122-0001%00.json")).status == 404
