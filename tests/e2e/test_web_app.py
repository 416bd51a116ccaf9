"""The web app (web/) in a real browser: headless Chromium, the page Hosting serves, the
Firebase JS SDK talking to the emulators, under firestore.rules.

Nothing is stubbed: the page is the production bundle (``make web``) served by the
Hosting emulator, users sign up on the Auth emulator through the page, files go to the
Storage emulator through its file picker and drop zone, the Functions emulator runs the
real classifier, and the page receives the result through ``onSnapshot``. The Admin SDK
(``firestore_db``) is used only to check that what the page shows is what the functions
wrote.

Chromium comes from the system (Debian's ``chromium`` package; ``make chromium`` installs
it), driven by Playwright for Python without ``playwright install``. ``MC_CHROMIUM``
names another binary. ``MC_WEB_SCREENSHOT=path.png`` saves the results page there
(``make web-screenshot`` refreshes ``docs/web-app.png``).

The model-refresh panel is driven the same way: an account given the custom claim
``admin: true`` starts, cancels and resumes runs from the page, whose tasks the Cloud Tasks
emulator dispatches to the real ``refreshTasks``; an account without it sees no panel,
and firestore.rules refuse it the runs.

Near-duplicates and "Similar" use the real callable ``similar`` and the vectors the trigger
stores: a photo and a resized, re-compressed copy of it; another user's identical photo
must never show up in the first user's answers, nor theirs in the other's.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image
from playwright.sync_api import Browser, Page, expect, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from tests.e2e.conftest import _auth_post, run_command
from tools.localstack import HOST, PORTS, PROJECT_ID, LocalStack, default_bucket, result_doc_id

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "samples"
PHOTO = SAMPLES / "images" / "coffee.jpg"
CAT = SAMPLES / "images" / "chelsea-cat.png"
VIDEO = SAMPLES / "video" / "ladybug-zoom.mp4"
PASSWORD = "web-e2e-password"
RESULT_TIMEOUT_MS = 120_000
# A JPEG's first bytes and nothing decodable after them: the functions answer CORRUPT_MEDIA.
BROKEN_JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 2
RUNS = "mediaRefreshRuns"
REFRESH_COUNT = 30  # two batches: 20 and 10
REFRESH_TIMEOUT_MS = 240_000
TASKS_HOST = f"{HOST}:9499"  # the Cloud Tasks emulator, started with the functions


@pytest.fixture(scope="module")
def web_url(stack: LocalStack | None) -> str:
    """The app as the Hosting emulator serves it (the stack's ``hosting`` emulator)."""
    url = f"http://{HOST}:{PORTS['hosting']}/"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            body = response.read().decode(errors="replace")
    except OSError as exc:
        pytest.fail(f"nothing serves the web app at {url} ({exc}): build it with `make web`")
    assert "Media Classifier" in body, f"{url} does not serve web/dist/index.html"
    return url


def chromium_path() -> str:
    """The system Chromium (``MC_CHROMIUM`` overrides); a clear failure when missing."""
    found = os.environ.get("MC_CHROMIUM") or shutil.which("chromium")
    if not found:
        pytest.fail(
            "no chromium on PATH: `make chromium` installs Debian's package "
            "(as root: apt-get install -y chromium), or set MC_CHROMIUM to a Chromium binary"
        )
    return found


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium_path(),
            args=["--no-sandbox", "--disable-dev-shm-usage"],
        )
        try:
            yield launched
        finally:
            launched.close()


@dataclass
class User:
    """A signed-in person in their own browser profile (context)."""

    page: Page
    uid: str
    errors: list[str]

    def card(self, path: str) -> Any:
        return self.page.locator(f'[data-testid="result-card"][data-path="{path}"]')


def open_app(browser: Browser, web_url: str, **context: Any) -> tuple[Page, list[str]]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, **context)
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(web_url)
    page.wait_for_selector('body[data-signed-in="no"]', timeout=30_000)
    assert page.locator('[data-testid="mode"]').inner_text() == "Local emulators"
    return page, errors


def signed_in_uid(page: Page) -> str:
    page.wait_for_selector('body[data-signed-in="yes"]', timeout=30_000)
    return str(page.evaluate("window.mediaClassifier.fb.auth.currentUser.uid"))


@pytest.fixture(scope="module")
def user_a(browser: Browser, web_url: str, run_id: str) -> Iterator[User]:
    """A creates an account with email and password, through the sign-in form."""
    page, errors = open_app(browser, web_url)
    page.fill('input[name="email"]', f"a-{run_id}@example.test")
    page.fill('input[name="password"]', PASSWORD)
    page.click("#sign-up")
    user = User(page=page, uid=signed_in_uid(page), errors=errors)
    yield user
    page.context.close()


@pytest.fixture(scope="module")
def user_b(browser: Browser, web_url: str) -> Iterator[User]:
    """B continues without an account (anonymous sign-in), in another browser profile."""
    page, errors = open_app(browser, web_url)
    page.click("#anonymous")
    user = User(page=page, uid=signed_in_uid(page), errors=errors)
    yield user
    page.context.close()


def drop_file(page: Page, name: str, data: bytes, content_type: str) -> None:
    """Drag and drop, as a person does it: a ``drop`` event carrying the file."""
    page.evaluate(
        """({name, b64, type}) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], name, {type}));
            const zone = document.querySelector("#dropzone");
            for (const kind of ["dragenter", "dragover", "drop"]) {
                const init = {dataTransfer: dt, bubbles: true, cancelable: true};
                zone.dispatchEvent(new DragEvent(kind, init));
            }
        }""",
        {"name": name, "b64": base64.b64encode(data).decode(), "type": content_type},
    )


def record_statuses(page: Page) -> None:
    """Keep every status a card shows (the upload's progress passes too quickly to poll)."""
    page.evaluate(
        """() => {
            window.seenStatuses = new Set();
            const grid = document.querySelector("#results");
            const note = () => grid.querySelectorAll('[data-testid="status"]')
                .forEach((el) => window.seenStatuses.add(el.textContent));
            const what = {subtree: true, childList: true, characterData: true};
            new MutationObserver(note).observe(grid, what);
        }"""
    )


def new_card_path(page: Page, before: set[str], name: str) -> str:
    """The object path of the card that appeared for an upload of ``name``."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        paths = page.eval_on_selector_all(
            '[data-testid="result-card"]', "els => els.map((e) => e.dataset.path)"
        )
        fresh = [p for p in paths if p not in before and p.endswith(name)]
        if fresh:
            return fresh[0]
        time.sleep(0.1)
    pytest.fail(f"no card appeared for {name}")


def card_paths(page: Page) -> set[str]:
    return set(
        page.eval_on_selector_all(
            '[data-testid="result-card"]', "els => els.map((e) => e.dataset.path)"
        )
    )


def wait_final(user: User, path: str) -> str:
    """Wait until the card of ``path`` shows a final status; returns it."""
    card = user.card(path)
    card.and_(user.page.locator('[data-status="done"], [data-status="error"]')).wait_for(
        timeout=RESULT_TIMEOUT_MS
    )
    return str(card.get_attribute("data-status"))


def shown_labels(card: Any, testid: str = "labels") -> list[str]:
    return card.locator(f'[data-testid="{testid}"] .label-name').all_inner_texts()


@pytest.fixture(scope="module")
def a_uploads(user_a: User, firestore_db: Any) -> dict[str, str]:
    """A picks two sample photos with the file picker, then drops the sample video."""
    page = user_a.page
    record_statuses(page)
    before = card_paths(page)
    page.set_input_files("#file-input", [str(PHOTO), str(CAT)])
    photo = new_card_path(page, before, PHOTO.name)
    cat = new_card_path(page, before, CAT.name)
    drop_file(page, VIDEO.name, VIDEO.read_bytes(), "video/mp4")
    video = new_card_path(page, before | {photo, cat}, VIDEO.name)
    for path in (photo, cat, video):
        assert wait_final(user_a, path) == "done"
    return {"photo": photo, "cat": cat, "video": video}


def stored_result(firestore_db: Any, path: str) -> dict[str, Any]:
    snap = firestore_db.collection("mediaResults").document(result_doc_id(path)).get()
    assert snap.exists, f"no result document for {path}"
    return snap.to_dict() or {}


def test_a_user_sees_the_labels_of_their_photo_as_the_function_wrote_them(
    user_a: User, a_uploads: dict[str, str], firestore_db: Any
) -> None:
    path = a_uploads["photo"]
    assert path.startswith(f"uploads/{user_a.uid}/")
    stored = stored_result(firestore_db, path)
    card = user_a.card(path)
    assert shown_labels(card) == [item["label"] for item in stored["labels"]]
    assert stored["customMetadata"]["originalName"] == PHOTO.name
    assert card.locator(".name").inner_text() == PHOTO.name
    seen = user_a.page.evaluate("[...window.seenStatuses]")
    assert any(s.startswith("Uploading") for s in seen), seen  # progress was shown
    assert user_a.errors == []


def test_a_video_shows_its_labels_timeline_and_a_strip_of_every_analysed_frame(
    user_a: User, a_uploads: dict[str, str], firestore_db: Any
) -> None:
    path = a_uploads["video"]
    stored = stored_result(firestore_db, path)
    card = user_a.card(path)
    assert shown_labels(card) == [item["label"] for item in stored["labels"]]
    segments = card.locator('[data-testid="segment"]')
    assert segments.count() == len(stored["video"]["segments"]) >= 1
    assert segments.first.inner_text() == stored["video"]["segments"][0]["label"]
    strip = card.locator('[data-testid="frames"] li')
    strip.first.wait_for(timeout=20_000)
    assert strip.count() == stored["video"]["framesAnalyzed"]


def test_the_history_lists_the_users_results_latest_first_from_the_owner_query(
    user_a: User, a_uploads: dict[str, str], firestore_db: Any
) -> None:
    # A fresh page builds its list from where(owner == uid) + orderBy(updatedAt, desc) alone.
    user_a.page.reload()
    for path in a_uploads.values():
        user_a.card(path).wait_for(timeout=30_000)
    shown = user_a.page.eval_on_selector_all(
        '[data-testid="result-card"]', "els => els.map((e) => e.dataset.path)"
    )
    expected = sorted(
        a_uploads.values(),
        key=lambda path: stored_result(firestore_db, path)["updatedAt"],
        reverse=True,
    )
    assert shown == expected


def test_another_user_sees_none_of_them_and_is_refused_a_direct_read(
    user_b: User, a_uploads: dict[str, str], web_url: str
) -> None:
    page = user_b.page
    page.wait_for_selector('[data-testid="history-empty"]:not([hidden])', timeout=30_000)
    assert card_paths(page) == set()
    # B opens a link to A's result: the page reads mediaResults/{id} directly.
    page.goto(f"{web_url}#result={urllib.parse.quote(a_uploads['photo'], safe='')}")
    linked = page.locator('[data-testid="linked-card"]')
    linked.and_(page.locator('[data-status="refused"]')).wait_for(timeout=30_000)
    error = linked.locator('[data-testid="card-error"]')
    assert error.get_attribute("data-code") == "permission-denied"
    assert "don't have access" in error.inner_text()
    assert linked.locator('[data-testid="labels"]').count() == 0
    assert user_b.errors == []


def test_the_history_is_paged_with_show_more(user_b: User, web_url: str) -> None:
    page = user_b.page
    page.goto(f"{web_url}?pageSize=2")
    page.wait_for_selector('[data-testid="history-empty"]:not([hidden])', timeout=30_000)
    photos = [SAMPLES / "images" / name for name in ("rocket.jpg", "flower.jpg", "coffee.jpg")]
    for photo in photos:  # one by one: three different upload times
        before = card_paths(page)
        page.set_input_files("#file-input", str(photo))
        assert wait_final(user_b, new_card_path(page, before, photo.name)) == "done"
    more = page.locator("#more")
    more.wait_for(state="visible", timeout=30_000)
    cards = page.locator('[data-testid="result-card"]')
    page.wait_for_function(
        "document.querySelectorAll('[data-testid=result-card]').length === 2", timeout=30_000
    )
    assert page.locator('[data-testid="history-count"]').inner_text() == "2+ uploads"
    more.click()
    page.wait_for_function(
        "document.querySelectorAll('[data-testid=result-card]').length === 3", timeout=30_000
    )
    more.wait_for(state="hidden", timeout=30_000)
    assert {p.rsplit("-", 1)[-1] for p in card_paths(page)} == {p.name for p in photos}
    assert cards.count() == 3


def test_classify_again_calls_the_classify_function_and_shows_its_labels(
    user_a: User, a_uploads: dict[str, str], firestore_db: Any
) -> None:
    path = a_uploads["photo"]
    card = user_a.card(path)
    card.locator('[data-action="classify"]').click()
    card.locator('[data-testid="ondemand-labels"]').wait_for(timeout=RESULT_TIMEOUT_MS)
    top = shown_labels(card, "ondemand-labels")[0]
    assert top == stored_result(firestore_db, path)["labels"][0]["label"]


def test_the_results_page_fits_a_phone_screen(
    user_a: User, a_uploads: dict[str, str], request: pytest.FixtureRequest
) -> None:
    page = user_a.page
    page.goto(page.url.split("#")[0])
    user_a.card(a_uploads["video"]).locator('[data-testid="frames"]').wait_for(timeout=30_000)
    save_screenshot(page, request)
    page.set_viewport_size({"width": 390, "height": 844})
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways at phone width ({width} px)"
    page.screenshot(path=str(screens_dir() / "web-app-phone.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})


def expected_title(page: Page, code: str) -> str:
    title = page.evaluate("(code) => window.mediaClassifier.describeError({code}).title", code)
    fallback = page.evaluate("() => window.mediaClassifier.describeError({}).title")
    assert title != fallback, f"{code} has no message of its own"
    return str(title)


def test_a_broken_upload_shows_its_error_code_as_a_human_message(
    user_a: User, firestore_db: Any
) -> None:
    page = user_a.page
    before = card_paths(page)
    drop_file(page, "broken.jpg", BROKEN_JPEG, "image/jpeg")
    path = new_card_path(page, before, "broken.jpg")
    assert wait_final(user_a, path) == "error"
    code = stored_result(firestore_db, path)["error"]["code"]
    assert code == "CORRUPT_MEDIA"
    box = user_a.card(path).locator('[data-testid="result-error"]')
    assert box.get_attribute("data-code") == code
    assert box.locator(".alert-title").inner_text() == expected_title(page, code)


def test_checking_a_file_without_upload_reports_the_callables_error_code(
    user_a: User, tmp_path: Path
) -> None:
    page = user_a.page
    text = tmp_path / "notes.txt"
    text.write_text("not a photo\n")
    page.click(".quick summary")
    page.set_input_files('[data-testid="quick-input"]', str(text))
    box = page.locator('[data-testid="quick-error"]')
    box.wait_for(timeout=RESULT_TIMEOUT_MS)
    assert box.get_attribute("data-code") == "UNSUPPORTED_MEDIA"
    assert box.locator(".alert-title").inner_text() == expected_title(page, "UNSUPPORTED_MEDIA")
    page.set_input_files('[data-testid="quick-input"]', str(PHOTO))
    page.locator('[data-testid="quick-labels"]').wait_for(timeout=RESULT_TIMEOUT_MS)


def test_deleting_an_upload_removes_it_and_its_result(
    user_a: User, firestore_db: Any, storage_bucket: Any
) -> None:
    page = user_a.page
    before = card_paths(page)
    flower = SAMPLES / "images" / "flower.jpg"
    page.set_input_files("#file-input", str(flower))
    path = new_card_path(page, before, flower.name)
    assert wait_final(user_a, path) == "done"
    card = user_a.card(path)
    card.locator('[data-action="delete"]').click()
    card.locator('[data-action="delete"]', has_text="Confirm").click()
    card.wait_for(state="detached", timeout=60_000)
    assert not storage_bucket.blob(path).exists()
    ref = firestore_db.collection("mediaResults").document(result_doc_id(path))
    assert not ref.get().exists


SETTLE_VIDEOS = """() => Promise.all([...document.querySelectorAll("video")].map(async (v) => {
    v.muted = true;
    await v.play().catch(() => {});
    v.pause();
    const seeked = new Promise((done) => v.addEventListener("seeked", done, {once: true}));
    v.currentTime = 0;
    await Promise.race([seeked, new Promise((done) => setTimeout(done, 5000))]);
}))"""


def screens_dir() -> Path:
    folder = Path(tempfile.gettempdir()) / "mc-web-screens"
    folder.mkdir(exist_ok=True)
    return folder


def save_screenshot(page: Page, request: pytest.FixtureRequest) -> None:
    """The results page at desktop width: always under $TMPDIR/mc-web-screens, and at
    ``MC_WEB_SCREENSHOT`` when set (the README's picture, ``make web-screenshot``)."""
    page.evaluate("window.scrollTo(0, 0)")
    page.mouse.move(0, 0)
    # Videos show their first frame rather than a loading spinner: play a moment, rewind.
    with contextlib.suppress(PlaywrightError):
        page.evaluate(SETTLE_VIDEOS)
    shot = screens_dir() / "web-app.png"
    page.screenshot(
        path=str(shot), full_page=True, clip={"x": 0, "y": 0, "width": 1280, "height": 1180}
    )
    target = os.environ.get("MC_WEB_SCREENSHOT")
    if target:
        # A palette PNG: a third of the bytes, and photos still look like photos.
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        with Image.open(shot) as image:
            small = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
            small.save(target, optimize=True)


# --- the model-refresh panel (admins only) ---------------------------------------------------
def _png(i: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (24, 24), (i * 37 % 256, i * 91 % 256, i * 13 % 256)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def refresh_folder(run_id: str, storage_bucket: Any, firestore_db: Any) -> str:
    """29 small photos and one broken one under a folder of their own, classified by the
    trigger (done, and one CORRUPT_MEDIA), before any refresh runs over them."""
    under = f"uploads/{run_id}/{run_id}/web-refresh/"
    names = [f"{under}img-{i:03d}.png" for i in range(REFRESH_COUNT - 1)]
    for i, name in enumerate(names):
        storage_bucket.blob(name).upload_from_string(_png(i), content_type="image/png")
    names.append(f"{under}broken.jpg")
    storage_bucket.blob(names[-1]).upload_from_string(BROKEN_JPEG, content_type="image/jpeg")
    refs = [firestore_db.collection("mediaResults").document(result_doc_id(n)) for n in names]
    deadline = time.monotonic() + 300
    statuses: list[Any] = []
    while time.monotonic() < deadline:
        statuses = [(snap.to_dict() or {}).get("status") for snap in firestore_db.get_all(refs)]
        if len(statuses) == len(names) and all(s in ("done", "error") for s in statuses):
            break
        time.sleep(1)
    assert sorted(statuses) == ["done"] * (REFRESH_COUNT - 1) + ["error"], statuses
    return under


@pytest.fixture(scope="module")
def admin(browser: Browser, web_url: str, run_id: str) -> Iterator[User]:
    """An operator: an account given the custom claim ``admin: true`` (the Auth emulator's
    admin API, as ``auth.set_custom_user_claims`` does), then signed in with the form."""
    uid, email = f"web-admin-{run_id}", f"web-admin-{run_id}@example.test"
    account = {"localId": uid, "email": email, "password": PASSWORD}
    _auth_post(f"projects/{PROJECT_ID}/accounts", account, admin=True)
    claims = {"localId": uid, "customAttributes": json.dumps({"admin": True})}
    _auth_post(f"projects/{PROJECT_ID}/accounts:update", claims, admin=True)
    page, errors = open_app(browser, web_url)
    page.fill('input[name="email"]', email)
    page.fill('input[name="password"]', PASSWORD)
    page.click('[data-action="sign-in"]')
    user = User(page=page, uid=signed_in_uid(page), errors=errors)
    assert user.uid == uid
    yield user
    page.context.close()


def run_ids(page: Page) -> list[str]:
    return page.eval_on_selector_all(
        '[data-testid="refresh-run"]', "els => els.map((e) => e.dataset.run)"
    )


def record_runs(page: Page) -> None:
    """Keep every (run, status, progress) the panel shows: the states pass too quickly to poll."""
    page.evaluate(
        """() => {
            window.seenRuns = [];
            const list = document.querySelector("#refresh-runs");
            const note = () => list.querySelectorAll("[data-run]").forEach((el) => {
                const bar = el.querySelector('[data-testid="run-progress"]');
                const pct = Number(bar.getAttribute("aria-valuenow"));
                window.seenRuns.push([el.dataset.run, el.dataset.status, pct]);
            });
            new MutationObserver(note).observe(list, {subtree: true, childList: true});
        }"""
    )


def shown_counts(run: Any) -> dict[str, int]:
    """The counts a run's card shows, as numbers."""
    return {
        name: int(run.locator(f'[data-count="{name}"]').inner_text().replace(",", ""))
        for name in ("listed", "enqueued", "done", "skipped", "errors")
    }


def wait_run_status(run: Any, status: str, timeout: float = REFRESH_TIMEOUT_MS) -> None:
    run.and_(run.page.locator(f'[data-status="{status}"]')).wait_for(timeout=timeout)


def assert_shows_the_finished_run(run: Any, stored: dict[str, Any]) -> None:
    """The card of a finished run shows its document's counts, and they add up."""
    counts = shown_counts(run)
    assert counts == {
        "listed": stored["listed"],
        "enqueued": stored["enqueued"],
        "done": stored["done"],
        "skipped": stored["skipped"],
        "errors": sum(stored["errors"].values()),
    }
    assert counts["listed"] == counts["done"] + counts["skipped"] + counts["errors"]
    assert run.locator('[data-testid="run-progress"]').get_attribute("aria-valuenow") == "100"
    shown_errors = run.locator('[data-testid="run-errors"] li')
    codes = {shown_errors.nth(i).get_attribute("data-code") for i in range(shown_errors.count())}
    assert codes == {code for code, n in stored["errors"].items() if n}
    assert run.locator('[data-testid="run-finished"]').evaluate("e => e.tagName") == "TIME"
    assert run.locator('[data-testid="run-remaining"]').inner_text().startswith("none")
    assert run.locator("button").count() == 0  # nothing to cancel or resume


def test_an_admin_starts_a_refresh_and_watches_its_counts_add_up_as_it_finishes(
    admin: User, refresh_folder: str, firestore_db: Any
) -> None:
    page = admin.page
    page.locator('[data-testid="refresh-panel"]').wait_for(state="visible", timeout=30_000)
    record_runs(page)
    before = set(run_ids(page))
    page.fill('#refresh-form input[name="under"]', refresh_folder)
    page.check('#refresh-form input[name="everything"]')
    start = page.locator("#refresh-start")
    start.click()
    assert start.inner_text() == f"Confirm: refresh {refresh_folder}"  # nothing started yet
    assert set(run_ids(page)) == before
    start.click()
    page.wait_for_function(
        "(before) => [...document.querySelectorAll('[data-testid=refresh-run]')]"
        ".some((e) => !before.includes(e.dataset.run))",
        arg=sorted(before),
        timeout=30_000,
    )
    [run_id] = [r for r in run_ids(page) if r not in before]
    run = page.locator(f'[data-testid="refresh-run"][data-run="{run_id}"]')
    wait_run_status(run, "done")

    stored = firestore_db.collection(RUNS).document(run_id).get().to_dict()
    assert stored["under"] == refresh_folder and stored["options"]["everything"] is True
    assert (stored["listed"], stored["done"], stored["errors"]) == (
        REFRESH_COUNT,
        REFRESH_COUNT - 1,
        {"CORRUPT_MEDIA": 1},
    )
    assert_shows_the_finished_run(run, stored)
    assert "fresh" in (run.get_attribute("class") or "").split()  # the run this page started
    seen = [(status, pct) for r, status, pct in page.evaluate("window.seenRuns") if r == run_id]
    assert seen[0][0] == "running", seen  # watched live, from its start
    progress = [pct for _, pct in seen]
    assert progress == sorted(progress) and progress[-1] == 100, progress
    assert admin.errors == []
    page.locator('[data-testid="refresh-panel"]').screenshot(
        path=str(screens_dir() / "web-app-refresh.png")
    )

    page.set_viewport_size({"width": 390, "height": 844})
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the refresh panel scrolls sideways at phone width ({width} px)"
    page.set_viewport_size({"width": 1280, "height": 900})


def test_an_admin_cancels_a_run_and_resumes_it_from_the_panel(
    admin: User, refresh_folder: str, firestore_db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = admin.page
    monkeypatch.setenv("CLOUD_TASKS_EMULATOR_HOST", TASKS_HOST)
    # Started from the command line with the emulator-only fault of `refresh start
    # --fail-after 0`: every batch delivery fails before its first object, so the run is
    # surely still running when Cancel is clicked.
    args = ["--bucket", default_bucket().name, "--under", refresh_folder, "--everything"]
    out = run_command("refresh", "start", *args, "--fail-after", "0").stdout
    run_id = json.loads(out.strip().splitlines()[-1])["run"]
    run = page.locator(f'[data-testid="refresh-run"][data-run="{run_id}"]')
    run.wait_for(timeout=30_000)  # a run started elsewhere shows up by itself
    assert run.get_attribute("data-status") == "running"
    assert run.locator('[data-action="resume"]').count() == 0

    run.locator('[data-action="cancel"]').click()
    wait_run_status(run, "cancelled", timeout=30_000)
    assert firestore_db.collection(RUNS).document(run_id).get().to_dict()["status"] == "cancelled"
    assert run.locator('[data-action="cancel"]').count() == 0
    assert shown_counts(run)["done"] == 0

    firestore_db.collection(RUNS).document(run_id).update({"options.failAfter": None})
    run.locator('[data-action="resume"]').click()
    wait_run_status(run, "done")
    stored = firestore_db.collection(RUNS).document(run_id).get().to_dict()
    assert stored["resumes"] == 1 and stored["listed"] == REFRESH_COUNT
    assert_shows_the_finished_run(run, stored)
    assert "resumed 1×" in run.inner_text()
    assert admin.errors == []


def _query_runs(token: str) -> tuple[int, Any]:
    """The panel's query (latest runs first), sent to the Firestore emulator with a user's
    ID token, so that firestore.rules decide: (HTTP status, body)."""
    url = (
        f"http://{HOST}:{PORTS['firestore']}/v1/projects/{PROJECT_ID}"
        "/databases/(default)/documents:runQuery"
    )
    query = {
        "structuredQuery": {
            "from": [{"collectionId": RUNS}],
            "orderBy": [{"field": {"fieldPath": "startedAt"}, "direction": "DESCENDING"}],
            "limit": 5,
        }
    }
    request = urllib.request.Request(
        url,
        data=json.dumps(query).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def test_a_user_without_the_admin_claim_sees_no_refresh_panel_and_is_refused_the_runs(
    user_a: User, admin: User
) -> None:
    page = user_a.page
    page.reload()
    page.wait_for_selector('body[data-admin="no"]', timeout=30_000)  # its token was read
    admin.page.wait_for_selector('body[data-admin="yes"]', timeout=30_000)
    assert admin.page.locator('[data-testid="refresh-panel"]').is_visible()
    assert page.locator('[data-testid="refresh-panel"]').is_hidden()
    assert page.locator('[data-testid="refresh-run"]').count() == 0
    assert page.locator('[data-action="start-refresh"]').is_hidden()

    # Whatever a page shows, the rules refuse them the runs: the same query with their
    # token is refused, with the admin's it is answered.
    get_token = "() => window.mediaClassifier.fb.auth.currentUser.getIdToken()"
    status, body = _query_runs(page.evaluate(get_token))
    assert status == 403, body
    status, body = _query_runs(admin.page.evaluate(get_token))
    assert status == 200, body
    assert user_a.errors == []


# --- near-duplicates and "Similar" ------------------------------------------------------------
FIRE_ENGINE = SAMPLES / "images" / "fire-engine.jpg"
COPY_NAME = "fire-engine-small.jpg"
CALLABLES = f"http://{HOST}:{PORTS['functions']}/{PROJECT_ID}/us-central1"


def resized_low_quality(path: Path) -> bytes:
    """What a messaging app makes of a photo: half the size, JPEG quality 30."""
    with Image.open(path) as img:
        small = img.convert("RGB").resize((img.width // 2, img.height // 2))
    buf = io.BytesIO()
    small.save(buf, "JPEG", quality=30)
    return buf.getvalue()


def sign_in_as(browser: Browser, web_url: str, uid: str) -> User:
    """An account with a known uid (the Auth emulator's admin API), signed in with the form."""
    email = f"{uid}@example.test"
    _auth_post(
        f"projects/{PROJECT_ID}/accounts",
        {"localId": uid, "email": email, "password": PASSWORD},
        admin=True,
    )
    page, errors = open_app(browser, web_url)
    page.fill('input[name="email"]', email)
    page.fill('input[name="password"]', PASSWORD)
    page.click('[data-action="sign-in"]')
    user = User(page=page, uid=signed_in_uid(page), errors=errors)
    assert user.uid == uid
    return user


@pytest.fixture(scope="module")
def near_owner(browser: Browser, web_url: str, run_id: str) -> Iterator[User]:
    user = sign_in_as(browser, web_url, f"web-near-{run_id}")
    yield user
    user.page.context.close()


@pytest.fixture(scope="module")
def near_stranger(browser: Browser, web_url: str, run_id: str) -> Iterator[User]:
    user = sign_in_as(browser, web_url, f"web-near-other-{run_id}")
    yield user
    user.page.context.close()


def upload_and_wait(user: User, name: str, data: bytes, content_type: str) -> str:
    """Drop one file on the page and wait until its result is done; its object path."""
    before = card_paths(user.page)
    drop_file(user.page, name, data, content_type)
    path = new_card_path(user.page, before, name)
    assert wait_final(user, path) == "done"
    return path


@pytest.fixture(scope="module")
def near_uploads(near_owner: User) -> dict[str, str]:
    """The owner uploads the fire engine, a video, then a resized, re-compressed copy of the
    photo, one after the other (the copy is compared with what is stored when it lands)."""
    original = upload_and_wait(near_owner, FIRE_ENGINE.name, FIRE_ENGINE.read_bytes(), "image/jpeg")
    video = upload_and_wait(near_owner, VIDEO.name, VIDEO.read_bytes(), "video/mp4")
    copy = upload_and_wait(near_owner, COPY_NAME, resized_low_quality(FIRE_ENGINE), "image/jpeg")
    return {"original": original, "video": video, "copy": copy}


def call_similar(user: User, path: str) -> dict[str, Any]:
    """The callable ``similar`` over HTTP with the user's ID token: what the page is told."""
    token = user.page.evaluate("() => window.mediaClassifier.fb.auth.currentUser.getIdToken()")
    response = requests.post(
        f"{CALLABLES}/similar",
        json={"data": {"path": path, "k": 10}},
        headers={"Authorization": f"Bearer {token}"},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    return dict(response.json()["result"])


def open_similar(user: User, path: str) -> Any:
    """Click "Similar" on a card; the panel, once the callable has answered."""
    card = user.card(path)
    card.locator('[data-action="similar"]').click()
    panel = card.locator('[data-testid="similar"]')
    panel.locator(
        '[data-testid="similar-matches"], [data-testid="similar-empty"], '
        '[data-testid="similar-error"]'
    ).first.wait_for(timeout=RESULT_TIMEOUT_MS)
    return panel


def shown_matches(panel: Any) -> list[dict[str, Any]]:
    return list(
        panel.locator('[data-testid="similar-match"]').evaluate_all(
            """els => els.map((e) => ({
                path: e.dataset.path,
                href: e.getAttribute("href"),
                name: e.querySelector(".match-name").textContent,
                score: e.querySelector('[data-testid="similar-score"]').textContent,
                range: e.querySelector('[data-testid="similar-range"]')?.textContent ?? null,
            }))"""
        )
    )


def clock(seconds: float) -> str:
    """web/src/format.js ``clock`` for times under an hour: "0:07"."""
    whole = int(max(0.0, seconds) + 0.5)
    return f"{whole // 60}:{whole % 60:02d}"


def test_a_resized_low_quality_copy_shows_a_duplicate_badge_naming_the_original(
    near_owner: User, near_uploads: dict[str, str], firestore_db: Any
) -> None:
    page = near_owner.page
    original, copy = near_uploads["original"], near_uploads["copy"]
    assert stored_result(firestore_db, copy)["duplicateOf"] == original
    for path in (original, near_uploads["video"]):
        assert stored_result(firestore_db, path)["duplicateOf"] is None
        assert near_owner.card(path).locator('[data-testid="duplicate-badge"]').count() == 0
    badge = near_owner.card(copy).locator('[data-testid="duplicate-badge"]')
    expect(badge).to_have_text(f"Duplicate of {FIRE_ENGINE.name}")
    assert badge.get_attribute("data-path") == original
    assert badge.get_attribute("href") == f"#result={urllib.parse.quote(original, safe='')}"

    # At phone width the cards stack: the newest (the copy) first, the original last.
    page.set_viewport_size({"width": 390, "height": 844})
    try:
        page.evaluate("window.scrollTo(0, 0)")
        expect(near_owner.card(original)).not_to_be_in_viewport()
        badge.click()
        expect(near_owner.card(original)).to_be_in_viewport()
        assert page.locator('[data-testid="linked-card"]').count() == 0  # scrolled, not reopened
    finally:
        page.set_viewport_size({"width": 1280, "height": 900})
    assert near_owner.errors == []


def test_similar_on_the_copy_lists_the_original_first_then_the_video_with_its_times(
    near_owner: User, near_uploads: dict[str, str]
) -> None:
    page = near_owner.page
    original, copy, video = near_uploads["original"], near_uploads["copy"], near_uploads["video"]
    page.set_viewport_size({"width": 390, "height": 844})
    try:
        panel = open_similar(near_owner, copy)
        shown = shown_matches(panel)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the similar list scrolls sideways at phone width ({width} px)"
        # A match opens its upload: the page scrolls down to the original's card.
        page.evaluate("window.scrollTo(0, 0)")
        expect(near_owner.card(original)).not_to_be_in_viewport()
        panel.locator('[data-testid="similar-match"]').first.click()
        expect(near_owner.card(original)).to_be_in_viewport()
    finally:
        page.set_viewport_size({"width": 1280, "height": 900})
    answer = call_similar(near_owner, copy)["matches"]
    assert [m["path"] for m in shown] == [m["path"] for m in answer]
    assert shown[0]["path"] == original
    assert shown[0]["name"] == FIRE_ENGINE.name
    assert shown[0]["range"] is None
    assert shown[0]["href"] == f"#result={urllib.parse.quote(original, safe='')}"
    assert copy not in {m["path"] for m in shown}  # the query itself is left out
    assert all(m["path"].startswith(f"uploads/{near_owner.uid}/") for m in shown)
    for item, match in zip(shown, answer, strict=True):
        pct = min(1.0, max(0.0, match["score"])) * 100  # format.js percent: "97 %", "5.2 %"
        assert item["score"] in {f"{pct:.0f} %", f"{pct:.1f} %"}, (item, match)
    # The video's segments come as matches of their own, each saying where in the clip.
    clips = [(item, m) for item, m in zip(shown, answer, strict=True) if m["path"] == video]
    assert clips, shown
    for item, match in clips:
        assert item["range"] == f"at {clock(match['startSec'])}–{clock(match['endSec'])}"
        assert item["name"] == VIDEO.name

    assert near_owner.errors == []


def test_another_users_identical_photo_never_appears_in_similar_nor_as_a_duplicate(
    near_owner: User, near_stranger: User, near_uploads: dict[str, str], firestore_db: Any
) -> None:
    theirs = upload_and_wait(
        near_stranger, FIRE_ENGINE.name, FIRE_ENGINE.read_bytes(), "image/jpeg"
    )
    assert stored_result(firestore_db, theirs)["duplicateOf"] is None
    card = near_stranger.card(theirs)
    assert card.locator('[data-testid="duplicate-badge"]').count() == 0
    # Their only upload: nothing of the owner's is similar to it, however alike.
    panel = open_similar(near_stranger, theirs)
    expect(panel.locator('[data-testid="similar-empty"]')).to_have_text(
        "No similar uploads yet. Upload more photos or videos and try again."
    )
    assert panel.locator('[data-testid="similar-match"]').count() == 0

    # And the owner, asking again now that the stranger's identical photo exists.
    panel = open_similar(near_owner, near_uploads["copy"])
    paths = [m["path"] for m in shown_matches(panel)]
    assert paths[0] == near_uploads["original"]
    assert all(p.startswith(f"uploads/{near_owner.uid}/") for p in paths), paths
    assert near_owner.errors == near_stranger.errors == []


def test_similar_for_an_account_disabled_meanwhile_shows_the_callables_refusal(
    browser: Browser, web_url: str, run_id: str
) -> None:
    """The page still holds an ID token, but the functions check the account on every call
    (``check_revoked``): the callable answers unauthenticated, shown in plain words."""
    user = sign_in_as(browser, web_url, f"web-near-gone-{run_id}")
    try:
        path = upload_and_wait(user, PHOTO.name, PHOTO.read_bytes(), "image/jpeg")
        disabled = {"localId": user.uid, "disableUser": True}
        _auth_post(f"projects/{PROJECT_ID}/accounts:update", disabled, admin=True)
        panel = open_similar(user, path)
        box = panel.locator('[data-testid="similar-error"]')
        assert box.get_attribute("data-code") == "UNAUTHENTICATED"
        assert box.locator(".alert-title").inner_text() == expected_title(
            user.page, "UNAUTHENTICATED"
        )
        assert "disabled" in box.locator(".detail").inner_text()
        panel.locator('[data-action="close-similar"]').click()
        expect(user.card(path).locator('[data-testid="similar"]')).to_have_count(0)
        assert user.errors == []
    finally:
        user.page.context.close()
