// storage.rules: owners upload media under uploads/{uid}/, within the size limit,
// and nobody reads or lists anyone else's files.
import { after, describe, test } from "node:test";
import { assertFails, assertSucceeds } from "@firebase/rules-unit-testing";
import { ALICE, BOB, MAX_UPLOAD_BYTES, RUN, bytes, testEnvironment } from "./env.js";

const mine = (file) => `uploads/${ALICE}/${RUN}/${file}`;
const put = (ctx, path, data, contentType) =>
  ctx.storage().ref(path).put(data, contentType ? { contentType } : undefined);

let ready;
/** The test environment with a seeded file; lazy, as in firestore.rules.test.js (see there). */
function setup() {
  ready ??= (async () => {
    const env = await testEnvironment({ storage: true });
    await env.withSecurityRulesDisabled(async (admin) => {
      await put(admin, mine("seeded.jpg"), bytes(16), "image/jpeg");
    });
    return env;
  })();
  return ready;
}

after(async () => {
  if (ready) await (await ready).cleanup();
});

describe("uploads by the owner", () => {
  for (const contentType of ["image/jpeg", "image/png", "image/webp", "image/heic", "image/avif", "video/mp4", "video/quicktime"]) {
    test(`may upload ${contentType} under uploads/{own uid}/`, async () => {
      await assertSucceeds(put((await setup()).authenticatedContext(ALICE), mine(`ok.${contentType.split("/")[1]}`), bytes(32), contentType));
    });
  }

  test("may upload with application/octet-stream (the bytes decide, server side)", async () => {
    await assertSucceeds(put((await setup()).authenticatedContext(ALICE), mine("unknown"), bytes(32), "application/octet-stream"));
  });

  test("may upload into deep folders and replace an own file", async () => {
    const alice = (await setup()).authenticatedContext(ALICE);
    await assertSucceeds(put(alice, mine("a/b/c/d/deep.jpg"), bytes(8), "image/jpeg"));
    await assertSucceeds(put(alice, mine("seeded.jpg"), bytes(9), "image/jpeg"));
  });

  for (const contentType of ["text/plain", "application/pdf", "application/zip", "text/html", "audio/mpeg"]) {
    test(`may not upload ${contentType}`, async () => {
      await assertFails(put((await setup()).authenticatedContext(ALICE), mine("bad"), bytes(32), contentType));
    });
  }

  test("may not upload an empty object", async () => {
    await assertFails(put((await setup()).authenticatedContext(ALICE), mine("empty.jpg"), new Uint8Array(0), "image/jpeg"));
  });

  test("may not upload more than the size limit", async () => {
    const tooBig = new Uint8Array(MAX_UPLOAD_BYTES + 1);
    await assertFails(put((await setup()).authenticatedContext(ALICE), mine("huge.mp4"), tooBig, "video/mp4"));
  });
});

describe("uploads elsewhere", () => {
  const cases = {
    "another user's folder": `uploads/${BOB}/${RUN}/x.jpg`,
    "directly under uploads/": `uploads/${RUN}-x.jpg`,
    "outside uploads/": `elsewhere/${ALICE}/${RUN}/x.jpg`,
    "the bucket root": `${RUN}.jpg`,
    "a look-alike prefix": `uploadsX/${ALICE}/${RUN}/x.jpg`,
  };
  for (const [what, path] of Object.entries(cases)) {
    test(`a signed-in user may not write to ${what}`, async () => {
      await assertFails(put((await setup()).authenticatedContext(ALICE), path, bytes(8), "image/jpeg"));
    });
  }

  test("an anonymous client may not upload at all", async () => {
    await assertFails(put((await setup()).unauthenticatedContext(), mine("anon.jpg"), bytes(8), "image/jpeg"));
  });
});

describe("reading, listing and deleting", () => {
  test("the owner may read and list their own files", async () => {
    const alice = (await setup()).authenticatedContext(ALICE);
    await assertSucceeds(alice.storage().ref(mine("seeded.jpg")).getMetadata());
    await assertSucceeds(alice.storage().ref(`uploads/${ALICE}/${RUN}`).listAll());
  });

  test("another user may not read, list or delete them", async () => {
    const bob = (await setup()).authenticatedContext(BOB);
    await assertFails(bob.storage().ref(mine("seeded.jpg")).getMetadata());
    await assertFails(bob.storage().ref(mine("seeded.jpg")).getDownloadURL());
    await assertFails(bob.storage().ref(`uploads/${ALICE}/${RUN}`).listAll());
    await assertFails(bob.storage().ref(mine("seeded.jpg")).delete());
  });

  test("an anonymous client may not read or list", async () => {
    const anon = (await setup()).unauthenticatedContext();
    await assertFails(anon.storage().ref(mine("seeded.jpg")).getMetadata());
    await assertFails(anon.storage().ref("uploads").listAll());
  });

  test("nobody may list the whole uploads/ folder", async () => {
    await assertFails((await setup()).authenticatedContext(ALICE).storage().ref("uploads").listAll());
  });

  test("the owner may delete their own file", async () => {
    const alice = (await setup()).authenticatedContext(ALICE);
    await assertSucceeds(put(alice, mine("to-delete.jpg"), bytes(8), "image/jpeg"));
    await assertSucceeds(alice.storage().ref(mine("to-delete.jpg")).delete());
  });
});
