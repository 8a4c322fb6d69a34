// Fails when src/gql/ is not what `npm run generate` makes of the current
// ../schema.graphql and operations/: the apps would build against a stale
// contract. Run by scripts/test.sh.
import { readFile, readdir } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { generate } from "@graphql-codegen/cli";

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
process.chdir(root);
const { default: config } = await import(path.join(root, "codegen.ts")).catch(async () => {
  // Node cannot import TypeScript: read the config the way codegen does.
  const { loadCodegenConfig } = await import("@graphql-codegen/cli");
  const loaded = await loadCodegenConfig({ configFilePath: path.join(root, "codegen.ts") });
  return { default: loaded.config };
});
const outputs = await generate({ ...config, silent: true, verbose: false }, false);
const stale = [];
const expected = new Set();
for (const { filename, content } of outputs) {
  const file = path.relative(root, path.resolve(root, filename));
  expected.add(file);
  const current = await readFile(path.join(root, file), "utf8").catch(() => null);
  if (current !== content) stale.push(file);
}
for (const name of await readdir(path.join(root, "src/gql"))) {
  const file = path.join("src/gql", name);
  if (!expected.has(file)) stale.push(`${file} (not generated any more)`);
}
if (stale.length > 0) {
  console.error(`frontend-contract: generated files are stale: ${stale.join(", ")}`);
  console.error("regenerate with: npm --prefix frontend-contract run generate");
  process.exit(1);
}
console.log(`frontend-contract: ${outputs.length} generated files are up to date`);
