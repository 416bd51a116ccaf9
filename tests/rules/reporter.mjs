// A node:test reporter for tests/e2e/test_rules.py: one JSON line per test (not per
// suite), {"file", "name", "status", "message"}, where name is the test's full name
// ("suite > test") and status is passed, failed or skipped.
//
// Why: pytest reports each rules test as its own item, so the summary counts them and
// a failure names the test; TAP would need a parser, and node 20 has no JSON reporter.
import { basename } from "node:path";

export default async function* jsonLines(source) {
  const names = new Map(); // file -> names of the tests being run, by nesting
  for await (const { type, data } of source) {
    if (type === "test:start") {
      const stack = (names.get(data.file) ?? []).slice(0, data.nesting);
      stack[data.nesting] = data.name;
      names.set(data.file, stack);
      continue;
    }
    if (type !== "test:pass" && type !== "test:fail") continue;
    if (data.details?.type === "suite") continue;
    const stack = (names.get(data.file) ?? []).slice(0, data.nesting);
    const error = data.details?.error;
    const cause = error?.cause ?? error;
    yield `${JSON.stringify({
      file: data.file ? basename(data.file) : "",
      name: [...stack, data.name].join(" > "),
      status: data.skip !== undefined || data.todo !== undefined ? "skipped" : type === "test:pass" ? "passed" : "failed",
      message: error ? String(cause?.stack ?? cause?.message ?? cause) : (typeof data.skip === "string" ? data.skip : ""),
    })}\n`;
  }
}
