#!/usr/bin/env python3
"""The operator page in a real browser: headless Debian Chromium driven by Selenium.

Started by tests/page.rs against a running service (real Redis, a real RTSP camera on the
sample video); run by hand the same way:

    .local/venv/bin/python tests/page_flow.py --url http://127.0.0.1:8069/ --token T \
        --camera walk --delete-camera spare --artefacts /tmp/page

Steps (a screenshot of each goes into --artefacts): a wrong token is refused and the prompt
comes back, the right one is kept; the camera's row becomes `running`; its live view shows
`latest.jpg` (naturalWidth > 0) and refreshes it, but fetches none while the tab is hidden
(document.hidden and visibilitychange emulated); a 4-point zone is drawn by clicking on the image, named with
an HTML payload and saved, and the API then holds that polygon (within 2 % of the clicks) and
the name as text; the recent events list fills; a camera with a bad URL (and a class named with
the payload) gets the API's messages next to its fields; a camera is deleted and its row goes.
Throughout, no payload runs (`window.__xss` stays unset) and none becomes an element.

Prints one line `RESULT <json>` (clicked points, timings) for the Rust side; exits non-zero on
the first failed step, with a screenshot `failed.png`.
"""
import argparse
import json
import os
import sys
import time
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

PAYLOAD = "<img src=x onerror=window.__xss=1>"
ZONE = [(0.20, 0.30), (0.70, 0.25), (0.80, 0.80), (0.25, 0.75)]
LINE = [(0.50, 0.95), (0.55, 0.10)]
HIDE = ("Object.defineProperty(document, 'hidden', {configurable: true, get: () => true});"
        "document.dispatchEvent(new Event('visibilitychange'))")
SHOW = ("Object.defineProperty(document, 'hidden', {configurable: true, get: () => false});"
        "document.dispatchEvent(new Event('visibilitychange'))")


def tid(name):
    return (By.CSS_SELECTOR, f'[data-testid="{name}"]')


class Flow:
    def __init__(self, args):
        self.args = args
        self.base = args.url.rstrip("/")
        os.makedirs(args.artefacts, exist_ok=True)
        opts = webdriver.ChromeOptions()
        opts.binary_location = args.chromium
        for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--window-size=1280,1000", "--no-first-run", "--disable-extensions",
                  "--disable-background-networking", "--disable-component-update"):
            opts.add_argument(a)
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(service=Service(executable_path=args.chromedriver), options=opts)
        self.driver.set_page_load_timeout(30)
        self.t0 = time.monotonic()
        self.steps = []
        self.n = 0

    def shot(self, name):
        self.n += 1
        path = os.path.join(self.args.artefacts, f"{self.n:02d}-{name}.png")
        self.driver.save_screenshot(path)
        self.steps.append({"step": name, "t_s": round(time.monotonic() - self.t0, 2), "screenshot": path})
        print(f"page_flow: {name} at {time.monotonic() - self.t0:.1f} s ({path})", flush=True)

    def find(self, name):
        return self.driver.find_element(*tid(name))

    def wait(self, what, fn, timeout=30):
        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.1).until(lambda d: fn())
        except Exception as e:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}") from e

    def text(self, name):
        els = self.driver.find_elements(*tid(name))
        return els[0].text if els else None

    def api(self, path):
        req = urllib.request.Request(self.base + path, headers={"Authorization": f"Bearer {self.args.token}"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def no_xss(self, where):
        ran = self.driver.execute_script("return window.__xss === undefined ? null : window.__xss")
        assert ran is None, f"{where}: the payload ran (window.__xss = {ran!r})"
        injected = self.driver.execute_script(
            "return [...document.querySelectorAll('img')].filter(i => (i.getAttribute('src') || '') === 'x').length")
        assert injected == 0, f"{where}: the payload became an <img> element"

    def click_at(self, svg, points):
        """Clicks each normalised point on `svg`; returns where the clicks landed (normalised)."""
        w, h = self.driver.execute_script("const r = arguments[0].getBoundingClientRect(); return [r.width, r.height]", svg)
        clicked = []
        for (nx, ny) in points:
            dx = round((nx - 0.5) * w)
            dy = round((ny - 0.5) * h)
            ActionChains(self.driver).move_to_element_with_offset(svg, dx, dy).click().perform()
            clicked.append((0.5 + dx / w, 0.5 + dy / h))
        return clicked

    def run(self):
        a = self.args
        d = self.driver
        cam = a.camera
        d.get(self.base + "/")
        d.execute_script("performance.setResourceTimingBufferSize(100000)")

        # --- token: a wrong one is refused and the prompt comes back; the right one is kept
        self.wait("the token prompt", lambda: self.find("token-dialog").is_displayed())
        self.find("token-input").send_keys("wrong-" + a.token)
        self.find("token-save").click()
        self.wait("the prompt to come back after a 401",
                  lambda: self.find("token-dialog").is_displayed() and "refused" in (self.text("token-message") or ""))
        self.find("token-input").send_keys(a.token)
        self.find("token-save").click()
        self.wait("the prompt to close", lambda: not self.find("token-dialog").is_displayed())
        assert d.execute_script("return sessionStorage.getItem('analytics-service.token')") == a.token
        assert a.token not in d.current_url

        # --- the camera row becomes running
        self.wait(f"camera {cam} running",
                  lambda: (self.text(f"camera-state-{cam}") or "").startswith("running"), timeout=60)
        self.shot("cameras")

        # --- live view: latest.jpg loads
        self.find(f"camera-live-{cam}").click()
        img = self.find("live-image")
        self.wait("the live image", lambda: d.execute_script(
            "const i = arguments[0]; return i.complete && i.naturalWidth > 0", img), timeout=40)
        src = img.get_attribute("src")
        assert src.startswith("blob:"), f"the live image is not a blob: URL: {src}"
        first = src
        self.wait("the live image to refresh", lambda: img.get_attribute("src") != first, timeout=10)
        self.shot("live")

        # --- a hidden tab fetches no frames (Page Visibility API); visible again, it refreshes
        frames = "return performance.getEntriesByType('resource').filter(e => e.name.includes('/latest.jpg')).length"
        t_vis = time.monotonic()
        n_vis = d.execute_script(frames)
        time.sleep(2)
        rate = (d.execute_script(frames) - n_vis) / (time.monotonic() - t_vis)
        d.execute_script(HIDE)
        time.sleep(0.8)  # a fetch in flight when the tab hid may still land
        n0 = d.execute_script(frames)
        time.sleep(2)
        assert d.execute_script(frames) == n0, "frames were fetched while the tab was hidden"
        d.execute_script(SHOW)
        self.wait("a frame after the tab is visible again", lambda: d.execute_script(frames) > n0, timeout=5)

        # --- draw a 4-point zone by clicking, name it, save
        self.find("zone-new").click()
        svg = self.find("zone-editor")
        clicked = self.click_at(svg, ZONE)
        name = self.find("zone-name")
        name.clear()
        name.send_keys(PAYLOAD)
        before = img.get_attribute("src")
        self.find("zone-save").click()
        self.wait("the zone to be saved", lambda: self.text("editor-note") == "Saved.", timeout=15)
        assert not self.text("editor-message"), self.text("editor-message")
        self.no_xss("zone name")
        item = self.text("zone-item-0") or ""
        assert PAYLOAD in item, f"the zone list shows {item!r}"
        status, camera = self.api(f"/api/cameras/{cam}")
        assert status == 200, camera
        zones = camera["parameters"]["roi_zones"]
        assert len(zones) == 1 and zones[0]["name"] == PAYLOAD, zones
        for (cx, cy), (px, py) in zip(clicked, zones[0]["points"]):
            assert abs(cx - px) <= 0.02 and abs(cy - py) <= 0.02, f"clicked {clicked}, saved {zones[0]['points']}"
        self.wait("the live image after the save", lambda: img.get_attribute("src") != before, timeout=10)
        self.shot("zone-saved")
        if self.args.readme_shot:
            readme_picture(self.steps[-1]["screenshot"], self.args.readme_shot)

        # --- a 2-point line: saved where the service knows `lines`; otherwise the page says so
        self.find("line-new").click()
        line_clicked = self.click_at(svg, LINE)
        self.find("zone-save").click()
        self.wait("the line's save", lambda: self.text("editor-note") == "Saved."
                  or "lines" in (self.text("editor-message") or ""), timeout=15)
        status, camera = self.api(f"/api/cameras/{cam}")
        assert camera["parameters"]["roi_zones"] == zones, "saving the line changed the zones"
        lines = camera["parameters"].get("lines")
        if lines is None:
            assert "not saved" in self.text("editor-message"), self.text("editor-message")
        else:
            assert len(lines) == 1 and len(lines[0]["points"]) == 2, lines
            for (cx, cy), (px, py) in zip(line_clicked, lines[0]["points"]):
                assert abs(cx - px) <= 0.02 and abs(cy - py) <= 0.02, f"clicked {line_clicked}, saved {lines}"
        self.shot("line")

        # --- the recent events of the camera
        self.wait("an event in the feed",
                  lambda: len(d.find_elements(By.CSS_SELECTOR, '[data-testid="event-feed"] [data-testid="event"]')) > 0,
                  timeout=20)
        self.shot("events")

        # --- a camera with a bad URL: the API's messages next to the fields
        self.find("camera-add").click()
        self.find("field-camera_id").send_keys("page-bad-url")
        self.find("field-stream_url").send_keys("ftp://nowhere.example/stream")
        self.find("field-detection_classes").send_keys(PAYLOAD)
        self.find("form-submit").click()
        self.wait("the stream_url error", lambda: "scheme" in (self.text("error-stream_url") or ""))
        classes = self.text("error-detection_classes") or ""
        assert PAYLOAD in classes, f"the class error shows {classes!r}"
        self.no_xss("form errors")
        status, _ = self.api("/api/cameras/page-bad-url")
        assert status == 404, "a refused camera was stored"
        self.shot("form-error")
        self.find("form-cancel").click()

        # --- delete a camera: its row goes
        victim = a.delete_camera
        self.wait(f"the row of {victim}", lambda: len(d.find_elements(*tid(f"camera-row-{victim}"))) == 1)
        self.find(f"camera-delete-{victim}").click()
        self.find(f"camera-delete-{victim}").click()  # "Really delete?"
        self.wait(f"the row of {victim} to go", lambda: len(d.find_elements(*tid(f"camera-row-{victim}"))) == 0)
        status, _ = self.api(f"/api/cameras/{victim}")
        assert status == 404, "the deleted camera is still registered"
        self.no_xss("end")
        self.shot("deleted")

        # nothing the page did was refused by its own Content-Security-Policy
        csp = [e["message"] for e in d.get_log("browser") if "Content Security Policy" in e.get("message", "")]
        assert not csp, f"CSP violations: {csp}"
        return {"clicked": clicked, "saved": zones[0]["points"], "line_saved": lines is not None,
                "live_frames_per_s": round(rate, 2), "steps": self.steps,
                "flow_s": round(time.monotonic() - self.t0, 2),
                "browser": d.capabilities.get("browserVersion"),
                "driver": d.capabilities.get("chrome", {}).get("chromedriverVersion", "").split(" ")[0]}


def readme_picture(src, dst):
    """The README's picture: the screenshot with a 128-colour palette (a few hundred KB less)."""
    from PIL import Image  # Pillow comes with supervision in the setup's venv

    Image.open(src).convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(dst, optimize=True)
    print(f"page_flow: {dst} written ({os.path.getsize(dst)} bytes)", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--camera", required=True)
    ap.add_argument("--delete-camera", required=True)
    ap.add_argument("--artefacts", required=True)
    ap.add_argument("--readme-shot", help="also write the zone step's picture here, palette-reduced (docs/images/operator-page.png)")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--chromedriver", default="/usr/bin/chromedriver")
    args = ap.parse_args()
    flow = Flow(args)
    try:
        result = flow.run()
        print("RESULT " + json.dumps(result), flush=True)
    except BaseException:
        try:
            flow.driver.save_screenshot(os.path.join(args.artefacts, "failed.png"))
            for e in flow.driver.get_log("browser"):
                print("browser:", e.get("level"), e.get("message"), file=sys.stderr)
        except Exception:
            pass
        raise
    finally:
        flow.driver.quit()


if __name__ == "__main__":
    main()
