"""The web console in a real browser: Debian's Chromium, headless, driven through WebDriver
(Selenium with Debian's chromedriver; no browser download) against the real daemons.

Every page view is screenshotted into $STREAMER_UI_SHOTS (default target/ui-screenshots) and
must show content; any console error, a Content-Security-Policy violation included, fails
the test that caused it.
"""

import os
import pathlib
import urllib.parse
import urllib.request

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

from appliance import (  # noqa: F401
    API_VERSION, BUNDLE, INSECURE, PASSWORD, REPO, appliance, http)

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SHOTS = pathlib.Path(os.environ.get("STREAMER_UI_SHOTS", REPO / "target/ui-screenshots"))


@pytest.fixture(scope="module")
def browser():
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            # A missing browser is a failure, never a skip (apt-get install chromium
            # chromium-driver: scripts/install-deps.sh does).
            raise RuntimeError(f"{path} is missing: apt-get install chromium chromium-driver")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--ignore-certificate-errors", "--window-size=1280,800", "--lang=en-US"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(30)
    SHOTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


@pytest.fixture
def clean_console(browser):
    """Fails the test on any console error or CSP violation it caused."""
    browser.get_log("browser")  # drop what came before
    yield
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, f"console errors: {errors}"


def logged_out(browser, appliance):
    """Opens the console with no session (whatever an earlier test left)."""
    browser.get(appliance.base + "/")
    browser.execute_script("sessionStorage.clear()")
    browser.get(appliance.base + "/#/login")
    browser.refresh()


def wait(browser, condition, timeout=15):
    # A live page re-renders (a task's progress): an element read just as it is replaced is
    # stale, and the condition is tried again.
    return WebDriverWait(browser, timeout,
                         ignored_exceptions=(StaleElementReferenceException,)).until(condition)


def shot(browser, name):
    """Saves a screenshot of the page and checks that it shows something."""
    path = SHOTS / f"{name}.png"
    browser.execute_script("window.scrollTo(0, 0)")
    assert browser.save_screenshot(str(path)), name
    assert path.stat().st_size > 5000, f"{path} is nearly empty"
    text = browser.find_element(By.TAG_NAME, "main").text.strip()
    assert len(text) > 20, f"{name}: the page shows almost nothing: {text!r}"


def api_call(appliance, method, path, body=None):
    status, token = http("POST", appliance.base + "/rest/login-sessions",
                         {"userName": "Administrator", "password": PASSWORD})
    assert status == 200, token
    return http(method, appliance.base + path, body,
                {"auth": token["sessionID"], "X-API-Version": str(API_VERSION)})


def test_the_console_is_served_with_a_strict_policy(appliance):
    with urllib.request.urlopen(appliance.base + "/", context=INSECURE, timeout=30) as r:
        page = r.read().decode()
        csp = r.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp, csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, csp
        assert r.headers["X-Frame-Options"] == "DENY"
        assert r.headers["Cache-Control"] == "no-cache"
    assert "<script>" not in page, "inline script"
    script = page.split('<script type="module" src="')[1].split('"')[0]
    assert script.startswith("/ui/app.") and script.endswith(".js"), script
    with urllib.request.urlopen(appliance.base + script, context=INSECURE, timeout=30) as r:
        assert "immutable" in r.headers["Cache-Control"]
        assert r.headers["Content-Type"].startswith("text/javascript")
    # An asset name that is not the current hash is not served (an old page reloads).
    stale = script.replace("/ui/app.", "/ui/app.0000")
    status, _ = http("GET", appliance.base + stale)
    assert status == 404


def test_log_in_see_the_dashboard_activity_and_a_plan_script(appliance, browser, clean_console):
    status, created = api_call(appliance, "POST", "/rest/plan-scripts", {
        "name": "ui hostname", "planType": "deploy", "description": "sets the hostname",
        "content": "# set the host name\nmount /dev/sda2 /\nwrite /etc/hostname \"@Hostname@\\n\"\n"})
    assert status == 201, created
    browser.get(appliance.base + "/")
    user = wait(browser, ec.visibility_of_element_located((By.ID, "user")))
    shot(browser, "login")

    # A wrong password: HPE's message, and the form stays.
    user.clear()
    user.send_keys("Administrator")
    browser.find_element(By.ID, "password").send_keys("not-the-password")
    browser.find_element(By.CSS_SELECTOR, "form.login button[type=submit]").click()
    alert = wait(browser, ec.visibility_of_element_located((By.CSS_SELECTOR, "[role=alert]")))
    assert alert.text.strip(), "an empty error"
    browser.get_log("browser")  # the 401 of a refused login is logged by Chromium: expected

    password = browser.find_element(By.ID, "password")
    password.clear()
    password.send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "form.login button[type=submit]").click()
    wait(browser, ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Dashboard"))
    wait(browser, ec.text_to_be_present_in_element((By.ID, "main"), "Plan scripts"))
    main = browser.find_element(By.ID, "main").text
    assert "A single appliance" in main, main
    assert "Active alerts (0)" in main, main
    assert "free of" in main, main  # the data partition's capacity
    shot(browser, "dashboard")
    assert browser.find_element(By.ID, "who").text == "Administrator"

    # The plan scripts page lists it; its page highlights the attribute and the comment.
    browser.find_element(By.CSS_SELECTOR, "nav a[href='#/plan-scripts']").click()
    link = wait(browser, ec.element_to_be_clickable((By.LINK_TEXT, "ui hostname")))
    shot(browser, "plan-scripts")
    # Filtered as you type.
    browser.find_element(By.ID, "ps-filter").send_keys("no such words")
    wait(browser, ec.text_to_be_present_in_element((By.TAG_NAME, "caption"), "No plan script matches"))
    browser.find_element(By.ID, "ps-filter").clear()
    browser.find_element(By.ID, "ps-filter").send_keys("HOSTNAME")
    link = wait(browser, ec.element_to_be_clickable((By.LINK_TEXT, "ui hostname")))
    link.click()
    wait(browser, ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), "ui hostname"))
    attr = browser.find_element(By.CSS_SELECTOR, "pre.script .at")
    assert attr.text == "@Hostname@"
    assert browser.find_element(By.CSS_SELECTOR, "pre.script .cm").text == "# set the host name"
    shot(browser, "plan-script")

    # The activity page follows tasks as they come (no reload): a new one appears.
    browser.find_element(By.CSS_SELECTOR, "nav a[href='#/activity']").click()
    wait(browser, ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Activity"))
    assert "Create backup" not in browser.find_element(By.ID, "main").text
    status, groups = api_call(appliance, "GET", "/rest/deployment-groups")
    assert status == 200, groups
    status, task = api_call(appliance, "POST", "/rest/artifact-bundles/backups",
                            {"deploymentGroupURI": groups["members"][0]["uri"]})
    assert status == 202, task
    wait(browser, ec.text_to_be_present_in_element((By.ID, "main"), "Create backup"))
    wait(browser, ec.text_to_be_present_in_element((By.ID, "main"), "Completed"), timeout=60)
    browser.find_element(By.ID, "task-filter").send_keys("backup")
    wait(browser, ec.text_to_be_present_in_element((By.CSS_SELECTOR, ".live table"), "Create backup"))
    shot(browser, "activity")
    Select(browser.find_element(By.ID, "state-filter")).select_by_value("Error")
    wait(browser, ec.text_to_be_present_in_element((By.TAG_NAME, "caption"), "No tasks yet."))

    # Log out: back at the login form; the API no longer knows the session.
    browser.find_element(By.ID, "logout").click()
    wait(browser, ec.visibility_of_element_located((By.ID, "password")))
    assert browser.execute_script("return sessionStorage.getItem('streamer.token')") is None


def test_the_lint_endpoint_answers_findings_by_line_even_to_a_read_only_user(appliance):
    status, _ = api_call(appliance, "POST", "/rest/users", {
        "userName": "viewer", "password": "viewer-password-1", "fullName": "Viewer",
        "roles": ["Read only"], "enabled": True})
    assert status in (200, 201), status
    status, login = http("POST", appliance.base + "/rest/login-sessions",
                         {"userName": "viewer", "password": "viewer-password-1"})
    assert status == 200, login
    headers = {"auth": login["sessionID"], "X-API-Version": str(API_VERSION)}
    status, r = http("POST", appliance.base + "/rest/plan-scripts/lint",
                     {"content": "mount /dev/sda2 /\nbogus-command x\necho @Who:web@\n"}, headers)
    assert status == 200, r
    assert r["errors"] == 1, r
    assert r["findings"][0]["line"] == 2 and r["findings"][0]["severity"] == "error", r
    assert [a["name"] for a in r["customAttributes"]] == ["Who"], r
    # Checking is all a read-only user may do with plan scripts.
    status, _ = http("POST", appliance.base + "/rest/plan-scripts",
                     {"name": "nope", "planType": "deploy", "content": "echo x\n"}, headers)
    assert status == 403
    status, r = http("POST", appliance.base + "/rest/plan-scripts/lint", {"text": "x"}, headers)
    assert status == 400 and "content" in r["message"], r


def test_edit_a_plan_script_and_see_a_lint_error_on_its_line(appliance, browser, clean_console):
    logged_out(browser, appliance)
    wait(browser, ec.visibility_of_element_located((By.ID, "password"))).send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "form.login button[type=submit]").click()
    wait(browser, ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Dashboard"))
    browser.get(appliance.base + "/#/plan-scripts/new")
    wait(browser, ec.visibility_of_element_located((By.ID, "ps-content")))
    browser.find_element(By.ID, "ps-name").send_keys("ui edited")
    text = browser.find_element(By.ID, "ps-content")
    text.send_keys("mount /dev/sda2 /\nbogus-command x\n")
    wait(browser, ec.text_to_be_present_in_element((By.ID, "lint"), "line 2: error"))
    # ... and marked on line 2 itself, beside the text.
    marked = browser.find_elements(By.CSS_SELECTOR, ".gutter .mark.bad")
    assert [m.text for m in marked] == ["2"], [m.text for m in marked]
    assert "bogus-command" in marked[0].get_attribute("title")
    save = browser.find_element(By.CSS_SELECTOR, "form.editor button[type=submit]")
    assert not save.is_enabled(), "a script with errors can be saved"
    shot(browser, "plan-script-editor")
    # Fixed as you type: the error goes, the attribute is found, and it saves.
    text.clear()
    text.send_keys("mount /dev/sda2 /\nwrite /etc/motd \"@Motd:hello@\\n\"\n")
    wait(browser, ec.text_to_be_present_in_element((By.ID, "lint"), "No problems found."))
    wait(browser, ec.text_to_be_present_in_element((By.ID, "ps-attributes"), "Motd"))
    # Highlighted in the editor itself, as typed: the command and the attribute.
    layer = browser.find_element(By.CSS_SELECTOR, ".code-stack .layer")
    assert [k.text for k in layer.find_elements(By.CSS_SELECTOR, ".kw")] == ["mount", "write"]
    assert layer.find_element(By.CSS_SELECTOR, ".at").text == "@Motd:hello@"
    shot(browser, "plan-script-editor-fixed")
    wait(browser, ec.element_to_be_clickable((By.CSS_SELECTOR, "form.editor button[type=submit]")))
    browser.find_element(By.CSS_SELECTOR, "form.editor button[type=submit]").click()
    wait(browser, ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), "ui edited"))
    assert browser.find_element(By.CSS_SELECTOR, "pre.script .at").text == "@Motd:hello@"
    # Edited again (a replace): saved, and back on its page.
    browser.find_element(By.CSS_SELECTOR, "a.button[href$='/edit']").click()
    text = wait(browser, ec.visibility_of_element_located((By.ID, "ps-content")))
    text.send_keys("# edited twice\n")
    wait(browser, ec.text_to_be_present_in_element((By.ID, "lint"), "No problems found."))
    browser.find_element(By.CSS_SELECTOR, "form.editor button[type=submit]").click()
    wait(browser, ec.text_to_be_present_in_element((By.CSS_SELECTOR, "pre.script"), "# edited twice"))
    query = urllib.parse.quote("name='ui edited'")
    status, listed = api_call(appliance, "GET", f"/rest/plan-scripts?filter={query}")
    assert status == 200 and listed["members"][0]["content"].startswith("mount /dev/sda2 /"), listed
    assert "# edited twice" in listed["members"][0]["content"], listed


def test_a_read_only_user_sees_no_control_it_cannot_use(appliance, browser, clean_console):
    status, _ = api_call(appliance, "POST", "/rest/users", {
        "userName": "reader", "password": "reader-password-1", "fullName": "Reader",
        "roles": ["Read only"], "enabled": True})
    assert status in (200, 201), status
    logged_out(browser, appliance)
    user = wait(browser, ec.visibility_of_element_located((By.ID, "user")))
    user.clear()
    user.send_keys("reader")
    browser.find_element(By.ID, "password").send_keys("reader-password-1")
    browser.find_element(By.CSS_SELECTOR, "form.login button[type=submit]").click()
    wait(browser, ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Dashboard"))
    assert not browser.find_element(By.CSS_SELECTOR, "nav a[href='#/deploy']").is_displayed()
    browser.find_element(By.CSS_SELECTOR, "nav a[href='#/plan-scripts']").click()
    wait(browser, ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Plan scripts"))
    assert not browser.find_element(By.CSS_SELECTOR, "a[href='#/plan-scripts/new']").is_displayed()
    shot(browser, "read-only-plan-scripts")
    browser.get(appliance.base + "/#/deploy")
    wait(browser, ec.text_to_be_present_in_element((By.ID, "main"), "cannot deploy"))
    # No upload, capture or delete controls; no users page.
    for page, heading in (("golden-images", "Golden images"), ("bundles", "Artifact bundles"),
                          ("compute-modules", "Compute modules")):
        browser.get(appliance.base + f"/#/{page}")
        wait(browser, ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), heading))
        wait(browser, ec.presence_of_element_located((By.CSS_SELECTOR, ".live table")))
        shown = [e for e in browser.find_elements(By.CSS_SELECTOR, "form, button.write")
                 if e.is_displayed()]
        assert not shown, f"{page}: {[e.text for e in shown]}"
    assert not browser.find_element(By.CSS_SELECTOR, "nav a[href='#/users']").is_displayed()
    browser.get(appliance.base + "/#/users")
    wait(browser, ec.text_to_be_present_in_element((By.ID, "main"), "cannot manage users"))


DEV_PLAN = "HPE - Developer 1.0 - Deployment Test (UEFI) - 2017-03-24"


CAPTURE_PLAN = "HPE - Developer 1.0 - example UEFI capture - 2017-03-24"
DEPLOY_BUILD_PLAN = "HPE - Developer 1.0 - example UEFI deploy - 2017-03-24"


def log_in(browser, appliance, user="Administrator", password=PASSWORD):
    logged_out(browser, appliance)
    name = wait(browser, ec.visibility_of_element_located((By.ID, "user")))
    name.clear()
    name.send_keys(user)
    browser.find_element(By.ID, "password").send_keys(password)
    browser.find_element(By.CSS_SELECTOR, "form.login button[type=submit]").click()
    wait(browser, ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Dashboard"))


def go(browser, page, heading):
    browser.find_element(By.CSS_SELECTOR, f"nav a[href='#/{page}']").click()
    wait(browser, ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), heading))


def newest_task_completes(browser, name, timeout=120):
    """The page's newest followed task (first in its outcome area), named `name`, ends
    Completed (an Error fails at once, with what the page shows)."""
    def done(b):
        heads = b.find_elements(By.CSS_SELECTOR, ".outcome .task h2")
        text = heads[0].text if heads else ""
        if not text.startswith(name + " "):
            return False
        assert "Error" not in text and "Killed" not in text, \
            b.find_element(By.CSS_SELECTOR, ".outcome").text
        return "Completed" in text
    wait(browser, done, timeout)


def click_twice(browser, label):
    """A confirm button: the first click arms it, the second acts."""
    button = wait(browser, ec.element_to_be_clickable(
        (By.CSS_SELECTOR, f"button[aria-label='{label}']")))
    button.click()
    wait(browser, lambda b: b.find_element(
        By.CSS_SELECTOR, f"button[aria-label='{label}']").get_attribute("data-armed") is not None)
    browser.find_element(By.CSS_SELECTOR, f"button[aria-label='{label}']").click()


def names(appliance, path):
    status, listed = api_call(appliance, "GET", path + "?count=500")
    assert status == 200, listed
    return [m.get("name") for m in listed["members"]]


def test_import_deploy_capture_and_delete_in_the_console(appliance, browser, clean_console):
    log_in(browser, appliance)

    # Import HPE's Developer bundle: upload (a progress bar, a task), then extract.
    go(browser, "bundles", "Artifact bundles")
    browser.find_element(By.ID, "bundle-file").send_keys(str(BUNDLE.resolve()))
    browser.find_element(
        By.CSS_SELECTOR, "form[aria-labelledby='bundle-file-title'] button[type=submit]").click()
    newest_task_completes(browser, "Upload")
    extract = wait(browser, ec.element_to_be_clickable(
        (By.CSS_SELECTOR, "button[aria-label^='Extract ']")))
    extract.click()
    newest_task_completes(browser, "Extract")
    assert DEV_PLAN in names(appliance, "/rest/deployment-plans")
    wait(browser, ec.text_to_be_present_in_element((By.CSS_SELECTOR, ".live table"),
                                                   "7 plan scripts"))
    shot(browser, "bundles")

    # Register a compute module (its Redfish is not there: the power column says so).
    go(browser, "compute-modules", "Compute modules")
    for field_id, value in (("reg-name", "bay-ui"), ("reg-mac", "52:54:00:aa:00:21"),
                            ("reg-ip", "10.0.0.21"), ("reg-rf-address", "127.0.0.1:9"),
                            ("reg-rf-user", "admin"), ("reg-rf-password", "unused-pw")):
        browser.find_element(By.ID, field_id).send_keys(value)
    browser.find_element(By.CSS_SELECTOR, "form[aria-labelledby='reg-title'] button").click()
    wait(browser, ec.text_to_be_present_in_element((By.CSS_SELECTOR, ".live table"), "bay-ui"))
    assert "bay-ui" in names(appliance, "/rest/server-hardware")
    shot(browser, "compute-modules")

    # Deploy from a form made from the plan's attributes, checked per type before sending.
    go(browser, "deploy", "Deploy a compute module")
    browser.find_element(By.ID, "sp-name").send_keys("ui-dev1")
    Select(browser.find_element(By.ID, "sp-hardware")).select_by_visible_text("bay-ui")
    Select(browser.find_element(By.ID, "sp-plan")).select_by_visible_text(DEV_PLAN)
    ip = wait(browser, ec.visibility_of_element_located((By.ID, "attr-ExampleIPv4Address")))
    values = {"ExampleString1": "from the browser", "ExampleString2": "second",
              "ExampleNumber1": "42", "ExampleFQDN": "ui.example.com",
              "ExamplePassword": "pw12345"}
    for name, value in values.items():
        field = browser.find_element(By.ID, f"attr-{name}")
        field.clear()
        field.send_keys(value)
    ip.clear()
    ip.send_keys("10.1.2.300")
    assert "IPv4" in browser.find_element(By.ID, "attr-ExampleIPv4Address-hint").text
    browser.find_element(By.ID, "sp-power").click()  # no power: this module has no Redfish
    browser.find_element(By.CSS_SELECTOR, "#main form button[type=submit]").click()
    wait(browser, ec.text_to_be_present_in_element((By.ID, "main"), "Correct 1 field"))
    assert names(appliance, "/rest/server-profiles") == [], "a profile from an invalid form"
    ip.clear()
    ip.send_keys("10.1.2.3")
    browser.find_element(By.CSS_SELECTOR, "#main form button[type=submit]").click()
    wait(browser, ec.visibility_of_element_located((By.ID, "task")))
    wait(browser, ec.text_to_be_present_in_element((By.ID, "task"), "Completed"), timeout=180)
    shot(browser, "deploy")
    status, profiles = api_call(appliance, "GET", "/rest/server-profiles")
    assert profiles["total"] == 1 and profiles["members"][0]["name"] == "ui-dev1", profiles
    attrs = {a["name"]: a["value"] for a in
             profiles["members"][0]["osDeploymentSettings"]["osCustomAttributes"]}
    assert attrs["ExampleString1"] == "from the browser", attrs

    go(browser, "server-profiles", "Server profiles")
    wait(browser, ec.text_to_be_present_in_element((By.CSS_SELECTOR, ".live table"), "bay-ui"))
    shot(browser, "server-profiles")

    # The OS volume it made, with its activity log.
    go(browser, "os-volumes", "OS volumes")
    volume = wait(browser, ec.element_to_be_clickable((By.CSS_SELECTOR, ".live table a")))
    shot(browser, "os-volumes")
    volume.click()
    wait(browser, ec.text_to_be_present_in_element((By.ID, "main"), "Activity log"))
    shot(browser, "os-volume")

    # Capture a golden image from it with the bundle's capture build plan.
    go(browser, "golden-images", "Golden images")
    browser.find_element(By.ID, "cap-name").send_keys("ui-captured")
    Select(browser.find_element(By.ID, "cap-volume")).select_by_index(1)
    Select(browser.find_element(By.ID, "cap-plan")).select_by_visible_text(CAPTURE_PLAN)
    browser.find_element(By.CSS_SELECTOR, "form[aria-labelledby='cap-title'] button").click()
    newest_task_completes(browser, "Add", timeout=180)
    assert "ui-captured" in names(appliance, "/rest/golden-images")
    wait(browser, ec.text_to_be_present_in_element((By.CSS_SELECTOR, ".live table"),
                                                   "ui-captured"))
    shot(browser, "golden-images")

    # Delete: the captured image, then the profile (its task followed to the end).
    click_twice(browser, "Delete ui-captured")
    wait(browser, lambda b: "ui-captured" not in names(appliance, "/rest/golden-images"))
    wait(browser, lambda b: "ui-captured" not in b.find_element(By.CSS_SELECTOR, ".live").text)
    go(browser, "server-profiles", "Server profiles")
    click_twice(browser, "Delete ui-dev1")
    newest_task_completes(browser, "Delete")
    assert names(appliance, "/rest/server-profiles") == []


def test_a_golden_image_upload_shows_progress_and_can_be_cancelled(appliance, browser,
                                                                   clean_console, tmp_path):
    image = tmp_path / "small.raw"
    image.write_bytes(os.urandom(3 << 20))
    log_in(browser, appliance)
    go(browser, "golden-images", "Golden images")
    # Slowed to 256 KiB/s, the 3 MiB upload is cancelled half-way: nothing is stored.
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd("Network.emulateNetworkConditions", {
        "offline": False, "latency": 0, "downloadThroughput": -1,
        "uploadThroughput": 256 << 10})
    try:
        browser.find_element(By.ID, "gi-file").send_keys(str(image))
        browser.find_element(By.ID, "gi-name").send_keys("ui-cancelled")
        browser.find_element(By.CSS_SELECTOR, "form[aria-labelledby='gi-file-title'] button[type=submit]").click()
        bar = wait(browser, ec.visibility_of_element_located(
            (By.CSS_SELECTOR, "progress[aria-label='Upload a golden image progress']")))
        wait(browser, lambda b: 0 < int(bar.get_attribute("value")) < 100, timeout=30)
        shot(browser, "golden-image-upload")
        browser.find_element(By.XPATH, "//form[@aria-labelledby='gi-file-title']//button[text()='Cancel']").click()
        wait(browser, ec.text_to_be_present_in_element((By.CSS_SELECTOR, ".outcome"), "Upload cancelled"))
    finally:
        browser.execute_cdp_cmd("Network.emulateNetworkConditions", {
            "offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
    assert "ui-cancelled" not in names(appliance, "/rest/golden-images")
    # At full speed it completes and is listed (the form kept what was typed, for a retry).
    assert browser.find_element(By.ID, "gi-name").get_attribute("value") == "ui-cancelled"
    browser.find_element(By.ID, "gi-name").clear()
    browser.find_element(By.ID, "gi-name").send_keys("ui-uploaded")
    browser.find_element(By.CSS_SELECTOR, "form[aria-labelledby='gi-file-title'] button[type=submit]").click()
    newest_task_completes(browser, "Add")
    assert "ui-uploaded" in names(appliance, "/rest/golden-images")
    wait(browser, ec.text_to_be_present_in_element((By.CSS_SELECTOR, ".live table"), "ui-uploaded"))
    browser.get_log("browser")  # the cancelled request is logged by Chromium: expected


def test_build_and_deployment_plans_made_in_the_console(appliance, browser, clean_console):
    scripts = []
    for name, content in (("ui step one", "echo one\n"), ("ui step two", "echo @Two:2@\n")):
        status, s = api_call(appliance, "POST", "/rest/plan-scripts",
                             {"name": name, "planType": "deploy", "content": content})
        assert status == 201, s
        scripts.append(s)
    log_in(browser, appliance)

    # A build plan of two steps, the second moved first.
    go(browser, "build-plans", "Build plans")
    shot(browser, "build-plans")
    browser.find_element(By.CSS_SELECTOR, "a[href='#/build-plans/new']").click()
    wait(browser, ec.visibility_of_element_located((By.ID, "bp-name"))).send_keys("ui build")
    Select(browser.find_element(By.CSS_SELECTOR, ".step-script")).select_by_visible_text(
        "ui step one")
    browser.find_element(By.XPATH, "//button[text()='Add a step']").click()
    Select(browser.find_elements(By.CSS_SELECTOR, ".step-script")[1]).select_by_visible_text(
        "ui step two")
    browser.find_element(By.CSS_SELECTOR, "button[aria-label='Move step 2 up']").click()
    shot(browser, "build-plan-editor")
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait(browser, ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), "ui build"))
    wait(browser, ec.text_to_be_present_in_element((By.ID, "main"), "Two"))
    status, plans = api_call(appliance, "GET",
                             "/rest/build-plans?filter=" + urllib.parse.quote("name='ui build'"))
    steps = sorted(plans["members"][0]["buildStep"], key=lambda s: int(s["serialNumber"]))
    assert [s["planScriptUri"] for s in steps] == [scripts[1]["uri"], scripts[0]["uri"]], steps
    shot(browser, "build-plan")

    # Its attribute set by hand: a number with a minimum and a default.
    browser.find_element(By.CSS_SELECTOR, "a.button[href$='/edit']").click()
    # An existing plan's attributes are kept as stored, editable (not worked out again).
    assert not wait(browser, ec.element_to_be_clickable((By.ID, "bp-derive"))).is_selected()
    Select(browser.find_element(By.CSS_SELECTOR, "select[aria-label='Type of Two']")
           ).select_by_visible_text("number")
    for label, value in (("Default of Two", "5"), ("Constraints of Two", '{"minimum": 1}')):
        box = browser.find_element(By.CSS_SELECTOR, f"input[aria-label='{label}']")
        box.clear()
        box.send_keys(value)
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait(browser, ec.text_to_be_present_in_element((By.ID, "main"), "minimum"))
    status, plans = api_call(appliance, "GET",
                             "/rest/build-plans?filter=" + urllib.parse.quote("name='ui build'"))
    attr = plans["members"][0]["customAttributes"][0]
    assert (attr["name"], attr["type"], attr["value"]) == ("Two", "number", "5"), attr

    # A deployment plan on it: the attribute's default, hidden at deploy.
    go(browser, "deployment-plans", "Deployment plans")
    browser.find_element(By.CSS_SELECTOR, "a[href='#/deployment-plans/new']").click()
    wait(browser, ec.visibility_of_element_located((By.ID, "dpl-name"))).send_keys("ui plan")
    Select(browser.find_element(By.ID, "dpl-build")).select_by_visible_text("ui build")
    default = wait(browser, ec.visibility_of_element_located((By.ID, "dpa-0")))
    assert default.get_attribute("value") == "5"  # the build plan's default
    default.clear()
    default.send_keys("22")
    browser.find_element(By.ID, "dpa-v-0").click()
    shot(browser, "deployment-plan-editor")
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait(browser, ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), "ui plan"))
    wait(browser, ec.text_to_be_present_in_element((By.ID, "main"), "hidden"))
    shot(browser, "deployment-plan")
    status, plans = api_call(appliance, "GET", "/rest/deployment-plans?filter="
                             + urllib.parse.quote("name='ui plan'"))
    attr = plans["members"][0]["customAttributes"][0]
    assert (attr["name"], attr["value"], attr["visible"]) == ("Two", "22", False), attr


def test_users_and_an_own_password_in_the_console(appliance, browser, clean_console):
    log_in(browser, appliance)
    browser.get(appliance.base + "/#/users")
    wait(browser, ec.visibility_of_element_located((By.ID, "nu-name"))).send_keys("operator")
    browser.find_element(By.ID, "nu-password").send_keys("operator-pass-1")
    browser.find_element(By.CSS_SELECTOR, "form[aria-labelledby='nu-title'] button").click()
    wait(browser, ec.text_to_be_present_in_element((By.CSS_SELECTOR, ".live table"), "operator"))
    shot(browser, "users")
    status, user = api_call(appliance, "GET", "/rest/users/operator")
    assert user["roles"] == ["Read only"], user

    # The new user changes their own password from the account page.
    log_in(browser, appliance, "operator", "operator-pass-1")
    browser.find_element(By.ID, "who").click()
    wait(browser, ec.visibility_of_element_located((By.ID, "pw-current")))
    shot(browser, "account")
    browser.find_element(By.ID, "pw-current").send_keys("wrong-password")
    browser.find_element(By.ID, "pw-new").send_keys("operator-pass-2")
    browser.find_element(By.ID, "pw-again").send_keys("operator-pass-2")
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait(browser, ec.text_to_be_present_in_element((By.ID, "main"), "current password is wrong"))
    browser.get_log("browser")  # the refused request's 400 is logged by Chromium: expected
    browser.find_element(By.ID, "pw-current").clear()
    browser.find_element(By.ID, "pw-current").send_keys("operator-pass-1")
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait(browser, ec.text_to_be_present_in_element((By.ID, "main"), "Password changed"))
    status, _ = http("POST", appliance.base + "/rest/login-sessions",
                     {"userName": "operator", "password": "operator-pass-2"})
    assert status == 200


def test_a_locked_out_user_is_told_so_at_login(appliance, browser, clean_console):
    status, _ = api_call(appliance, "POST", "/rest/users", {
        "userName": "clumsy", "password": "clumsy-password-1", "roles": ["Read only"]})
    assert status == 201
    logged_out(browser, appliance)
    name = wait(browser, ec.visibility_of_element_located((By.ID, "user")))
    name.clear()
    name.send_keys("clumsy")
    for attempt in range(6):
        password = browser.find_element(By.ID, "password")
        password.clear()
        password.send_keys(f"wrong-{attempt}")
        browser.find_element(By.CSS_SELECTOR, "form.login button[type=submit]").click()
        wait(browser, ec.visibility_of_element_located((By.CSS_SELECTOR, "[role=alert]")))
        wait(browser, ec.element_to_be_clickable((By.CSS_SELECTOR, "form.login button")))
    text = browser.find_element(By.CSS_SELECTOR, "[role=alert]").text
    assert "Too many failed logins" in text, text
    shot(browser, "login-locked")
    browser.get_log("browser")  # the refused logins' 401s and 429 are logged: expected


def test_the_keyboard_alone_logs_in_and_moves_between_pages(appliance, browser, clean_console):
    logged_out(browser, appliance)
    wait(browser, ec.visibility_of_element_located((By.ID, "user")))
    # The page puts the focus on the user name; Tab, type, Enter.
    assert browser.switch_to.active_element.get_attribute("id") == "user"
    browser.switch_to.active_element.send_keys(Keys.TAB)
    assert browser.switch_to.active_element.get_attribute("id") == "password"
    browser.switch_to.active_element.send_keys(PASSWORD, Keys.ENTER)
    wait(browser, ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Dashboard"))
    # Tab from the top of the page reaches the sections; Enter opens one.
    browser.find_element(By.TAG_NAME, "body").click()
    for _ in range(30):
        browser.switch_to.active_element.send_keys(Keys.TAB)
        focused = browser.switch_to.active_element
        if focused.get_attribute("href") and focused.get_attribute("href").endswith("#/golden-images"):
            break
    else:
        raise AssertionError("Tab never reached the Golden images section")
    outline = browser.execute_script(
        "return getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("none", ""), f"no visible focus ({outline})"
    focused.send_keys(Keys.ENTER)
    wait(browser, ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Golden images"))


def test_the_dark_theme_follows_the_system_setting(appliance, browser, clean_console):
    light = None
    try:
        log_in(browser, appliance)
        light = browser.execute_script("return getComputedStyle(document.body).backgroundColor")
        browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {
            "features": [{"name": "prefers-color-scheme", "value": "dark"}]})
        dark = browser.execute_script("return getComputedStyle(document.body).backgroundColor")
        assert dark != light, (dark, light)
        # Dark: the background's channels are low.
        channels = [int(c) for c in dark[dark.index("(") + 1:dark.index(")")].split(",")[:3]]
        assert max(channels) < 60, dark
        wait(browser, ec.text_to_be_present_in_element((By.ID, "main"), "Recent tasks"))
        shot(browser, "dashboard-dark")
    finally:
        browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})


def test_a_phone_sized_window_has_no_sideways_scroll(appliance, browser, clean_console):
    browser.set_window_size(390, 844)
    try:
        logged_out(browser, appliance)
        wait(browser, ec.visibility_of_element_located((By.ID, "user")))
        browser.find_element(By.ID, "password").send_keys(PASSWORD)
        browser.find_element(By.CSS_SELECTOR, "form.login button[type=submit]").click()
        wait(browser, ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Dashboard"))
        wait(browser, ec.text_to_be_present_in_element((By.ID, "main"), "Recent tasks"))
        width = browser.execute_script(
            "return [document.documentElement.scrollWidth, window.innerWidth]")
        assert width[0] <= width[1], f"content {width[0]} px wide in a {width[1]} px window"
        shot(browser, "dashboard-phone")
    finally:
        browser.set_window_size(1280, 800)
