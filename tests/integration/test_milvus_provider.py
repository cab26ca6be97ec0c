"""The Milvus provider (providers/milvus) against a real Milvus Lite directory and the real Milvus 2.3.5 server.

Each store test runs on both: on Milvus Lite an `insert` of an existing key replaces the row, so only
the server shows that the hook's writes are upserts.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from milvus_provider.hooks.milvus import MilvusHook
from milvus_provider.operators.milvus import MilvusUpsertOperator, read_rows

from tests.services import free_port

COLLECTION = "provider_docs"


def rows(ids, version: str = "v1") -> list[dict]:
    return [{"id": i, "vector": [float(i), 1.0, 0.0, 0.5], "title": f"{version} {i}"} for i in ids]


def set_connection(monkeypatch, conn_id: str, host: str, **extra) -> str:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "milvus", "host": host, "extra": extra}))
    return conn_id


@pytest.fixture(params=["lite", "server"])
def store_uri(request, tmp_path) -> str:
    """A Milvus Lite directory of the test's own, or the session's 2.3.5 server without collections."""
    if request.param == "lite":
        return str(tmp_path / "milvus.db")
    return request.getfixturevalue("fresh_milvus_server").uri


@pytest.fixture
def conn_id(store_uri, monkeypatch) -> str:
    """A `milvus` connection to the store, with the collection the tests write (dynamic fields: `title`)."""
    conn_id = set_connection(monkeypatch, "milvus_provider_test", store_uri)
    with MilvusHook(conn_id) as hook:
        hook.conn.create_collection(COLLECTION, dimension=4, consistency_level="Strong")
    return conn_id


def test_the_provider_registers_the_milvus_connection_type_and_its_form():
    import milvus_provider
    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService
    from airflow.models.connection import Connection
    from airflow.providers_manager import ProvidersManager
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    assert ProvidersManager().providers["airflow-provider-milvus"].version == milvus_provider.__version__
    hook = ProvidersManagerTaskRuntime().hooks["milvus"]
    assert (hook.hook_class_name, hook.connection_id_attribute_name, hook.hook_name, hook.connection_testable) == (
        "milvus_provider.hooks.milvus.MilvusHook", "milvus_conn_id", "Milvus", True)
    # What the UI's connection form is built from (GET /ui/connections/hook_meta).
    meta = next(m for m in HookMetaService.hook_meta_data() if m.connection_type == "milvus")
    fields = meta.standard_fields
    assert (fields.host.title, fields.host.hidden, fields.password.title, fields.password.hidden) == ("URI", False, "Token", False)
    assert fields.host.placeholder.startswith("http://localhost:19530")
    assert fields.login.hidden and fields.port.hidden and fields.url_schema.hidden
    assert meta.extra_fields["db_name"]["schema"]["title"] == "Database"
    assert ProvidersManager().field_behaviours["milvus"]["relabeling"] == {"host": "URI", "password": "Token"}
    # Airflow before 3.2 asks the hook itself; it answers the same.
    assert MilvusHook.get_ui_field_behaviour() == ProvidersManager().field_behaviours["milvus"]
    # The UI's Test button builds the hook from the connection type.
    assert type(Connection(conn_id="any", conn_type="milvus", host="http://x:19530").get_hook()) is MilvusHook


def test_upsert_writes_in_batches_replaces_by_key_and_counts(conn_id):
    with MilvusHook(conn_id) as hook:
        assert COLLECTION in hook.list_collections() and hook.has_collection(COLLECTION)
        assert not hook.has_collection("no_such_collection")
        sizes = []
        upsert = hook.conn.upsert
        hook.conn.upsert = lambda name, batch, **kw: sizes.append(len(batch)) or upsert(name, batch, **kw)
        # Any iterable, read one batch at a time.
        assert hook.upsert(COLLECTION, iter(rows(range(10))), batch_size=4) == 10
        assert sizes == [4, 4, 2]
        # Rows 5-9 again, changed, and 10-14 new: a server would keep two copies of 5-9 on an insert.
        assert hook.upsert(COLLECTION, rows(range(5, 15), "v2")) == 10
        assert hook.count(COLLECTION) == 15
        assert hook.count(COLLECTION, filter="id >= 5") == 10
        titles = {r["id"]: r["title"] for r in hook.conn.query(COLLECTION, filter="id in [4, 5]", output_fields=["title"])}
        assert titles == {4: "v1 4", 5: "v2 5"}
        with pytest.raises(ValueError, match="batch_size"):
            hook.upsert(COLLECTION, rows([1]), batch_size=0)


def test_one_client_per_hook_until_it_is_closed(conn_id, store_uri):
    hook = MilvusHook(conn_id)
    client = hook.get_conn()
    assert hook.get_conn() is client and hook.conn is client
    assert hook.client_kwargs == {"uri": store_uri, "token": "", "db_name": ""}
    hook.close()
    with pytest.raises(Exception):  # noqa: B017 - the closed client refuses calls, whatever pymilvus raises
        client.list_collections()
    with hook:
        assert hook.get_conn() is not client and hook.list_collections() == [COLLECTION]
    assert "conn" not in hook.__dict__


def test_test_connection_succeeds_on_a_store_and_says_why_it_fails(conn_id, store_uri, monkeypatch, tmp_path):
    ok, message = MilvusHook(conn_id).test_connection()
    assert ok and message.startswith("Connected to Milvus ") and message.endswith(f"at {store_uri}: 1 collection(s)")
    closed = f"http://127.0.0.1:{free_port()}"
    ok, message = MilvusHook(set_connection(monkeypatch, "milvus_closed", closed)).test_connection()
    assert not ok and message.startswith(f"Cannot list the collections of Milvus at {closed}: Fail connecting")
    ok, message = MilvusHook(set_connection(monkeypatch, "milvus_no_uri", "")).test_connection()
    assert (ok, message) == (False, "the Milvus connection 'milvus_no_uri' has no URI (its host field): set "
                                    "http://host:19530 or a Milvus Lite path ending in .db")
    ok, message = MilvusHook(set_connection(monkeypatch, "milvus_not_db", str(tmp_path / "milvus"))).test_connection()
    assert not ok and "must end in .db" in message


def hold_directory(uri: str) -> subprocess.CompletedProcess:
    """Another process opens the Lite directory (and lets go at once): fails while this one holds it."""
    code = f"from pymilvus import MilvusClient; MilvusClient({uri!r}).close()"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_the_last_hook_to_close_releases_a_lite_directory(tmp_path, monkeypatch):
    uri = str(tmp_path / "milvus.db")
    conn_id = set_connection(monkeypatch, "milvus_lite_shared", uri)
    first, second = MilvusHook(conn_id), MilvusHook(conn_id)
    first.conn.create_collection(COLLECTION, dimension=4)
    assert second.has_collection(COLLECTION)  # both clients on the one in-process Lite server
    first.close()
    assert second.list_collections() == [COLLECTION]  # closing one hook left the other's server running
    assert hold_directory(uri).returncode != 0  # still locked: this process serves it
    second.close()
    other = hold_directory(uri)
    assert other.returncode == 0, other.stderr[-2000:]


def test_db_name_selects_a_database_on_a_server(fresh_milvus_server, monkeypatch):
    default = set_connection(monkeypatch, "milvus_default_db", fresh_milvus_server.uri)
    analytics = set_connection(monkeypatch, "milvus_analytics", fresh_milvus_server.uri, db_name="analytics")
    with MilvusHook(default) as hook:
        if "analytics" not in hook.conn.list_databases():
            hook.conn.create_database("analytics")
    try:
        with MilvusHook(analytics) as hook:
            hook.conn.create_collection(COLLECTION, dimension=4, consistency_level="Strong")
            assert hook.upsert(COLLECTION, rows(range(3))) == 3 and hook.count(COLLECTION) == 3
        with MilvusHook(default) as hook:
            assert COLLECTION not in hook.list_collections()
        with MilvusHook(analytics) as hook:
            assert hook.list_collections() == [COLLECTION]
    finally:
        with MilvusHook(analytics) as hook:
            hook.conn.drop_collection(COLLECTION)
        with MilvusHook(default) as hook:
            hook.conn.drop_database("analytics")


def test_the_operator_upserts_inline_rows_and_files_in_object_storage(conn_id, tmp_path):
    lines = tmp_path / "rows.jsonl"
    lines.write_text("\n".join(json.dumps(r) for r in rows(range(5))) + "\n\n")
    array = tmp_path / "rows.json"
    array.write_text("  \n" + json.dumps(rows(range(3, 8), "v2"), indent=2))

    def run(**source) -> int:
        return MilvusUpsertOperator(task_id="upsert", collection_name=COLLECTION, batch_size=2, milvus_conn_id=conn_id,
                                    **source).execute({})

    assert run(path=f"file://{lines}") == 5
    assert run(path=f"file://{array}") == 5
    assert run(rows=rows([20, 21])) == 2
    with MilvusHook(conn_id) as hook:
        assert hook.count(COLLECTION) == 10  # 0-7 (3-7 replaced), 20, 21
        assert hook.conn.query(COLLECTION, ids=[7], output_fields=["title"])[0]["title"] == "v2 7"


def test_the_operator_takes_exactly_one_source_and_rows_that_are_objects(tmp_path):
    for sources in ({}, {"rows": [], "path": "file:///rows.json"}):
        with pytest.raises(ValueError, match="exactly one of rows and path"):
            MilvusUpsertOperator(task_id="upsert", collection_name=COLLECTION, **sources)
    assert set(MilvusUpsertOperator.template_fields) == {"collection_name", "rows", "path"}
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1}\n[1, 2]\n')
    with pytest.raises(ValueError, match=r"bad.jsonl: line 2 is not a JSON object"):
        list(read_rows(f"file://{bad}"))
    with pytest.raises(TypeError, match="render_template_as_native_obj"):
        MilvusUpsertOperator(task_id="upsert", collection_name=COLLECTION, rows="[{'id': 1}]").execute({})
