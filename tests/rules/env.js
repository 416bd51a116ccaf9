// Shared test environment for the security rules tests.
//
// Why a shared module: both suites load the repo's real rules files into Google's
// emulators (found through FIRESTORE_EMULATOR_HOST / FIREBASE_STORAGE_EMULATOR_HOST,
// set by `firebase emulators:exec` or by tests/e2e/test_rules.py), and both must use
// names unique to the run, because the emulators may be shared with other tests:
// nothing here clears the emulators' data.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { initializeTestEnvironment } from "@firebase/rules-unit-testing";

const REPO = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const PROJECT_ID = process.env.GCLOUD_PROJECT || "demo-media-classifier";
export const RUN = `rules-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 6)}`;
export const ALICE = `alice-${RUN}`;
export const BOB = `bob-${RUN}`;
/** Keep equal to MAX_BYTES in storage.rules and the MAX_UPLOAD_BYTES param. */
export const MAX_UPLOAD_BYTES = 100 * 1024 * 1024;

export async function testEnvironment({ firestore = false, storage = false } = {}) {
  const config = { projectId: PROJECT_ID };
  if (firestore) config.firestore = { rules: readFileSync(join(REPO, "firestore.rules"), "utf8") };
  if (storage) config.storage = { rules: readFileSync(join(REPO, "storage.rules"), "utf8") };
  return initializeTestEnvironment(config);
}

/** JavaScript's own encodeURIComponent: the result document id of an object path. */
export const resultId = (path) => encodeURIComponent(path);

export const bytes = (n, fill = 7) => new Uint8Array(n).fill(fill);
