"""HPE's own Python SDK (hpOneView 5.3.0, ImageStreamerClient) against the real daemons.

storaged and deployd (from $STREAMER_BIN_DIR, default target/debug) run in a temporary
directory on free loopback ports. The SDK takes the appliance "ip" and opens
http.client.HTTPSConnection(ip), which accepts "host:port", so the client is built with
"127.0.0.1:<port>". Bad input is sent with plain urllib (certificate not verified).

Collections that deployd does not serve yet (GET answers 404) are SKIPPED with the reason
printed (pytest -rs); they run as soon as the endpoint exists.
"""

import json
import uuid
import zipfile

import pytest
from hpOneView.exceptions import HPOneViewException
from hpOneView.image_streamer.image_streamer_client import ImageStreamerClient
from hpOneView.resources.task_monitor import TaskMonitor

from appliance import API_VERSION, BUNDLE, PASSWORD, appliance, http  # noqa: F401


@pytest.fixture(scope="module")
def session_id(appliance):
    status, body = http("POST", appliance.base + "/rest/login-sessions",
                        {"userName": "Administrator", "password": PASSWORD,
                         "authLoginDomain": "local", "loginMsgAck": True})
    assert status == 200, body
    return body["sessionID"]


@pytest.fixture(scope="module")
def i3s(appliance, session_id):
    return ImageStreamerClient(f"127.0.0.1:{appliance.port}", session_id, API_VERSION)


@pytest.fixture
def api(appliance, session_id):
    def call(method, path, body=None, headers=None, raw=None):
        h = {"auth": session_id, "X-API-Version": str(API_VERSION)}
        h.update(headers or {})
        return http(method, appliance.base + path, body, h, raw)
    return call


def require(api, path):
    """Skips (with the reason printed) while deployd does not serve `path`."""
    status, _ = api("GET", path)
    if status == 404:
        pytest.skip(f"deployd does not serve {path} yet (GET answered 404)")
    assert status == 200, f"GET {path} answered {status}"


def assert_hpe_error(status, body, expected_status):
    assert status == expected_status, (status, body)
    assert isinstance(body, dict), body
    for key in ("errorCode", "message", "recommendedActions", "nestedErrors", "details"):
        assert key in body, (key, body)
    assert body["errorCode"] and body["message"]


def unique(prefix):
    return f"{prefix} {uuid.uuid4().hex[:8]}"


# ---- transport -------------------------------------------------------------------------------

def test_version_and_the_sdk_version_check(i3s):
    v = i3s.connection.get("/rest/version")
    assert v["minimumVersion"] == 300 and v["currentVersion"] == 2020
    i3s.connection.validateVersion()  # raises if 800 were outside the range


def test_requests_without_a_valid_session_are_refused(appliance):
    status, body = http("GET", appliance.base + "/rest/plan-scripts", headers={"auth": "nope"})
    assert_hpe_error(status, body, 401)


# ---- plan scripts (exist today) --------------------------------------------------------------

def test_plan_script_crud_through_the_sdk(i3s, api):
    ps = i3s.plan_scripts
    name = unique("SDK plan script")
    created = ps.create({"name": name, "description": "from the SDK", "hpProvided": False,
                         "planType": "deploy", "content": 'echo "@Greeting:hello world@"\n'})
    assert created["uri"].startswith("/rest/plan-scripts/")
    assert created["type"] == "PlanScript"
    attrs = json.loads(created["customAttributes"])
    assert attrs[0]["name"] == "Greeting" and attrs[0]["value"] == "hello world"

    found = ps.get_by("name", name)
    assert [f["uri"] for f in found] == [created["uri"]]
    assert ps.get(created["id"])["content"] == 'echo "@Greeting:hello world@"\n'

    # PUT answers 202 + task; the SDK's task monitor follows it to the updated resource.
    changed = dict(created, description="changed", content="echo @Other@\n")
    updated = ps.update(changed)
    assert updated["uri"] == created["uri"]
    assert updated["description"] == "changed"
    assert ps.get(created["uri"])["content"] == "echo @Other@\n"

    assert ps.delete(updated) is True
    with pytest.raises(HPOneViewException) as e:
        ps.get(created["uri"])
    assert e.value.oneview_response["errorCode"] == "RESOURCE_NOT_FOUND"
    assert ps.get_by("name", name) == []


def test_duplicate_plan_script_name_is_refused_by_the_sdk(i3s):
    name = unique("dup")
    i3s.plan_scripts.create({"name": name, "planType": "general", "content": "echo a"})
    with pytest.raises(HPOneViewException) as e:
        i3s.plan_scripts.create({"name": name, "planType": "general", "content": "echo b"})
    assert e.value.oneview_response["recommendedActions"]
    assert len(i3s.plan_scripts.get_by("name", name)) == 1


def test_get_all_pages_filters_and_sorts(i3s):
    prefix = unique("page")
    names = [f"{prefix} {i}" for i in range(5)]
    for i, n in enumerate(names):
        i3s.plan_scripts.create({"name": n, "planType": "capture" if i % 2 else "deploy",
                                 "content": "echo x"})
    mine = f"name matches '{prefix}%'"
    every = i3s.plan_scripts.get_all(filter=mine, sort="name:ascending")
    assert [p["name"] for p in every] == names
    pages = [i3s.plan_scripts.get_all(start=s, count=2, filter=mine, sort="name:ascending")
             for s in (0, 2, 4)]
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [p["name"] for page in pages for p in page] == names
    desc = i3s.plan_scripts.get_all(filter=mine, sort="name:descending")
    assert [p["name"] for p in desc] == names[::-1]
    captures = i3s.plan_scripts.get_all(filter=[mine, "planType='capture'"])
    assert sorted(p["name"] for p in captures) == [names[1], names[3]]
    for p in every:
        i3s.plan_scripts.delete(p)
    assert i3s.plan_scripts.get_all(filter=mine) == []


def test_tasks_are_awaited_by_the_sdk_task_monitor(i3s):
    created = i3s.plan_scripts.create({"name": unique("task"), "planType": "general",
                                       "content": "echo 1"})
    con = i3s.connection
    task, _ = con.put(created["uri"], dict(created, content="echo 2"))
    assert task["category"] == "tasks" and task["type"] == "TaskResourceV2"
    monitor = TaskMonitor(con)
    resource = monitor.wait_for_task(task)
    assert resource["uri"] == created["uri"] and resource["content"] == "echo 2"
    final = con.get(task["uri"])
    assert final["taskState"] == "Completed"
    assert final["associatedResource"]["resourceUri"] == created["uri"]
    i3s.plan_scripts.delete(resource)


# ---- bad input through plain HTTPS -----------------------------------------------------------

def plan_script_total(api):
    status, body = api("GET", "/rest/plan-scripts")
    assert status == 200
    return body["total"]


@pytest.mark.parametrize("raw, what", [
    (b'{"name": "x", "planType": "deploy"', "truncated JSON"),
    (b"not json at all", "not JSON"),
    (b'{"name": 5, "planType": "deploy", "content": ""}', "name is a number"),
    (b'{"name": "wrong types", "planType": ["deploy"], "content": ""}', "planType is a list"),
    (b'{"name": "wrong types", "planType": "sideways", "content": ""}', "unknown planType"),
    (b'{"name": "wrong types", "planType": "deploy", "content": 42}', "content is a number"),
    (b'{"planType": "deploy", "content": ""}', "name missing"),
    (b'[]', "an array"),
])
def test_malformed_plan_scripts_get_400_and_nothing_is_stored(api, raw, what):
    before = plan_script_total(api)
    status, body = api("POST", "/rest/plan-scripts", raw=raw)
    assert_hpe_error(status, body, 400)
    assert plan_script_total(api) == before, what


def test_unknown_references_get_404_and_nothing_is_stored(api):
    before = plan_script_total(api)
    missing = f"/rest/plan-scripts/{uuid.uuid4()}"
    for method, body in (("GET", None), ("DELETE", None),
                         ("PUT", {"name": "ghost", "planType": "deploy", "content": ""})):
        status, answer = api(method, missing, body)
        assert_hpe_error(status, answer, 404)
    assert plan_script_total(api) == before


def test_oversized_body_gets_413_and_nothing_is_stored(api):
    before = plan_script_total(api)
    content = "echo x\n" * ((9 << 20) // 7 + 1)
    raw = json.dumps({"name": "huge", "planType": "deploy", "content": content}).encode()
    assert len(raw) > 8 << 20
    status, body = api("POST", "/rest/plan-scripts", raw=raw)
    assert_hpe_error(status, body, 413)
    assert plan_script_total(api) == before


def test_unsupported_api_version_gets_412(appliance, session_id):
    status, body = http("GET", appliance.base + "/rest/plan-scripts",
                        headers={"auth": session_id, "X-API-Version": "9999"})
    assert_hpe_error(status, body, 412)


# ---- build plans, deployment plans (skipped until the endpoints exist) -----------------------

def make_plan_script(i3s, content="mount /dev/sda1 /\necho @HostName:web01@\n"):
    return i3s.plan_scripts.create({"name": unique("step"), "planType": "deploy",
                                    "content": content})


def build_plan_body(name, ps):
    return {"name": name, "description": "SDK build plan", "hpProvided": False,
            "oeBuildPlanType": "deploy",
            "buildStep": [{"planScriptUri": ps["uri"], "planScriptName": ps["name"],
                           "serialNumber": "1", "parameters": None}],
            "customAttributes": [{"name": "HostName", "value": "web01", "type": "string",
                                  "constraints": "{\"helpText\":\"\"}", "description": ""}]}


def test_build_plan_crud_through_the_sdk(i3s, api):
    require(api, "/rest/build-plans")
    ps = make_plan_script(i3s)
    name = unique("SDK build plan")
    bp = i3s.build_plans.create(build_plan_body(name, ps))
    assert bp["uri"].startswith("/rest/build-plans/")
    assert bp["type"] == "OeBuildPlanV5"
    assert [b["uri"] for b in i3s.build_plans.get_by("name", name)] == [bp["uri"]]
    updated = i3s.build_plans.update(dict(bp, description="changed"))
    assert updated["description"] == "changed"
    # The plan script is in use: it cannot be deleted.
    with pytest.raises(HPOneViewException):
        i3s.plan_scripts.delete(ps)
    assert i3s.build_plans.delete(updated) is True
    assert i3s.build_plans.get_by("name", name) == []
    assert i3s.plan_scripts.delete(ps) is True


def test_build_plan_with_unknown_plan_script_gets_400(i3s, api):
    require(api, "/rest/build-plans")
    status, body = api("GET", "/rest/build-plans")
    before = body["total"]
    ghost = {"uri": f"/rest/plan-scripts/{uuid.uuid4()}", "name": "ghost"}
    status, body = api("POST", "/rest/build-plans", build_plan_body(unique("bad bp"), ghost))
    assert_hpe_error(status, body, 400)
    status, body = api("POST", "/rest/build-plans", raw=b'{"name": 1, "buildStep": "x"}')
    assert_hpe_error(status, body, 400)
    assert api("GET", "/rest/build-plans")[1]["total"] == before


def test_deployment_plan_crud_through_the_sdk(i3s, api):
    require(api, "/rest/deployment-plans")
    require(api, "/rest/build-plans")
    ps = make_plan_script(i3s)
    bp = i3s.build_plans.create(build_plan_body(unique("dp bp"), ps))
    name = unique("SDK deployment plan")
    dp = i3s.deployment_plans.create({"name": name, "description": "", "hpProvided": False,
                                      "type": "OEDeploymentPlanV5",
                                      "oeBuildPlanURI": bp["uri"]})
    assert dp.data["uri"].startswith("/rest/deployment-plans/")
    assert dp.data["oeBuildPlanURI"] == bp["uri"]
    assert i3s.deployment_plans.get_by_name(name).data["uri"] == dp.data["uri"]
    dp.update({"description": "changed"})
    assert i3s.deployment_plans.get_by_uri(dp.data["uri"]).data["description"] == "changed"
    status, body = api("POST", "/rest/deployment-plans",
                       {"name": unique("bad dp"), "type": "OEDeploymentPlanV5",
                        "oeBuildPlanURI": f"/rest/build-plans/{uuid.uuid4()}"})
    assert_hpe_error(status, body, 400)
    dp.delete()
    assert i3s.deployment_plans.get_by_name(name) is None
    i3s.build_plans.delete(bp)
    i3s.plan_scripts.delete(ps)


# ---- golden images, artifact bundles, read-only collections ----------------------------------

def test_golden_image_upload_and_download_through_the_sdk(i3s, api, tmp_path):
    require(api, "/rest/golden-images")
    disk = bytes(range(256)) * 4096 + b"\0" * (1 << 20)  # 2 MiB raw image
    upload = tmp_path / "golden.zip"
    with zipfile.ZipFile(upload, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("disk.raw", disk)
    name = unique("SDK golden image")
    gi = i3s.golden_images.upload(str(upload), {"name": name, "description": "SDK upload"})
    assert gi["name"] == name and gi["uri"].startswith("/rest/golden-images/")
    assert [g["uri"] for g in i3s.golden_images.get_by("name", name)] == [gi["uri"]]
    out = tmp_path / "download.zip"
    assert i3s.golden_images.download(gi["uri"], str(out)) is True
    with zipfile.ZipFile(out) as z:
        members = z.namelist()
        assert len(members) == 1, members
        assert z.read(members[0]) == disk
    assert i3s.golden_images.delete(gi) is True
    assert i3s.golden_images.get_by("name", name) == []


def test_golden_image_upload_of_a_non_zip_is_refused(i3s, api, tmp_path):
    require(api, "/rest/golden-images")
    before = api("GET", "/rest/golden-images")[1]["total"]
    bad = tmp_path / "not-a-zip.zip"
    bad.write_bytes(b"this is not a zip file" * 100)
    with pytest.raises(HPOneViewException):
        i3s.golden_images.upload(str(bad), {"name": unique("bad gi"), "description": ""})
    assert api("GET", "/rest/golden-images")[1]["total"] == before


def test_artifact_bundle_upload_extract_download_through_the_sdk(i3s, api, tmp_path):
    require(api, "/rest/artifact-bundles")
    assert BUNDLE.is_file(), f"corpus bundle missing: {BUNDLE}"
    with zipfile.ZipFile(BUNDLE) as z:
        manifest = z.read("MANIFEST.MF").decode()
        script_names = [json.loads(z.read(n))["name"] for n in z.namelist()
                        if n.endswith("_planscript.json")]
    assert script_names
    bundle_name = next(line.split(":", 1)[1].strip() for line in manifest.splitlines()
                       if line.startswith("Artifact Name:"))
    copy = tmp_path / BUNDLE.name  # the SDK writes <file>.b64 next to the file
    copy.write_bytes(BUNDLE.read_bytes())
    uploaded = i3s.artifact_bundles.upload_bundle_from_file(str(copy))
    data = uploaded.data if hasattr(uploaded, "data") else uploaded
    assert data["name"] == bundle_name, data
    bundle = i3s.artifact_bundles.get_by_name(bundle_name)
    assert bundle is not None
    bundle.extract()
    for n in script_names:
        assert len(i3s.plan_scripts.get_by("name", n)) == 1, n
    out = tmp_path / "download.zip"
    assert bundle.download(str(out)) is True
    with zipfile.ZipFile(out) as z:
        names = z.namelist()
        assert "MANIFEST.MF" in names
        assert sum(n.endswith("_planscript.json") for n in names) == len(script_names)


def test_read_only_collections_list_through_the_sdk(i3s, api):
    require(api, "/rest/os-volumes")
    require(api, "/rest/deployment-groups")
    for members in (i3s.os_volumes.get_all(), i3s.deployment_groups.get_all()):
        assert isinstance(members, list)
        for m in members:
            assert m["uri"].startswith("/rest/") and m["name"]
    status, body = api("POST", "/rest/os-volumes", {"name": "nope"})
    assert status in (400, 405), (status, body)
    assert_hpe_error(status, body, status)


def test_alerts_and_nodes_read_through_the_sdk(i3s, api):
    """OneView's Alerts resource of the SDK reads /rest/alerts (a single appliance has no pair
    alerts: an empty collection in OneView's shape); the nodes collection answers too."""
    from hpOneView.resources.activity.alerts import Alerts

    alerts = Alerts(i3s.connection)
    assert alerts.get_all() == []
    assert alerts.get_all(filter="alertState='Active'") == []
    status, body = api("GET", "/rest/appliance/nodes")
    assert status == 200, body
    assert body["members"] == [] and body["total"] == 0
    status, body = api("GET", "/rest/alerts/none-such")
    assert_hpe_error(status, body, 404)
