"""The web console (`/ui/` on the edge) in a real browser: Debian's chromium,
driven by Playwright. A writer makes tables with PyIceberg; people sign in
to the console with their own credentials and see, change and are refused
what the REST API shows, changes and refuses them.

Screenshots of the main pages go to ``FLOE_ARTIFACTS`` (default
``target/artifacts/console``)."""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
import requests
from pyiceberg.catalog import Catalog
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.transforms import IdentityTransform
from pyiceberg.types import (
    ListType,
    LongType,
    MapType,
    NestedField,
    StringType,
    StructType,
)
from conftest import FloeServer
from test_auth import WAREHOUSE, SecureFloe, _catalog, secure  # noqa: F401  (fixture)

playwright = pytest.importorskip("playwright.sync_api")

ARTIFACTS = Path(os.environ.get("FLOE_ARTIFACTS", Path(__file__).resolve().parents[2] / "target" / "artifacts" / "console"))
# Playwright's own waits (for an element, a navigation): the page renders
# from local API calls, so this is generous.
WAIT_MS = 15_000
SCHEMA = Schema(
    NestedField(1, "id", LongType(), required=True),
    NestedField(2, "region", StringType(), required=True),
    NestedField(
        3,
        "customer",
        StructType(NestedField(4, "name", StringType(), required=False), NestedField(5, "email", StringType(), required=False)),
        required=False,
    ),
    NestedField(6, "tags", ListType(7, StringType(), element_required=False), required=False),
    NestedField(8, "attributes", MapType(9, StringType(), 10, StringType(), value_required=False), required=False),
    identifier_field_ids=[1],
)
ARROW = pa.schema(
    [
        pa.field("id", pa.int64(), nullable=False),
        pa.field("region", pa.string(), nullable=False),
        pa.field("customer", pa.struct([("name", pa.string()), ("email", pa.string())])),
        pa.field("tags", pa.list_(pa.string())),
        pa.field("attributes", pa.map_(pa.string(), pa.string())),
    ]
)


def _rows(first: int, count: int) -> pa.Table:
    ids = list(range(first, first + count))
    return pa.Table.from_pylist(
        [
            {"id": i, "region": "eu" if i % 2 else "us", "customer": {"name": f"c{i}", "email": None}, "tags": ["a"], "attributes": [("k", "v")]}
            for i in ids
        ],
        schema=ARROW,
    )


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("chromium is not installed (scripts/test installs Debian's chromium package)")
    with playwright.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def lakehouse(secure: SecureFloe) -> dict[str, object]:  # noqa: F811
    """Two namespaces written by the writer with PyIceberg: ``console_sales``
    (a partitioned table with nested types and two appends) and
    ``console_hr`` (one table)."""
    etl = _catalog(secure, "etl")
    etl.create_namespace("console_sales")
    etl.create_namespace("console_hr")
    spec = PartitionSpec(PartitionField(source_id=2, field_id=1000, transform=IdentityTransform(), name="region"))
    orders = etl.create_table("console_sales.orders", schema=SCHEMA, partition_spec=spec)
    orders.append(_rows(0, 10))
    orders.append(_rows(10, 5))
    etl.create_table("console_hr.people", schema=SCHEMA)
    return {"etl": etl}


def _page(browser: object) -> object:
    page = browser.new_page(viewport={"width": 1366, "height": 900})
    page.set_default_timeout(WAIT_MS)
    return page


def _shot(page: object, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _sign_in(page: object, secure: SecureFloe, client: str, secret: str | None = None) -> None:  # noqa: F811
    page.goto(f"{secure.server.url}/ui/")
    page.get_by_label("Client id").fill(client)
    page.get_by_label("Client secret").fill(secret or secure.secrets[client])
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text(f"Signed in: {client}").wait_for()


def _add_property(page: object, name: str, value: str) -> None:
    """Adds one property in the page's property editor and saves it."""
    properties = page.locator("section[aria-label='Properties']")
    properties.get_by_role("button", name="Add property").click()
    properties.get_by_label("Property name").last.fill(name)
    properties.get_by_label("Value of new property").fill(value)
    properties.get_by_role("button", name="Save properties").click()
    page.get_by_text("Properties saved.").wait_for()


def _rest_table(secure: SecureFloe, client: str, name: str) -> dict:  # noqa: F811
    token = _token(secure, client)
    namespace, table = name.split(".")
    answer = requests.get(
        f"{secure.server.url}/v1/{WAREHOUSE}/namespaces/{namespace}/tables/{table}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_browse_to_a_pyiceberg_table_and_edit_it(secure: SecureFloe, lakehouse: dict, browser: object) -> None:  # noqa: F811
    page = _page(browser)
    page.goto(f"{secure.server.url}/ui/")
    page.get_by_role("heading", name="Sign in to Floe").wait_for()
    assert page.locator("#auth-off").is_hidden()
    _shot(page, "sign-in")
    _sign_in(page, secure, "admin")

    page.get_by_role("link", name="console_sales").click()
    page.get_by_role("heading", name="console_sales").wait_for()
    _shot(page, "namespace")
    page.get_by_role("link", name="orders").click()
    page.get_by_role("heading", name="Snapshots").wait_for()

    # Snapshot ids exactly as the REST API gives them (64-bit: no rounding).
    rest = _rest_table(secure, "admin", "console_sales.orders")["metadata"]
    want = sorted(str(s["snapshot-id"]) for s in rest["snapshots"])
    shown = sorted(page.locator(".snapshot-id").all_inner_texts())
    assert shown == want, (shown, want)
    assert len(want) == 2
    current = page.locator('[data-snapshot-id] .tag', has_text="current").locator("xpath=..").locator(".snapshot-id").inner_text()
    assert current == str(rest["current-snapshot-id"])
    summary = page.locator(f'[data-snapshot-id="{rest["current-snapshot-id"]}"] .summary').inner_text()
    assert "5 records added" in summary and "15 records in total" in summary, summary

    # Nested types as a tree, the identifier field marked, the partition spec.
    for name in ("customer", "email", "element", "key", "value"):
        assert page.locator(".tree code", has_text=re.compile(f"^{name}$")).count() >= 1, name
    identifier = page.locator(".tree li", has=page.locator("code", has_text=re.compile("^id$"))).first
    assert "identifier" in identifier.inner_text()
    assert page.locator("section[aria-label='Partition specs'] td", has_text="identity").count() == 1
    facts = page.locator("section[aria-label='Overview'] dd")
    assert facts.nth(0).inner_text() == rest["location"]
    assert facts.nth(1).inner_text() == _rest_table(secure, "admin", "console_sales.orders")["metadata-location"]
    _shot(page, "table")

    # Edit a property in the browser, read it back with PyIceberg.
    _add_property(page, "owner", "console")
    etl: Catalog = lakehouse["etl"]
    assert etl.load_table("console_sales.orders").properties.get("owner") == "console"
    page.close()


def _token(secure: SecureFloe, client: str) -> str:  # noqa: F811
    answer = requests.post(
        f"{secure.server.url}/v1/oauth/tokens",
        data={"grant_type": "client_credentials", "client_id": client, "client_secret": secure.secrets[client], "scope": "catalog"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["access_token"]


def test_create_rename_and_drop_through_the_console(secure: SecureFloe, lakehouse: dict, browser: object) -> None:  # noqa: F811
    etl: Catalog = lakehouse["etl"]
    page = _page(browser)
    page.on("dialog", lambda dialog: dialog.accept())
    _sign_in(page, secure, "admin")

    page.get_by_label("New namespace").fill("console_tmp")
    page.get_by_role("button", name="Create").click()
    page.get_by_text("Created console_tmp.").wait_for()
    assert ("console_tmp",) in etl.list_namespaces()

    etl.create_table("console_tmp.draft", schema=SCHEMA)
    page.get_by_role("link", name="console_tmp").click()
    # A namespace property set in the browser, read back with PyIceberg.
    _add_property(page, "team", "finance")
    assert etl.load_namespace_properties("console_tmp").get("team") == "finance"
    page.get_by_role("link", name="draft").click()
    page.get_by_role("heading", name="Snapshots").wait_for()
    page.get_by_label("Rename to").fill("final")
    page.get_by_role("button", name="Rename").click()
    page.get_by_text("Renamed.").wait_for()
    page.get_by_role("heading", name="final", exact=True).wait_for()
    assert etl.table_exists("console_tmp.final") and not etl.table_exists("console_tmp.draft")

    # Dropping asks for the name typed out; a wrong name changes nothing.
    page.get_by_label("Type final to confirm").fill("fina")
    page.get_by_role("button", name="Drop table").click()
    page.get_by_text("Type final to confirm.").wait_for()
    assert etl.table_exists("console_tmp.final")
    page.get_by_label("Type final to confirm").fill("final")
    page.get_by_role("button", name="Drop table").click()
    page.get_by_text("Dropped final.").wait_for()
    assert not etl.table_exists("console_tmp.final")

    page.get_by_role("button", name="Drop namespace console_tmp").click()
    page.get_by_text("Dropped console_tmp.").wait_for()
    assert ("console_tmp",) not in etl.list_namespaces()
    page.close()


def test_catalog_strings_are_shown_as_text_never_run(secure: SecureFloe, lakehouse: dict, browser: object) -> None:  # noqa: F811
    """Names, SQL and properties are whatever writers chose: the page shows
    them as text, and markup in them never becomes an element or runs."""
    hostile = "<img src=x onerror=window.__owned=1>"
    token = _token(secure, "admin")
    headers = {"Authorization": f"Bearer {token}"}
    base = f"{secure.server.url}/v1/{WAREHOUSE}"
    created = requests.post(f"{base}/namespaces", json={"namespace": ["console_views"], "properties": {"note": hostile}}, headers=headers, timeout=10)
    assert created.status_code == 200, created.text
    view = {
        "name": "top_orders",
        "schema": {"type": "struct", "schema-id": 0, "fields": [{"id": 1, "name": "id", "type": "long", "required": False}]},
        "view-version": {
            "version-id": 1,
            "timestamp-ms": 1_700_000_000_000,
            "schema-id": 0,
            "summary": {"engine-name": "spark"},
            "representations": [{"type": "sql", "sql": f"SELECT id FROM console_sales.orders -- {hostile}", "dialect": "spark"}],
            "default-namespace": ["console_sales"],
        },
        "properties": {"comment": hostile},
    }
    answer = requests.post(f"{base}/namespaces/console_views/views", json=view, headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text

    page = _page(browser)
    _sign_in(page, secure, "admin")
    page.get_by_role("link", name="console_views").click()
    page.get_by_role("link", name="top_orders").click()
    page.get_by_role("heading", name="SQL").wait_for()
    _shot(page, "view")
    sql = page.locator("section[aria-label='SQL']").inner_text()
    assert f"SELECT id FROM console_sales.orders -- {hostile}" in sql and "spark" in sql
    assert page.locator("main img").count() == 0
    assert page.evaluate("() => window.__owned") is None
    page.goto(f"{secure.server.url}/ui/#/ns/console_views")
    page.locator("section[aria-label='Properties'] input").first.wait_for()
    values = [i.input_value() for i in page.locator("section[aria-label='Properties'] input").all()]
    assert hostile in values
    assert page.locator("main img").count() == 0
    assert page.evaluate("() => window.__owned") is None
    page.close()


def test_a_table_of_10000_snapshots_pages_its_timeline(secure: SecureFloe, lakehouse: dict, browser: object) -> None:  # noqa: F811
    """The timeline renders 50 snapshots at a time, newest first, however
    many the table holds."""
    count = 10_000
    headers = {"Authorization": f"Bearer {_token(secure, 'admin')}"}
    base = f"{secure.server.url}/v1/{WAREHOUSE}/namespaces"
    assert requests.post(base, json={"namespace": ["console_big"]}, headers=headers, timeout=10).status_code == 200
    schema = {"type": "struct", "schema-id": 0, "fields": [{"id": 1, "name": "id", "type": "long", "required": False}]}
    created = requests.post(f"{base}/console_big/tables", json={"name": "history", "schema": schema}, headers=headers, timeout=10)
    assert created.status_code == 200, created.text
    location = created.json()["metadata"]["location"]
    start = int(time.time() * 1000)
    updates = [
        {
            "action": "add-snapshot",
            "snapshot": {
                "snapshot-id": i,
                "sequence-number": i,
                "timestamp-ms": start + i,
                "manifest-list": f"{location}/metadata/snap-{i}.avro",
                "summary": {"operation": "append", "added-records": str(i)},
                "schema-id": 0,
                **({"parent-snapshot-id": i - 1} if i > 1 else {}),
            },
        }
        for i in range(1, count + 1)
    ] + [{"action": "set-snapshot-ref", "ref-name": "main", "type": "branch", "snapshot-id": count}]
    committed = requests.post(f"{base}/console_big/tables/history", json={"requirements": [], "updates": updates}, headers=headers, timeout=120)
    assert committed.status_code == 200, committed.text[:500]

    page = _page(browser)
    _sign_in(page, secure, "admin")
    page.goto(f"{secure.server.url}/ui/#/table/console_big/history")
    timeline = page.locator("section[aria-label='Snapshots']")
    timeline.get_by_text(f"50 of {count} snapshots shown, newest first.").wait_for()
    ids = timeline.locator(".snapshot-id").all_inner_texts()
    assert ids == [str(i) for i in range(count, count - 50, -1)]
    assert "current" in timeline.locator(f'[data-snapshot-id="{count}"]').inner_text()
    timeline.get_by_role("button", name="Older snapshots").click()
    timeline.get_by_text(f"100 of {count} snapshots shown, newest first.").wait_for()
    assert timeline.locator(".snapshot-id").count() == 100
    assert timeline.locator(".snapshot-id").last.inner_text() == str(count - 99)
    page.close()


def _tab_to(page: object, selector: str, limit: int = 40) -> None:
    """Presses Tab until the element matching ``selector`` has the focus."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("(s) => document.activeElement && document.activeElement.matches(s)", selector):
            return
    raise AssertionError(f"{selector} not reached with {limit} presses of Tab")


# Every control on the page has a name a screen reader can say: a label, an
# aria-label or its own text.
UNNAMED_CONTROLS = """() => [...document.querySelectorAll('input, select, button, a[href]')]
  .filter((el) => el.offsetParent !== null)
  .filter((el) => !((el.labels && el.labels.length) || el.getAttribute('aria-label') || el.textContent.trim()))
  .map((el) => el.outerHTML)"""


def test_the_console_works_from_the_keyboard(secure: SecureFloe, lakehouse: dict, browser: object) -> None:  # noqa: F811
    page = _page(browser)
    page.goto(f"{secure.server.url}/ui/")
    page.get_by_role("heading", name="Sign in to Floe").wait_for()
    assert page.evaluate(UNNAMED_CONTROLS) == []
    # The sign-in page starts in its first field.
    assert page.evaluate("() => document.activeElement.id") == "client-id"
    page.keyboard.type("admin")
    page.keyboard.press("Tab")
    page.keyboard.type(secure.secrets["admin"])
    page.keyboard.press("Enter")
    page.get_by_text("Signed in: admin").wait_for()

    _tab_to(page, "a[href='#/ns/console_sales']")
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="console_sales").wait_for()
    _tab_to(page, "a[href='#/table/console_sales/orders']")
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="Snapshots").wait_for()
    assert page.evaluate(UNNAMED_CONTROLS) == []
    page.close()


def test_a_reader_of_one_namespace_sees_no_other(secure: SecureFloe, lakehouse: dict, browser: object) -> None:  # noqa: F811
    out = secure.cli(["client", "create", "--name", "bi", "--role", "reader", "--warehouse", WAREHOUSE, "--namespace", "console_sales"])
    secret = re.search(r"client_secret: (\S+)", out).group(1)
    page = _page(browser)
    _sign_in(page, secure, "bi", secret)
    namespaces = page.locator("section[aria-label='Namespaces'] li")
    namespaces.first.wait_for()
    assert namespaces.all_inner_texts() == ["console_sales"]
    assert page.get_by_role("link", name="Administration").is_hidden()

    # Typing the address of what it may not read shows the refusal, no content.
    page.goto(f"{secure.server.url}/ui/#/ns/console_hr")
    page.locator("#notice").wait_for()
    assert page.locator("section[aria-label='Tables'] li").count() == 0
    page.goto(f"{secure.server.url}/ui/#/admin")
    page.get_by_text("Only an admin of every warehouse").wait_for()
    _shot(page, "reader-denied-admin")
    page.close()


def test_an_admin_makes_an_api_key_that_signs_in(secure: SecureFloe, lakehouse: dict, browser: object) -> None:  # noqa: F811
    page = _page(browser)
    _sign_in(page, secure, "admin")
    page.get_by_role("link", name="Administration").click()
    page.get_by_role("heading", name="Clients").wait_for()
    row = page.locator("tr", has=page.locator("code", has_text=re.compile("^etl$")))
    row.get_by_role("button", name="New API key").click()
    key = page.locator(".new-secret").inner_text()
    assert key
    _shot(page, "administration")
    # The secret is shown once: a fresh page does not have it.
    page.reload()
    page.get_by_role("heading", name="API keys").wait_for()
    assert key not in page.content()

    page.get_by_role("button", name="Sign out").click()
    page.locator("#kind-key").check()
    page.locator("#api-key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("link", name="console_sales").wait_for()
    page.close()


def test_the_cluster_page_shows_the_edge_and_its_origin(secure: SecureFloe, lakehouse: dict, browser: object) -> None:  # noqa: F811
    headers = {"Authorization": f"Bearer {_token(secure, 'admin')}"}
    report = requests.get(f"{secure.server.url}/management/v1/cluster", headers=headers, timeout=10)
    assert report.status_code == 200, report.text
    assert report.headers["cache-control"] == "no-store"
    status = report.json()
    (edge,) = status["edges"]
    (origin,) = status["origins"]
    assert edge["event-stream"]["up"] is True
    assert origin["healthy"] is True and origin["database"] == "up" and "error" not in origin, origin
    assert origin["version"] == edge["version"] and re.fullmatch(r"\d+\.\d+\.\d+.*", edge["version"])

    # Admins only, at the edge and at the origin behind it.
    refused = requests.get(f"{secure.server.url}/management/v1/cluster", headers={"Authorization": f"Bearer {_token(secure, 'etl')}"}, timeout=10)
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["code"] == 403
    assert requests.get(f"{secure.server.url}/management/v1/cluster", timeout=10).status_code == 401

    page = _page(browser)
    _sign_in(page, secure, "admin")
    page.get_by_role("link", name="Cluster").click()
    page.get_by_role("heading", name="Origins").wait_for()
    edge_row = page.locator("section[aria-label='Edges'] tbody tr")
    assert edge_row.count() == 1
    cells = edge_row.locator("td").all_inner_texts()
    assert cells[0] == edge["version"] and cells[2] == "up", cells
    origin_row = page.locator("section[aria-label='Origins'] tbody tr")
    assert origin_row.count() == 1
    cells = origin_row.locator("td").all_inner_texts()
    assert cells[0] == origin["address"] and cells[1:3] == ["yes", origin["version"]] and cells[4:] == ["up", ""], cells
    _shot(page, "cluster")
    page.close()

    page = _page(browser)
    _sign_in(page, secure, "etl")
    page.get_by_role("link", name="console_sales").wait_for()
    assert page.get_by_role("link", name="Cluster").is_hidden()
    page.goto(f"{secure.server.url}/ui/#/cluster")
    page.get_by_text("Only an admin of every warehouse may see the cluster.").wait_for()
    page.close()


def test_an_admin_creates_and_deletes_a_warehouse(secure: SecureFloe, lakehouse: dict, browser: object) -> None:  # noqa: F811
    root = secure.state / "console-warehouse"
    root.mkdir()
    headers = {"Authorization": f"Bearer {_token(secure, 'admin')}"}
    config = f"{secure.server.url}/v1/config?warehouse=console_wh"
    page = _page(browser)
    page.on("dialog", lambda dialog: dialog.accept())
    _sign_in(page, secure, "admin")
    page.get_by_role("link", name="Administration").click()
    warehouses = page.locator("section[aria-label='Warehouses']")
    warehouses.get_by_label("Name").fill("console_wh")
    warehouses.get_by_label("Location").fill(root.as_uri())
    warehouses.get_by_role("button", name="Create warehouse").click()
    page.get_by_text("Created warehouse console_wh.").wait_for()
    row = warehouses.locator("tr", has=page.locator("td", has_text=re.compile("^console_wh$")))
    assert row.locator("code").inner_text() == root.as_uri()
    opened = requests.get(config, headers=headers, timeout=10)
    assert opened.status_code == 200, opened.text

    # One that holds namespaces stays, and the page says why.
    busy = warehouses.locator("tr", has=page.locator("td", has_text=re.compile(f"^{WAREHOUSE}$")))
    busy.get_by_role("button", name="Delete").click()
    page.locator("#notice").wait_for()
    assert "not empty" in page.locator("#notice").inner_text()
    assert requests.get(f"{secure.server.url}/v1/config?warehouse={WAREHOUSE}", headers=headers, timeout=10).status_code == 200

    row.get_by_role("button", name="Delete").click()
    page.get_by_text("Deleted warehouse console_wh.").wait_for()
    assert warehouses.locator("td", has_text=re.compile("^console_wh$")).count() == 0
    assert requests.get(config, headers=headers, timeout=10).status_code == 404
    page.close()


def test_another_warehouse_with_nested_and_paged_namespaces(secure: SecureFloe, lakehouse: dict, browser: object) -> None:  # noqa: F811
    root = secure.state / "console-many"
    root.mkdir()
    headers = {"Authorization": f"Bearer {_token(secure, 'admin')}"}
    made = requests.post(f"{secure.server.url}/management/v1/warehouses", json={"name": "console_many", "location": root.as_uri()}, headers=headers, timeout=10)
    assert made.status_code == 201, made.text
    names = [[f"n{i:02d}"] for i in range(55)] + [["n00", "inner"], ["n00", "inner", "deepest"]]
    for namespace in names:
        answer = requests.post(f"{secure.server.url}/v1/console_many/namespaces", json={"namespace": namespace}, headers=headers, timeout=10)
        assert answer.status_code == 200, answer.text

    page = _page(browser)
    _sign_in(page, secure, "admin")
    page.get_by_label("Warehouse").fill("console_many")
    page.get_by_role("button", name="Open").click()
    page.get_by_role("heading", name="Warehouse console_many").wait_for()
    listed = page.locator("section[aria-label='Namespaces'] li")
    listed.nth(49).wait_for()
    assert listed.count() == 50
    page.get_by_role("button", name="Show more").click()
    listed.nth(54).wait_for()
    assert sorted(listed.all_inner_texts()) == [f"n{i:02d}" for i in range(55)]
    assert page.get_by_role("button", name="Show more").is_hidden()

    page.get_by_role("link", name="n00", exact=True).click()
    page.get_by_role("link", name="n00.inner", exact=True).click()
    page.get_by_role("heading", name="n00.inner", exact=True).wait_for()
    assert page.locator("section[aria-label='Namespaces'] li").all_inner_texts() == ["n00.inner.deepest"]
    page.close()


def test_with_authentication_off_the_console_says_so(floe_server: FloeServer, browser: object) -> None:
    page = _page(browser)
    page.goto(f"{floe_server.url}/ui/")
    page.locator("#auth-off").wait_for()
    assert "Authentication disabled" in page.locator("#auth-off").inner_text()
    assert page.get_by_role("heading", name="Sign in to Floe").count() == 0
    page.get_by_role("heading", name=re.compile("^Warehouse ")).wait_for()
    page.close()


def test_console_files_carry_their_security_headers(floe_server: FloeServer) -> None:
    for path in ("/ui/", "/ui/console.js", "/ui/console.css"):
        answer = requests.get(f"{floe_server.url}{path}", timeout=10)
        assert answer.status_code == 200, path
        assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
        assert "script-src 'self'" in answer.headers["content-security-policy"]
        assert answer.headers["x-content-type-options"] == "nosniff"
    redirect = requests.get(f"{floe_server.url}/ui", timeout=10, allow_redirects=False)
    assert (redirect.status_code, redirect.headers["location"]) == (308, "/ui/")
    assert requests.get(f"{floe_server.url}/ui/../Cargo.toml", timeout=10).status_code == 404
    refused = requests.post(f"{floe_server.url}/ui/", data="x", timeout=10)
    assert (refused.status_code, refused.headers["allow"]) == (405, "GET, HEAD")
