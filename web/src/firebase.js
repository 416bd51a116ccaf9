// Firebase set-up: the local emulators when the page is served from this machine,
// the real project when it is served by Firebase Hosting.
//
// Why decide at run time rather than at build time: one build serves both. `make
// serve` hosts it on 127.0.0.1 (emulators, demo project), `firebase deploy` puts
// the same files on Hosting, which answers /__/firebase/init.json with the
// project's web config. A build for another host can bake a config in with
// FIREBASE_WEB_CONFIG='{"apiKey": ...}' (see build.mjs).

import { initializeApp } from "firebase/app";
import { connectAuthEmulator, getAuth } from "firebase/auth";
import { connectFirestoreEmulator, getFirestore } from "firebase/firestore";
import { connectFunctionsEmulator, getFunctions } from "firebase/functions";
import { connectStorageEmulator, getStorage } from "firebase/storage";

export const RESULTS_COLLECTION = "mediaResults";
export const REFRESH_COLLECTION = "mediaRefreshRuns"; // the REFRESH_COLLECTION param
export const UPLOAD_PREFIX = "uploads/";
export const FUNCTIONS_REGION = "us-central1";

// Firebase's default emulator ports, as in firebase.json and tools/localstack.py.
export const EMULATOR_HOST = "127.0.0.1";
export const EMULATOR_PORTS = { auth: 9099, firestore: 8080, storage: 9199, functions: 5001 };

// A "demo-" project id never reaches real cloud resources, whatever the code does.
export const DEMO_CONFIG = {
  apiKey: "demo-api-key",
  authDomain: "demo-media-classifier.firebaseapp.com",
  projectId: "demo-media-classifier",
  storageBucket: "demo-media-classifier.appspot.com",
  appId: "1:000000000000:web:0000000000000000000000",
};

const LOCAL_HOSTNAMES = new Set(["localhost", "127.0.0.1", "[::1]", "::1"]);

// Replaced by build.mjs (esbuild `define`): null unless FIREBASE_WEB_CONFIG was set.
// eslint-disable-next-line no-undef
const BUILT_IN_CONFIG = typeof __FIREBASE_WEB_CONFIG__ === "undefined" ? null : __FIREBASE_WEB_CONFIG__;

/** True when the page should talk to the local emulators (`?emulators=0|1` overrides). */
export function wantsEmulators(loc = window.location) {
  const override = new URLSearchParams(loc.search).get("emulators");
  if (override !== null) return override !== "0";
  return LOCAL_HOSTNAMES.has(loc.hostname);
}

async function projectConfig(emulators) {
  if (emulators) return DEMO_CONFIG;
  if (BUILT_IN_CONFIG) return BUILT_IN_CONFIG;
  const response = await fetch("/__/firebase/init.json");
  if (!response.ok) {
    throw new Error(
      "No Firebase config: deploy to Firebase Hosting (it serves /__/firebase/init.json) or build with FIREBASE_WEB_CONFIG",
    );
  }
  return response.json();
}

/** Initialise the app and its services; resolves to {app, auth, db, storage, functions, ...}. */
export async function connect() {
  const emulators = wantsEmulators();
  const config = await projectConfig(emulators);
  const app = initializeApp(config);
  const auth = getAuth(app);
  const db = getFirestore(app);
  const storage = getStorage(app);
  const functions = getFunctions(app, FUNCTIONS_REGION);
  if (emulators) {
    const p = EMULATOR_PORTS;
    // Our own header badge says "local emulators"; the SDK's banner would cover the page.
    connectAuthEmulator(auth, `http://${EMULATOR_HOST}:${p.auth}`, { disableWarnings: true });
    connectFirestoreEmulator(db, EMULATOR_HOST, p.firestore);
    connectStorageEmulator(storage, EMULATOR_HOST, p.storage);
    connectFunctionsEmulator(functions, EMULATOR_HOST, p.functions);
  }
  return { app, auth, db, storage, functions, emulators, projectId: config.projectId };
}
