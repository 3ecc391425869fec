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
from hpOneView.image_streamer.image_streamer_client import ImageStreamerClient
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
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
    return WebDriverWait(browser, timeout).until(condition)


def shot(browser, name):
    """Saves a screenshot of the page and checks that it shows something."""
    path = SHOTS / f"{name}.png"
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
    shot(browser, "dashboard")
    assert browser.find_element(By.ID, "who").text == "Administrator"

    # The plan scripts page lists it; its page highlights the attribute and the comment.
    browser.find_element(By.CSS_SELECTOR, "nav a[href='#/plan-scripts']").click()
    link = wait(browser, ec.element_to_be_clickable((By.LINK_TEXT, "ui hostname")))
    shot(browser, "plan-scripts")
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
    Select(browser.find_element(By.ID, "state-filter")).select_by_value("Error")
    wait(browser, ec.text_to_be_present_in_element((By.TAG_NAME, "caption"), "No tasks yet."))
    shot(browser, "activity")

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
    wait(browser, ec.element_to_be_clickable((By.CSS_SELECTOR, "form.editor button[type=submit]")))
    browser.find_element(By.CSS_SELECTOR, "form.editor button[type=submit]").click()
    wait(browser, ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), "ui edited"))
    assert browser.find_element(By.CSS_SELECTOR, "pre.script .at").text == "@Motd:hello@"
    query = urllib.parse.quote("name='ui edited'")
    status, listed = api_call(appliance, "GET", f"/rest/plan-scripts?filter={query}")
    assert status == 200 and listed["members"][0]["content"].startswith("mount /dev/sda2 /"), listed


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


DEV_PLAN = "HPE - Developer 1.0 - Deployment Test (UEFI) - 2017-03-24"


def test_deploy_a_compute_module_from_a_form_made_from_the_plan(appliance, browser, clean_console,
                                                                 tmp_path):
    status, token = http("POST", appliance.base + "/rest/login-sessions",
                         {"userName": "Administrator", "password": PASSWORD})
    i3s = ImageStreamerClient(f"127.0.0.1:{appliance.port}", token["sessionID"], API_VERSION)
    copy = tmp_path / BUNDLE.name
    copy.write_bytes(BUNDLE.read_bytes())
    uploaded = i3s.artifact_bundles.upload_bundle_from_file(str(copy))
    data = uploaded.data if hasattr(uploaded, "data") else uploaded
    i3s.artifact_bundles.get_by_name(data["name"]).extract()
    status, hw = api_call(appliance, "POST", "/rest/server-hardware", {
        "name": "bay-ui", "macAddresses": ["52:54:00:aa:00:21"], "deploymentIpv4": "10.0.0.21",
        # Never called: the deploy does not power the module on.
        "redfish": {"address": "http://127.0.0.1:9", "username": "admin", "password": "unused-pw"}})
    assert status == 201, hw

    logged_out(browser, appliance)
    wait(browser, ec.visibility_of_element_located((By.ID, "password"))).send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "form.login button[type=submit]").click()
    wait(browser, ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Dashboard"))
    browser.find_element(By.CSS_SELECTOR, "nav a[href='#/deploy']").click()
    wait(browser, ec.visibility_of_element_located((By.ID, "sp-plan")))
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
    # Checked per type before anything is sent.
    ip.clear()
    ip.send_keys("10.1.2.300")
    assert "IPv4" in browser.find_element(By.ID, "attr-ExampleIPv4Address-hint").text
    browser.find_element(By.ID, "sp-power").click()  # no power: this module has no Redfish
    browser.find_element(By.CSS_SELECTOR, "#main form button[type=submit]").click()
    wait(browser, ec.text_to_be_present_in_element((By.ID, "main"), "Correct 1 field"))
    status, profiles = api_call(appliance, "GET", "/rest/server-profiles")
    assert profiles["total"] == 0, "a profile was created from an invalid form"
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
