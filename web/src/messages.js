// What a person is told for every error the app can meet, by its stable code.
//
// Why one table: result documents (`error.code`), the callable `classify`
// (`err.details.code`) and the REST API share one closed set of codes
// (functions/media_classifier/errors.py and http_errors.py); the Firebase SDKs add
// their own (`auth/...`, `storage/...`, Firestore's `permission-denied`, ...).
// The server's own message is technical and stays visible as a detail; the text
// here says what happened and what to do. tests/web/test_messages.py checks that
// every code the functions can produce has an entry.
//
// No imports: node loads this file as is for that test.

/** Codes written to result documents and returned by the HTTPS functions. */
export const MEDIA_MESSAGES = {
  EMPTY: {
    title: "The file is empty",
    message: "It has 0 bytes. Pick the file again; it may not have finished saving.",
  },
  UNSUPPORTED_MEDIA: {
    title: "Not a photo or video we can read",
    message:
      "Accepted: JPEG, PNG, HEIC, WebP, AVIF, GIF, BMP, TIFF photos and MP4, MOV, WebM, MKV, AVI videos. Documents, audio and archives are not classified.",
  },
  CORRUPT_MEDIA: {
    title: "The file looks damaged",
    message:
      "It starts like a photo or video but cannot be decoded. Export it again or try another copy.",
  },
  TOO_LARGE: {
    title: "The file is too large",
    message:
      "Uploads are limited to 100 MB and 50 megapixels (10 MB when checked without uploading). Resize or compress it and try again.",
  },
  TOO_LONG: {
    title: "The video is too long",
    message: "Videos are limited to 10 minutes. Trim it and upload the part that matters.",
  },
  TIMEOUT: {
    title: "Classification took too long",
    message: "The service was busy or the file is unusually hard to decode. Try again in a minute.",
  },
  NOT_FOUND: {
    title: "The file is gone",
    message: "It was deleted or replaced before it could be read.",
  },
  UNKNOWN_MODEL: {
    title: "That model is not available",
    message: "The model this upload asked for is not served. Choose another model.",
  },
  INTERRUPTED: {
    title: "Classification kept failing",
    message:
      "The classifier stopped twice while working on this file (it may need more memory than we have). Try a smaller or shorter file.",
  },
  INTERNAL: {
    title: "Something went wrong on our side",
    message: "It is not your file's fault. Try again later.",
  },
};

/** Codes the HTTPS functions add for the request itself (http_errors.RequestCode). */
export const REQUEST_MESSAGES = {
  INVALID_ARGUMENT: {
    title: "The request was not understood",
    message: "The app sent something the classifier could not use. Reload the page and try again.",
  },
  UNAUTHENTICATED: {
    title: "Please sign in",
    message: "Your session has ended or was never started. Sign in and try again.",
  },
  PERMISSION_DENIED: {
    title: "Not yours",
    message: "That file belongs to another account. You can only classify your own uploads.",
  },
  METHOD_NOT_ALLOWED: {
    title: "The request was not understood",
    message: "The app used the API in a way it does not accept. Reload the page and try again.",
  },
  NO_EMBEDDINGS: {
    title: "Similarity search is not available",
    message: "This model does not describe pictures for comparison, or the search is switched off on this server.",
  },
};

/** Codes of the Firebase client SDKs (Auth, Storage, Firestore, Functions transport). */
export const SDK_MESSAGES = {
  "auth/invalid-credential": {
    title: "Wrong email or password",
    message: "Check both and try again, or create an account.",
  },
  "auth/wrong-password": {
    title: "Wrong email or password",
    message: "Check both and try again, or create an account.",
  },
  "auth/user-not-found": {
    title: "No account with that email",
    message: "Check the address, or create an account.",
  },
  "auth/email-already-in-use": {
    title: "That email already has an account",
    message: "Sign in instead.",
  },
  "auth/invalid-email": { title: "That email address is not valid", message: "Check it and try again." },
  "auth/missing-email": { title: "Enter your email", message: "An email address is needed to sign in." },
  "auth/missing-password": { title: "Enter a password", message: "A password is needed to sign in." },
  "auth/weak-password": {
    title: "Choose a longer password",
    message: "Passwords need at least 6 characters.",
  },
  "auth/too-many-requests": {
    title: "Too many attempts",
    message: "Wait a few minutes before trying again.",
  },
  "auth/operation-not-allowed": {
    title: "This way of signing in is switched off",
    message: "Enable it in the Firebase console (Authentication, Sign-in method) or use another one.",
  },
  "auth/admin-restricted-operation": {
    title: "This way of signing in is switched off",
    message: "Enable it in the Firebase console (Authentication, Sign-in method) or use another one.",
  },
  "auth/network-request-failed": {
    title: "No connection",
    message: "The sign-in service cannot be reached. Check your connection (locally: is `make serve` running?).",
  },
  "storage/unauthorized": {
    title: "Upload refused",
    message: "Only photos and videos up to 100 MB can be uploaded, and only to your own folder.",
  },
  "storage/unauthenticated": { title: "Please sign in", message: "Sign in to upload files." },
  "storage/canceled": { title: "Upload cancelled", message: "Nothing was stored." },
  "storage/quota-exceeded": {
    title: "Storage is full",
    message: "The project's storage quota is used up. Delete some uploads or try later.",
  },
  "storage/retry-limit-exceeded": {
    title: "The upload kept failing",
    message: "The connection dropped too often. Try again on a steadier connection.",
  },
  "storage/object-not-found": { title: "The file is gone", message: "It was already deleted." },
  "storage/unknown": {
    title: "The upload failed",
    message: "Storage did not say why. Try again.",
  },
  "permission-denied": {
    title: "You don't have access to this result",
    message: "Results are visible only to the account that uploaded the file.",
  },
  unauthenticated: { title: "Please sign in", message: "Sign in to see your results." },
  unavailable: {
    title: "Offline",
    message: "The results service cannot be reached; the page updates by itself when it is back.",
  },
  "failed-precondition": {
    title: "The history cannot be listed yet",
    message:
      "Its Firestore index is missing or still building: deploy firestore.indexes.json (firebase deploy --only firestore:indexes) and wait a few minutes.",
  },
  "resource-exhausted": { title: "Too many requests", message: "Wait a moment and try again." },
  "deadline-exceeded": {
    title: "Classification took too long",
    message: "Try again in a minute, or upload the file and let it be classified in the background.",
  },
  internal: { title: "Something went wrong on our side", message: "Try again later." },
  "not-found": {
    title: "Not found",
    message: "The function or document does not exist (locally: is `make serve` running?).",
  },
};

/**
 * The model-refresh panel's own words (refresh.js): the callable `refresh_admin`
 * answers in HttpsError codes ("functions/permission-denied", ...) and the runs'
 * listener in Firestore's. The general texts above speak of uploads and results, which
 * would mislead here ("That file belongs to another account"), so the panel looks
 * here first.
 */
export const REFRESH_MESSAGES = {
  "permission-denied": {
    title: "Only admins run refreshes",
    message:
      "This account has no admin claim, or it was given after you signed in: sign out and in again to pick it up.",
  },
  unauthenticated: { title: "Please sign in", message: "Your session has ended. Sign in again to manage refreshes." },
  "invalid-argument": {
    title: "The refresh was not started",
    message: "The folder must lie inside uploads/ (the folder the classifier watches). Check it and try again.",
  },
  "not-found": {
    title: "No such run",
    message: "It may have been deleted, or the refresh function is not deployed (locally: is `make serve` running?).",
  },
  "failed-precondition": {
    title: "This run can no longer be resumed",
    message: "Its unfinished batches expire 90 days after listing. Start a new refresh: it redoes only what is still outdated.",
  },
  "deadline-exceeded": {
    title: "No answer from the refresh function",
    message: "It may still have done what you asked: watch the run's status before trying again.",
  },
};

/**
 * "Similar" on a result (the callable `similar`), where the general texts would not fit:
 * `NO_EMBEDDINGS` is about the upload (its model has no picture vectors, or the search is
 * switched off), and ownership and deletion are about the upload, not a file being sent.
 */
export const SIMILAR_MESSAGES = {
  NO_EMBEDDINGS: {
    title: "This upload cannot be compared",
    message:
      "Its model does not describe pictures for comparison, or the search is switched off on this server.",
  },
  PERMISSION_DENIED: {
    title: "Not yours",
    message: "That file belongs to another account. You can only search from your own uploads.",
  },
  NOT_FOUND: {
    title: "The file is gone",
    message: "It was deleted or replaced before it could be compared.",
  },
};

/** The words of the "Similar" panel and the duplicate badge (main.js). */
export const SIMILAR_TEXT = {
  button: "Similar",
  title: "Similar uploads",
  pending: "Looking for similar uploads…",
  empty: "No similar uploads yet. Upload more photos or videos and try again.",
  close: "Close",
  duplicateOf: (name) => `Duplicate of ${name}`,
  duplicateHint: "The same picture or clip as an earlier upload of yours",
};

/** Refresh run states (the run document's `status`), as the panel names them. */
export const RUN_STATUS_TEXT = {
  running: "Running",
  cancelled: "Cancelled",
  done: "Done",
};

export const FALLBACK = {
  title: "Something went wrong",
  message: "Try again. If it keeps happening, reload the page.",
};

function lookup(code) {
  if (!code) return null;
  const key = String(code);
  if (Object.hasOwn(MEDIA_MESSAGES, key)) return MEDIA_MESSAGES[key];
  if (Object.hasOwn(REQUEST_MESSAGES, key)) return REQUEST_MESSAGES[key];
  if (Object.hasOwn(SDK_MESSAGES, key)) return SDK_MESSAGES[key];
  // Firestore and Functions errors come as "permission-denied" or "functions/permission-denied".
  const bare = key.replace(/^(functions|firestore)\//, "");
  if (Object.hasOwn(SDK_MESSAGES, bare)) return SDK_MESSAGES[bare];
  return null;
}

/**
 * What to show for an error: a result document's `error` ({code, message}), a
 * callable's FirebaseError (stable code in `details.code`), or any SDK error.
 * Returns {code, title, message, detail}; `detail` is the server's own text.
 */
export function describeError(error) {
  const stable = error?.details?.code ?? null;
  const code = stable ?? error?.code ?? null;
  const found = lookup(stable) ?? lookup(error?.code) ?? FALLBACK;
  let detail = typeof error?.message === "string" ? error.message : "";
  detail = detail.replace(/^Firebase: /, "").replace(/ ?\((auth|storage)\/[a-z-]+\)\.?$/, "");
  if (/^(Error)?$/.test(detail.trim())) detail = ""; // the SDK said nothing but its code
  return { code: code ? String(code) : "UNKNOWN", title: found.title, message: found.message, detail };
}

/** Every code this file knows, for the test that compares them with the functions'. */
export function knownCodes() {
  return [...Object.keys(MEDIA_MESSAGES), ...Object.keys(REQUEST_MESSAGES), ...Object.keys(SDK_MESSAGES)];
}

/** describeError, in the words of the model-refresh panel where it has its own. */
export function describeRefreshError(error) {
  const d = describeError(error);
  const bare = String(error?.code ?? "").replace(/^(functions|firestore)\//, "");
  if (!Object.hasOwn(REFRESH_MESSAGES, bare)) return d;
  return { ...d, title: REFRESH_MESSAGES[bare].title, message: REFRESH_MESSAGES[bare].message };
}

/** describeError, in the words of the "Similar" panel where it has its own. */
export function describeSimilarError(error) {
  const d = describeError(error);
  const stable = String(error?.details?.code ?? error?.code ?? "");
  if (!Object.hasOwn(SIMILAR_MESSAGES, stable)) return d;
  return { ...d, title: SIMILAR_MESSAGES[stable].title, message: SIMILAR_MESSAGES[stable].message };
}
