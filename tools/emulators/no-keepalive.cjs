// Preloaded into the Firebase CLI (NODE_OPTIONS=--require) by tools/localstack.py.
//
// Why: since Node 19 the global HTTP agent keeps idle connections for 5 s, while the Python
// functions' server (gunicorn's gthread worker, started by functions-framework) closes idle
// keep-alive connections after 2 s. When the Functions emulator proxies a request onto a
// connection gunicorn is closing at that moment, the request fails with "read ECONNRESET";
// the emulator then answers 500 with the socket error as body and kills the worker (seen in
// a CI run of tests/e2e/test_https.py's schemathesis test). One fresh loopback connection per
// proxied request removes the race for ~0.1 ms.
"use strict";
const http = require("http");

http.globalAgent = new http.Agent({ keepAlive: false });
