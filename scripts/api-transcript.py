#!/usr/bin/env python3
"""Records every answer of deployd (and streamerctl) to one fixed scenario, normalised, so the
transcripts of two builds can be compared with diff: a refactoring must not change a byte the
API or the CLI returns.

    scripts/api-transcript.py BIN_DIR > before.txt     # BIN_DIR holds storaged, deployd, streamerctl
    scripts/api-transcript.py OTHER_BIN_DIR > after.txt
    diff before.txt after.txt

The scenario covers every collection and the errors of each: logins, version rules, plan
scripts, build plans, deployment plans, golden images (upload, rename, download, archive),
artifact bundles (upload, extract, create, backup, restore), server hardware, server profiles
(deploy, re-deploy, delete), OS volumes, capture, users, tasks, the OpenAPI document, and the
CLI's tables, lint and dry-run. It needs root (plan runs mount file systems).

Normalised: UUIDs (numbered by first appearance), timestamps, durations in logs, and the
daemons' ports. Nothing else.
"""

import hashlib
import json
import os
import pathlib
import re
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid

REPO = pathlib.Path(__file__).resolve().parents[1]
CORPUS = REPO / "../shared/corpus"
PASSWORD = "transcript-password"
INSECURE = ssl.create_default_context()
INSECURE.check_hostname = False
INSECURE.verify_mode = ssl.CERT_NONE

UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
TIME_RE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")
MS_RE = re.compile(r"\b\d+ ms\b")
# OS volume names end in the first 8 hex digits of their storaged volume's UUID.
SHORT_RE = re.compile(r"\b(web-\d)-[0-9a-f]{8}\b")
# Users named in a 409 come in the store's key order, which is the order of random ids.
IN_USE_RE = re.compile(r"is in use by ([^\n]*?)\.\"")


class Normaliser:
    def __init__(self):
        self.ids = {}

    def __call__(self, text):
        def uid(m):
            return self.ids.setdefault(m.group(0), f"<uuid-{len(self.ids) + 1}>")

        text = UUID_RE.sub(uid, text)
        text = TIME_RE.sub("<time>", text)
        text = MS_RE.sub("<n> ms", text)
        text = SHORT_RE.sub(r"\1-<short>", text)
        text = IN_USE_RE.sub(
            lambda m: "is in use by " + ", ".join(sorted(m.group(1).split(", "))) + ".\"", text)
        for path, name in PATHS.items():
            text = text.replace(path, name)
        for port, name in PORTS.items():
            text = text.replace(str(port), name)
        return text


PORTS = {}
PATHS = {}


# A bundle's artifact lists come in the order of their (random) ids.
BUNDLE_LISTS = ("planScripts", "buildPlans", "deploymentPlans", "goldenimage")


def unordered(doc):
    if isinstance(doc, dict):
        out = {k: unordered(v) for k, v in doc.items()}
        for k in BUNDLE_LISTS:
            if isinstance(out.get(k), list):
                out[k] = sorted(out[k], key=lambda x: UUID_RE.sub("", json.dumps(x, sort_keys=True)))
        if "sessionID" in out:
            out["sessionID"] = "<session>"
        if out.get("importbundle") is False:
            # A bundle made here: its zip holds the time it was made.
            out.update(checkSum="<made now>", size="<made now>")
        return out
    if isinstance(doc, list):
        return [unordered(x) for x in doc]
    return doc


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Appliance:
    def __init__(self, bins):
        self.bins = bins
        self.dir = tempfile.TemporaryDirectory(prefix="streamer-transcript-")
        d = pathlib.Path(self.dir.name)
        PATHS[str(d)] = "<dir>"
        self.port = free_port()
        nbd = free_port()
        PORTS[self.port] = "<api-port>"
        PORTS[nbd] = "<nbd-port>"
        sock = d / "storaged.sock"
        self.log = open(d / "daemons.log", "w+")
        self.storaged = subprocess.Popen(
            [bins / "storaged", "serve", "--data-dir", d / "storaged",
             "--nbd-listen", f"127.0.0.1:{nbd}", "--control", sock],
            stdout=self.log, stderr=subprocess.STDOUT)
        wait(lambda: sock.exists(), "storaged")
        env = dict(os.environ, STREAMER_ADMIN_PASSWORD=PASSWORD)
        self.deployd = subprocess.Popen(
            [bins / "deployd", "--state-dir", d / "deployd", "--listen",
             f"127.0.0.1:{self.port}", "--storaged", sock, "--nbd", f"127.0.0.1:{nbd}"],
            stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self.base = f"https://127.0.0.1:{self.port}"
        wait(lambda: self.answers(), "deployd")
        self.home = d / "home"
        self.home.mkdir()

    def answers(self):
        try:
            urllib.request.urlopen(self.base + "/rest/version", context=INSECURE, timeout=2)
            return True
        except OSError:
            return False

    def stop(self):
        for p in (self.deployd, self.storaged):
            p.terminate()
            p.wait(timeout=30)
        self.dir.cleanup()


def wait(ready, what, limit=60):
    deadline = time.time() + limit
    while time.time() < deadline:
        if ready():
            return
        time.sleep(0.05)
    raise SystemExit(f"{what} not ready")


class Session:
    def __init__(self, app, out):
        self.app = app
        self.out = out
        self.token = None
        self.version = 800

    def call(self, method, path, body=None, raw=None, headers=None, show=True, ctype=None):
        h = {"Accept": "application/json", "X-API-Version": str(self.version)}
        if self.token:
            h["auth"] = self.token
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        if ctype:
            h["Content-Type"] = ctype
        for k, v in (headers or {}).items():
            if v is None:
                h.pop(k, None)
            else:
                h[k] = v
        req = urllib.request.Request(self.app.base + path, data=data, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, context=INSECURE, timeout=120) as r:
                status, payload, rh = r.status, r.read(), r.headers
        except urllib.error.HTTPError as e:
            status, payload, rh = e.code, e.read(), e.headers
        ctype_out = rh.get("Content-Type", "")
        try:
            doc = json.loads(payload) if payload and "json" in ctype_out else None
        except ValueError:
            doc = None
        if show:
            self.out(f"{method} {path} -> {status}")
            for k in ("Location", "Content-Type", "Content-Disposition"):
                if rh.get(k):
                    self.out(f"  {k}: {rh.get(k)}")
            if doc is not None:
                self.out("  " + json.dumps(unordered(doc), sort_keys=True, indent=1).replace("\n", "\n  "))
            elif payload:
                if "text" in ctype_out:
                    self.out("  text: " + payload.decode(errors="replace").replace("\n", "\n  text: "))
                elif "zip" in ctype_out and payload[:2] == b"PK" and not path.startswith("/rest/artifact-bundles/download/"):
                    # Made at request time: entry times (and a backup's ids) change.
                    self.out("  a zip made now")
                else:
                    self.out(f"  {len(payload)} bytes, sha256 {hashlib.sha256(payload).hexdigest()}")
        return status, doc, payload, rh

    def task(self, resp, show=True):
        """Waits for the task of a 202 and records it."""
        status, doc, _, rh = resp
        if status != 202:
            return doc
        uri = rh.get("Location") or doc["uri"]
        for _ in range(1200):
            _, t, _, _ = self.call("GET", uri, show=False)
            if t["taskState"] not in ("Running", "New", "Starting"):
                break
            time.sleep(0.1)
        if show:
            self.call("GET", uri)
        return t

    def multipart(self, path, filename, content, fields=None):
        boundary = "transcriptboundary" + uuid.uuid4().hex[:8]
        parts = []
        for k, v in (fields or {}).items():
            parts.append(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n".encode())
        parts.append(
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n".encode() + content + b"\r\n")
        parts.append(f"--{boundary}--\r\n".encode())
        return self.call("POST", path, raw=b"".join(parts),
                         ctype=f"multipart/form-data; boundary={boundary}",
                         headers={"uploadfilename": filename})


def ext4_image(mib=64):
    """The same image every time: mkfs with a fixed UUID, hash seed and clock."""
    path = pathlib.Path(tempfile.gettempdir()) / "streamer-transcript-golden.img"
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        subprocess.run(["truncate", "-s", f"{mib}M", str(tmp)], check=True)
        env = dict(os.environ, E2FSPROGS_FAKE_TIME="1600000000")
        subprocess.run(["mkfs.ext4", "-q", "-F", "-U", "11111111-2222-3333-4444-555555555555",
                        "-E", "hash_seed=11111111-2222-3333-4444-555555555555", str(tmp)],
                       check=True, env=env)
        tmp.rename(path)
    return path.read_bytes()


def first(doc):
    return doc["members"][0] if doc and doc.get("members") else None


def scenario(app, out):
    s = Session(app, out)
    out("## transport")
    s.call("GET", "/rest/version", headers={"X-API-Version": None})
    s.call("GET", "/rest/plan-scripts")
    s.token = "bogus"
    s.call("GET", "/rest/plan-scripts")
    s.token = None
    s.call("POST", "/rest/login-sessions", {"userName": "Administrator", "password": "wrong"})
    s.version = 9999
    s.call("POST", "/rest/login-sessions", {"userName": "Administrator", "password": PASSWORD})
    s.version = 800
    _, doc, _, _ = s.call("POST", "/rest/login-sessions",
                          {"userName": "Administrator", "password": PASSWORD}, show=False)
    s.token = doc["sessionID"]
    s.call("GET", "/rest/nothing-here")
    s.call("PATCH", "/rest/plan-scripts")
    s.call("POST", "/rest/plan-scripts", raw=b"x" * (9 << 20), ctype="application/json")

    out("## plan scripts")
    ps_deploy = {"name": "Set hostname", "description": "writes /etc/hostname", "planType": "deploy",
                 "content": "mount /dev/sda /\nmkdir-p /etc\nwrite /etc/hostname \"@Hostname:web01@\\n\"\n"
                            "mkdir-p /etc/streamer\nwrite /etc/streamer/nic @Nic1.ipaddress@\n"
                            "-!echo @Secret@ > /dev/null\n"}
    _, ps, _, _ = s.call("POST", "/rest/plan-scripts", ps_deploy)
    s.call("POST", "/rest/plan-scripts", ps_deploy)
    s.call("POST", "/rest/plan-scripts", raw=b"", ctype="application/json")
    s.call("POST", "/rest/plan-scripts", raw=b"{not json", ctype="application/json")
    s.call("POST", "/rest/plan-scripts", {"planType": "deploy"})
    s.call("POST", "/rest/plan-scripts", {"name": "x", "planType": "sideways"})
    s.call("POST", "/rest/plan-scripts", {"name": "\u0001bad", "planType": "deploy"})
    ps_capture = {"name": "Generalize", "planType": "capture",
                  "content": "mount /dev/sda /\nrm-f /etc/hostname\n"}
    _, psc, _, _ = s.call("POST", "/rest/plan-scripts", ps_capture)
    s.call("POST", "/rest/plan-scripts", {"name": "General one", "planType": "General",
                                          "content": "echo hi\n", "hpProvided": "true"})
    s.call("GET", "/rest/plan-scripts?sort=name:descending&start=0&count=2")
    s.call("GET", "/rest/plan-scripts?filter=%22name%3D%27Generalize%27%22")
    s.call("GET", "/rest/plan-scripts?filter=planType%3Dcapture&filter=name%20matches%20%27Gen%25%27")
    s.call("GET", "/rest/plan-scripts?filter=nonsense")
    s.call("GET", "/rest/plan-scripts?sort=name:sideways")
    s.call("GET", "/rest/plan-scripts?count=-7")
    s.call("GET", "/rest/plan-scripts/" + ps["id"])
    s.version = 300
    s.call("GET", "/rest/plan-scripts/" + ps["id"])
    s.version = 800
    s.call("GET", "/rest/plan-scripts/not-an-id")
    changed = dict(ps_deploy, description="changed")
    s.task(s.call("PUT", "/rest/plan-scripts/" + ps["id"], changed))
    s.call("PUT", "/rest/plan-scripts/" + ps["id"], changed, headers={"If-Match": "\"1\""})
    s.call("PUT", "/rest/plan-scripts/" + psc["id"], dict(ps_capture, name="Set hostname"))
    _, ro, _, _ = s.call("GET", "/rest/plan-scripts?filter=name%3D%27General%20one%27", show=False)
    ro = first(ro)
    s.call("PUT", "/rest/plan-scripts/" + ro["id"], {"name": "General one", "planType": "general"})
    s.call("DELETE", "/rest/plan-scripts/" + ro["id"])
    s.call("POST", "/rest/plan-scripts/differences/" + ps["id"], raw=json.dumps("mount /dev/sda /\nnew line\n").encode(),
           ctype="application/json")
    s.call("GET", f"/rest/plan-scripts/{ps['id']}/usedby/readonly")

    out("## build plans")
    bp_body = {"name": "Deploy BP", "oeBuildPlanType": "deploy",
               "buildStep": [{"serialNumber": "1", "planScriptUri": ps["uri"], "parameters": None}]}
    _, bp, _, _ = s.call("POST", "/rest/build-plans", bp_body)
    s.call("POST", "/rest/build-plans", bp_body)
    s.call("POST", "/rest/build-plans", {"name": "Bad", "oeBuildPlanType": "deploy",
                                         "buildStep": [{"serialNumber": 1, "planScriptUri": "/rest/plan-scripts/nope"},
                                                       {"serialNumber": 1, "planScriptUri": ps["uri"]}]})
    s.call("POST", "/rest/build-plans", {"name": "Bad type", "type": "Nope", "oeBuildPlanType": "deploy"})
    s.call("POST", "/rest/build-plans", {"name": "Capture with attrs", "oeBuildPlanType": "capture",
                                         "customAttributes": [{"name": "A", "type": "string"}]})
    bp_typed = {"name": "Typed BP", "oeBuildPlanType": "Deploy",
                "buildStep": [{"serialNumber": 1, "planScriptUri": ps["uri"]}],
                "customAttributes": [
                    {"name": "Hostname", "type": "hostname", "value": "web01"},
                    {"name": "Nic1", "type": "nic", "value": None,
                     "constraints": "{\"ipv4static\":true,\"ipv4dhcp\":true,\"ipv4disable\":false,\"parameters\":[\"ipaddress\"]}"},
                    {"name": "Secret", "type": "password", "value": "s3cret-value",
                     "constraints": "{\"minlen\":4}"},
                    {"name": "Count", "type": "number", "value": "3",
                     "constraints": "{\"minimum\":\"1\",\"maximum\":\"9\"}"},
                    {"name": "VolumeSize", "type": "number", "value": "100"}]}
    _, bpt, _, _ = s.call("POST", "/rest/build-plans", bp_typed)
    s.call("POST", "/rest/build-plans", dict(bp_typed, name="Bad attrs", customAttributes=[
        {"name": "N", "type": "number", "value": "x"}, {"name": "9x", "type": "string"},
        {"name": "O", "type": "option", "value": "c", "constraints": "{\"options\":[\"a\"]}"}]))
    _, bpc, _, _ = s.call("POST", "/rest/build-plans", {"name": "Capture BP", "oeBuildPlanType": "capture",
                                                         "buildStep": [{"serialNumber": "1", "planScriptUri": psc["uri"]}]})
    _, cur, _, _ = s.call("GET", bpt["uri"], show=False)
    s.task(s.call("PUT", bpt["uri"], dict(cur, description="masked password kept")))
    s.call("GET", bpt["uri"])
    s.call("GET", "/rest/build-plans?filter=oeBuildPlanType%3Dcapture")
    s.call("DELETE", ps["uri"])
    s.version = 300
    s.call("GET", bp["uri"])
    s.version = 800

    out("## golden images")
    image = ext4_image()
    s.call("POST", "/rest/golden-images", {"name": "x"})
    s.call("POST", "/rest/golden-images", {"name": "x", "imageCapture": True})
    gi = s.task(s.multipart("/rest/golden-images?name=Base%20image&description=ext4", "golden.img", image))
    s.multipart("/rest/golden-images?name=Base%20image", "golden.img", image)
    s.multipart("/rest/golden-images?name=Broken", "broken.zip", b"PK\x03\x04 not a zip at all")
    _, gis, _, _ = s.call("GET", "/rest/golden-images")
    gi = first(gis)
    s.call("GET", gi["uri"])
    s.task(s.call("PUT", gi["uri"], {"name": "Base image", "description": "renamed nothing"}))
    s.call("GET", "/rest/golden-images/download/" + gi["id"])
    s.call("GET", "/rest/golden-images/archive/" + gi["id"])

    out("## deployment plans")
    dp_body = {"name": "Web DP", "oeBuildPlanURI": bpt["uri"], "goldenImageURI": gi["uri"],
               "customAttributes": [{"name": "Hostname", "value": "web02", "visible": True, "editable": True},
                                    {"name": "Count", "value": "4", "editable": False}]}
    _, dp, _, _ = s.call("POST", "/rest/deployment-plans", dp_body)
    s.call("POST", "/rest/deployment-plans", dp_body)
    s.call("POST", "/rest/deployment-plans", {"name": "Bad refs", "oeBuildPlanURI": bpc["uri"],
                                              "goldenImageURI": "/rest/golden-images/nope"})
    s.call("POST", "/rest/deployment-plans", {"name": "Bad refs 2", "oeBuildPlanURI": "/rest/build-plans/nope"})
    s.call("POST", "/rest/deployment-plans", dict(dp_body, name="Bad attr",
                                                  customAttributes=[{"name": "Unknown", "value": "1"},
                                                                    {"name": "Hostname", "value": "bad host!"}]))
    _, dp_empty, _, _ = s.call("POST", "/rest/deployment-plans", {"name": "Empty DP", "oeBuildPlanURI": bpt["uri"]})
    s.call("GET", dp["uri"] + "/osdp")
    s.call("GET", dp["uri"] + "/usedby")
    _, cur, _, _ = s.call("GET", dp["uri"], show=False)
    s.task(s.call("PUT", dp["uri"], dict(cur, description="updated")))
    s.call("DELETE", gi["uri"])
    s.call("DELETE", bpt["uri"])

    out("## server hardware")
    hw_body = {"name": "Module 1", "macAddresses": ["aa:bb:cc:dd:ee:01", "aa:bb:cc:dd:ee:02"],
               "deploymentIpv4": "10.1.0.11", "redfish": {"address": "http://127.0.0.1:1", "username": "admin",
                                                         "password": "pw", "insecure": True}}
    _, hw, _, _ = s.call("POST", "/rest/server-hardware", hw_body)
    s.call("POST", "/rest/server-hardware", hw_body)
    s.call("POST", "/rest/server-hardware", dict(hw_body, name="Bad macs", macAddresses=["zz"]))
    s.call("POST", "/rest/server-hardware", dict(hw_body, name="Bad redfish", redfish={"address": " "}))
    _, hw2, _, _ = s.call("POST", "/rest/server-hardware", dict(hw_body, name="Module 2", deploymentIpv4="10.1.0.12"))
    _, hw3, _, _ = s.call("POST", "/rest/server-hardware", dict(hw_body, name="Module 3", deploymentIpv4="10.1.0.13"))
    s.call("GET", "/rest/server-hardware")
    s.call("PUT", hw["uri"] + "/powerState", {"powerState": "Sideways", "powerControl": "Nudge"})
    s.task(s.call("PUT", hw["uri"] + "/powerState", {"powerState": "On", "powerControl": "MomentaryPress"}))

    out("## server profiles and OS volumes")
    sp_body = {"name": "web-1", "serverHardwareUri": hw["uri"],
               "osDeploymentSettings": {"osDeploymentPlanUri": dp["uri"], "osCustomAttributes": [
                   {"name": "Hostname", "value": "web-one"}, {"name": "Nic1.ipaddress", "value": "10.1.0.50"},
                   {"name": "Nic1.dhcp", "value": "false"}, {"name": "Secret", "value": "profile-secret"}]}}
    s.call("POST", "/rest/server-profiles", dict(sp_body, osDeploymentSettings={
        "osDeploymentPlanUri": dp["uri"], "osCustomAttributes": [
            {"name": "Count", "value": "5"}, {"name": "_Initiator1.ip", "value": "1.2.3.4"},
            {"name": "Hostname", "value": "no spaces allowed"}]}))
    s.call("POST", "/rest/server-profiles", dict(sp_body, serverHardwareUri="/rest/server-hardware/nope"))
    t = s.task(s.call("POST", "/rest/server-profiles", sp_body))
    _, sps, _, _ = s.call("GET", "/rest/server-profiles")
    sp = first(sps)
    s.call("POST", "/rest/server-profiles", dict(sp_body, name="web-dup"))
    s.call("POST", "/rest/server-profiles", dict(sp_body, serverHardwareUri=hw2["uri"]))
    _, vols, _, _ = s.call("GET", "/rest/os-volumes")
    vol = first(vols)
    if vol:
        s.call("GET", vol["uri"])
        s.call("GET", vol["uri"] + "/storage")
        s.call("GET", "/rest/os-volumes/archive/" + vol["id"])
        s.call("GET", "/rest/os-volumes/archive/" + vol["name"])
        s.call("DELETE", vol["uri"])
    s.call("DELETE", dp["uri"])
    s.call("DELETE", hw["uri"])
    s.call("PUT", sp["uri"], dict(sp_body, serverHardwareUri=hw2["uri"]))
    redeploy = json.loads(json.dumps(sp_body))
    redeploy["osDeploymentSettings"]["osCustomAttributes"][0]["value"] = "web-uno"
    redeploy["osDeploymentSettings"]["osCustomAttributes"][3]["value"] = "****"
    redeploy["keepOsVolume"] = True
    s.task(s.call("PUT", sp["uri"], redeploy))
    s.call("GET", sp["uri"])
    s.call("GET", "/rest/os-volumes")

    out("## capture")
    _, vols, _, _ = s.call("GET", "/rest/os-volumes?filter=statelessServerUri%3D%27" + sp["uri"] + "%27", show=False)
    vol = first(vols)
    s.call("POST", "/rest/golden-images", {"name": "Captured", "imageCapture": True,
                                           "osVolumeURI": "/rest/os-volumes/nope", "buildPlanUri": bpt["uri"]})
    if vol:
        cap = s.task(s.call("POST", "/rest/golden-images", {"name": "Captured", "imageCapture": True,
                                                            "osVolumeURI": vol["uri"], "buildPlanUri": bpc["uri"]}))
        s.call("GET", "/rest/golden-images?filter=name%3D%27Captured%27")
        _, caps, _, _ = s.call("GET", "/rest/golden-images?filter=name%3D%27Captured%27", show=False)
        if first(caps):
            s.call("GET", "/rest/golden-images/archive/" + first(caps)["id"])

    out("## failing deploy")
    bad_ps = {"name": "Fails", "planType": "deploy", "content": "mount /dev/sda /\nIntentionally_fail\n"}
    _, bps_, _, _ = s.call("POST", "/rest/plan-scripts", bad_ps)
    _, bbp, _, _ = s.call("POST", "/rest/build-plans", {"name": "Failing BP", "oeBuildPlanType": "deploy",
                                                         "buildStep": [{"serialNumber": "1", "planScriptUri": bps_["uri"]}]})
    _, bdp, _, _ = s.call("POST", "/rest/deployment-plans", {"name": "Failing DP", "oeBuildPlanURI": bbp["uri"],
                                                              "goldenImageURI": gi["uri"]})
    s.task(s.call("POST", "/rest/server-profiles", {"name": "web-2", "serverHardwareUri": hw3["uri"],
                                                    "osDeploymentSettings": {"osDeploymentPlanUri": bdp["uri"]}}))
    _, sps, _, _ = s.call("GET", "/rest/server-profiles?filter=name%3D%27web-2%27")
    s.task(s.call("DELETE", first(sps)["uri"]))
    s.task(s.call("DELETE", sp["uri"]))
    s.call("GET", "/rest/os-volumes")

    out("## artifact bundles")
    bundle = (CORPUS / "bundles/HPE-ImageStreamer-Developer-2017-08-28-v5.0.zip").read_bytes()
    up = s.task(s.multipart("/rest/artifact-bundles", "dev.zip", bundle))
    s.multipart("/rest/artifact-bundles", "dev.zip", bundle)
    s.multipart("/rest/artifact-bundles", "bad.zip", b"not a zip")
    _, abs_, _, _ = s.call("GET", "/rest/artifact-bundles")
    ab = first(abs_)
    s.call("GET", ab["uri"])
    s.task(s.call("PUT", ab["uri"] + "?extract=true", raw=b"", ctype="text/plain"))
    s.task(s.call("PUT", ab["uri"] + "?extract=true", raw=b"", ctype="text/plain"))
    s.call("GET", "/rest/plan-scripts?sort=name:ascending&count=5")
    s.task(s.call("PUT", ab["uri"], {"name": "Renamed bundle"}))
    s.call("GET", "/rest/artifact-bundles/download/" + ab["id"])
    s.call("PUT", ab["uri"] + "/stopArtifactCreate")
    made = s.task(s.call("POST", "/rest/artifact-bundles", {
        "name": "Made here", "description": "from artifacts",
        "deploymentPlans": [{"resourceUri": dp_empty["uri"], "readOnly": False}]}))
    s.call("POST", "/rest/artifact-bundles", {"name": "Made here 2",
                                              "planScripts": [{"resourceUri": "/rest/build-plans/x"}]})
    s.call("GET", "/rest/artifact-bundles?filter=name%3D%27Made%20here%27")
    s.task(s.call("POST", "/rest/artifact-bundles/backups", raw=b"", ctype="application/json"))
    _, backups, _, _ = s.call("GET", "/rest/artifact-bundles/backups")
    if first(backups):
        s.call("GET", first(backups)["uri"])
        s.task(s.call("PUT", first(backups)["uri"], {}))
    s.task(s.call("DELETE", ab["uri"]))
    s.call("GET", "/rest/deployment-groups")

    out("## users and sessions")
    s.call("POST", "/rest/users", {"userName": "viewer", "password": "short", "roles": ["Read only"]})
    s.call("POST", "/rest/users", {"userName": "viewer", "fullName": "V", "password": "long-enough-1",
                                   "roles": ["Read only"]})
    s.call("POST", "/rest/users", {"userName": "viewer", "password": "long-enough-1", "roles": ["Read only"]})
    s.call("GET", "/rest/users")
    s.call("PUT", "/rest/users/viewer", {"fullName": "Viewer"})
    s.call("DELETE", "/rest/users/Administrator")
    v = Session(app, out)
    _, doc, _, _ = v.call("POST", "/rest/login-sessions", {"userName": "viewer", "password": "long-enough-1"},
                          show=False)
    v.token = doc["sessionID"]
    v.call("GET", "/rest/plan-scripts?count=1")
    v.call("POST", "/rest/plan-scripts", {"name": "nope", "planType": "deploy"})
    v.call("PUT", "/rest/login-sessions")
    v.call("DELETE", "/rest/login-sessions")
    s.call("DELETE", "/rest/users/viewer")
    s.call("POST", "/rest/appliance/shutdown?type=HALT")
    s.call("POST", "/rest/appliance/shutdown?type=nap")

    out("## tasks")
    s.call("GET", "/rest/tasks?filter=name%3D%27Create%27&sort=created:ascending&count=3")
    s.call("GET", "/rest/tasks/nope")

    out("## the API's description")
    s.call("GET", "/rest/openapi.json")
    return s


def cli(app, out):
    out("## streamerctl")
    env = dict(os.environ, HOME=str(app.home))
    ctl = app.bins / "streamerctl"

    def run(*args, stdin=None):
        r = subprocess.run([ctl, *args], capture_output=True, text=True, env=env, input=stdin)
        out(f"$ streamerctl {' '.join(map(str, args))} -> {r.returncode}")
        for line in (r.stdout + r.stderr).splitlines():
            out("  " + line)

    run("login", "--url", app.base, "--insecure", "--password-stdin", stdin=PASSWORD + "\n")
    run("plan-script", "list")
    run("build-plan", "list")
    run("deployment-plan", "list")
    run("golden-image", "list")
    run("os-volume", "list")
    run("artifact-bundle", "list")
    run("server-hardware", "list")
    run("server-profile", "list")
    run("user", "list")
    run("plan-script", "get", "Set hostname")
    run("--json", "build-plan", "get", "Typed BP")
    run("plan-script", "get", "no such script")
    run("deployment-group", "list")
    scripts = sorted((CORPUS / "planscripts").glob("*.gfs"))[:25]
    run("plan-script", "lint", *scripts)
    bad = pathlib.Path(app.dir.name) / "bad.gfs"
    bad.write_text("mount /dev/sda\nwrte /etc/x y\n@Unclosed\nmkdir-p \"/x\n")
    run("plan-script", "lint", bad)
    run("plan-script", "dry-run", scripts[0], scripts[1], "--attr", "Hostname=web")
    run("logout")


def main():
    bins = pathlib.Path(sys.argv[1]).resolve()
    norm = Normaliser()
    lines = []

    def out(line):
        lines.append(norm(line))

    app = Appliance(bins)
    try:
        scenario(app, out)
        cli(app, out)
    finally:
        app.stop()
        print("\n".join(lines))


if __name__ == "__main__":
    main()
