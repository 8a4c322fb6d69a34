// What the contract tests share: the generated documents by operation name,
// and a check that fails the test with a message.
import { readFile } from "node:fs/promises";

const manifest = JSON.parse(
  await readFile(new URL("../src/gql/persisted-documents.json", import.meta.url), "utf8"),
);

/** The generated text of the operation named `name` (exact name). */
export function documentText(name) {
  const named = new RegExp(`(query|mutation|subscription) ${name}[ (]`);
  const text = Object.values(manifest).find((d) => named.test(d));
  if (!text) throw new Error(`no ${name} in the manifest`);
  return text;
}

/** Throws `what` unless `cond` holds. */
export function check(cond, what) {
  if (!cond) throw new Error(what);
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
