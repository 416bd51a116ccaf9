// Pure helpers (no DOM, no Firebase): ids, names, times, colours, refresh counts. node can
// import this file.

export const MAX_ID_BYTES = 1500;

/**
 * The result document id of an object path: encodeURIComponent(path), or, when that
 * is longer than Firestore's 1,500-byte id limit, "sha256-" + the hex SHA-256 of the
 * UTF-8 path (functions/media_classifier/results.py: doc_id).
 */
export async function resultId(path) {
  const encoded = encodeURIComponent(path);
  if (encoded.length <= MAX_ID_BYTES) return encoded;
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(path));
  const hex = [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `sha256-${hex}`;
}

/**
 * The object path of a new upload: uploads/{uid}/[folder/]{stamp}-{name}.
 * The time stamp keeps two uploads of "IMG_0001.jpg" apart (a second upload of the
 * same path would replace the first one's result); the folder picks a model route.
 */
export function uploadPath(uid, fileName, { folder = "", now = new Date() } = {}) {
  const stamp = now.toISOString().replace(/[-:]/g, "").replace("T", "-").slice(0, 15);
  const safe = (fileName || "file")
    .replace(/[\u0000-\u001f\u007f/\\#?[\]*]+/g, "_")
    .replace(/^\.+/, "_")
    .slice(-120);
  const dir = folder ? `${folder.replace(/^\/+|\/+$/g, "")}/` : "";
  return `uploads/${uid}/${dir}${stamp}-${safe}`;
}

/** What a person calls an upload: the name they picked, else the path's last segment. */
export function displayName(result, path) {
  const original = result?.customMetadata?.originalName;
  if (original) return original;
  const last = String(path || result?.path || "").split("/").pop() || "";
  return last.replace(/^\d{8}-\d{6}-/, "");
}

/** "0:07", "1:02:03" */
export function clock(seconds) {
  const s = Math.max(0, Math.round(Number(seconds) || 0));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${rest}` : `${m}:${rest}`;
}

/** "just now", "5 min ago", "3 h ago", else a short date. */
export function ago(date, now = new Date()) {
  if (!(date instanceof Date) || Number.isNaN(date.getTime())) return "";
  const seconds = (now.getTime() - date.getTime()) / 1000;
  if (seconds < 45) return "just now";
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  return date.toLocaleDateString(undefined, { day: "numeric", month: "short", year: "numeric" });
}

/** "87 %", "0.4 %" */
export function percent(score) {
  const p = Math.max(0, Math.min(1, Number(score) || 0)) * 100;
  return `${p >= 10 || p === 0 ? p.toFixed(0) : p.toFixed(1)} %`;
}

/** "2.4 MB" */
export function bytes(n) {
  const units = ["B", "KB", "MB", "GB"];
  let value = Number(n) || 0;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return `${value >= 10 || unit === 0 ? value.toFixed(0) : value.toFixed(1)} ${units[unit]}`;
}

/** A stable colour per label, so a label has one colour in the timeline and the strip. */
export function labelHue(label) {
  let hash = 0;
  for (const ch of String(label)) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return hash % 360;
}

/** Frames of all chunk documents, in time order (chunk-000, chunk-001, ...). */
export function framesOf(chunks) {
  return [...chunks]
    .sort((a, b) => (a.index ?? 0) - (b.index ?? 0))
    .flatMap((chunk) => chunk.frames || []);
}

/** "40 s", "12 min", "2 h 5 min", "3 d 4 h": a span of time, to the unit that matters. */
export function span(seconds) {
  const s = Math.max(0, Math.round(Number(seconds) || 0));
  if (s < 90) return `${s} s`;
  const m = Math.round(s / 60);
  if (m < 90) return `${m} min`;
  const h = Math.floor(s / 3600);
  if (h < 48) {
    const rest = Math.round((s - h * 3600) / 60);
    return rest ? `${h} h ${rest} min` : `${h} h`;
  }
  const d = Math.floor(s / 86400);
  const rest = Math.round((s - d * 86400) / 3600);
  return rest ? `${d} d ${rest} h` : `${d} d`;
}

/**
 * A refresh run's counts (its document in mediaRefreshRuns, see
 * docs/operations-refresh.md): `handled` = done + skipped + every error, and the
 * fraction of the listed objects it is. Errors by code, most frequent first. A run
 * counts a batch at a time, so `handled` moves in steps of the batch size.
 */
export function runProgress(run) {
  const count = (value) => Math.max(0, Math.trunc(Number(value) || 0));
  const errorsByCode = Object.entries(run?.errors || {})
    .map(([code, n]) => [code, count(n)])
    .filter(([, n]) => n > 0)
    .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  const errors = errorsByCode.reduce((sum, [, n]) => sum + n, 0);
  const listed = count(run?.listed);
  const done = count(run?.done);
  const skipped = count(run?.skipped);
  const handled = done + skipped + errors;
  const listingComplete = Boolean(run?.listing?.complete);
  let fraction = listed ? handled / listed : 0;
  if (!listed && listingComplete) fraction = 1; // nothing to do: complete
  return {
    listed,
    enqueued: count(run?.enqueued),
    done,
    skipped,
    errors,
    errorsByCode,
    handled,
    fraction: Math.min(1, fraction),
    listingComplete,
  };
}
