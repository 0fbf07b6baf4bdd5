"""The web console in a real browser: Debian's chromium driven by Selenium (chromedriver).

A service runs on loopback with two workloads' resources; one workload attests and fetches,
an unknown one is refused. A reader signs in and sees the chart, refusal codes, resources with
the workloads they admit, reference values, policies, the audit chain and the signing keys;
an admin also sees the tokens and revokes one. Each page is screenshotted into
``ci-artifacts/ui/`` (the README names it) and checked for content: the text the browser
rendered at that moment, and a PNG of the window's size. axe-core (npm, installed by
``.ci/run`` into ``tests/ui/node_modules``) checks the pages' accessibility (WCAG 2 A/AA).
"""

from __future__ import annotations

import shutil
import struct
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest

from veritee.client import AttesterClient
from veritee.errors import VeriteeError
from veritee.platform.emulated.snp import InsecureEmulatedSnpMachine
from veritee.service import MasterKey
from veritee.service.core import create_admin_token

from _service_support import (  # noqa: F401 - fixtures by name
    Guests,
    Service,
    guests,
    machine,
    provision,
    start_service,
    vendor,
)

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "ci-artifacts" / "ui"
AXE = Path(__file__).resolve().parent / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

pytestmark = pytest.mark.skipif(
    not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
    reason="Debian's chromium and chromium-driver are not installed (.ci/run installs them)")


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory, machine: InsecureEmulatedSnpMachine,  # noqa: F811
        guests: Guests) -> Iterator[Service]:  # noqa: F811
    db = tmp_path_factory.mktemp("ui") / "svc.db"
    s = start_service(f"sqlite:///{db}", machine, master=MasterKey(b"\x33" * 32))
    provision(s, guests)
    with AttesterClient(s.url, guests.a, dev_mode=True) as client:
        for _ in range(3):
            client.fetch("apps/a/key")
    with AttesterClient(s.url, guests.unknown, dev_mode=True) as client:
        for _ in range(2):
            with pytest.raises(VeriteeError):
                client.fetch("apps/a/key")
    yield s
    s.server.stop()
    s.http.close()
    s.store.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1280,2200", "--disable-gpu", "--no-first-run"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=DriverService(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _sign_in(browser: Any, url: str, token: str) -> None:
    from selenium.webdriver.common.by import By

    browser.delete_all_cookies()
    browser.get(f"{url}/ui")
    field = browser.find_element(By.ID, "token")
    field.send_keys(token)
    browser.find_element(By.CSS_SELECTOR, "form[action='/ui/login'] button").click()
    _wait_for(browser, lambda b: b.find_elements(By.ID, "h-audit"))  # the dashboard


def _wait_for(browser: Any, condition: Any) -> None:
    """Wait for the page the browser navigated to (a click does not wait for it)."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 60, ignored_exceptions=(StaleElementReferenceException,)
                  ).until(condition)


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _shot(browser: Any, name: str) -> str:
    """Screenshot into the artefacts folder; return the text the browser rendered then."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    text = str(browser.find_element("tag name", "body").text)
    assert browser.save_screenshot(str(path))
    width, height = _png_size(path)
    assert width >= 1000 and height >= 600 and path.stat().st_size > 10_000
    return text


def _axe(browser: Any) -> list[dict[str, Any]]:
    if not AXE.exists():
        pytest.skip("axe-core is not installed (npm install --prefix tests/ui)")
    browser.execute_script(AXE.read_text())
    result = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa']}})"
        ".then(r => done(r.violations.map(v => ({id: v.id, impact: v.impact, "
        "nodes: v.nodes.length}))));")
    return list(result)


def test_sign_in_page_renders_and_is_accessible(svc: Service, browser: Any) -> None:
    browser.delete_all_cookies()
    browser.get(f"{svc.url}/ui")
    text = _shot(browser, "01-sign-in")
    assert "Sign in" in text and "Admin or reader token" in text
    assert _axe(browser) == []


def test_reader_sees_the_broker_at_a_glance(svc: Service, browser: Any) -> None:
    _, reader = create_admin_token(svc.store, "viewer", "reader")
    _sign_in(browser, svc.url, reader)
    text = _shot(browser, "02-dashboard-reader")
    assert "Audit chain" in text and "Status: verified" in text
    assert "Attestations, last 24 hours" in text and "accepted sevsnp: 3" in text
    assert "refused: 2" in text
    with svc.store.transaction(write=False) as tx:
        refusal_codes = {r.detail.get("code") for r in tx.audit_rows()
                         if r.outcome == "refused"}
    assert refusal_codes and all(str(c) in text for c in refusal_codes)
    assert "apps/a/key" in text and "apps/b/password" in text
    assert "Reference values" in text and "Appraisal policies" in text
    assert "EAR signing keys" in text and "active" in text
    assert "API tokens" not in text  # a reader does not see tokens
    violations = _axe(browser)
    assert [v for v in violations if v["impact"] in ("serious", "critical")] == []


def test_resources_list_the_workloads_their_policy_admits(svc: Service, browser: Any,
                                                          guests: Guests) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By

    _sign_in(browser, svc.url, svc.admin)
    rows = {r.find_elements(By.TAG_NAME, "td")[0].text: r.find_elements(By.TAG_NAME, "td")[2].text
            for r in browser.find_elements(By.CSS_SELECTOR, "section[aria-labelledby=h-res] "
                                                            "tbody tr")}
    assert rows["apps/a/key"].startswith("a (") and guests.a.measurement.hex()[:16] in \
        rows["apps/a/key"]
    assert rows["apps/b/password"].startswith("b (")


def test_admin_revokes_a_token_from_the_console(svc: Service, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    token_id, victim = create_admin_token(svc.store, "to revoke", "reader")
    _sign_in(browser, svc.url, svc.admin)
    assert "API tokens" in _shot(browser, "03-dashboard-admin")
    browser.find_element(By.CSS_SELECTOR,
                         f"form[action='/ui/tokens/{token_id}/revoke'] button").click()

    def revoked_row(b: Any) -> bool:
        rows = [r.text for r in b.find_elements(By.CSS_SELECTOR,
                                                "section[aria-labelledby=h-tok] tbody tr")
                if token_id in r.text]
        return bool(rows) and "revoked" in rows[0]

    _wait_for(browser, revoked_row)
    _shot(browser, "04-token-revoked")
    r = httpx.get(f"{svc.url}/v1/admin/resources", headers={"Authorization": f"Bearer {victim}"})
    assert r.status_code == 401


# -- the console's defences, without a browser -------------------------------------------------
def _cookie(svc: Service, token: str) -> httpx.Client:
    client = httpx.Client(base_url=svc.url, follow_redirects=False)
    r = client.post("/ui/login", content=f"token={token}",
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 303
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/ui" in cookie
    return client


def test_console_pages_forbid_foreign_content(svc: Service) -> None:
    r = httpx.get(f"{svc.url}/ui")
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "http" not in r.text.split("<body>")[0].replace("http-equiv", "")  # no CDN


def test_cross_site_revoke_without_the_csrf_value_is_refused(svc: Service) -> None:
    token_id, _ = create_admin_token(svc.store, "csrf target", "reader")
    with closing(_cookie(svc, svc.admin)) as admin:
        r = admin.post(f"/ui/tokens/{token_id}/revoke", content="csrf=forged",
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert r.status_code == 403
    with svc.store.transaction(write=False) as tx:
        assert not next(t for t in tx.token_list() if t["token_id"] == token_id)["revoked"]


def test_reader_cannot_change_anything_from_the_console(svc: Service) -> None:
    import hashlib
    import hmac

    token_id, _ = create_admin_token(svc.store, "reader target", "reader")
    _, reader = create_admin_token(svc.store, "sneaky reader", "reader")
    csrf = hmac.new(reader.encode(), b"veritee-ui-csrf", hashlib.sha256).hexdigest()
    with closing(_cookie(svc, reader)) as client:
        r = client.post(f"/ui/tokens/{token_id}/revoke", content=f"csrf={csrf}",
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert r.status_code == 403
    with svc.store.transaction(write=False) as tx:
        assert not next(t for t in tx.token_list() if t["token_id"] == token_id)["revoked"]


def test_unknown_token_does_not_sign_in(svc: Service) -> None:
    r = httpx.post(f"{svc.url}/ui/login", content="token=vt_not-a-token",
                   headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 401 and "set-cookie" not in r.headers
