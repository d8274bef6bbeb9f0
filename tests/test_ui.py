"""The shop's pages in a real browser (Debian's headless Chromium, driven by Selenium), against
two live workers sharing the ``make run`` demo traffic: the overview served by one of them
counts every customer of both, its numbers agree with the profiles over HTTP, its links lead
to customer pages that show the customer's numbers; the search box finds a customer; the
token guards the pages. Screenshots go to ``test-output/screenshots`` and must not be blank."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from harness.kafka import partition_of
from harness.waiting import wait_for
from harness.worker import ROOT, Worker, http_get

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
SCREENSHOTS = ROOT / "test-output" / "screenshots"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1280,1800")

pytestmark = pytest.mark.kafka


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
        pytest.skip("chromium is not installed (Debian's chromium and chromium-driver "
                    "packages; .ci/run installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def screenshot(driver: Any, name: str) -> Path:
    """Save a screenshot; fail if it is blank (one colour)."""
    from PIL import Image

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    driver.save_screenshot(str(path))
    with Image.open(path) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1_000_000)
    assert colours is not None and len(colours) > 20, f"{path} is blank"
    return path


def text(driver: Any, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.ID, element_id).text)


def links(driver: Any, table_id: str) -> list[str]:
    from selenium.webdriver.common.by import By

    return [a.get_attribute("href") for a in
            driver.find_element(By.ID, table_id).find_elements(By.TAG_NAME, "a")]


def test_overview_and_customer_pages_in_a_browser(make_worker: Callable[..., Worker],
                                                  browser: Any) -> None:
    from selenium.webdriver.common.by import By

    first = make_worker("w1", VALUESTREAM_CLOCK="event")
    second = make_worker("w2", VALUESTREAM_CLOCK="event")
    subprocess.run([sys.executable, "-m", "streams.cli", "demo", "--customers", "200",
                    "--events", "3000", "--rate", "0"], cwd=ROOT, env=first.env,
                   capture_output=True, check=True, timeout=180)
    for worker in (first, second):
        worker.wait(lambda w=worker: len(w.health()["active_partitions"]) == 2, 60,
                    "the partitions shared by the two workers")
        worker.wait_settled()
    customers = sum(first.profile(f"demo-{n:05d}")[0] == 200 for n in range(200))

    browser.get(f"{first.url}/ui")
    screenshot(browser, "overview")
    assert browser.find_elements(By.ID, "missing") == []  # every partition answered
    assert int(text(browser, "customers").replace(",", "")) == customers  # both workers'
    levels = {level: int(text(browser, f"level-{level}").replace(",", ""))
              for level in ("low", "medium", "high")}
    assert sum(levels.values()) == customers

    def gauges() -> dict[str, float]:
        return {level: first.metric("valuestream_customers", churn_risk=level)
                + second.metric("valuestream_customers", churn_risk=level) for level in levels}

    # The workers' gauges, refreshed every few seconds, come to the same counts.
    first.wait(lambda: gauges() == levels, 30, f"the customers gauges to read {levels}")
    calls = links(browser, "calls")
    assert calls, "nobody to call in the demo"

    # The most valuable at high risk: each is at high risk, their CLVs add up to at most
    # the total at risk, listed in descending order.
    at_risk = links(browser, "at-risk")
    clvs = []
    for href in at_risk:
        status, profile = first.profile(href.rsplit("/", 1)[1])
        assert status == 200 and profile["churn_risk"]["level"] == "high"
    for row in browser.find_element(By.ID, "at-risk").find_elements(By.TAG_NAME, "tr")[1:]:
        cells = row.find_elements(By.TAG_NAME, "td")
        if len(cells) == 2:
            clvs.append(Decimal(cells[1].text.replace(",", "")))
    assert clvs == sorted(clvs, reverse=True)
    assert sum(clvs) <= Decimal(text(browser, "clv-at-risk").replace(",", ""))

    # A customer to call: the link opens their page, whatever worker owns them, with the
    # numbers of their profile.
    browser.get(calls[0])
    screenshot(browser, "customer")
    customer = calls[0].rsplit("/", 1)[1]
    status, profile = first.profile(customer)
    assert status == 200
    assert text(browser, "customer").startswith(customer)
    assert text(browser, "net-revenue") == profile["net_revenue"]
    assert text(browser, "orders") == str(profile["orders"])
    assert profile["churn_risk"]["level"] in text(browser, "churn-level")
    if profile["orders"]:
        assert browser.find_element(By.ID, "p-alive-line").get_attribute("points")

    # A customer of the other worker: the page comes from their owner, through this one.
    theirs = next(f"demo-{n:05d}" for n in range(200)
                  if partition_of(f"demo-{n:05d}", 4) in second.health()["active_partitions"]
                  and second.profile(f"demo-{n:05d}")[0] == 200)
    browser.get(f"{first.url}/ui/customers/{theirs}")
    assert text(browser, "customer").startswith(theirs)
    assert text(browser, "net-revenue") == second.profile(theirs)[1]["net_revenue"]

    status, page = http_get(f"{first.url}/ui/customers/nobody")
    assert status == 404 and "Not found" in page and "nobody" in page

    # The search box.
    browser.get(f"{second.url}/ui")
    box = browser.find_element(By.NAME, "id")
    box.send_keys("demo-00007")
    box.submit()
    wait_for(lambda: browser.current_url.endswith("/ui/customers/demo-00007")
             and browser.find_elements(By.ID, "customer"), 30,
             "the search to open the customer's page")
    assert text(browser, "customer").startswith("demo-00007")
    screenshot(browser, "search")


def test_the_pages_ask_for_the_token_and_take_it_once(make_worker: Callable[..., Worker],
                                                      browser: Any) -> None:
    from selenium.webdriver.common.by import By

    worker = make_worker(VALUESTREAM_API_TOKEN="t0ken-for-the-shop")
    assert http_get(f"{worker.url}/ui")[0] == 401
    assert http_get(f"{worker.url}/ui/overview.json")[0] == 401
    browser.get(f"{worker.url}/ui")
    box = browser.find_element(By.NAME, "token")
    box.send_keys("t0ken-for-the-shop")
    box.submit()
    wait_for(lambda: browser.current_url.endswith("/ui")
             and browser.find_elements(By.ID, "customers"), 30, "the overview after the login")
    assert text(browser, "customers") == "0"
    screenshot(browser, "logged-in")
