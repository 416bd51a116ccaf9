#!/usr/bin/env node
// Starts the offline Firestore emulator (@firestore-emulator/server, gRPC only).
//
// Why this file: Google's Firestore emulator is a jar that firebase-tools downloads,
// which is impossible on machines that reach only package registries. The npm
// package has no CLI and its start() binds 0.0.0.0; a development database should
// only be reachable from this machine, so we bind the gRPC server ourselves.
//
// Usage: node firestore-server.js [--host 127.0.0.1] [--port 8080]
// Prints one line "firestore-server ready on HOST:PORT" when it accepts connections
// (tools/localstack.py waits for the port), and exits cleanly on SIGINT/SIGTERM.
"use strict";

const path = require("path");
const { FirestoreServer } = require("@firestore-emulator/server");
// The credentials must come from the same @grpc/grpc-js copy the server was built with.
const serverDir = path.dirname(require.resolve("@firestore-emulator/server/package.json"));
const { ServerCredentials } = require(require.resolve("@grpc/grpc-js", { paths: [serverDir] }));

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
