"""Views through the edge: PyIceberg for what it drives (create, list, load,
exists, register, drop) and raw HTTP for what it does not (replace, rename)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import BadRequestError, NoSuchViewError, TableAlreadyExistsError, ViewAlreadyExistsError
from pyiceberg.schema import Schema
from pyiceberg.types import LongType, NestedField, StringType
from pyiceberg.view.metadata import SQLViewRepresentation, ViewVersion

from conftest import FloeServer

VIEW_SCHEMA = Schema(
    NestedField(1, "id", LongType(), required=False),
    NestedField(2, "name", StringType(), required=False),
)


def version(namespace: str, sql: str) -> ViewVersion:
    return ViewVersion(
        version_id=1,
        schema_id=0,
        summary={"engine-name": "pyiceberg"},
        representations=[SQLViewRepresentation(type="sql", sql=sql, dialect="spark")],
        default_namespace=(namespace,),
    )


def local(location: str) -> Path:
    assert location.startswith("file://"), location
    return Path(location.removeprefix("file://"))


def test_view_lifecycle(catalog: Catalog, namespace: str, warehouse_path: Path) -> None:
    ident = f"{namespace}.recent"
    view = catalog.create_view(ident, VIEW_SCHEMA, version(namespace, "select id, name from events"),
                               properties={"comment": "recent events"})
    assert view.metadata.current_version_id == 1
    assert view.metadata.properties["comment"] == "recent events"
    assert catalog.view_exists(ident)
    assert (namespace, "recent") in catalog.list_views(namespace)
    loaded = catalog.load_view(ident)
    assert loaded.metadata.view_uuid == view.metadata.view_uuid
    rep = loaded.metadata.versions[0].representations[0].root
    assert rep.sql == "select id, name from events"
    assert [f.name for f in loaded.metadata.schemas[0].fields] == ["id", "name"]

    # The metadata file is in the warehouse and says what the catalog says.
    response = requests.get(f"{catalog.properties['uri']}/v1/default/namespaces/{namespace}/views/recent", timeout=10)
    assert response.status_code == 200
    location = response.json()["metadata-location"]
    path = local(location)
    assert path.is_relative_to(warehouse_path)
    assert json.loads(path.read_text())["view-uuid"] == str(view.metadata.view_uuid)

    with pytest.raises(ViewAlreadyExistsError):
        catalog.create_view(ident, VIEW_SCHEMA, version(namespace, "select 1"))
    catalog.drop_view(ident)
    assert not catalog.view_exists(ident)
    with pytest.raises(NoSuchViewError):
        catalog.load_view(ident)
    with pytest.raises(NoSuchViewError):
        catalog.drop_view(ident)


def test_views_and_tables_share_names(catalog: Catalog, namespace: str) -> None:
    catalog.create_table(f"{namespace}.t", VIEW_SCHEMA)
    with pytest.raises(ViewAlreadyExistsError):
        catalog.create_view(f"{namespace}.t", VIEW_SCHEMA, version(namespace, "select 1"))
    catalog.create_view(f"{namespace}.v", VIEW_SCHEMA, version(namespace, "select 1"))
    with pytest.raises(TableAlreadyExistsError):
        catalog.create_table(f"{namespace}.v", VIEW_SCHEMA)
    assert catalog.list_tables(namespace) == [(namespace, "t")]
    assert catalog.list_views(namespace) == [(namespace, "v")]
    assert not catalog.table_exists(f"{namespace}.v")
    assert not catalog.view_exists(f"{namespace}.t")


def test_register_view(catalog: Catalog, namespace: str) -> None:
    catalog.create_view(f"{namespace}.original", VIEW_SCHEMA, version(namespace, "select 1"))
    base = catalog.properties["uri"]
    location = requests.get(f"{base}/v1/default/namespaces/{namespace}/views/original", timeout=10).json()[
        "metadata-location"
    ]
    # Not while the original holds the file's location: two views never share one.
    with pytest.raises(BadRequestError, match="Storage confinement"):
        catalog.register_view(f"{namespace}.copy", location)
    # Dropped, its files stay, and they register under another name.
    catalog.drop_view(f"{namespace}.original")
    registered = catalog.register_view(f"{namespace}.copy", location)
    assert registered.metadata.versions[0].representations[0].root.sql == "select 1"
    assert sorted(catalog.list_views(namespace)) == [(namespace, "copy")]


def test_replace_and_rename_over_http(floe_server: FloeServer, catalog: Catalog, namespace: str) -> None:
    base = f"{floe_server.url}/v1/default"
    view = catalog.create_view(f"{namespace}.v", VIEW_SCHEMA, version(namespace, "select id from t"))
    url = f"{base}/namespaces/{namespace}/views/v"
    first = requests.get(url, timeout=10)
    etag = first.headers["ETag"]
    assert requests.get(url, headers={"If-None-Match": etag}, timeout=10).status_code == 304
    replace = {
        "requirements": [{"type": "assert-view-uuid", "uuid": str(view.metadata.view_uuid)}],
        "updates": [
            {"action": "add-schema", "schema": {"type": "struct", "schema-id": 1, "fields": [
                {"id": 1, "name": "id", "required": False, "type": "long"}]}},
            {"action": "add-view-version", "view-version": {
                "version-id": 2, "schema-id": -1, "timestamp-ms": first.json()["metadata"]["versions"][0]["timestamp-ms"] + 1,
                "summary": {"engine-name": "pyiceberg"},
                "representations": [{"type": "sql", "sql": "select id from t where id > 0", "dialect": "spark"}],
                "default-namespace": [namespace]}},
            {"action": "set-current-view-version", "view-version-id": -1},
        ],
    }
    r = requests.post(url, json=replace, timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["ETag"] != etag
    assert requests.get(url, headers={"If-None-Match": etag}, timeout=10).status_code == 200
    loaded = catalog.load_view(f"{namespace}.v")
    assert loaded.metadata.current_version_id == 2
    # A stale UUID is a 409 CommitFailedException and changes nothing.
    replace["requirements"][0]["uuid"] = "00000000-0000-0000-0000-000000000000"
    r = requests.post(url, json=replace, timeout=10)
    assert r.status_code == 409
    assert r.json()["error"]["type"] == "CommitFailedException"

    r = requests.post(f"{base}/views/rename", json={
        "source": {"namespace": [namespace], "name": "v"},
        "destination": {"namespace": [namespace], "name": "renamed"},
    }, timeout=10)
    assert r.status_code == 204, r.text
    assert catalog.list_views(namespace) == [(namespace, "renamed")]
    assert catalog.load_view(f"{namespace}.renamed").metadata.current_version_id == 2
