// Runs graphql-http's serverAudits (the GraphQL-over-HTTP conformance
// audit) against a running server and prints one JSON line:
// { total, ok, notOk: [{ id, name, status, reason }] }.
// Usage: node scripts/audit.mjs <graphql url> [--preflight]
// --preflight adds the `apollo-require-preflight: true` header Apollo
// Client sends, which the server's CSRF rule asks of GET requests.
import { serverAudits } from "graphql-http";

const [url, flag] = process.argv.slice(2);
if (!url) {
  console.error("usage: node scripts/audit.mjs <graphql url> [--preflight]");
  process.exit(2);
}
const preflight = flag === "--preflight";
const fetchFn = (input, init = {}) =>
  fetch(input, {
    ...init,
    headers: { ...(init.headers ?? {}), ...(preflight ? { "apollo-require-preflight": "true" } : {}) },
  });
const results = [];
for (const audit of serverAudits({ url, fetchFn })) {
  const result = await audit.fn();
  results.push({ id: audit.id, name: audit.name, status: result.status, reason: result.reason });
}
const notOk = results.filter((r) => r.status !== "ok");
console.log(JSON.stringify({ total: results.length, ok: results.length - notOk.length, notOk }));
