"""A real headless browser for the web page's tests: Debian's Chromium driven by Selenium, offline.

``make test`` installs ``chromium`` and ``chromium-driver`` (Debian, as root); where they are missing the
browser tests skip and say why. Also a command that photographs the page with a photo on it (docs/serve.png):

  python tests/browser.py http://localhost:7860/ PHOTO OUT.png
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM = "/usr/bin/chromium"
#: Why the browser tests skip, or None when a browser can run.
MISSING = (None if Path(CHROMEDRIVER).is_file() and Path(CHROMIUM).is_file() and shutil.which("chromium")
           else f"no Chromium here ({CHROMIUM} and {CHROMEDRIVER}): make test installs Debian's chromium and "
                "chromium-driver when it runs as root with apt-get; install them to run the browser tests")


def chromium(width: int = 1280, height: int = 1000):
    """A headless Chromium whose network log can be read (``requests``); Selenium Manager is never asked for a
    driver (the driver's path is given) and would stay offline if it were."""
    os.environ.setdefault("SE_OFFLINE", "true")
    os.environ.setdefault("SE_AVOID_STATS", "true")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     f"--window-size={width},{height}", "--disable-background-networking",
                     "--disable-component-update", "--no-first-run"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


def requests(driver) -> list[str]:
    """The URLs the page has requested since the last call (Chrome's performance log)."""
    import json

    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def upload(driver, url: str | None, photo: Path, timeout: float = 120) -> None:
    """Open the page at ``url`` (None: stay on the open one), choose ``photo`` and wait until the page says what
    became of it: its items, or an error."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    if url is not None:
        driver.get(url)
        WebDriverWait(driver, 30).until(lambda d: "Loading" not in d.find_element(By.ID, "model").text)
    driver.find_element(By.ID, "photo").send_keys(str(Path(photo).resolve()))
    WebDriverWait(driver, timeout).until(
        lambda d: d.find_element(By.ID, "status").text.startswith(f"{Path(photo).name}: "))


if __name__ == "__main__":
    page, picture, out = sys.argv[1:]
    browser = chromium(1280, 1500)
    try:
        upload(browser, page, Path(picture))
        browser.save_screenshot(out)
    finally:
        browser.quit()
