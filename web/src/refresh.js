// The model-refresh panel, for admins only: the latest runs of `mediaRefreshRuns`, live,
// each with its progress and counts, and start, cancel and resume through the callable
// `refresh_admin` (docs/operations-refresh.md).
//
// Why the ID token's claim decides what the page shows: only users whose token carries
// `admin: true` may read the runs (firestore.rules) or call refresh_admin (the function
// checks). The page asks for the runs only when the token says so, so other users never
// meet a refusal; the rules and the function, not the page, keep refreshes to admins.

import { getIdTokenResult } from "firebase/auth";
import { collection, limit, onSnapshot, orderBy, query } from "firebase/firestore";
import { httpsCallable } from "firebase/functions";

import { $, h, showAlert, toast } from "./dom.js";
import { REFRESH_COLLECTION, UPLOAD_PREFIX } from "./firebase.js";
import { ago, percent, runProgress, span } from "./format.js";
import { describeError, describeRefreshError, MEDIA_MESSAGES, RUN_STATUS_TEXT } from "./messages.js";

const RUNS_SHOWN = 5;
// A running run whose counters have not moved for this long is offered "Resume" (it
// re-enqueues what is unfinished; safe while tasks are still alive, see refresh.py).
const STALLED_AFTER_MS = 10 * 60 * 1000;
const TICK_MS = 15_000; // re-render relative times ("3 min ago") and the stalled check
// Unfinished batch documents expire 90 days after listing (firestore.indexes.json, TTL);
// an older run cannot be finished by resuming it (docs/operations-refresh.md).
const RESUMABLE_FOR_MS = 89 * 24 * 3600 * 1000;
const CONFIRM_MS = 6000;

const panel = {
  fb: null,
  call: null,
  uid: null, // the admin the panel is showing runs to; null while hidden
  checks: 0, // claim checks started: only the latest one may show or hide the panel
  stop: null,
  tick: null,
  runs: [], // [{id, run}], newest first
  loaded: false,
  busy: new Map(), // run id -> "cancel" | "resume", while the call is in flight
  started: null, // the run this page started last
  confirming: false,
  confirmTimer: null,
};

const toDate = (ts) => (ts?.toDate ? ts.toDate() : null);

function when(ts, testid) {
  const date = toDate(ts);
  if (!date) return h("span", { class: "muted", "data-testid": testid }, "—");
  return h("time", { datetime: date.toISOString(), title: date.toLocaleString(), "data-testid": testid }, ago(date));
}

function stalled(run, now = Date.now()) {
  const updated = toDate(run.updatedAt);
  return run.status === "running" && updated !== null && now - updated.getTime() > STALLED_AFTER_MS;
}

function tooOldToResume(run, now = Date.now()) {
  const started = toDate(run.startedAt);
  return started !== null && now - started.getTime() > RESUMABLE_FOR_MS;
}

/** What is left, in words: the run's estimate while it runs (a lower bound while listing). */
function remaining(run, progress) {
  if (run.status === "done") {
    const started = toDate(run.startedAt);
    const finished = toDate(run.finishedAt);
    return started && finished ? `none: took ${span((finished - started) / 1000)}` : "none";
  }
  if ((run.status === "cancelled" || stalled(run)) && tooOldToResume(run)) return "too old to resume: start a new run";
  if (run.status === "cancelled") return "paused until resumed";
  if (stalled(run)) return `no progress for ${span((Date.now() - toDate(run.updatedAt)) / 1000)}`;
  const estimate = run.estimatedRemainingSec;
  if (estimate === null || estimate === undefined) return "estimated after the first batch";
  return `${progress.listingComplete ? "about" : "at least"} ${span(estimate)}`;
}

/** The models the run brings results up to, where the run records them. */
function modelsText(run) {
  const models = Array.isArray(run.models) ? run.models : Object.values(run.models || {});
  if (!models.length) return null;
  return models
    .map((m) => `${m.name || m.id}${m.version ? ` ${m.version}` : ""}${m.sha ? ` (${String(m.sha).slice(0, 12)})` : ""}`)
    .join(", ");
}

function optionsText(run) {
  const options = run.options || {};
  const codes = options.errors || [];
  return [
    options.everything ? "every result" : "outdated results",
    codes.length ? `and errors ${codes.join(", ")}` : null,
    run.batchSize ? `batches of ${run.batchSize}` : null,
    run.resumes ? `resumed ${run.resumes}×` : null,
  ]
    .filter(Boolean)
    .join(" · ");
}

function count(name, label, value) {
  return h("div", {}, h("dt", {}, label), h("dd", { "data-count": name }, value.toLocaleString("en-US")));
}

function runCard(id, run) {
  const p = runProgress(run);
  const status = run.status || "running";
  const busy = panel.busy.get(id);
  const pct = Math.round(p.fraction * 1000) / 10;
  const canResume = (status === "cancelled" || stalled(run)) && !tooOldToResume(run);
  const models = modelsText(run);
  return h(
    "article",
    {
      class: `run${id === panel.started ? " fresh" : ""}`,
      "data-testid": "refresh-run",
      "data-run": id,
      "data-status": status,
    },
    h(
      "header",
      {},
      h(
        "div",
        { class: "title" },
        h("span", { class: "name", title: `gs://${run.bucket || ""}/${run.under || ""}` }, run.under || UPLOAD_PREFIX),
        h("span", { class: "muted" }, `run ${id} · ${optionsText(run)}`),
      ),
      h("span", { class: `chip ${status}`, "data-testid": "run-status" }, RUN_STATUS_TEXT[status] || status),
    ),
    h(
      "div",
      {
        class: `progress${status === "running" && !p.listed ? " indeterminate" : ""}`,
        role: "progressbar",
        "aria-label": `Refresh ${id}`,
        "aria-valuemin": 0,
        "aria-valuemax": 100,
        "aria-valuenow": pct,
        "data-testid": "run-progress",
      },
      h("span", { style: `width:${pct}%` }),
    ),
    h(
      "p",
      { class: "run-summary", "data-testid": "run-summary" },
      `${p.handled.toLocaleString("en-US")} of ${p.listed.toLocaleString("en-US")} handled (${percent(p.fraction)})`,
      p.listingComplete ? "" : " · still listing",
    ),
    h(
      "dl",
      { class: "counts" },
      count("listed", "Listed", p.listed),
      count("enqueued", "Batches", p.enqueued),
      count("done", "Classified", p.done),
      count("skipped", "Up to date", p.skipped),
      count("errors", "Errors", p.errors),
    ),
    p.errorsByCode.length
      ? h(
          "ul",
          { class: "run-errors", "data-testid": "run-errors" },
          p.errorsByCode.map(([code, n]) => {
            const d = describeError({ code });
            return h(
              "li",
              { "data-code": code, title: d.message },
              h("code", {}, code),
              h("span", {}, d.title),
              h("strong", {}, n.toLocaleString("en-US")),
            );
          }),
        )
      : null,
    h(
      "dl",
      { class: "times" },
      h("div", {}, h("dt", {}, "Started"), h("dd", {}, when(run.startedAt, "run-started"))),
      h("div", {}, h("dt", {}, "Updated"), h("dd", {}, when(run.updatedAt, "run-updated"))),
      h("div", {}, h("dt", {}, "Finished"), h("dd", {}, when(run.finishedAt, "run-finished"))),
      h("div", {}, h("dt", {}, "Remaining"), h("dd", { "data-testid": "run-remaining" }, remaining(run, p))),
    ),
    h("p", { class: "meta muted", "data-testid": "run-models" }, `Model: ${models || "not recorded on this run"}`),
    status === "done"
      ? null
      : h(
          "footer",
          {},
          status === "running"
            ? h(
                "button",
                { type: "button", class: "ghost danger-text", "data-action": "cancel", disabled: Boolean(busy), onclick: () => act(id, "cancel") },
                busy === "cancel" ? "Cancelling…" : "Cancel",
              )
            : null,
          canResume
            ? h(
                "button",
                { type: "button", class: "ghost", "data-action": "resume", disabled: Boolean(busy), onclick: () => act(id, "resume") },
                busy === "resume" ? "Resuming…" : "Resume",
              )
            : null,
        ),
  );
}

function render() {
  const list = $("#refresh-runs");
  list.replaceChildren(...panel.runs.map(({ id, run }) => runCard(id, run)));
  $("#refresh-empty").hidden = !panel.loaded || panel.runs.length > 0;
}

/** Cancel or resume one run through refresh_admin; the listener shows what it changed. */
async function act(id, action) {
  panel.busy.set(id, action);
  render();
  showAlert($("#refresh-error"), null);
  try {
    const { data } = await panel.call({ action, run: id });
    if (action === "cancel") {
      toast(data.cancelled ? `Cancelled ${id}; tasks delivered from now on do nothing.` : `${id} was not running.`);
    } else {
      toast(`Resumed ${id}: ${data.enqueued} task${data.enqueued === 1 ? "" : "s"} enqueued.`);
    }
  } catch (error) {
    showAlert($("#refresh-error"), error, describeRefreshError);
  } finally {
    panel.busy.delete(id);
    render();
  }
}

function resetConfirm() {
  clearTimeout(panel.confirmTimer);
  panel.confirming = false;
  $("#refresh-start").textContent = "Start refresh";
  $("#refresh-start").classList.remove("danger");
}

/** Start: the first click asks to confirm (a refresh may classify every upload again). */
async function start(event) {
  event.preventDefault();
  const form = $("#refresh-form");
  const under = form.under.value.trim() || UPLOAD_PREFIX;
  const errors = [...form.querySelectorAll('input[name="code"]:checked')].map((box) => box.value);
  const button = $("#refresh-start");
  if (!panel.confirming) {
    panel.confirming = true;
    button.textContent = `Confirm: refresh ${under}`;
    button.classList.add("danger");
    panel.confirmTimer = setTimeout(resetConfirm, CONFIRM_MS);
    return;
  }
  resetConfirm();
  showAlert($("#refresh-error"), null);
  button.disabled = true;
  try {
    const { data } = await panel.call({ action: "start", under, everything: form.everything.checked, errors });
    panel.started = data.run;
    toast(`Refresh ${data.run} started.`);
    render();
  } catch (error) {
    showAlert($("#refresh-error"), error, describeRefreshError);
  } finally {
    button.disabled = false;
  }
}

function show(user) {
  panel.uid = user.uid;
  panel.runs = [];
  panel.loaded = false;
  $("#refresh").hidden = false;
  render();
  const runs = query(collection(panel.fb.db, REFRESH_COLLECTION), orderBy("startedAt", "desc"), limit(RUNS_SHOWN));
  panel.stop = onSnapshot(
    runs,
    (snap) => {
      showAlert($("#refresh-list-error"), null);
      panel.loaded = true;
      panel.runs = snap.docs.map((d) => ({ id: d.id, run: d.data() }));
      render();
    },
    (error) => showAlert($("#refresh-list-error"), error, describeRefreshError),
  );
  panel.tick = setInterval(render, TICK_MS);
}

function hide() {
  if (panel.stop) panel.stop();
  clearInterval(panel.tick);
  resetConfirm();
  Object.assign(panel, { uid: null, stop: null, tick: null, runs: [], loaded: false, started: null });
  panel.busy.clear();
  $("#refresh").hidden = true;
  $("#refresh-runs").replaceChildren();
  showAlert($("#refresh-error"), null);
  showAlert($("#refresh-list-error"), null);
}

/**
 * Show the panel when the user's ID token carries `admin: true`, hide it otherwise.
 * Called on every ID token change (sign-in, sign-out, refresh): a claim given or taken
 * away shows once the token is refreshed (at the latest within the hour, or at the
 * next sign-in).
 */
export async function refreshAccess(user) {
  const check = ++panel.checks;
  let admin = false;
  if (user) {
    try {
      admin = (await getIdTokenResult(user)).claims.admin === true;
    } catch {
      admin = false; // no token, no admin: the rules would refuse the runs anyway
    }
  }
  if (check !== panel.checks) return; // a later sign-in or sign-out decides
  document.body.dataset.admin = admin ? "yes" : "no";
  const uid = admin ? user.uid : null;
  if (uid === panel.uid) return;
  hide();
  if (uid) show(user);
}

/** Wire the panel's form once; it stays hidden until refreshAccess finds an admin. */
export function setUpRefresh(fb) {
  panel.fb = fb;
  panel.call = httpsCallable(fb.functions, "refresh_admin", { timeout: 120_000 });
  $("#refresh-codes").replaceChildren(
    ...Object.entries(MEDIA_MESSAGES).map(([code, m]) =>
      h("label", { class: "check", title: m.message }, h("input", { type: "checkbox", name: "code", value: code }), h("code", {}, code), ` ${m.title}`),
    ),
  );
  $("#refresh-form").addEventListener("submit", start);
}
