"""End-to-end tests of the Floe REST catalog driven by PyIceberg and pyarrow."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pyarrow as pa
import pytest
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import (
    CommitFailedException,
    NamespaceAlreadyExistsError,
    NamespaceNotEmptyError,
    NoSuchNamespaceError,
    NoSuchTableError,
    TableAlreadyExistsError,
)
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.transforms import DayTransform, IdentityTransform
from pyiceberg.types import DoubleType, LongType, NestedField, StringType, TimestampType

ROWS = 10_000
CATEGORIES = ("a", "b", "c", "d")
BASE_TS = datetime(2024, 3, 1)
EPOCH = date(1970, 1, 1)
PURGE_TIMEOUT_S = 30.0
# PyIceberg retries conflicting commits by itself; the tests turn that off so
# every conflict the server reports reaches them.
TABLE_PROPERTIES = {"commit.retry.num-retries": "0"}

SCHEMA = Schema(
    NestedField(1, "id", LongType(), required=True),
    NestedField(2, "ts", TimestampType(), required=False),
    NestedField(3, "category", StringType(), required=False),
    NestedField(4, "value", DoubleType(), required=False),
)
PARTITION_SPEC = PartitionSpec(
    PartitionField(source_id=2, field_id=1000, transform=DayTransform(), name="ts_day"),
    PartitionField(source_id=3, field_id=1001, transform=IdentityTransform(), name="category"),
)
ARROW_FIELDS = [
    pa.field("id", pa.int64(), nullable=False),
    pa.field("ts", pa.timestamp("us"), nullable=True),
    pa.field("category", pa.string(), nullable=True),
    pa.field("value", pa.float64(), nullable=True),
]
NOTE_FIELD = pa.field("note", pa.string(), nullable=True)


def make_rows(start: int, count: int, with_note: bool = False) -> dict[str, list[Any]]:
    """Deterministic rows with ids ``start .. start + count - 1``."""
    ids = list(range(start, start + count))
    rows: dict[str, list[Any]] = {
        "id": ids,
        "ts": [BASE_TS + timedelta(seconds=37 * i) for i in ids],
        "category": [CATEGORIES[i % len(CATEGORIES)] for i in ids],
        "value": [None if i % 101 == 0 else i * 0.25 for i in ids],
    }
    if with_note:
        rows["note"] = [f"note-{i}" for i in ids]
    return rows


def to_arrow(rows: dict[str, list[Any]]) -> pa.Table:
    """Build a pyarrow table matching the test schema (plus ``note`` if present)."""
    fields = ARROW_FIELDS + ([NOTE_FIELD] if "note" in rows else [])
    return pa.Table.from_pydict(rows, schema=pa.schema(fields))


def concat_rows(*parts: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """Concatenate row dicts column by column, filling absent columns with None."""
    columns = list(dict.fromkeys(name for part in parts for name in part))
    out: dict[str, list[Any]] = {name: [] for name in columns}
    for part in parts:
        length = len(part["id"])
        for name in columns:
            out[name].extend(part.get(name, [None] * length))
    return out


def read_rows(table: Table, **scan_args: Any) -> dict[str, list[Any]]:
    """Scan ``table`` and return its rows sorted by id, column by column."""
    return table.scan(**scan_args).to_arrow().sort_by("id").to_pydict()


def assert_rows_equal(actual: dict[str, list[Any]], expected: dict[str, list[Any]]) -> None:
    """Compare row dicts, reporting the first differing cell instead of a huge diff."""
    assert sorted(actual) == sorted(expected), "column sets differ"
    assert len(actual["id"]) == len(expected["id"]), "row counts differ"
    for name, values in expected.items():
        for index, (got, want) in enumerate(zip(actual[name], values, strict=True)):
            assert got == want, f"column {name!r}, row {index}: got {got!r}, expected {want!r}"


def local_path(location: str) -> Path:
    """Filesystem path of a ``file:`` location."""
    parts = urlsplit(location)
    assert parts.scheme == "file", f"expected a file: location, got {location!r}"
    return Path(unquote(parts.path))


def files_under(root: Path) -> set[Path]:
    """All regular files below ``root``."""
    return {path for path in root.rglob("*") if path.is_file()} if root.exists() else set()


def create_events(catalog: Catalog, identifier: str, partitioned: bool = True) -> Table:
    """Create the test table, partitioned by day(ts) and category unless told otherwise."""
    spec = PARTITION_SPEC if partitioned else PartitionSpec()
    table = catalog.create_table(identifier, schema=SCHEMA, partition_spec=spec, properties=TABLE_PROPERTIES)
    assert TABLE_PROPERTIES.items() <= table.properties.items()
    return table


# --- namespaces ------------------------------------------------------------


def test_namespace_lifecycle(catalog: Catalog, namespace: str) -> None:
    """Namespaces can be created with properties, listed, loaded and dropped."""
    name = f"{namespace}_props"
    catalog.create_namespace(name, properties={"owner": "floe-tests", "purpose": "e2e"})

    assert (name,) in catalog.list_namespaces()
    assert (namespace,) in catalog.list_namespaces()
    properties = catalog.load_namespace_properties(name)
    assert properties.get("owner") == "floe-tests"
    assert properties.get("purpose") == "e2e"
    assert catalog.namespace_exists(name)
    assert not catalog.namespace_exists(f"{namespace}_missing")

    catalog.drop_namespace(name)
    assert not catalog.namespace_exists(name)
    assert (name,) not in catalog.list_namespaces()


def test_namespace_errors(catalog: Catalog, namespace: str) -> None:
    """Duplicate, missing and non-empty namespaces are reported as such."""
    with pytest.raises(NamespaceAlreadyExistsError):
        catalog.create_namespace(namespace)
    with pytest.raises(NoSuchNamespaceError):
        catalog.load_namespace_properties(f"{namespace}_missing")
    with pytest.raises(NoSuchNamespaceError):
        catalog.drop_namespace(f"{namespace}_missing")

    create_events(catalog, f"{namespace}.events", partitioned=False)
    with pytest.raises(NamespaceNotEmptyError):
        catalog.drop_namespace(namespace)
    assert catalog.namespace_exists(namespace)
    assert catalog.table_exists(f"{namespace}.events")


def test_table_errors(catalog: Catalog, namespace: str) -> None:
    """Missing and duplicate tables are reported as such."""
    with pytest.raises(NoSuchTableError):
        catalog.load_table(f"{namespace}.missing")
    assert not catalog.table_exists(f"{namespace}.missing")

    create_events(catalog, f"{namespace}.events", partitioned=False)
    with pytest.raises(TableAlreadyExistsError):
        create_events(catalog, f"{namespace}.events", partitioned=False)
    assert catalog.list_tables(namespace) == [(namespace, "events")]


# --- data round trips ------------------------------------------------------


def test_partitioned_append_and_scan(
    catalog: Catalog, new_catalog: Callable[[], Catalog], namespace: str, warehouse_path: Path
) -> None:
    """10,000 rows appended to a partitioned table read back exactly."""
    identifier = f"{namespace}.events"
    table = create_events(catalog, identifier)
    assert local_path(table.location()).is_relative_to(warehouse_path)

    rows = make_rows(0, ROWS)
    table.append(to_arrow(rows))

    # Read through a separate client so nothing comes from the writer's cache.
    loaded = new_catalog().load_table(identifier)
    assert [field.name for field in loaded.spec().fields] == ["ts_day", "category"]
    assert isinstance(loaded.spec().fields[0].transform, DayTransform)
    assert isinstance(loaded.spec().fields[1].transform, IdentityTransform)
    assert len(loaded.snapshots()) == 1
    assert_rows_equal(read_rows(loaded), rows)

    expected_partitions = {
        ((ts.date() - EPOCH).days, category) for ts, category in zip(rows["ts"], rows["category"], strict=True)
    }
    planned = {(task.file.partition[0], task.file.partition[1]) for task in loaded.scan().plan_files()}
    assert planned == expected_partitions

    only_a = loaded.scan(row_filter="category == 'a'")
    assert only_a.to_arrow().num_rows == rows["category"].count("a")
    assert {task.file.partition[1] for task in only_a.plan_files()} == {"a"}

    cutoff = BASE_TS + timedelta(days=2)
    late = loaded.scan(row_filter=f"ts >= '{cutoff.isoformat()}'").to_arrow()
    assert late.num_rows == sum(ts >= cutoff for ts in rows["ts"])


def test_schema_evolution(catalog: Catalog, new_catalog: Callable[[], Catalog], namespace: str) -> None:
    """An added column is visible after reload, writable, and null for old rows."""
    identifier = f"{namespace}.events"
    table = create_events(catalog, identifier)
    first = make_rows(0, 1_000)
    table.append(to_arrow(first))
    first_snapshot = table.current_snapshot()
    assert first_snapshot is not None
    old_schema_id = table.schema().schema_id

    with table.update_schema() as update:
        update.add_column("note", StringType(), doc="added by the schema evolution test")

    reloaded = new_catalog().load_table(identifier)
    assert reloaded.schema().schema_id != old_schema_id
    note = reloaded.schema().find_field("note")
    assert isinstance(note.field_type, StringType)
    assert not note.required

    second = make_rows(1_000, 500, with_note=True)
    reloaded.append(to_arrow(second))

    final = new_catalog().load_table(identifier)
    assert_rows_equal(read_rows(final), concat_rows(first, second))
    # The snapshot written before the change still reads with the old rows.
    assert read_rows(final, snapshot_id=first_snapshot.snapshot_id)["id"] == first["id"]


# --- commits ---------------------------------------------------------------


def test_stale_commit_is_rejected(catalog: Catalog, new_catalog: Callable[[], Catalog], namespace: str) -> None:
    """A commit based on outdated metadata fails and changes nothing."""
    identifier = f"{namespace}.events"
    create_events(catalog, identifier)
    first, lost, second, lost_again = (make_rows(i * 100, 100) for i in range(4))

    # Both clients start from the empty table (no snapshot yet).
    t1 = new_catalog().load_table(identifier)
    t2 = new_catalog().load_table(identifier)
    t1.append(to_arrow(first))
    with pytest.raises(CommitFailedException):
        t2.append(to_arrow(lost))

    # Both clients start from the same snapshot.
    t3 = new_catalog().load_table(identifier)
    t4 = new_catalog().load_table(identifier)
    t3.append(to_arrow(second))
    with pytest.raises(CommitFailedException):
        t4.append(to_arrow(lost_again))

    final = new_catalog().load_table(identifier)
    assert len(final.snapshots()) == 2
    assert_rows_equal(read_rows(final), concat_rows(first, second))


def test_concurrent_appends_lose_nothing(new_catalog: Callable[[], Catalog], namespace: str) -> None:
    """Appends racing from many clients, retried on conflict, are all kept exactly once."""
    workers, appends_each, rows_each, max_attempts = 8, 4, 50, 100
    identifier = f"{namespace}.concurrent"
    create_events(new_catalog(), identifier, partitioned=False)
    start_together = threading.Barrier(workers)

    def worker(index: int) -> tuple[list[int], int]:
        """Append this worker's batches, retrying on conflict; return acked ids and conflicts."""
        client = new_catalog()
        table = client.load_table(identifier)
        acknowledged: list[int] = []
        conflicts = 0
        start_together.wait(timeout=60)
        for batch in range(appends_each):
            rows = make_rows((index * appends_each + batch) * rows_each, rows_each)
            data = to_arrow(rows)
            for _ in range(max_attempts):
                try:
                    table.append(data)
                except CommitFailedException:
                    conflicts += 1
                    table = client.load_table(identifier)
                    continue
                acknowledged.extend(rows["id"])
                break
            else:
                raise AssertionError(f"worker {index} gave up after {max_attempts} conflicts")
        return acknowledged, conflicts

    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(worker, range(workers)))

    acknowledged = sorted(i for ids, _ in results for i in ids)
    assert len(acknowledged) == workers * appends_each * rows_each
    final = new_catalog().load_table(identifier)
    assert read_rows(final)["id"] == acknowledged
    assert len(final.snapshots()) == workers * appends_each
    print(f"conflicts retried: {sum(conflicts for _, conflicts in results)}")


# --- rename and drop -------------------------------------------------------


def test_rename_table(catalog: Catalog, new_catalog: Callable[[], Catalog], namespace: str) -> None:
    """A renamed table keeps its identity and data; the old name is gone."""
    old, new = f"{namespace}.events", f"{namespace}.events_renamed"
    table = create_events(catalog, old)
    rows = make_rows(0, 300)
    table.append(to_arrow(rows))
    table_uuid = table.metadata.table_uuid

    catalog.rename_table(old, new)
    client = new_catalog()
    with pytest.raises(NoSuchTableError):
        client.load_table(old)
    assert not client.table_exists(old)
    renamed = client.load_table(new)
    assert renamed.metadata.table_uuid == table_uuid
    assert_rows_equal(read_rows(renamed), rows)

    # Across namespaces, and still writable afterwards.
    other_namespace = f"{namespace}_other"
    catalog.create_namespace(other_namespace)
    moved = f"{other_namespace}.events"
    catalog.rename_table(new, moved)
    assert catalog.list_tables(namespace) == []
    assert catalog.list_tables(other_namespace) == [(other_namespace, "events")]
    more = make_rows(300, 200)
    catalog.load_table(moved).append(to_arrow(more))
    final = new_catalog().load_table(moved)
    assert final.metadata.table_uuid == table_uuid
    assert_rows_equal(read_rows(final), concat_rows(rows, more))


def test_purge_table_removes_files(catalog: Catalog, namespace: str, warehouse_path: Path) -> None:
    """Dropping with purge forgets the table and deletes its data and metadata files."""
    identifier = f"{namespace}.events"
    table = create_events(catalog, identifier)
    table.append(to_arrow(make_rows(0, 500)))
    table.append(to_arrow(make_rows(500, 500)))

    location = local_path(table.location())
    assert location.is_relative_to(warehouse_path)
    files = files_under(location)
    suffixes = {path.suffix for path in files}
    assert {".parquet", ".avro", ".json"} <= suffixes, f"unexpected table files: {sorted(files)}"
    referenced = {local_path(task.file.file_path) for task in table.scan().plan_files()}
    referenced.add(local_path(table.metadata_location))
    assert referenced <= files

    catalog.purge_table(identifier)
    with pytest.raises(NoSuchTableError):
        catalog.load_table(identifier)
    assert not catalog.table_exists(identifier)
    assert catalog.list_tables(namespace) == []

    leftover = wait_until_gone(files, PURGE_TIMEOUT_S)
    assert not leftover, f"purge left {len(leftover)} files behind, e.g. {sorted(leftover)[:3]}"
    assert not files_under(location)


def wait_until_gone(paths: Iterable[Path], timeout_s: float) -> set[Path]:
    """Poll until none of ``paths`` exists or ``timeout_s`` passes; return the survivors."""
    deadline = time.monotonic() + timeout_s
    remaining = {path for path in paths if path.exists()}
    while remaining and time.monotonic() < deadline:
        time.sleep(0.1)
        remaining = {path for path in remaining if path.exists()}
    return remaining
