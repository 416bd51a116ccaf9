// Builds the web app into web/dist (the Firebase Hosting "public" folder).
//
//   node build.mjs            one production build (minified, with source maps)
//   node build.mjs --watch    rebuild on every change (for `make serve` in another terminal)
//
// File names carry a content hash so Hosting may cache them forever; index.html, which
// names them, is never cached (firebase.json "headers").
// FIREBASE_WEB_CONFIG='{"apiKey": "...", "projectId": "...", ...}' bakes a project's web
// config into the bundle, for hosts other than Firebase Hosting (which serves
// /__/firebase/init.json and needs nothing).

import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";

import * as esbuild from "esbuild";

const root = path.dirname(fileURLToPath(import.meta.url));
const src = path.join(root, "src");
const out = path.join(root, "dist");
const watch = process.argv.includes("--watch");

let config = null;
if (process.env.FIREBASE_WEB_CONFIG) {
  config = JSON.parse(process.env.FIREBASE_WEB_CONFIG);
  for (const key of ["apiKey", "projectId", "storageBucket"]) {
    if (!config[key]) throw new Error(`FIREBASE_WEB_CONFIG lacks ${key}`);
  }
}

/** After each build: index.html with the hashed names of the script and the style sheet. */
const writeHtml = {
  name: "write-html",
  setup(build) {
    build.onEnd(async (result) => {
      if (result.errors.length) return;
      const outputs = Object.entries(result.metafile.outputs);
      const named = (entry) =>
        path.basename(outputs.find(([, o]) => o.entryPoint === `src/${entry}`)[0]);
      let html = await readFile(path.join(src, "index.html"), "utf8");
      html = html
        .replace('href="styles.css"', `href="${named("styles.css")}"`)
        .replace('src="app.js"', `src="${named("main.js")}"`);
      await writeFile(path.join(out, "index.html"), html);
      const size = outputs.reduce((sum, [, o]) => sum + o.bytes, 0);
      console.log(`web/dist: ${outputs.length} files, ${(size / 1024).toFixed(0)} KiB`);
    });
  },
};

await rm(out, { recursive: true, force: true });
await mkdir(out, { recursive: true });

const options = {
  absWorkingDir: root,
  entryPoints: ["src/main.js", "src/styles.css"],
  entryNames: "[name]-[hash]",
  outdir: "dist",
  bundle: true,
  format: "esm",
  target: ["es2022", "chrome109", "safari16", "firefox115"],
  minify: !watch,
  sourcemap: true,
  metafile: true,
  legalComments: "linked",
  logLevel: "warning",
  define: { __FIREBASE_WEB_CONFIG__: JSON.stringify(config) },
  plugins: [writeHtml],
};

if (watch) {
  const context = await esbuild.context(options);
  await context.watch();
  console.log("watching web/src (Ctrl-C stops)");
} else {
  await esbuild.build(options);
}
