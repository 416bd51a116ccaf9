#!/usr/bin/env node
// Starts the offline Firestore emulator (@firestore-emulator/server, gRPC only).
//
// Why this file: Google's Firestore emulator is a jar that firebase-tools downloads,
// which is impossible on machines that reach only package registries. The npm
// package has no CLI and its start() binds 0.0.0.0; a development database should
// only be reachable from this machine, so we bind the gRPC server ourselves.
//
// It also adds what the package leaves out and the functions rely on: a write with an
// `update_time` precondition (the Python client's `write_option(last_update_time=...)`)
// fails with FAILED_PRECONDITION unless the document still has that update time, and a
// commit whose precondition fails applies none of its writes (the package ignores such
// preconditions and applies a commit's writes one by one). Without it, no local test of
// the result protocol's races could fail.
//
// Usage: node firestore-server.js [--host 127.0.0.1] [--port 8080]
// Prints one line "firestore-server ready on HOST:PORT" when it accepts connections
// (tools/localstack.py waits for the port), and exits cleanly on SIGINT/SIGTERM.
"use strict";

const path = require("path");
const { FirestoreServer } = require("@firestore-emulator/server");
// The credentials must come from the same @grpc/grpc-js copy the server was built with.
const serverDir = path.dirname(require.resolve("@firestore-emulator/server/package.json"));
const { ServerCredentials, status } = require(require.resolve("@grpc/grpc-js", { paths: [serverDir] }));

function option(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1] : fallback;
}

const host = option("host", process.env.FIRESTORE_HOST || "127.0.0.1");
const port = Number(option("port", process.env.FIRESTORE_PORT || "8080"));

const emulator = new FirestoreServer();
// `server` is private in the TypeScript types only; binding it here replaces start(port).
const grpcServer = emulator.server;
if (!grpcServer || typeof grpcServer.bindAsync !== "function") {
  console.error("firestore-server: @firestore-emulator/server changed its internals; update this script");
  process.exit(2);
}

// --- update_time preconditions, checked for a whole commit before any write applies ----
function writeTarget(write) {
  if (write.has_update) return write.update.name;
  if (write.has_delete) return write.delete;
  return null;
}

function failedPrecondition(writes) {
  for (const write of writes) {
    if (!write.has_current_document || !write.current_document.has_update_time) continue;
    const path = writeTarget(write);
    if (path === null) continue;
    const document = emulator.state.getDocument(path);
    const wanted = write.current_document.update_time;
    const updated = document.metadata.hasExist ? document.metadata.updatedAt : null;
    const same =
      updated !== null &&
      Math.floor(updated.getTime() / 1e3) === Number(wanted.seconds) &&
      updated.getMilliseconds() * 1e6 === Number(wanted.nanos);
    if (!same) return `the document ${path} was changed since it was read (update_time precondition)`;
  }
  return null;
}

const COMMIT = "/google.firestore.v1.Firestore/Commit";
const commitHandler = grpcServer.handlers instanceof Map ? grpcServer.handlers.get(COMMIT) : null;
if (!commitHandler || typeof commitHandler.func !== "function") {
  console.error("firestore-server: @grpc/grpc-js changed its internals; update this script");
  process.exit(2);
}
const commit = commitHandler.func;
commitHandler.func = (call, callback) => {
  const failed = failedPrecondition(call.request.writes);
  if (failed !== null) {
    callback({ code: status.FAILED_PRECONDITION, message: failed }, null);
    return;
  }
  commit(call, callback);
};

grpcServer.bindAsync(`${host}:${port}`, ServerCredentials.createInsecure(), (err, boundPort) => {
  if (err) {
    console.error(`firestore-server: cannot listen on ${host}:${port}: ${err.message}`);
    process.exit(1);
  }
  console.log(`firestore-server ready on ${host}:${boundPort}`);
});

function shutdown(signal) {
  console.log(`firestore-server: ${signal}, stopping`);
  emulator.stop();
  process.exit(0);
}
process.on("SIGINT", () => shutdown("SIGINT"));
process.on("SIGTERM", () => shutdown("SIGTERM"));
