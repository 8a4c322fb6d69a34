// Generates src/gql/ (types, typed document nodes, persisted-documents.json)
// from ../schema.graphql and operations/*.graphql. `npm run generate`;
// `npm run check` (run by scripts/test.sh) fails when the output is stale.
import type { CodegenConfig } from "@graphql-codegen/cli";

const config: CodegenConfig = {
  schema: "../schema.graphql",
  documents: ["operations/**/*.graphql"],
  ignoreNoDocuments: false,
  generates: {
    "src/gql/": {
      preset: "client",
      presetConfig: {
        fragmentMasking: false,
        persistedDocuments: { hashAlgorithm: "sha256", mode: "embedHashInDocument" },
      },
      config: {
        scalars: {
          Decimal: { input: "string", output: "string" },
          DateTime: { input: "string", output: "string" },
          JSON: { input: "unknown", output: "unknown" },
        },
        enumsAsTypes: true,
        useTypeImports: true,
        strictScalars: true,
        defaultScalarType: "unknown",
      },
    },
  },
};

export default config;
