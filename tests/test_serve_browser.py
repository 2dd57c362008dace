"""The web page in a real browser (Debian chromium driven by Playwright): type a prompt, submit,
wait for the video, check that the <video> element plays, save a screenshot."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from cinegen.serve.testing import Server, make_test_model

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="needs Debian chromium at /usr/bin/chromium (scripts/install_browser.sh)",
    ),
]


def test_page_generates_a_video_that_plays(tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright package (.[dev])")
    server = Server(tmp_path / "data", make_test_model(tmp_path / "model"), workers=1).start()
    key = server.new_key("browser")
    profile = tmp_path / "profile"  # a fresh user-data-dir: no state from earlier runs
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch_persistent_context(
                str(profile), executable_path=str(CHROMIUM), headless=True, args=FLAGS
            )
            page = browser.new_page()
            page.goto(f"{server.url}/#key={key}")
            assert "key=" not in page.url  # the page moved the key out of the address bar

            # Every form control has a label, and the task tabs follow the keyboard.
            unlabeled = page.evaluate(
                "[...document.querySelectorAll('#create input, #create select, #create textarea')]"
                ".filter(e => e.labels.length === 0).map(e => e.id)"
            )
            assert unlabeled == []
            page.focus("#tab-generate")
            page.keyboard.press("ArrowRight")
            assert page.get_attribute("#tab-image", "aria-selected") == "true"
            assert page.evaluate("document.activeElement.id") == "tab-image"
            assert page.is_visible("#image")
            page.keyboard.press("Home")
            assert page.get_attribute("#tab-generate", "aria-selected") == "true"

            page.get_by_label("Prompt", exact=True).fill("a red ball moves right on a white background")
            page.get_by_label("Aspect ratio").select_option("1:1")
            page.get_by_label("Short side (pixels)").select_option("64")
            page.get_by_label("Duration (seconds)").fill("1")
            page.click("text=More settings")
            page.get_by_label("Steps", exact=True).fill("2")
            page.get_by_role("button", name="Generate").click()

            card = page.locator("#gallery li.card").first
            card.wait_for(timeout=30_000)
            page.wait_for_selector(
                "#gallery li.card[data-status=completed] video[src^='blob:']", timeout=90_000
            )
            # It plays: time advances on its own (autoplay, muted, looping).
            page.wait_for_function(
                "() => { const v = document.querySelector('#gallery li.card video');"
                " return v && !v.paused && v.readyState >= 2 && v.currentTime > 0.2; }",
                timeout=30_000,
            )
            size = page.evaluate(
                "(() => { const v = document.querySelector('#gallery li.card video');"
                " return [v.videoWidth, v.videoHeight]; })()"
            )
            assert size == [64, 64]
            assert card.get_by_role("link", name="Download").get_attribute("href").startswith("blob:")
            for action in ("Extend", "Loop", "Remix"):
                assert card.get_by_role("button", name=action).first.is_visible()

            # Image -> video with a square image and the aspect left alone: the video follows the
            # image (the page sent its default 16:9, which the API refuses for a square image).
            image = tmp_path / "square.png"
            Image.new("RGB", (48, 48), (200, 30, 30)).save(image)
            page.goto(server.url)  # a fresh form: the aspect above was chosen, and a choice is kept
            page.click("#tab-image")
            page.set_input_files("#image", str(image))
            page.get_by_label("Prompt", exact=True).fill("the ball rolls away")
            page.get_by_label("Short side (pixels)").select_option("64")
            page.get_by_label("Duration (seconds)").fill("1")
            page.click("text=More settings")
            page.get_by_label("Steps", exact=True).fill("2")
            page.get_by_role("button", name="Generate").click()
            page.wait_for_function("document.querySelector('#message').textContent !== ''")
            assert page.text_content("#message").startswith("Queued"), page.text_content("#message")
            page.wait_for_selector("#gallery li.card[data-status=completed] >> nth=1", timeout=90_000)
            square = page.evaluate(
                "fetch('/v1/videos?limit=1', {headers: {Authorization: 'Bearer ' + localStorage"
                ".getItem('cinegen-key')}}).then(r => r.json()).then(l => l.data[0].size)"
            )
            assert square == "64x64"  # the image's aspect at the chosen short side
            assert page.input_value("#aspect") == ""  # "same as the input"
            page.click("#tab-generate")
            assert page.input_value("#aspect") == "16:9"  # text has no input to follow

            # A job can be cancelled from its card, by a button that is named what it shows.
            page.click("#tab-generate")
            page.get_by_label("Prompt", exact=True).fill("a slow one")
            page.get_by_label("Duration (seconds)").fill("2")
            page.get_by_label("Steps", exact=True).fill("100")
            page.get_by_role("button", name="Generate").click()
            slow = page.locator("#gallery li.card", has_text="a slow one")
            slow.get_by_role("button", name="Cancel: a slow one").click(timeout=10_000)
            page.wait_for_selector("#gallery li.card[data-status=cancelled]", timeout=30_000)
            assert slow.get_by_role("button", name="Delete: a slow one").is_visible()

            shot = tmp_path / "serve_page.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 1000
            if os.environ.get("CINEGEN_ARTIFACTS"):
                target = Path(os.environ["CINEGEN_ARTIFACTS"])
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy(shot, target / shot.name)
            browser.close()
    finally:
        server.stop()
