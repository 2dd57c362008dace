"""The web page in a real browser (Debian chromium driven by Playwright): type a prompt, submit,
wait for the video, check that the <video> element plays, save a screenshot; connect two videos
and edit with a mask through their tabs."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cinegen.media import write_video
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


LATEST = (
    "fetch('/v1/videos?limit=1', {headers: {Authorization: 'Bearer ' + localStorage"
    ".getItem('cinegen-key')}}).then(r => r.json()).then(l => l.data[0])"
)


def submit_and_wait(page, done: int) -> dict:
    """Press Generate, expect "Queued", wait for the `done`-th completed card; the newest video."""
    page.get_by_role("button", name="Generate", exact=True).click()
    page.wait_for_function("document.querySelector('#message').textContent.startsWith('Queued')")
    page.wait_for_selector(f"#gallery li.card[data-status=completed] >> nth={done - 1}", timeout=90_000)
    return page.evaluate(LATEST)


def test_page_connects_two_videos_and_edits_with_a_mask(tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright package (.[dev])")
    server = Server(tmp_path / "data", make_test_model(tmp_path / "model"), workers=1).start()
    key = server.new_key("browser")
    rng = np.random.default_rng(0)
    clips = []
    for name in ("a.mp4", "b.mp4"):  # 9 frames: two latent frames after the first
        clips.append(str(write_video(tmp_path / name, rng.integers(0, 255, (9, 64, 64, 3), np.uint8), 8)))
    mask = tmp_path / "mask.png"  # regenerate the right half
    Image.fromarray(np.repeat(np.repeat([[0, 255]], 64, 0), 32, 1).astype(np.uint8)).save(mask)
    small_mask = tmp_path / "small_mask.png"
    Image.new("L", (32, 32), 255).save(small_mask)
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch_persistent_context(
                str(tmp_path / "profile"), executable_path=str(CHROMIUM), headless=True, args=FLAGS
            )
            page = browser.new_page()
            console_errors = []
            page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
            page.goto(f"{server.url}/#key={key}")
            page.wait_for_load_state("networkidle")
            assert console_errors == []  # the browser's /favicon.ico request was a 404 here

            page.click("#tab-connect")
            assert page.get_attribute("#tab-connect", "aria-selected") == "true"
            page.get_by_label("First video").set_input_files(clips[0])
            page.get_by_label("Second video").set_input_files(clips[1])
            assert not page.is_visible("#mask") and not page.is_visible("#strength")
            page.get_by_label("Prompt", exact=True).fill("the ball rolls from one clip into the other")
            page.get_by_label("Short side (pixels)").select_option("64")
            page.get_by_label("Duration (seconds)").fill("1")
            page.click("text=More settings")
            page.get_by_label("Steps", exact=True).fill("2")
            assert page.input_value("#aspect") == ""  # "same as the input"
            connected = submit_and_wait(page, 1)
            assert connected["task"] == "connect" and connected["status"] == "completed", connected
            assert connected["metadata"]["request"]["video_b"].startswith("uploads/")
            assert connected["size"] == "64x64"
            assert connected["metadata"]["frames"] == 9 + connected["seconds"] * 8 + 9  # A, transition, B

            page.click("#tab-edit")
            assert page.text_content("label[for=video]").startswith("Source video")
            assert not page.is_visible("#video_b")
            page.get_by_label("Source video").set_input_files(clips[0])
            page.get_by_label("Mask").set_input_files(str(small_mask))
            page.get_by_label("Prompt", exact=True).fill("a blue ball on the right")
            page.get_by_role("button", name="Generate", exact=True).click()
            page.wait_for_function("document.querySelector('#message').classList.contains('error')")
            assert page.text_content("#message") == "mask is 32x32; it must be 64x64 like the video"

            page.get_by_label("Mask").set_input_files(str(mask))
            edited = submit_and_wait(page, 2)
            assert edited["task"] == "edit" and edited["status"] == "completed", edited
            assert edited["metadata"]["request"]["mask"].startswith("uploads/")
            # Strength left empty: the server's default, 1 with a mask (the page sent 0.7 always).
            assert edited["metadata"]["request"]["strength"] is None
            browser.close()
    finally:
        server.stop()
