// Pure helpers (no DOM, no Firebase): ids, names, times, colours. node can import this file.

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
