// firestore.rules: a result (and its frames) is readable only by its owner, a query only
// with the owner filter, and no client writes anything. Through the modular Firebase JS
// SDK, as an app uses it, against Google's Firestore emulator.
//
// Every test calls setup() itself, instead of a before() hook: tests/e2e/test_rules.py
// lists the tests with a name pattern that matches none, and then nothing may touch
// the emulator (file-level hooks run even when every test is filtered out).
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { assertFails, assertSucceeds } from "@firebase/rules-unit-testing";
import {
  Timestamp,
  collection,
  collectionGroup,
  deleteDoc,
  doc,
  getDoc,
  getDocs,
  limit,
  onSnapshot,
  orderBy,
  query,
  setDoc,
  updateDoc,
  where,
  writeBatch,
} from "firebase/firestore";
import { ALICE, BOB, RUN, resultId, testEnvironment } from "./env.js";

const RESULTS = "mediaResults";
const REFRESH = "mediaRefreshRuns";
/** A uid that is a prefix of Alice's: it must get nothing of hers. */
const PREFIX = ALICE.slice(0, -2);
/** A uid holding an encoded slash: its "own folder" would be a folder inside Alice's. */
const CRAFTED = `${ALICE}%2F${RUN}`;

const mine = (file) => `uploads/${ALICE}/${RUN}/${file}`;
const CAT = mine("cat photo #1.jpg");
const OLDER = mine("older.png");
const ORPHAN = `uploads/${RUN}-no-owner.jpg`;
const result = (owner, path, updatedAt) => ({
  owner,
  path,
  status: "done",
  labels: [{ label: "tabby", score: 0.9 }],
  generation: "1",
  updatedAt,
});

let ready;
/** The test environment, with the documents every test reads (seeded once, rules off). */
function setup() {
  ready ??= (async () => {
    const env = await testEnvironment({ firestore: true });
    await env.withSecurityRulesDisabled(async (admin) => {
      const db = admin.firestore();
      await setDoc(doc(db, RESULTS, resultId(OLDER)), result(ALICE, OLDER, Timestamp.fromMillis(1e12)));
      await setDoc(doc(db, RESULTS, resultId(CAT)), result(ALICE, CAT, Timestamp.fromMillis(2e12)));
      for (const chunk of ["chunk-000", "chunk-001"]) {
        await setDoc(doc(db, RESULTS, resultId(CAT), "frames", chunk), { frames: [] });
      }
      await setDoc(doc(db, RESULTS, resultId(ORPHAN)), result(null, ORPHAN, Timestamp.now()));
      await setDoc(doc(db, REFRESH, RUN), { status: "running", listed: 3, done: 1 });
      await setDoc(doc(db, REFRESH, RUN, "batches", "000000-0000"), { objects: [] });
    });
    return env;
  })();
  return ready;
}

const as = async (uid, claims) => {
  const env = await setup();
  return (
    uid === null ? env.unauthenticatedContext() : env.authenticatedContext(uid, claims)
  ).firestore();
};
const resultRef = (db, path) => doc(db, RESULTS, resultId(path));
const framesOf = (db, path) => collection(db, RESULTS, resultId(path), "frames");
const ownedBy = (db, uid) => query(collection(db, RESULTS), where("owner", "==", uid));

/** Resolves with the first snapshot `accept` takes, rejects on a listener error or after 10 s. */
function nextSnapshot(ref, accept) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      stop();
      reject(new Error("no matching snapshot within 10 s"));
    }, 10_000);
    const stop = onSnapshot(
      ref,
      (snap) => {
        if (accept(snap)) {
          clearTimeout(timer);
          stop();
          resolve(snap);
        }
      },
      (error) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}

after(async () => {
  if (ready) await (await ready).cleanup();
});

describe("the owner", () => {
  test("reads their result", async () => {
    const snap = await assertSucceeds(getDoc(resultRef(await as(ALICE), CAT)));
    assert.equal(snap.data().owner, ALICE);
  });

  test("reads each frames chunk of their result", async () => {
    const db = await as(ALICE);
    await assertSucceeds(getDoc(doc(framesOf(db, CAT), "chunk-000")));
    await assertSucceeds(getDoc(doc(framesOf(db, CAT), "chunk-001")));
  });

  test("lists the frames of their result", async () => {
    const snap = await assertSucceeds(getDocs(framesOf(await as(ALICE), CAT)));
    assert.deepEqual(snap.docs.map((d) => d.id), ["chunk-000", "chunk-001"]);
  });

  test('lists their results with where("owner", "==", uid)', async () => {
    const snap = await assertSucceeds(getDocs(ownedBy(await as(ALICE), ALICE)));
    assert.deepEqual(snap.docs.map((d) => d.data().path).sort(), [CAT, OLDER].sort());
  });

  test("pages through their history, newest first", async () => {
    const db = await as(ALICE);
    const page = query(ownedBy(db, ALICE), orderBy("updatedAt", "desc"), limit(1));
    const snap = await assertSucceeds(getDocs(page));
    assert.deepEqual(snap.docs.map((d) => d.data().path), [CAT]);
  });

  test("reads a result that does not exist yet, in their own folder", async () => {
    const snap = await assertSucceeds(getDoc(resultRef(await as(ALICE), mine("not yet.jpg"))));
    assert.equal(snap.exists(), false);
  });

  test("listens to a result before it exists and receives it when it is written", async () => {
    const path = mine("listened.jpg");
    const ref = resultRef(await as(ALICE), path);
    const arrived = nextSnapshot(ref, (snap) => snap.data()?.status === "done");
    await nextSnapshot(ref, (snap) => !snap.exists()); // the listener is attached
    await (await setup()).withSecurityRulesDisabled(async (admin) => {
      await setDoc(resultRef(admin.firestore(), path), result(ALICE, path, Timestamp.now()));
    });
    assert.equal((await arrived).data().owner, ALICE);
  });
});

const strangers = {
  "another user": BOB,
  "a signed-out client": null,
  "a user whose uid is a prefix of the owner's": PREFIX,
  "a user whose uid holds an encoded slash": CRAFTED,
};

for (const [who, uid] of Object.entries(strangers)) {
  describe(who, () => {
    test("may not read the owner's result", async () => {
      await assertFails(getDoc(resultRef(await as(uid), CAT)));
    });

    test("may not listen to the owner's result", async () => {
      await assert.rejects(nextSnapshot(resultRef(await as(uid), CAT), () => true), {
        code: "permission-denied",
      });
    });

    test("may not read a result that does not exist yet in the owner's folder", async () => {
      await assertFails(getDoc(resultRef(await as(uid), mine("sub/not yet.jpg"))));
    });

    test("may not read or list the frames of the owner's result", async () => {
      const db = await as(uid);
      await assertFails(getDoc(doc(framesOf(db, CAT), "chunk-000")));
      await assertFails(getDocs(framesOf(db, CAT)));
    });

    test("may not list the owner's results, even with the owner filter", async () => {
      await assertFails(getDocs(ownedBy(await as(uid), ALICE)));
    });
  });
}

describe("queries", () => {
  test("nobody lists all results", async () => {
    await assertFails(getDocs(collection(await as(ALICE), RESULTS)));
  });

  test("a filter on another field is not enough", async () => {
    const db = await as(ALICE);
    await assertFails(getDocs(query(collection(db, RESULTS), where("status", "==", "done"))));
    await assertFails(getDocs(query(collection(db, RESULTS), where("path", "==", CAT))));
  });

  test("the owner filter must name the caller", async () => {
    await assertFails(getDocs(ownedBy(await as(BOB), ALICE)));
    await assertFails(getDocs(ownedBy(await as(null), ALICE)));
  });

  test("nobody queries the frames of every result (collection group)", async () => {
    await assertFails(getDocs(collectionGroup(await as(ALICE), "frames")));
  });

  test("a result without an owner is readable by nobody", async () => {
    await assertFails(getDoc(resultRef(await as(ALICE), ORPHAN)));
    await assertFails(getDocs(ownedBy(await as(ALICE), null)));
  });
});

const writers = { "the owner": ALICE, "another user": BOB, "a signed-out client": null };

for (const [who, uid] of Object.entries(writers)) {
  describe(`${who} writes nothing`, () => {
    test("may not create a result, not even in the owner's own folder", async () => {
      const path = mine("forged.jpg");
      await assertFails(setDoc(resultRef(await as(uid), path), result(ALICE, path, Timestamp.now())));
    });

    test("may not update, replace, merge into or delete a result", async () => {
      const ref = resultRef(await as(uid), CAT);
      await assertFails(updateDoc(ref, { status: "error" }));
      await assertFails(setDoc(ref, result(ALICE, CAT, Timestamp.now())));
      await assertFails(setDoc(ref, { labels: [] }, { merge: true }));
      await assertFails(deleteDoc(ref));
    });

    test("may not create, update or delete frames", async () => {
      const frames = framesOf(await as(uid), CAT);
      await assertFails(setDoc(doc(frames, "chunk-002"), { frames: [] }));
      await assertFails(updateDoc(doc(frames, "chunk-000"), { frames: [{ t: 0 }] }));
      await assertFails(deleteDoc(doc(frames, "chunk-001")));
    });

    test("may not write in a batch", async () => {
      const db = await as(uid);
      const batch = writeBatch(db);
      batch.update(resultRef(db, CAT), { status: "error" });
      await assertFails(batch.commit());
    });

    test("may not read or write anywhere else", async () => {
      const other = doc(await as(uid), "users", uid ?? "anonymous");
      await assertFails(setDoc(other, { a: 1 }));
      await assertFails(getDoc(other));
    });
  });
}

describe("refresh progress", () => {
  test("an admin (custom claim admin: true) reads and lists the runs", async () => {
    const db = await as(ALICE, { admin: true });
    assert.equal((await assertSucceeds(getDoc(doc(db, REFRESH, RUN)))).data().listed, 3);
    await assertSucceeds(getDocs(query(collection(db, REFRESH), limit(5))));
  });

  for (const [who, uid, claims] of [
    ["a signed-in user", BOB, undefined],
    ["a user whose admin claim is not true", BOB, { admin: "true" }],
    ["a signed-out client", null, undefined],
  ]) {
    test(`${who} may not read or list the runs`, async () => {
      const db = await as(uid, claims);
      await assertFails(getDoc(doc(db, REFRESH, RUN)));
      await assertFails(getDocs(collection(db, REFRESH)));
    });
  }

  test("nobody, not even an admin, reads the batches or writes anything", async () => {
    const db = await as(ALICE, { admin: true });
    await assertFails(getDoc(doc(db, REFRESH, RUN, "batches", "000000-0000")));
    await assertFails(setDoc(doc(db, REFRESH, `${RUN}-forged`), { status: "running" }));
    await assertFails(updateDoc(doc(db, REFRESH, RUN), { status: "cancelled" }));
    await assertFails(deleteDoc(doc(db, REFRESH, RUN)));
  });
});

describe("what the clients did not change", () => {
  test("the owner's result and frames are as the functions wrote them", async () => {
    const env = await setup();
    await env.withSecurityRulesDisabled(async (admin) => {
      const db = admin.firestore();
      const snap = await getDoc(resultRef(db, CAT));
      assert.equal(snap.data().status, "done");
      assert.deepEqual(snap.data().labels, [{ label: "tabby", score: 0.9 }]);
      const frames = await getDocs(framesOf(db, CAT));
      assert.deepEqual(frames.docs.map((d) => d.id), ["chunk-000", "chunk-001"]);
      assert.equal((await getDoc(resultRef(db, mine("forged.jpg")))).exists(), false);
    });
  });
});
