"""The daemons the Python tests run against: storaged and deployd (from $STREAMER_BIN_DIR,
default target/debug) in a temporary directory on free loopback ports, and plain HTTPS
requests to them (certificate not verified)."""

import json
import os
import pathlib
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
BUNDLE = REPO / "../shared/corpus/bundles/HPE-ImageStreamer-Developer-2017-08-28-v5.0.zip"
PASSWORD = "sdk-test-password"
API_VERSION = 800
INSECURE = ssl.create_default_context()
INSECURE.check_hostname = False
INSECURE.verify_mode = ssl.CERT_NONE


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Appliance:
    """storaged + deployd in a temporary directory."""

    def __init__(self):
        bins = pathlib.Path(os.environ.get("STREAMER_BIN_DIR", REPO / "target/debug"))
        for b in ("storaged", "deployd"):
            if not (bins / b).is_file():
                # A missing build is a failure, never a skip.
                raise RuntimeError(f"{bins / b} is missing: run cargo build --workspace first")
        self.dir = tempfile.TemporaryDirectory(prefix="streamer-sdk-")
        d = pathlib.Path(self.dir.name)
        self.port = free_port()
        sock = d / "storaged.sock"
        nbd = f"127.0.0.1:{free_port()}"
        self.log = open(d / "daemons.log", "w+")
        self.storaged = subprocess.Popen(
            [bins / "storaged", "serve", "--data-dir", d / "storaged",
             "--nbd-listen", nbd, "--control", sock],
            stdout=self.log, stderr=subprocess.STDOUT)
        self._wait(lambda: sock.exists(), "storaged control socket")
        env = dict(os.environ, STREAMER_ADMIN_PASSWORD=PASSWORD)
        self.deployd = subprocess.Popen(
            [bins / "deployd", "--state-dir", d / "deployd",
             "--listen", f"127.0.0.1:{self.port}", "--storaged", sock, "--nbd", nbd],
            stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self.base = f"https://127.0.0.1:{self.port}"
        self._wait(self._answers, "deployd HTTPS API")

    def _wait(self, ready, what):
        deadline = time.time() + 30
        while time.time() < deadline:
            for p in (self.storaged, getattr(self, "deployd", None)):
                if p is not None and p.poll() is not None:
                    raise RuntimeError(f"a daemon exited before {what} was ready:\n{self.logs()}")
            if ready():
                return
            time.sleep(0.1)
        raise RuntimeError(f"{what} not ready after 30 s:\n{self.logs()}")

    def _answers(self):
        try:
            return http("GET", self.base + "/rest/version")[0] == 200
        except OSError:
            return False

    def logs(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def stop(self):
        for p in (self.deployd, self.storaged):
            p.terminate()
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.log.close()
        self.dir.cleanup()


def http(method, url, body=None, headers=None, raw=None):
    """(status, JSON body or text) of one request; `raw` bytes are sent as they are."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    h = {"Content-Type": "application/json", "Accept": "application/json"}
    h.update(headers or {})
    req = urllib.request.Request(url, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, context=INSECURE, timeout=60) as r:
            status, text = r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode()
    try:
        return status, json.loads(text) if text else None
    except ValueError:
        return status, text


@pytest.fixture(scope="module")
def appliance():
    a = Appliance()
    yield a
    a.stop()
