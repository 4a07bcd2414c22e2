"""The dashboard in a real headless Chromium, driven by WebDriver (selenium + chromedriver).

Run by tests/dashboard_browser.rs with: the gateway's URL, the fake upstream's URL, the config
client key, the admin token, the upstream
account's secret, the path for the Overview screenshot, and a download directory. The gateway
already served two requests (config key `tester`); the second put the account `tired` in a
cooldown.
Exits non-zero with a message on the first thing that is not as a user expects.
"""

import csv as csv_module
import datetime
import io
import json
import os
import pathlib
import sys
import time
import urllib.error
import urllib.request
import zoneinfo

from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.alert import Alert
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

# The browser runs in a time zone far from UTC, so a time shown in UTC would not match.
BROWSER_TZ = "Pacific/Kiritimati"


# No comma in it: it is also one of the key's allowed models, typed comma-separated. The
# gateway's config prices it (tests/dashboard_browser.rs), since the key has a spending limit.
FORMULA_MODEL = '=HYPERLINK("https://example.invalid/?leak")'


def relay(base, key, model="gpt-5"):
    """A Responses request with `key`; the HTTP status."""
    body = json.dumps(
        {"model": model, "input": "hi", "instructions": "be brief", "stream": False}
    ).encode()
    request = urllib.request.Request(
        base + "/v1/responses",
        data=body,
        headers={"authorization": "Bearer " + key, "content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def admin_get(base, token, path):
    request = urllib.request.Request(base + path, headers={"authorization": "Bearer " + token})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def admin_call(base, token, method, path, body):
    request = urllib.request.Request(
        base + path,
        method=method,
        data=json.dumps(body).encode(),
        headers={"authorization": "Bearer " + token, "content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status


def tick_value(text):
    """A y-axis label or a chart's "max" as a number: `$0.0001`, `75%`, `1,234`, `1.2K`."""
    text = text.replace("$", "").replace("%", "").replace(",", "")
    scale = {"K": 1e3, "M": 1e6, "B": 1e9}.get(text[-1:], 1)
    return float(text.rstrip("KMB")) * scale


def fetch(url):
    """GET `url` without credentials: (status, content type, body)."""
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.headers.get("content-type"), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("content-type"), error.read()


def browser(downloads):
    options = webdriver.ChromeOptions()
    options.binary_location = os.environ.get("SUBRELAY_TEST_CHROMIUM", "/usr/bin/chromium")
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--lang=en-US",
        "--window-size=1280,1000",
        "--user-data-dir=" + os.path.join(downloads, "profile"),
    ):
        options.add_argument(flag)
    # The console and network log, to see every resource a page failed to load.
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    options.add_experimental_option(
        "prefs",
        {"download.default_directory": downloads, "download.prompt_for_download": False},
    )
    service = Service(
        executable_path=os.environ.get("SUBRELAY_TEST_CHROMEDRIVER", "/usr/bin/chromedriver"),
        env={**os.environ, "TZ": BROWSER_TZ},
    )
    return webdriver.Chrome(options=options, service=service)


class Page:
    def __init__(self, driver, base, secrets):
        self.driver = driver
        self.base = base
        self.secrets = secrets
        # Pages re-render by replacing their nodes: a node found a moment ago may be gone.
        self.wait = WebDriverWait(
            driver, 20, ignored_exceptions=[NoSuchElementException, StaleElementReferenceException]
        )

    def find(self, css):
        return self.wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, css)))

    def text_is(self, css, text):
        self.wait.until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, css), text))

    def text_eq(self, css, text):
        self.wait.until(
            lambda d: [e.text.strip() for e in d.find_elements(By.CSS_SELECTOR, css)] == [text]
        )

    def open(self, page):
        """Opens a dashboard page through its nav link and waits until it has rendered."""
        self.driver.find_element(By.ID, "nav-" + page).click()
        self.find(f'main[data-page="{page}"]')
        self.wait.until(lambda d: d.execute_script("return document.readyState") == "complete")
        self.no_secret()

    def rerender(self, page, css, text, exact=False, tries=40):
        """Re-opens `page` until `css` holds `text` (the store writes usage shortly after)."""
        for _ in range(tries):
            self.driver.execute_script("window.location.hash = '#none'")
            self.open(page)
            found = self.driver.find_elements(By.CSS_SELECTOR, css)
            if found and (text in found[0].text if exact is False else found[0].text == text):
                return found[0]
            time.sleep(0.25)
        raise AssertionError(f"{css} never showed {text!r}: {self.driver.page_source[:3000]}")

    def no_secret(self):
        html = self.driver.page_source
        for secret in self.secrets:
            assert secret not in html, f"a page shows a credential ({secret[:6]}...)"

    def failed_loads(self):
        """Resources from the gateway the browser failed to load since the last call, as
        (url, message): the console's network errors (a 404 favicon is one)."""
        found = []
        for entry in self.driver.get_log("browser"):
            message = entry["message"]
            if entry.get("source") == "network" and message.startswith(self.base + "/"):
                found.append((message.split(" ", 1)[0], message))
        return found

    def actions_in_view(self, table):
        """At the current width, every Actions button of `table` lies inside the window and
        inside the table's card (not scrolled away in it): (buttons, the ones that do not)."""
        return self.driver.execute_script(
            """
            const buttons = document.querySelectorAll(arguments[0] + " td.actions button");
            const outside = [];
            for (const b of buttons) {
              const r = b.getBoundingClientRect();
              const card = b.closest(".scroll").getBoundingClientRect();
              if (r.width === 0 || r.left < 0 || r.right > window.innerWidth
                  || r.left < card.left || r.right > card.right) {
                outside.push(b.closest("tr").textContent.slice(0, 30) + " / " + b.textContent
                  + ": " + Math.round(r.left) + "-" + Math.round(r.right));
              }
            }
            return [buttons.length, outside];
            """,
            "#" + table,
        )

    def charts(self):
        """Every chart on the page: (its label, its y-axis tick labels, its largest value)."""
        return self.driver.execute_script(
            """
            return [...document.querySelectorAll(".chart")].map((c) => [
              c.querySelector(".label").textContent,
              [...c.querySelectorAll("text.y-tick")].map((t) => t.textContent),
              Number(c.dataset.max),
            ]);
            """
        )

    def fits_a_phone(self):
        overflow = self.driver.execute_script(
            "return document.documentElement.scrollWidth - window.innerWidth"
        )
        assert overflow <= 0, f"the page is {overflow}px wider than a phone's screen"


def main():
    base, mock, client_key, admin_token, upstream_secret, screenshot, downloads = sys.argv[1:8]
    driver = browser(downloads)
    try:
        run(driver, base, mock, client_key, admin_token, upstream_secret, screenshot, downloads)
    except Exception:
        print(driver.page_source[:5000], file=sys.stderr)
        raise
    finally:
        driver.quit()


def run(driver, base, mock, client_key, admin_token, upstream_secret, screenshot, downloads):
    page = Page(driver, base, [admin_token, upstream_secret])

    # Without a session the dashboard sends the browser to the sign-in page.
    driver.get(base + "/admin/")
    page.find("#signin")
    assert driver.current_url == base + "/admin/login", driver.current_url
    # It says where the admin token comes from, and its favicon is served.
    page.text_eq(
        "#token-help",
        "The admin token is the value of admin.token in subrelay's configuration: set in the"
        " config file (for example admin: {token: env:ADMIN_TOKEN}) or by the server's"
        " ADMIN_TOKEN environment variable. It is not a client API key.",
    )
    status, kind, icon = fetch(base + "/admin/favicon.svg")
    assert (status, kind) == (200, "image/svg+xml") and icon.startswith(b"<svg"), (status, kind)
    page.find("#token").send_keys("wrong-token")
    page.find("#signin-button").click()
    page.text_is("#signin-error", "wrong admin token")
    page.find("#token").send_keys(admin_token)
    page.find("#signin-button").click()
    page.find('main[data-page="overview"]')
    page.no_secret()

    cookies = {c["name"]: c for c in driver.get_cookies()}
    session = cookies["subrelay_session"]
    assert session["httpOnly"] is True, session
    assert session["sameSite"] == "Strict", session
    assert "expiry" in session, session
    assert driver.execute_script("return document.cookie") == "", "the session is not for scripts"

    # Overview: the earlier requests and the cooling account with its reason.
    page.text_eq("#ov-requests-24h", "2")
    page.text_eq("#health-cooling", "1")
    page.text_is("#problems", "tired")
    page.text_is("#problems", "rate_limited")

    # Keys: create one, read it once.
    page.open("keys")
    page.find("#key-name").send_keys("colleague")
    page.find("#key-rpm").send_keys("100")
    page.find("#key-daily").send_keys("5")
    page.find("#key-monthly").send_keys("50")
    page.find("#key-models").send_keys("gpt-5, gpt-5-mini, " + FORMULA_MODEL)
    page.find("#create-key button[type=submit]").click()
    secret = page.find("#new-key").text.strip()
    assert secret.startswith("sk-"), secret
    page.find("#copy-key").click()
    page.text_is("#copy-key", "Copied")
    page.find('tr[data-key="colleague"]')
    page.open("usage")
    page.open("keys")
    assert not driver.find_elements(By.ID, "new-key"), "the key is shown only once"
    assert secret not in driver.page_source, "the key is shown only once"
    page.secrets.append(secret)

    # A request with the new key through subrelay to the fake upstream, its model a spreadsheet
    # formula (any API key can choose the model name it sends).
    assert relay(base, secret, FORMULA_MODEL) == 200

    # Usage: the request appears, filtered by key, in the browser's time zone; CSV export.
    page.rerender("usage", "#usage-table tbody", "colleague")
    page.find("#f-key").send_keys("colleague")
    page.find("#usage-filter button[type=submit]").click()
    page.text_eq("#usage-count", "1–1 of 1")
    row = page.find("#usage-table tbody tr")
    stored = admin_get(base, admin_token, "/admin/api/usage?key=colleague")["rows"][0]
    local = datetime.datetime.fromtimestamp(stored["at_ms"] / 1000, zoneinfo.ZoneInfo(BROWSER_TZ))
    shown = local.strftime("%-m/%-d/%Y, %-I:%M:%S %p")
    assert shown in row.text, (shown, row.text)
    page.find("#export-csv").click()
    csv_path = pathlib.Path(downloads) / "subrelay-usage.csv"
    for _ in range(80):
        if csv_path.exists() and csv_path.stat().st_size > 0:
            break
        time.sleep(0.25)
    csv = csv_path.read_text()
    lines = csv.strip().splitlines()
    assert lines[0].startswith("time,request_id,at_ms,key,"), lines[0]
    assert len(lines) == 2 and ",colleague," in lines[1], csv
    # The formula is exported as text: prefixed with ' (OWASP), never as a live formula.
    header, row = list(csv_module.reader(io.StringIO(csv)))
    model = row[header.index("model")]
    assert model == "'" + FORMULA_MODEL, model
    assert not any(cell.startswith(("=", "+", "@")) for cell in row), row

    # Overview counts the new request too.
    page.rerender("overview", "#ov-requests-24h", "3", exact=True)
    page.text_eq("#ov-success-24h", "100.0%")

    # Keys: this month's usage, then disable the key and see the next request refused.
    page.open("keys")
    page.text_is('tr[data-key="colleague"]', "colleague")
    cells = page.find('tr[data-key="colleague"]').find_elements(By.TAG_NAME, "td")
    assert cells[5].text == "1", [c.text for c in cells]
    # Every limit is shown: concurrency and rate, daily and monthly spend, models.
    colleague = 'tr[data-key="colleague"] '
    page.text_eq(colleague + '[data-limit="rate"]', "∞ at once · 100 a minute")
    page.text_eq(colleague + '[data-limit="spend"]', "$5.00 a day · $50.00 a month")
    page.text_eq(colleague + '[data-limit="models"]', "models: gpt-5, gpt-5-mini, " + FORMULA_MODEL)
    page.text_eq('tr[data-key="tester"] [data-limit="models"]', "every model")
    # At 1280 px the table fits, with a long name and many limits in it: its Actions are in
    # view, not scrolled away.
    assert driver.execute_script("return window.innerWidth") == 1280
    wide = {
        "name": "build-agents-of-the-platform-team-in-eu-west",
        "rpm_limit": 600,
        "daily_spend_limit": 20,
        "monthly_spend_limit": 400,
        "allowed_models": ["gpt-5", "gpt-5-mini", "gpt-5.1-codex", "claude-sonnet-4-5"],
        "expires_at": int(time.time()) + 90 * 86400,
    }
    assert admin_call(base, admin_token, "POST", "/admin/api/keys", wide) == 201
    driver.execute_script("window.location.hash = '#none'")
    page.open("keys")
    page.find(f'tr[data-key="{wide["name"]}"]')
    count, outside = page.actions_in_view("keys-table")
    assert count >= 2 and outside == [], (count, outside)
    page.find('tr[data-key="colleague"] button[data-action="disable"]').click()
    page.text_eq('tr[data-key="colleague"] .state', "disabled")
    status = relay(base, secret)
    assert status == 401, status

    # Accounts: the cooling account with its reason and quota, then reset.
    page.open("accounts")
    tired = 'tr[data-account="tired"]'
    page.text_eq(tired + " .state", "cooling")
    page.text_is(tired, "rate_limited")
    page.text_is(tired, "5 h")
    page.text_is(tired, "resets")
    # Its last error: the upstream's message, the recorded text only on demand.
    pool = admin_get(base, admin_token, "/admin/api/accounts")["accounts"]
    raw = next(a for a in pool if a["name"] == "tired")["last_error"]
    at = raw.index("{")
    message = raw[:at].rstrip(": ") + ": " + json.loads(raw[at:])["error"]["message"]
    page.text_eq(tired + " .last-error .message", message)
    raw_box = page.find(tired + " .last-error details pre.raw")
    assert not raw_box.is_displayed(), "the raw error waits for a click"
    page.find(tired + " .last-error details summary").click()
    page.wait.until(lambda d: raw_box.is_displayed())
    assert raw_box.text == raw, (raw_box.text, raw)
    page.find(tired + ' button[data-action="reset"]').click()
    page.text_eq(tired + " .state", "available")
    page.text_is("#flash", "tired: reset")
    # Test: a probe of the API-key account (the free model list), its result in the state cell.
    page.find('tr[data-account="up"] button[data-action="test"]').click()
    page.text_is('tr[data-account="up"] .probe', "probe ok")

    # Sign an account in: OAuth code + PKCE against the fake upstream, then it serves a request.
    page.open("signin")
    page.find("#si-name").send_keys("signed")
    page.find("#si-base").send_keys(mock + "/backend-api/codex")
    page.find("#si-priority").send_keys("-5")
    page.find("#signin-start button[type=submit]").click()
    link = page.find("#authorize-link").get_attribute("href")
    assert link.startswith(mock + "/oauth/authorize?"), link
    assert "code_challenge_method=S256" in link and "code_challenge=" in link, link
    dashboard = driver.current_window_handle
    driver.switch_to.new_window("tab")
    driver.get(link)
    WebDriverWait(driver, 20).until(lambda d: "/oauth/callback?code=" in d.current_url)
    callback = driver.current_url
    driver.close()
    driver.switch_to.window(dashboard)
    page.find("#si-callback").send_keys(callback)
    page.find("#signin-finish button[type=submit]").click()
    page.find('main[data-page="accounts"] tr[data-account="signed"]')
    page.text_eq('tr[data-account="signed"] .state', "available")
    page.text_is("#flash", "account signed signed in")
    page.no_secret()
    # Its token refreshed from the dashboard (the test then sees the new token serve).
    page.find('tr[data-account="signed"] button[data-action="refresh"]').click()
    page.text_is("#flash", "signed: token refreshed")
    assert relay(base, client_key) == 200
    for _ in range(80):
        rows = admin_get(base, admin_token, "/admin/api/usage?limit=1")["rows"]
        if rows and rows[0]["account"] == "signed":
            break
        time.sleep(0.25)
    else:
        raise AssertionError(f"the signed-in account served no request: {rows}")

    # Accounts: one added through the form, edited, then deleted; the table keeps its
    # Actions in view at 1280 px with a long name in it.
    admin_call(base, admin_token, "POST", "/admin/api/groups", {"name": "backup", "platform": "openai"})
    added = "backup-api-key-account-with-a-long-name-for-the-table"
    added_secret = "sk-upstream-added-in-the-dashboard-0123456789"
    page.secrets.append(added_secret)
    row = f'tr[data-account="{added}"]'
    page.open("accounts")
    page.find("#acc-name").send_keys(added)
    page.find("#acc-base").send_keys(mock + "/v1")
    page.find("#acc-key").send_keys(added_secret)
    page.find("#add-account button[type=submit]").click()
    page.text_is("#flash", f"account {added} added")
    page.find(row)

    def stored(name):
        return next(
            (a for a in admin_get(base, admin_token, "/admin/api/accounts")["stored"] if a["name"] == name),
            None,
        )

    assert stored(added)["concurrency"] == 0, stored(added)
    count, outside = page.actions_in_view("accounts-table")
    assert count >= 8 and outside == [], (count, outside)
    page.find(row + ' button[data-action="edit"]').click()
    prompt = page.wait.until(EC.alert_is_present())
    prompt.send_keys("7")
    prompt.accept()
    prompt = page.wait.until(EC.alert_is_present())
    prompt.send_keys("default, backup")
    prompt.accept()
    page.text_is("#flash", f"{added}: saved")
    page.text_is(row, "0 / 7")
    saved = stored(added)
    assert (saved["concurrency"], saved["groups"]) == (7, ["default", "backup"]), saved
    page.find(row + ' button[data-action="delete"]').click()
    page.wait.until(EC.alert_is_present()).dismiss()
    assert stored(added) is not None, "a dismissed confirmation deletes nothing"
    page.find(row + ' button[data-action="delete"]').click()
    page.wait.until(EC.alert_is_present()).accept()
    page.text_is("#flash", f"{added}: deleted")
    page.wait.until(lambda d: not d.find_elements(By.CSS_SELECTOR, row))
    pool = admin_get(base, admin_token, "/admin/api/accounts")
    assert stored(added) is None and added not in [a["name"] for a in pool["accounts"]], pool

    # Settings: the effective configuration, redacted, and what came from the environment.
    page.open("settings")
    page.text_is("#from-env", "gateway.max_account_switches")
    page.text_is("#from-env", "GATEWAY_MAX_ACCOUNT_SWITCHES")
    page.text_is("#effective-config", "max_account_switches: 3")
    page.text_is("#effective-config", "<redacted>")
    assert page.find("#config-file").text.startswith("/"), page.find("#config-file").text

    # Audit: who made each change (this session, or the token), filtered by action, newest
    # first; no secret on the page (open() checks).
    page.open("audit")
    page.text_is("#audit-table tbody", "dashboard (session ")
    page.find("#a-action").send_keys("key.create")
    page.find("#audit-filter button[type=submit]").click()

    def key_creations(d):
        rows = d.find_elements(By.CSS_SELECTOR, "#audit-table tbody tr")
        cells = [[td.text for td in r.find_elements(By.CSS_SELECTOR, "td")] for r in rows]
        return [(c[1], c[3], c[4]) for c in cells]

    page.wait.until(lambda d: len(key_creations(d)) == 2)
    (newest_who, *newest), (oldest_who, *oldest) = key_creations(driver)
    assert newest == ["key.create", wide["name"]] and newest_who == "admin-token", newest
    assert oldest == ["key.create", "colleague"], oldest
    assert oldest_who.startswith("dashboard (session "), oldest_who

    # A phone-sized screen: nothing wider than the screen (tables scroll in their box).
    driver.set_window_size(390, 844)
    for name in ("overview", "accounts", "signin", "keys", "usage", "audit", "settings"):
        page.open(name)
        page.fits_a_phone()

    # The Overview screenshot for the README.
    driver.set_window_size(1280, 1000)
    page.open("overview")
    page.text_eq("#ov-requests-24h", "4")
    assert driver.save_screenshot(screenshot), "no screenshot"
    # Every chart has a labelled y axis: from 0 in even steps up to at least its largest value.
    charts = page.charts()
    assert len(charts) == 8, charts
    for label, ticks, largest in charts:
        values = [tick_value(t) for t in ticks]
        steps = {round(b - a, 9) for a, b in zip(values, values[1:])}
        assert len(values) >= 2 and values[0] == 0 and len(steps) == 1 and min(steps) > 0, (label, ticks)
        assert values[-1] >= largest * (1 - 1e-9), (label, ticks, largest)
    assert all(largest > 0 for _, _, largest in charts), charts

    # No page asked the gateway for something it could not load (a favicon, a script...); the
    # one expected failure is the wrong token's 401 at sign-in.
    failed = [f for f in page.failed_loads() if not (f[0] == base + "/admin/login" and " 401 " in f[1])]
    assert failed == [], failed

    # Sign out: back to sign-in, and the API refuses the old session.
    page.find("#signout").click()
    page.find("#signin")
    driver.get(base + "/admin/")
    page.find("#signin")
    status = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch('/admin/api/keys', {credentials: 'same-origin'}).then(r => done(r.status));"
    )
    assert status == 401, status
    print("dashboard ok")


if __name__ == "__main__":
    main()
