"""The Milvus provider in a real Airflow: a connection made in the UI's form and its Test button, driven in
Debian's chromium (Playwright) against `milvus-lite server`; the upsert operator in a DAG under `airflow dags test`.

`HN_TEST_SCREENSHOTS=1` saves the form with the Test result to docs/images/milvus-connection.png.
"""

from __future__ import annotations

import json
import os
import re

import pytest
import requests
from milvus_provider.hooks.milvus import MilvusHook

from include.config import PROJECT_ROOT
from tests.airflow_cli import BIN, AirflowEnv, AirflowStack, simple_auth_settings
from tests.browser import logged_in_page
from tests.milvus_server import MilvusLiteServer

pytestmark = pytest.mark.e2e

PASSWORD = "admin-password-for-tests"
SCREENSHOT = PROJECT_ROOT / "docs" / "images" / "milvus-connection.png"
CONN_ID = "milvus_from_the_form"


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    """An api-server with connection testing enabled; an admin's token."""
    home = tmp_path_factory.mktemp("airflow")
    env = AirflowEnv(home, tmp_path_factory.mktemp("data"), {
        **simple_auth_settings(home, "admin", "admin", PASSWORD), "AIRFLOW__CORE__TEST_CONNECTION": "Enabled"})
    env.migrate()
    with AirflowStack(env, components=("api-server",)) as stack:
        yield stack.wait_for_api(), stack.login("admin", PASSWORD)


def press_test(page) -> dict:
    """Press the connection's Test button in the list; the API's answer, once the UI shows its message."""
    with page.expect_response(lambda r: r.url.endswith("/api/v2/connections/test")) as answer:
        page.get_by_role("button", name="Test Connection").click()
    assert answer.value.status == 200, answer.value.text()
    result = answer.value.json()
    page.get_by_text(result["message"]).wait_for()
    return result


def set_database(page, name: str) -> None:
    page.get_by_role("button", name="Edit Connection").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Extra Fields", exact=True).click()
    dialog.locator("input[name=element_db_name]").fill(name)
    dialog.get_by_role("button", name="Save").click()
    dialog.wait_for(state="hidden")


def test_a_connection_made_in_the_form_tests_ok_against_a_running_store_and_fails_once_it_stops(api, tmp_path):
    base, token = api
    with logged_in_page(base, token) as page:
        with MilvusLiteServer(tmp_path) as store:
            page.goto(f"{base}/connections")
            page.get_by_role("button", name="Add Connection").click()
            dialog = page.get_by_role("dialog")
            dialog.get_by_label("Connection ID").fill(CONN_ID)
            dialog.get_by_role("combobox").fill("Milvus")
            page.keyboard.press("Enter")
            # The provider's form: URI and Token; no host, login, port or schema.
            uri, token_field = dialog.get_by_label("URI", exact=True), dialog.get_by_label("Token", exact=True)
            uri.wait_for()
            assert token_field.is_visible()
            assert uri.get_attribute("placeholder").startswith("http://localhost:19530")
            for hidden in ("Host", "Login", "Password", "Port", "Schema"):
                assert dialog.get_by_text(hidden, exact=True).count() == 0, f"{hidden} is shown"
            uri.fill(store.uri)
            dialog.get_by_text("Extra Fields", exact=True).click()
            assert dialog.get_by_text("Database", exact=True).is_visible()
            dialog.locator("input[name=element_db_name]").fill("default")
            dialog.get_by_role("button", name="Save").click()
            dialog.wait_for(state="hidden")
            page.get_by_text(re.compile("Request Submitted")).first.wait_for(state="hidden")  # the "saved" notice

            passed = press_test(page)
            assert passed["status"], passed
            assert re.fullmatch(rf"Connected to Milvus milvus_lite-[\d.]+ at {store.uri}: 0 collection\(s\)",
                                passed["message"])
            if os.environ.get("HN_TEST_SCREENSHOTS") == "1":
                # The form, with the result still on screen.
                page.get_by_role("button", name="Edit Connection").click()
                page.get_by_role("dialog").get_by_label("URI", exact=True).wait_for()
                assert page.get_by_text(passed["message"]).is_visible(), "the result was gone before the screenshot"
                SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(SCREENSHOT))
                page.keyboard.press("Escape")
                page.get_by_role("dialog").wait_for(state="hidden")

            # A database the store does not have: the Database field reaches the hook, and Test says so.
            set_database(page, "nope")
            refused = press_test(page)
            assert not refused["status"] and refused["message"].endswith("database 'nope' does not exist")

        failed = press_test(page)  # the store has stopped
        assert not failed["status"]
        assert failed["message"].startswith(f"Cannot list the collections of Milvus at {store.uri}: Fail connecting")

    saved = requests.get(f"{base}/api/v2/connections/{CONN_ID}", headers={"Authorization": f"Bearer {token}"},
                         timeout=30).json()
    assert (saved["conn_type"], saved["host"], json.loads(saved["extra"])) == ("milvus", store.uri, {"db_name": "nope"})


EXAMPLE_DAG = '''
from airflow.sdk import dag, task
from milvus_provider.hooks.milvus import MilvusHook
from milvus_provider.operators.milvus import MilvusUpsertOperator


@dag(schedule=None, params={"rows_url": ""})
def milvus_upsert_example():
    @task
    def create_collection() -> None:
        with MilvusHook() as hook:
            if not hook.has_collection("docs"):
                hook.conn.create_collection("docs", dimension=4)

    upsert = MilvusUpsertOperator(task_id="upsert", collection_name="docs", path="{{ params.rows_url }}", batch_size=2)

    @task
    def check(written: int) -> None:
        with MilvusHook() as hook:
            print(f"written {written}, stored {hook.count('docs')}")

    create_collection() >> upsert
    check(upsert.output)


milvus_upsert_example()
'''


def test_the_upsert_operator_in_a_dag_reads_its_templated_path_and_returns_the_count(airflow_home, tmp_path,
                                                                                      monkeypatch):
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "milvus_upsert_example.py").write_text(EXAMPLE_DAG)
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"id": i, "vector": [i, 1, 0, 0], "title": f"doc {i}"}) + "\n" for i in range(5)))
    monkeypatch.setenv("AIRFLOW_CONN_MILVUS_DEFAULT", json.dumps({"conn_type": "milvus", "host": str(tmp_path / "milvus.db")}))
    env = AirflowEnv(airflow_home, tmp_path / "data", {"AIRFLOW__CORE__DAGS_FOLDER": str(dags)})
    result = env.run(str(BIN / "airflow"), "dags", "test", "milvus_upsert_example", "-c",
                     json.dumps({"rows_url": f"file://{rows}"}), check=False)
    log = result.stdout + result.stderr
    assert result.returncode == 0 and "state=success" in log, log[-6000:]
    assert "written 5, stored 5" in log, log[-6000:]
    # The process has exited: the directory is free, and holds the file's rows.
    with MilvusHook() as hook:
        assert hook.count("docs") == 5
        assert hook.conn.query("docs", ids=[3], output_fields=["title"])[0]["title"] == "doc 3"
