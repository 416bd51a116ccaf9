// firestore.rules: a result is readable only by its owner; no client writes results.
import { after, before, describe, test } from "node:test";
import { assertFails, assertSucceeds } from "@firebase/rules-unit-testing";
import { ALICE, BOB, RUN, resultId, testEnvironment } from "./env.js";

const COLLECTION = "mediaResults";
let env;
const alicePath = `uploads/${ALICE}/${RUN}/cat photo #1.jpg`;
const orphanPath = `uploads/${RUN}-no-owner.jpg`;
const result = (owner, path) => ({
  owner,
  path,
  status: "done",
  labels: [{ label: "tabby", score: 0.9 }],
  generation: "1",
});
const doc = (ctx, path) => ctx.firestore().collection(COLLECTION).doc(resultId(path));

before(async () => {
  env = await testEnvironment({ firestore: true });
  await env.withSecurityRulesDisabled(async (admin) => {
    await doc(admin, alicePath).set(result(ALICE, alicePath));
    await doc(admin, alicePath).collection("frames").doc("chunk-000").set({ frames: [] });
    await doc(admin, orphanPath).set(result(null, orphanPath));
  });
});

after(async () => {
  await env?.cleanup();
});

describe("reading results", () => {
  test("the owner may read their result and its per-frame detail", async () => {
    const alice = env.authenticatedContext(ALICE);
    await assertSucceeds(doc(alice, alicePath).get());
    await assertSucceeds(doc(alice, alicePath).collection("frames").doc("chunk-000").get());
  });

  test("the owner may query their own results", async () => {
    const alice = env.authenticatedContext(ALICE);
    await assertSucceeds(alice.firestore().collection(COLLECTION).where("owner", "==", ALICE).get());
  });

  test("another user may not read, query or read the frames of someone's result", async () => {
    const bob = env.authenticatedContext(BOB);
    await assertFails(doc(bob, alicePath).get());
    await assertFails(bob.firestore().collection(COLLECTION).where("owner", "==", ALICE).get());
    await assertFails(doc(bob, alicePath).collection("frames").doc("chunk-000").get());
  });

  test("nobody may list all results", async () => {
    await assertFails(env.authenticatedContext(ALICE).firestore().collection(COLLECTION).get());
  });

  test("an anonymous client may not read results", async () => {
    await assertFails(doc(env.unauthenticatedContext(), alicePath).get());
  });

  test("a result without an owner is readable by nobody", async () => {
    await assertFails(doc(env.authenticatedContext(ALICE), orphanPath).get());
  });

  test("a missing result is not readable (a client waits for it with a listener)", async () => {
    await assertFails(doc(env.authenticatedContext(ALICE), `uploads/${ALICE}/${RUN}/none.jpg`).get());
  });
});

describe("writing results", () => {
  test("the owner may not create, change or delete a result", async () => {
    const alice = env.authenticatedContext(ALICE);
    const fresh = `uploads/${ALICE}/${RUN}/forged.jpg`;
    await assertFails(doc(alice, fresh).set(result(ALICE, fresh)));
    await assertFails(doc(alice, alicePath).update({ status: "error" }));
    await assertFails(doc(alice, alicePath).set(result(ALICE, alicePath)));
    await assertFails(doc(alice, alicePath).delete());
    await assertFails(doc(alice, alicePath).collection("frames").doc("chunk-001").set({ frames: [] }));
  });

  test("nobody may write anywhere else", async () => {
    const alice = env.authenticatedContext(ALICE);
    await assertFails(alice.firestore().collection("users").doc(ALICE).set({ a: 1 }));
    await assertFails(alice.firestore().collection("users").doc(ALICE).get());
  });
});
