// The web app: sign in, upload, watch results arrive, browse the history, delete,
// classify on demand, find similar uploads and see duplicates; admins also watch and run
// model refreshes (refresh.js). Plain DOM;
// every Firebase call is the SDK's public API, used as the README tells app developers
// to use it.

import {
  createUserWithEmailAndPassword,
  onAuthStateChanged,
  onIdTokenChanged,
  signInAnonymously,
  signInWithEmailAndPassword,
  signOut,
} from "firebase/auth";
import {
  collection,
  doc,
  getDoc,
  getDocs,
  limit,
  onSnapshot,
  orderBy,
  query,
  where,
} from "firebase/firestore";
import { httpsCallable } from "firebase/functions";
import { deleteObject, getDownloadURL, ref, uploadBytesResumable } from "firebase/storage";

import { $, errorBox, h, showAlert, toast } from "./dom.js";
import { connect, RESULTS_COLLECTION, UPLOAD_PREFIX } from "./firebase.js";
import { ago, bytes, clock, displayName, framesOf, labelHue, percent, resultId, uploadPath } from "./format.js";
import { describeError, describeSimilarError, SIMILAR_TEXT } from "./messages.js";
import { refreshAccess, setUpRefresh } from "./refresh.js";

// Results per page of the history; `?pageSize=N` changes it (1 to 100).
const PAGE_SIZE = Math.min(100, Math.max(1, Number(new URLSearchParams(location.search).get("pageSize")) || 12));
const MAX_UPLOAD_BYTES = 100 * 1024 * 1024; // storage.rules and the MAX_UPLOAD_BYTES param
const MAX_REQUEST_BYTES = 10 * 1024 * 1024; // the HTTPS_MAX_BYTES param
const WAIT_FOR_RESULT_MS = 5 * 60 * 1000;
const FRAME_STRIP_MAX = 240;
const SIMILAR_K = 10; // matches asked of the callable `similar` (it allows 1 to 50)

let fb; // {auth, db, storage, functions, emulators, projectId}
let classifyFn;
let similarFn;
const state = {
  user: null,
  cards: new Map(), // path -> ResultCard (history and this session's uploads)
  order: [], // paths of the history query, newest first
  pageLimit: PAGE_SIZE,
  stopHistory: null,
  linked: null, // the ResultCard opened by a #result= link
  names: new Map(), // path -> {name, waiters}: names of uploads that have no card here
  thumbs: new Map(), // path -> Promise<download URL | null>, for the similar list
};

// --- other uploads of the user, named and opened from a card ----------------------------
/** The card's link to a result (`#result=<encoded path>`, see openLinked). */
const resultLink = (path) => `#result=${encodeURIComponent(path)}`;

/**
 * What a person calls another upload of theirs (a duplicate's original, a similar match):
 * its card's name when it has one here, else the name its result document keeps
 * (`customMetadata.originalName`, read once), and meanwhile the path's last segment.
 * `then` runs once the document's name is known, to draw it again.
 */
function nameOf(path, then) {
  const card = state.cards.get(path);
  if (card?.result) return displayName(card.result, path);
  const known = state.names.get(path);
  if (known?.name) return known.name;
  if (known) {
    if (then) known.waiters.push(then);
  } else {
    const entry = { name: null, waiters: then ? [then] : [] };
    state.names.set(path, entry);
    const names = state.names;
    resultId(path)
      .then((id) => getDoc(doc(fb.db, RESULTS_COLLECTION, id)))
      .then((snap) => displayName(snap.exists() ? snap.data() : null, path))
      .catch(() => displayName(null, path))
      .then((name) => {
        if (names !== state.names) return; // signed out meanwhile
        entry.name = name;
        for (const waiter of entry.waiters.splice(0)) waiter();
      });
  }
  return displayName(null, path);
}

/** A small preview of an upload for the similar list (photos only; videos get an icon). */
function thumbnail(path, kind) {
  if (kind === "video") return placeholder("video");
  const img = h("img", { alt: "", loading: "lazy", decoding: "async" });
  const card = state.cards.get(path);
  let url = card?.mediaUrl ? Promise.resolve(card.mediaUrl) : state.thumbs.get(path);
  if (!url) {
    url = getDownloadURL(ref(fb.storage, path)).catch(() => null);
    state.thumbs.set(path, url);
  }
  url.then((src) => {
    if (src) img.src = src;
    else img.replaceWith(placeholder("image"));
  });
  img.addEventListener("error", () => img.replaceWith(placeholder("image")), { once: true });
  return img;
}

/**
 * Show another upload: its card when the page lists it (scrolled to, briefly marked, a
 * video played from `at`), else opened by its link, as a linked result.
 */
function openUpload(path, { at = null } = {}) {
  const card = state.linked?.path === path ? state.linked : state.cards.get(path);
  if (card?.el.isConnected) {
    const smooth = !window.matchMedia("(prefers-reduced-motion: reduce)").matches;
    card.el.scrollIntoView({ behavior: smooth ? "smooth" : "auto", block: "start" });
    card.highlight();
    if (at !== null && at !== undefined) card.seek(at);
    return;
  }
  state.linkedStartAt = at;
  if (location.hash === resultLink(path)) openLinked();
  else location.hash = resultLink(path); // hashchange opens it
}

/** A link to another upload that opens it with openUpload (the href works in a new tab). */
function uploadLink(path, { at = null, ...attrs }, ...children) {
  return h(
    "a",
    {
      href: resultLink(path),
      "data-path": path,
      ...attrs,
      onclick: (e) => {
        if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
        e.preventDefault();
        openUpload(path, { at });
      },
    },
    ...children,
  );
}

// --- rendering of a result --------------------------------------------------------------
function labelList(labels, testid = "labels") {
  return h(
    "ol",
    { class: "labels", "data-testid": testid },
    (labels || []).map((item, i) =>
      h(
        "li",
        { class: i === 0 ? "top" : "" },
        h("span", { class: "label-name" }, item.label),
        h("span", { class: "label-score" }, percent(item.score)),
        h(
          "span",
          { class: "bar", "aria-hidden": "true" },
          h("span", { style: `width:${Math.max(1, Math.round(item.score * 100))}%` }),
        ),
      ),
    ),
  );
}

function timeline(video, seek) {
  const duration = Number(video.durationSec) || 0;
  const segments = video.segments || [];
  if (!duration || !segments.length) return null;
  const seen = new Map();
  for (const s of segments) if (!seen.has(s.label)) seen.set(s.label, s);
  return h(
    "div",
    { class: "timeline", "data-testid": "timeline" },
    h("div", { class: "subhead" }, h("span", {}, "Timeline"), h("span", { class: "muted" }, `${segments.length} segment${segments.length === 1 ? "" : "s"}`)),
    h(
      "div",
      { class: "track", role: "list" },
      segments.map((s) =>
        h(
          "button",
          {
            type: "button",
            class: "segment",
            role: "listitem",
            "data-testid": "segment",
            title: `${clock(s.startSec)}–${clock(s.endSec)}: ${s.label} (${percent(s.score)})`,
            style: `left:${(100 * s.startSec) / duration}%;width:${(100 * (s.endSec - s.startSec)) / duration}%;--hue:${labelHue(s.label)}`,
            onclick: () => seek(s.startSec),
          },
          h("span", {}, s.label),
        ),
      ),
    ),
    h("div", { class: "axis muted" }, h("span", {}, "0:00"), h("span", {}, clock(duration))),
    h(
      "ul",
      { class: "legend" },
      [...seen.values()].map((s) =>
        h("li", { style: `--hue:${labelHue(s.label)}` }, h("i", { "aria-hidden": "true" }), s.label),
      ),
    ),
  );
}

function frameStrip(frames, seek) {
  if (!frames) return h("div", { class: "frames muted", "data-testid": "frames-loading" }, "Loading frames…");
  const shown = frames.slice(0, FRAME_STRIP_MAX);
  return h(
    "div",
    { class: "frames-wrap" },
    h("div", { class: "subhead" }, h("span", {}, "Frames"), h("span", { class: "muted" }, `${frames.length} analysed`)),
    h(
      "ol",
      { class: "frames", "data-testid": "frames" },
      shown.map((f) => {
        const top = (f.labels || [])[0] || { label: "?", score: 0 };
        return h(
          "li",
          {},
          h(
            "button",
            {
              type: "button",
              style: `--hue:${labelHue(top.label)}`,
              title: (f.labels || []).map((l) => `${l.label} ${percent(l.score)}`).join("\n"),
              onclick: () => seek(f.t),
            },
            h("time", {}, clock(f.t)),
            h("span", { class: "frame-label" }, top.label),
            h("span", { class: "bar" }, h("span", { style: `width:${Math.round(top.score * 100)}%` })),
          ),
        );
      }),
      frames.length > shown.length ? h("li", { class: "muted more-frames" }, `+${frames.length - shown.length}`) : null,
    ),
  );
}

function placeholder(kind, text) {
  const icon =
    kind === "video"
      ? '<path d="M4 6h11v12H4zM15 10l5-3v10l-5-3" />'
      : '<rect x="3" y="5" width="18" height="14" rx="2" /><path d="M3 16l5-5 4 4 3-3 6 6" /><circle cx="16" cy="9" r="1.5" />';
  const el = h("div", { class: `placeholder ${kind}` });
  el.innerHTML = `<svg width="36" height="36" viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="1.6" stroke-linecap="round" stroke-linejoin="round" aria-hidden="true">${icon}</svg>`;
  if (text) el.append(h("span", {}, text));
  return el;
}

/** Two overlapping sheets: the duplicate badge's icon. */
function copyIcon() {
  const el = h("span", { class: "badge-icon", "aria-hidden": "true" });
  el.innerHTML =
    '<svg width="14" height="14" viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round"><rect x="8" y="8" width="12" height="12" rx="2" /><path d="M16 8V6a2 2 0 0 0-2-2H6a2 2 0 0 0-2 2v8a2 2 0 0 0 2 2h2" /></svg>';
  return el;
}

const STATUS_TEXT = {
  uploading: "Uploading",
  waiting: "Waiting for the classifier",
  processing: "Classifying",
  done: "Done",
  error: "Failed",
  deleting: "Deleting",
  refused: "No access",
};

/** One upload and its result: a card kept in sync with `mediaResults/{id}`. */
class ResultCard {
  constructor(path, { file = null, linked = false } = {}) {
    this.path = path;
    this.file = file;
    this.linked = linked;
    this.own = Boolean(state.user) && path.startsWith(`${UPLOAD_PREFIX}${state.user.uid}/`);
    this.result = null;
    this.seen = false;
    this.phase = file ? "uploading" : "waiting";
    this.progress = 0;
    this.problem = null;
    this.onDemand = null;
    this.similar = null; // {pending} | {data} | {error}: the callable `similar`'s answer
    this.startAt = null; // seconds: where a video opened from a similar match starts
    this.frames = null;
    this.framesKey = null;
    this.stopWatch = null;
    this.retry = null;
    this.createdAt = Date.now();
    this.confirmingDelete = false;
    this.idPromise = resultId(path);
    this.el = h("article", { class: "result", "data-testid": linked ? "linked-card" : "result-card", "data-path": path });
    this.media = h("div", { class: "media" });
    this.body = h("div", { class: "body" });
    this.el.append(this.media, this.body);
    this.mediaUrl = file ? URL.createObjectURL(file) : null;
    this.renderMedia();
    this.render();
  }

  get status() {
    if (this.problem) return this.phase === "uploading" ? "error" : this.phase;
    if (this.result) return this.result.status;
    return this.phase;
  }

  get kind() {
    if (this.result?.kind) return this.result.kind;
    const type = this.file?.type || this.result?.clientContentType || "";
    return type.startsWith("video/") ? "video" : "image";
  }

  /** Listen to the result document (the way the README shows apps to do it). */
  async watch() {
    const id = await this.idPromise;
    if (this.disposed) return;
    this.unwatch();
    const deadline = this.createdAt + WAIT_FOR_RESULT_MS;
    this.stopWatch = onSnapshot(
      doc(fb.db, RESULTS_COLLECTION, id),
      (snap) => {
        if (snap.exists()) {
          this.seen = true;
          this.update(snap.data());
        } else if (this.seen) {
          this.gone();
        } else {
          this.phase = "waiting";
          this.render();
        }
      },
      (error) => {
        // Rules allow reading a result only once it exists and names you as owner: for
        // your own upload, "permission-denied" before the first write means "not yet".
        if (error.code === "permission-denied" && this.own) {
          if (this.seen || this.phase === "deleting") return this.gone();
          if (Date.now() < deadline) {
            this.phase = "waiting";
            this.render();
            this.retry = setTimeout(() => this.watch(), 1500);
            return undefined;
          }
        }
        this.phase = error.code === "permission-denied" ? "refused" : "error";
        this.problem = error;
        this.render();
        return undefined;
      },
    );
  }

  unwatch() {
    clearTimeout(this.retry);
    if (this.stopWatch) this.stopWatch();
    this.stopWatch = null;
  }

  update(result) {
    const generationChanged = this.result && this.result.generation !== result.generation;
    this.result = result;
    this.problem = null;
    if (this.phase !== "deleting") this.phase = result.status;
    if (generationChanged) {
      this.onDemand = null;
      this.similar = null;
    }
    if (!this.mediaUrl && !this.mediaRequested) this.loadMedia();
    this.render();
    this.maybeLoadFrames();
  }

  gone() {
    this.unwatch();
    state.cards.delete(this.path);
    if (this.linked) {
      $("#linked-body").replaceChildren(errorBox({ code: "storage/object-not-found" }));
    }
    this.dispose();
    renderList();
  }

  dispose() {
    this.disposed = true;
    this.unwatch();
    if (this.mediaUrl && this.file) URL.revokeObjectURL(this.mediaUrl);
    this.el.remove();
  }

  async loadMedia() {
    this.mediaRequested = true;
    try {
      this.mediaUrl = await getDownloadURL(ref(fb.storage, this.path));
    } catch {
      this.mediaUrl = null;
    }
    this.renderMedia();
  }

  async maybeLoadFrames() {
    const r = this.result;
    if (!r || r.kind !== "video" || r.status !== "done" || !r.video?.frameChunks) return;
    const key = `${r.generation}:${r.video.frameChunks}`;
    if (this.framesKey === key) return;
    this.framesKey = key;
    this.frames = null;
    try {
      const id = await this.idPromise;
      const snap = await getDocs(collection(fb.db, RESULTS_COLLECTION, id, "frames"));
      if (this.framesKey !== key) return;
      this.frames = framesOf(snap.docs.map((d) => d.data()));
    } catch (error) {
      this.frames = [];
      this.framesError = error;
    }
    this.render();
  }

  setProgress(fraction) {
    this.progress = fraction;
    this.render();
  }

  uploadFailed(error) {
    this.problem = error;
    this.render();
  }

  seek(seconds) {
    const video = $("video", this.media);
    if (!video) return;
    video.currentTime = seconds;
    video.play().catch(() => {});
  }

  async classifyAgain(button) {
    button.disabled = true;
    this.onDemand = { pending: true };
    this.render();
    try {
      const { data } = await classifyFn({ path: this.path, topK: 5 });
      this.onDemand = { data, at: new Date() };
    } catch (error) {
      this.onDemand = { error };
    }
    this.render();
  }

  /** The user's uploads nearest to this one (the callable `similar` with its path). */
  async findSimilar() {
    this.similar = { pending: true };
    this.render();
    try {
      const { data } = await similarFn({ path: this.path, k: SIMILAR_K });
      this.similar = { data };
    } catch (error) {
      this.similar = { error };
    }
    if (!this.disposed) this.render();
  }

  closeSimilar() {
    this.similar = null;
    this.render();
  }

  /** Mark the card a moment, so the eye finds it after a scroll. */
  highlight() {
    this.el.classList.remove("flash");
    void this.el.offsetWidth; // restart the animation
    this.el.classList.add("flash");
    clearTimeout(this.flashTimer);
    this.flashTimer = setTimeout(() => this.el.classList.remove("flash"), 1800);
  }

  async remove() {
    if (!this.confirmingDelete) {
      this.confirmingDelete = true;
      this.render();
      setTimeout(() => {
        this.confirmingDelete = false;
        this.render();
      }, 4000);
      return;
    }
    this.confirmingDelete = false;
    this.phase = "deleting";
    this.render();
    try {
      await deleteObject(ref(fb.storage, this.path));
      toast(`Deleted ${displayName(this.result, this.path)}; its result goes with it.`);
      if (!this.stopWatch) this.watch(); // see the result document go
    } catch (error) {
      this.phase = this.result?.status || "waiting";
      this.render();
      toast(`${describeError(error).title}. ${describeError(error).message}`, "error");
    }
  }

  renderMedia() {
    const name = displayName(this.result, this.path);
    let node;
    if (!this.mediaUrl) {
      node = placeholder(this.kind, this.result?.status === "error" ? "No preview" : "");
    } else if (this.kind === "video") {
      // A media fragment starts a video opened from a similar match where the match is.
      const src = this.startAt ? `${this.mediaUrl}#t=${Number(this.startAt).toFixed(2)}` : this.mediaUrl;
      node = h("video", { src, controls: true, muted: true, playsinline: true, preload: "metadata" });
    } else {
      node = h("img", { src: this.mediaUrl, alt: name, loading: "lazy" });
      node.addEventListener("error", () => node.replaceWith(placeholder("image", "No preview")), { once: true });
    }
    this.media.replaceChildren(node);
  }

  render() {
    const r = this.result;
    const status = this.status;
    this.el.dataset.status = status;
    const name = displayName(r, this.path);
    const updated = r?.updatedAt?.toDate ? r.updatedAt.toDate() : null;
    const parts = [];

    parts.push(
      h(
        "header",
        {},
        h(
          "div",
          { class: "title" },
          h("a", { class: "name", href: `#result=${encodeURIComponent(this.path)}`, title: this.path }, name),
          h(
            "span",
            { class: "muted" },
            [
              r?.kind === "video" && r.video ? `video ${clock(r.video.durationSec)}` : r?.kind,
              r?.size ? bytes(r.size) : this.file ? bytes(this.file.size) : null,
              updated ? ago(updated) : null,
            ]
              .filter(Boolean)
              .join(" · "),
          ),
        ),
        h(
          "span",
          { class: `chip ${status}`, "data-testid": "status" },
          status === "uploading" && !this.problem ? `${STATUS_TEXT.uploading} ${Math.round(this.progress * 100)} %` : STATUS_TEXT[status] || status,
        ),
      ),
    );

    if (this.phase === "uploading" && !this.problem) {
      parts.push(
        h(
          "div",
          { class: "progress", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100, "aria-valuenow": Math.round(this.progress * 100), "data-testid": "upload-progress" },
          h("span", { style: `width:${(this.progress * 100).toFixed(1)}%` }),
        ),
      );
    } else if (status === "waiting" || status === "processing") {
      parts.push(h("div", { class: "progress indeterminate", "aria-hidden": "true" }, h("span", {})));
    }

    if (this.problem) parts.push(errorBox(this.problem, { "data-testid": "card-error" }));

    if (r?.status === "done" && r.duplicateOf) {
      const original = nameOf(r.duplicateOf, () => this.render());
      parts.push(
        h(
          "p",
          { class: "duplicate" },
          uploadLink(
            r.duplicateOf,
            { class: "badge", "data-testid": "duplicate-badge", title: `${SIMILAR_TEXT.duplicateHint}: ${r.duplicateOf}` },
            copyIcon(),
            h("span", { class: "badge-text" }, SIMILAR_TEXT.duplicateOf(original)),
          ),
        ),
      );
    }

    if (r?.status === "done") {
      parts.push(labelList(r.labels));
      if (r.kind === "video" && r.video) {
        parts.push(timeline(r.video, (t) => this.seek(t)));
        if (r.video.frameChunks) parts.push(frameStrip(this.frames, (t) => this.seek(t)));
      }
    } else if (r?.status === "error" && r.error) {
      parts.push(errorBox(r.error, { "data-testid": "result-error" }));
    }

    if (this.onDemand) parts.push(this.renderOnDemand());
    if (this.similar) parts.push(this.renderSimilar());

    if (r?.status === "done" && r.model) {
      const total = r.timings?.total;
      parts.push(
        h(
          "p",
          { class: "meta muted" },
          `${r.model.name || r.model.id} ${r.model.version || ""}${total ? ` · ${Math.round(total)} ms` : ""}`,
        ),
      );
    }

    if (this.own && (r || this.phase === "deleting")) {
      const busy = this.phase === "deleting";
      parts.push(
        h(
          "footer",
          {},
          h(
            "button",
            {
              type: "button",
              class: "ghost",
              "data-action": "classify",
              disabled: busy || this.onDemand?.pending || r?.status === "processing",
              onclick: (e) => this.classifyAgain(e.currentTarget),
            },
            "Classify again",
          ),
          r?.status === "done"
            ? h(
                "button",
                {
                  type: "button",
                  class: "ghost",
                  "data-action": "similar",
                  disabled: busy || this.similar?.pending,
                  "aria-expanded": this.similar && !this.similar.pending ? "true" : "false",
                  onclick: () => this.findSimilar(),
                },
                SIMILAR_TEXT.button,
              )
            : null,
          h(
            "button",
            {
              type: "button",
              class: this.confirmingDelete ? "danger" : "ghost danger-text",
              "data-action": "delete",
              disabled: busy,
              onclick: () => this.remove(),
            },
            busy ? "Deleting…" : this.confirmingDelete ? "Confirm delete" : "Delete",
          ),
        ),
      );
    }
    this.body.replaceChildren(...parts.filter(Boolean));
    if (this.media.firstChild?.classList?.contains("placeholder") && this.mediaUrl) this.renderMedia();
  }

  renderSimilar() {
    const sim = this.similar;
    const box = (...children) => h("div", { class: "similar", "data-testid": "similar", "aria-live": "polite" }, ...children);
    const close = h(
      "button",
      { type: "button", class: "ghost small", "data-action": "close-similar", onclick: () => this.closeSimilar() },
      SIMILAR_TEXT.close,
    );
    if (sim.pending) return box(h("p", { class: "muted" }, SIMILAR_TEXT.pending));
    const head = (note) =>
      h("div", { class: "subhead" }, h("span", {}, SIMILAR_TEXT.title), h("span", { class: "subhead-end" }, note ? h("span", { class: "muted" }, note) : null, close));
    if (sim.error) return box(head(), errorBox(sim.error, { "data-testid": "similar-error" }, describeSimilarError));
    const matches = sim.data?.matches || [];
    if (!matches.length) return box(head(), h("p", { class: "muted empty-note", "data-testid": "similar-empty" }, SIMILAR_TEXT.empty));
    const rerender = () => this.render();
    const model = sim.data.model?.name || sim.data.model?.id || "";
    return box(
      head(`${matches.length} match${matches.length === 1 ? "" : "es"}`),
      h(
        "ol",
        { class: "matches", "data-testid": "similar-matches", title: model ? `Compared by ${model}` : null },
        matches.map((m) => {
          const timed = m.startSec !== undefined && m.startSec !== null;
          const range = timed ? `${clock(m.startSec)}–${clock(m.endSec)}` : null;
          const name = nameOf(m.path, rerender);
          return h(
            "li",
            {},
            uploadLink(
              m.path,
              {
                class: "match",
                at: timed ? m.startSec : null,
                "data-testid": "similar-match",
                "data-score": m.score,
                title: `${name}${range ? ` (${range})` : ""}: ${percent(m.score)} alike`,
              },
              h("span", { class: "match-thumb" }, thumbnail(m.path, m.kind)),
              h(
                "span",
                { class: "match-text" },
                h("span", { class: "match-name" }, name),
                range ? h("span", { class: "match-range muted", "data-testid": "similar-range" }, `at ${range}`) : null,
              ),
              h("span", { class: "match-score", "data-testid": "similar-score" }, percent(m.score)),
            ),
          );
        }),
      ),
    );
  }

  renderOnDemand() {
    const od = this.onDemand;
    if (od.pending) return h("div", { class: "ondemand muted", "data-testid": "ondemand" }, "Classifying on demand…");
    if (od.error) return h("div", { class: "ondemand", "data-testid": "ondemand" }, errorBox(od.error));
    const d = od.data;
    return h(
      "div",
      { class: "ondemand", "data-testid": "ondemand" },
      h(
        "div",
        { class: "subhead" },
        h("span", {}, "Classified on demand"),
        h("span", { class: "muted" }, `${d.model?.name || ""} · ${Math.round(d.timings?.total || 0)} ms`),
      ),
      labelList((d.labels || []).slice(0, 3), "ondemand-labels"),
    );
  }
}

// --- the list (history + this session's uploads) ---------------------------------------
function renderList() {
  const grid = $("#results");
  const historySet = new Set(state.order);
  // This session's uploads whose results the history has not listed yet come first.
  const pending = [...state.cards.values()]
    .filter((c) => !historySet.has(c.path) && !c.listed)
    .sort((a, b) => b.createdAt - a.createdAt);
  const ordered = [...pending, ...state.order.map((p) => state.cards.get(p)).filter(Boolean)];
  ordered.forEach((card, i) => {
    if (grid.children[i] !== card.el) grid.insertBefore(card.el, grid.children[i] || null);
  });
  while (grid.children.length > ordered.length) grid.lastElementChild.remove();
  $("#history-empty").hidden = ordered.length > 0 || !state.historyLoaded;
  $("#more").hidden = state.order.length < state.pageLimit;
  const n = state.order.length;
  $("#history-count").textContent = n ? `${n}${n >= state.pageLimit ? "+" : ""} upload${n === 1 ? "" : "s"}` : "";
}

/** The user's results, newest first, live: a query on owner == uid (see firestore.indexes.json). */
function watchHistory() {
  if (state.stopHistory) state.stopHistory();
  const q = query(
    collection(fb.db, RESULTS_COLLECTION),
    where("owner", "==", state.user.uid),
    orderBy("updatedAt", "desc"),
    limit(state.pageLimit),
  );
  state.stopHistory = onSnapshot(
    q,
    (snap) => {
      showAlert($("#history-error"), null);
      state.historyLoaded = true;
      const order = [];
      for (const d of snap.docs) {
        const data = d.data();
        const path = data.path;
        if (!path) continue;
        order.push(path);
        let card = state.cards.get(path);
        if (!card) {
          card = new ResultCard(path);
          state.cards.set(path, card);
        }
        card.listed = true;
        if (!card.stopWatch) card.update(data);
      }
      // Results that left the query: deleted, or pushed past the page by newer ones.
      for (const path of state.order) {
        if (order.includes(path)) continue;
        const card = state.cards.get(path);
        if (card) {
          card.dispose();
          state.cards.delete(path);
        }
      }
      state.order = order;
      renderList();
    },
    (error) => {
      showAlert($("#history-error"), error);
    },
  );
}

// --- uploads --------------------------------------------------------------------------
function acceptable(file) {
  const type = file.type || "";
  if (type && !/^(image|video)\//.test(type)) return { code: "UNSUPPORTED_MEDIA", message: `${file.name}: ${type}` };
  if (type === "image/svg+xml") return { code: "UNSUPPORTED_MEDIA", message: `${file.name}: SVG` };
  if (file.size === 0) return { code: "EMPTY", message: `${file.name} is empty` };
  if (file.size > MAX_UPLOAD_BYTES) return { code: "TOO_LARGE", message: `${file.name} is ${bytes(file.size)}` };
  return null;
}

function startUpload(file) {
  const refusal = acceptable(file);
  if (refusal) {
    const d = describeError(refusal);
    toast(`${file.name}: ${d.title}. ${d.message}`, "error");
    return;
  }
  const folder = $("#route").value;
  const path = uploadPath(state.user.uid, file.name, { folder });
  const card = new ResultCard(path, { file });
  state.cards.set(path, card);
  renderList();
  const task = uploadBytesResumable(ref(fb.storage, path), file, {
    contentType: file.type || "application/octet-stream",
    customMetadata: { originalName: file.name },
  });
  task.on(
    "state_changed",
    (snap) => card.setProgress(snap.totalBytes ? snap.bytesTransferred / snap.totalBytes : 0),
    (error) => card.uploadFailed(error),
    () => {
      card.phase = "waiting";
      card.progress = 1;
      card.render();
      card.watch();
    },
  );
}

function setUpDropzone() {
  const zone = $("#dropzone");
  const input = $("#file-input");
  input.addEventListener("change", () => {
    [...input.files].forEach(startUpload);
    input.value = "";
  });
  for (const type of ["dragenter", "dragover"]) {
    zone.addEventListener(type, (e) => {
      e.preventDefault();
      zone.classList.add("over");
    });
  }
  for (const type of ["dragleave", "dragend", "drop"]) {
    zone.addEventListener(type, () => zone.classList.remove("over"));
  }
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    [...(e.dataTransfer?.files || [])].forEach(startUpload);
  });
  // Files dropped outside the zone would make the browser navigate away to them.
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());
}

// --- classify without uploading (the callable with the bytes) ---------------------------
function readAsDataUrl(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

function setUpQuickCheck() {
  const input = $("#quick-input");
  const out = $("#quick-result");
  input.addEventListener("change", async () => {
    const file = input.files[0];
    input.value = "";
    if (!file) return;
    if (file.size > MAX_REQUEST_BYTES) {
      out.replaceChildren(errorBox({ code: "TOO_LARGE", message: `${file.name} is ${bytes(file.size)}; upload it instead` }));
      return;
    }
    out.replaceChildren(h("p", { class: "muted" }, `Classifying ${file.name}…`));
    try {
      const { data } = await classifyFn({ image: await readAsDataUrl(file), topK: 5 });
      out.replaceChildren(
        h("div", { class: "subhead" }, h("strong", {}, file.name), h("span", { class: "muted" }, `${data.kind} · ${Math.round(data.timings?.total || 0)} ms`)),
        labelList(data.labels, "quick-labels"),
        data.kind === "video" && data.video ? timeline(data.video, () => {}) : null,
      );
    } catch (error) {
      out.replaceChildren(errorBox(error, { "data-testid": "quick-error" }));
    }
  });
}

// --- a result opened by link (#result=<encoded path>) -----------------------------------
function openLinked() {
  const match = /^#result=(.+)$/.exec(location.hash);
  if (state.linked) {
    state.linked.dispose();
    state.linked = null;
  }
  const section = $("#linked");
  if (!match || !state.user) {
    section.hidden = true;
    return;
  }
  let path;
  try {
    path = decodeURIComponent(match[1]);
  } catch {
    section.hidden = true;
    return;
  }
  const card = new ResultCard(path, { linked: true });
  card.startAt = state.linkedStartAt ?? null;
  state.linkedStartAt = null;
  state.linked = card;
  $("#linked-body").replaceChildren(card.el);
  section.hidden = false;
  card.watch();
  section.scrollIntoView({ block: "start" });
}

// --- sign-in ------------------------------------------------------------------------------
function setUpSignIn() {
  const form = $("#signin-form");
  const errorEl = $("#signin-error");
  const run = async (action) => {
    showAlert(errorEl, null);
    for (const b of document.querySelectorAll("#signin button")) b.disabled = true;
    try {
      await action();
    } catch (error) {
      showAlert(errorEl, error);
    } finally {
      for (const b of document.querySelectorAll("#signin button")) b.disabled = false;
    }
  };
  const creds = () => [form.email.value.trim(), form.password.value];
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    run(() => signInWithEmailAndPassword(fb.auth, ...creds()));
  });
  $("#sign-up").addEventListener("click", () => run(() => createUserWithEmailAndPassword(fb.auth, ...creds())));
  $("#anonymous").addEventListener("click", () => run(() => signInAnonymously(fb.auth)));
  $("#sign-out").addEventListener("click", () => signOut(fb.auth));
}

function resetSession() {
  if (state.stopHistory) state.stopHistory();
  state.stopHistory = null;
  for (const card of state.cards.values()) card.dispose();
  state.cards.clear();
  state.order = [];
  state.pageLimit = PAGE_SIZE;
  state.historyLoaded = false;
  if (state.linked) state.linked.dispose();
  state.linked = null;
  state.names = new Map();
  state.thumbs = new Map();
  $("#results").replaceChildren();
  $("#quick-result").replaceChildren();
  showAlert($("#history-error"), null);
}

function onUser(user) {
  resetSession();
  state.user = user;
  $("#boot").hidden = true;
  $("#signin").hidden = Boolean(user);
  $("#app").hidden = !user;
  $("#account").hidden = !user;
  document.body.dataset.signedIn = user ? "yes" : "no";
  if (!user) return;
  $("#who").textContent = user.isAnonymous ? `Guest ${user.uid.slice(0, 6)}` : user.email || user.uid;
  $("#who").title = `uid ${user.uid}`;
  watchHistory();
  openLinked();
  renderList();
}

async function main() {
  try {
    fb = await connect();
  } catch (error) {
    $("#boot").hidden = true;
    showAlert($("#fatal"), error);
    return;
  }
  classifyFn = httpsCallable(fb.functions, "classify", { timeout: 300_000 });
  similarFn = httpsCallable(fb.functions, "similar", { timeout: 120_000 });
  const mode = $("#mode");
  mode.textContent = fb.emulators ? "Local emulators" : fb.projectId;
  mode.dataset.emulators = fb.emulators ? "yes" : "no";
  mode.title = fb.emulators ? `Firebase emulators on 127.0.0.1, project ${fb.projectId}` : "";
  mode.hidden = false;
  setUpSignIn();
  setUpDropzone();
  setUpQuickCheck();
  setUpRefresh(fb);
  $("#more").addEventListener("click", () => {
    state.pageLimit += PAGE_SIZE;
    watchHistory();
  });
  $("#close-linked").addEventListener("click", (e) => {
    e.preventDefault();
    history.replaceState(null, "", location.pathname + location.search);
    openLinked();
  });
  window.addEventListener("hashchange", openLinked);
  onAuthStateChanged(fb.auth, onUser);
  onIdTokenChanged(fb.auth, refreshAccess); // admins (custom claim) see the refresh panel
  // For scripts and tests driving the page: the services it uses, once signed in or out.
  window.mediaClassifier = { fb, state, describeError };
}

main();
