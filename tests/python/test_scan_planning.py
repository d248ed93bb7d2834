"""Server-side scan planning through the edge, against PyIceberg's own planning.

A table written by PyIceberg (partitioned, several appends, a copy-on-write
delete, a schema change) must plan, on the server, to exactly the files
PyIceberg plans for itself from the same manifests, for every filter; scans
read the same rows either way. Paging, time travel and incremental ranges
are checked over HTTP.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import pyarrow as pa
import pytest
import requests
from pyiceberg.catalog import Catalog, load_catalog
from pyiceberg.catalog.rest import RestCatalog
from pyiceberg.conversions import from_bytes
from pyiceberg.expressions import (
    AlwaysFalse,
    AlwaysTrue,
    And,
    BooleanExpression,
    EqualTo,
    GreaterThan,
    GreaterThanOrEqual,
    In,
    IsNull,
    LessThan,
    Not,
    NotEqualTo,
    NotNull,
    Or,
    StartsWith,
)
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.transforms import DayTransform, IdentityTransform
from pyiceberg.types import DoubleType, LongType, NestedField, StringType, TimestampType

from conftest import FloeServer

SCHEMA = Schema(
    NestedField(1, "id", LongType(), required=True),
    NestedField(2, "ts", TimestampType(), required=False),
    NestedField(3, "category", StringType(), required=False),
    NestedField(4, "value", DoubleType(), required=False),
)
SPEC = PartitionSpec(
    PartitionField(source_id=2, field_id=1000, transform=DayTransform(), name="ts_day"),
    PartitionField(source_id=3, field_id=1001, transform=IdentityTransform(), name="category"),
)
ARROW = pa.schema([
    pa.field("id", pa.int64(), nullable=False),
    pa.field("ts", pa.timestamp("us")),
    pa.field("category", pa.string()),
    pa.field("value", pa.float64()),
])
BASE = datetime(2024, 3, 1)

FILTERS: list[BooleanExpression] = [
    AlwaysTrue(),
    AlwaysFalse(),
    EqualTo("category", "a"),
    NotEqualTo("category", "b"),
    In("category", {"a", "c"}),
    GreaterThanOrEqual("ts", "2024-03-03T00:00:00"),
    And(EqualTo("category", "b"), LessThan("ts", "2024-03-02T12:00:00")),
    Or(GreaterThan("id", 2500), EqualTo("category", "d")),
    LessThan("id", 100),
    GreaterThan("value", 1000.0),
    IsNull("value"),
    NotNull("value"),
    Not(EqualTo("category", "a")),
    StartsWith("category", "c"),
    EqualTo("note", "n-5"),
]


def batch(start: int, count: int, day: int) -> pa.Table:
    ids = list(range(start, start + count))
    return pa.Table.from_pydict({
        "id": ids,
        "ts": [BASE + timedelta(days=day, seconds=7 * i) for i in range(count)],
        "category": ["abcd"[i % 4] for i in ids],
        "value": [None if i % 97 == 0 else i * 0.5 for i in ids],
    }, schema=ARROW)


@pytest.fixture(scope="module")
def server_catalog(floe_server: FloeServer) -> Callable[[], Catalog]:
    def make() -> Catalog:
        return load_catalog("planning", **{"type": "rest", "uri": floe_server.url, "warehouse": "default",
                                           "scan-planning-mode": "server"})
    return make


@pytest.fixture(scope="module")
def history(catalog: Catalog) -> dict:
    ns = "planning_history"
    catalog.create_namespace(ns)
    table = catalog.create_table(f"{ns}.events", SCHEMA, partition_spec=SPEC)
    snapshots = []
    for day in range(4):
        table.append(batch(day * 1000, 1000, day))
        snapshots.append(table.current_snapshot().snapshot_id)
    table.delete(EqualTo("category", "d"))  # copy-on-write: files replaced
    snapshots.append(table.current_snapshot().snapshot_id)
    with table.update_schema() as update:
        update.add_column("note", StringType())
    table = catalog.load_table(f"{ns}.events")
    table.append(pa.Table.from_pydict({
        "id": [5000, 5001], "ts": [BASE, BASE], "category": ["a", "e"], "value": [1.0, 2.0],
        "note": ["n-5", "n-6"]}, schema=ARROW.append(pa.field("note", pa.string()))))
    snapshots.append(table.current_snapshot().snapshot_id)
    return {"ident": f"{ns}.events", "snapshots": snapshots}


def files(tasks) -> list[str]:
    return sorted(t.file.file_path for t in tasks)


def test_the_server_is_asked(server_catalog: Callable[[], Catalog], history: dict) -> None:
    catalog = server_catalog()
    assert isinstance(catalog, RestCatalog) and catalog.supports_server_side_planning()


@pytest.mark.parametrize("row_filter", FILTERS, ids=repr)
def test_server_plans_what_pyiceberg_plans(catalog: Catalog, server_catalog: Callable[[], Catalog],
                                           history: dict, row_filter: BooleanExpression) -> None:
    local = catalog.load_table(history["ident"])
    remote = server_catalog().load_table(history["ident"])
    assert files(remote.scan(row_filter=row_filter).plan_files()) == files(local.scan(row_filter=row_filter).plan_files())
    expected = local.scan(row_filter=row_filter).to_arrow().sort_by("id")
    assert remote.scan(row_filter=row_filter).to_arrow().sort_by("id").equals(expected)
    assert remote.scan(row_filter=row_filter).count() == local.scan(row_filter=row_filter).count()


def test_time_travel_plans_the_snapshot(catalog: Catalog, server_catalog: Callable[[], Catalog], history: dict) -> None:
    local = catalog.load_table(history["ident"])
    remote = server_catalog().load_table(history["ident"])
    for snapshot_id in history["snapshots"]:
        assert files(remote.scan(snapshot_id=snapshot_id).plan_files()) == files(
            local.scan(snapshot_id=snapshot_id).plan_files())


TABLE_PATH = "/v1/default/namespaces/planning_history/tables/events"


def _plan(server: FloeServer, body: dict) -> requests.Response:
    return requests.post(f"{server.url}{TABLE_PATH}/plan", json=body, timeout=60)


def _all_tasks(server: FloeServer, body: dict) -> list[dict]:
    """Every file scan task of a completed plan: the first page and its plan tasks."""
    assert body["status"] == "completed", body
    tasks = list(body["file-scan-tasks"])
    for task in body["plan-tasks"]:
        page = requests.post(f"{server.url}{TABLE_PATH}/tasks", json={"plan-task": task}, timeout=60)
        assert page.status_code == 200, page.text
        tasks.extend(page.json()["file-scan-tasks"])
    return tasks


def test_incremental_ranges_return_the_appended_files(catalog: Catalog, floe_server: FloeServer, history: dict) -> None:
    table = catalog.load_table(history["ident"])
    first, second, third = history["snapshots"][:3]
    r = _plan(floe_server, {"start-snapshot-id": first, "end-snapshot-id": third})
    assert r.status_code == 200, r.text
    planned = sorted(t["data-file"]["file-path"] for t in _all_tasks(floe_server, r.json()))
    added = sorted(
        e.data_file.file_path for s in (second, third)
        for m in table.snapshot_by_id(s).manifests(table.io) if m.added_snapshot_id == s
        for e in m.fetch_manifest_entry(table.io) if e.status.name == "ADDED"
    )
    assert planned == added and planned
    filtered = _plan(floe_server, {"start-snapshot-id": first, "end-snapshot-id": third,
                                   "filter": {"type": "eq", "term": "category", "value": "a"}}).json()
    assert {t["data-file"]["partition"][1] for t in _all_tasks(floe_server, filtered)} == {"a"}
    # Bad ranges are 400.
    assert _plan(floe_server, {"start-snapshot-id": third, "end-snapshot-id": first}).status_code == 400
    assert _plan(floe_server, {"start-snapshot-id": first}).status_code == 400
    assert _plan(floe_server, {"snapshot-id": first, "end-snapshot-id": third}).status_code == 400
    assert _plan(floe_server, {"snapshot-id": 42}).status_code == 400


def test_data_files_carry_what_the_manifests_say(catalog: Catalog, floe_server: FloeServer, history: dict) -> None:
    table = catalog.load_table(history["ident"])
    r = _plan(floe_server, {"stats-fields": ["id"], "filter": {"type": "eq", "term": "category", "value": "b"}})
    body = r.json()
    assert body["status"] == "completed" and body["plan-id"]
    local = {t.file.file_path: t.file for t in table.scan(row_filter=EqualTo("category", "b")).plan_files()}
    tasks = _all_tasks(floe_server, body)
    assert sorted(t["data-file"]["file-path"] for t in tasks) == sorted(local)
    for task in tasks:
        data = task["data-file"]
        mine = local[data["file-path"]]
        assert data["content"] == "data" and data["file-format"] == "parquet"
        assert data["record-count"] == mine.record_count
        assert data["file-size-in-bytes"] == mine.file_size_in_bytes
        assert data["spec-id"] == mine.spec_id
        assert data["partition"][1] == "b"
        assert data["partition"][0].startswith("2024-03-0"), data["partition"]
        assert data["lower-bounds"]["keys"] == [1] and data["value-counts"]["keys"] == [1]
        assert data["lower-bounds"]["values"] == [from_bytes(LongType(), mine.lower_bounds[1])]
        assert data["upper-bounds"]["values"] == [from_bytes(LongType(), mine.upper_bounds[1])]
        assert data["value-counts"]["values"] == [mine.value_counts[1]]
        assert task["residual-filter"] == {"type": "eq", "term": "category", "value": "b"}


def test_pages_and_cancellation(catalog: Catalog, floe_server: FloeServer, history: dict) -> None:
    # The suite's server pages plans by 7 tasks (FLOE_CATALOG__PLAN_PAGE_SIZE).
    base = f"{floe_server.url}/v1/default/namespaces/planning_history/tables/events"
    body = _plan(floe_server, {}).json()
    plan_id = body["plan-id"]
    assert len(body["file-scan-tasks"]) == 7 and body["plan-tasks"], "more than one page"
    total = len(body["file-scan-tasks"])
    for task in body["plan-tasks"]:
        page = requests.post(f"{base}/tasks", json={"plan-task": task}, timeout=30)
        assert page.status_code == 200
        total += len(page.json()["file-scan-tasks"])
    assert total == len(list(catalog.load_table(history["ident"]).scan().plan_files()))
    fetched = requests.get(f"{base}/plan/{plan_id}", timeout=30).json()
    assert fetched["status"] == "completed"
    assert len(fetched["file-scan-tasks"]) + sum(
        len(requests.post(f"{base}/tasks", json={"plan-task": t}, timeout=30).json()["file-scan-tasks"])
        for t in fetched["plan-tasks"]) == total
    assert requests.delete(f"{base}/plan/{plan_id}", timeout=30).status_code == 204
    assert requests.get(f"{base}/plan/{plan_id}", timeout=30).json()["status"] == "cancelled"
    for task in body["plan-tasks"]:
        assert requests.post(f"{base}/tasks", json={"plan-task": task}, timeout=30).status_code == 404
    missing = requests.get(f"{base}/plan/nope", timeout=30)
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "NoSuchPlanIdException"
    bad = requests.post(f"{base}/tasks", json={"plan-task": "nope.0"}, timeout=30)
    assert bad.status_code == 404 and bad.json()["error"]["type"] == "NoSuchPlanTaskException"
