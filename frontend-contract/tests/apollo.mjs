// Apollo Client 4 against a running wallet-bff, with the generated
// documents (src/gql/persisted-documents.json): HttpLink and GraphQLWsLink,
// an InMemoryCache whose Relay connection merges fetchMore pages, contract
// error codes from extensions.code, a live subscription and a clean close.
// Usage: node tests/apollo.mjs <http url of /graphql>. Prints "ok" and exits
// 0, or prints what failed and exits 1.
import { ApolloClient, ApolloLink, HttpLink, InMemoryCache } from "@apollo/client";
import { SetContextLink } from "@apollo/client/link/context";
import { GraphQLWsLink } from "@apollo/client/link/subscriptions";
import { CombinedGraphQLErrors } from "@apollo/client/errors";
import { getMainDefinition, relayStylePagination } from "@apollo/client/utilities";
import { parse } from "graphql";
import { createClient } from "graphql-ws";
import WebSocket from "ws";
import { check, documentText } from "./contract.mjs";

const url = process.argv[2];
const doc = (name) => parse(documentText(name));

let token = null;
let closeCode = null;
const wsClient = createClient({
  url: url.replace(/^http/, "ws") + "/ws",
  webSocketImpl: WebSocket,
  lazy: true,
  connectionParams: () => ({ authorization: `Bearer ${token}` }),
  on: { closed: (event) => { closeCode = event.code; } },
});
const http = new HttpLink({ uri: url });
const auth = new SetContextLink((prev) => ({
  headers: { ...prev.headers, ...(token ? { authorization: `Bearer ${token}` } : {}) },
}));
const link = ApolloLink.split(
  ({ query }) => {
    const def = getMainDefinition(query);
    return def.kind === "OperationDefinition" && def.operation === "subscription";
  },
  new GraphQLWsLink(wsClient),
  auth.concat(http),
);
const client = new ApolloClient({
  link,
  cache: new InMemoryCache({
    typePolicies: {
      Query: {
        fields: {
          transactions: relayStylePagination(["walletId", "from", "to"]),
          notifications: relayStylePagination(["unreadOnly"]),
          deadLetters: relayStylePagination(),
          auditLog: relayStylePagination(["actorId", "action"]),
        },
      },
    },
  }),
});

const email = `apollo-${Date.now()}@example.com`;
const reg = await client.mutate({
  mutation: doc("Register"),
  variables: { input: { email, password: "correct horse battery", displayName: "Apollo" } },
});
token = reg.data.register.accessToken;
const wallet = (await client.mutate({ mutation: doc("OpenWallet"), variables: { currency: "USD" } })).data.openWallet;
check(wallet.balance === "0.00", `a new wallet shows 0.00, not ${wallet.balance}`);
for (let i = 1; i <= 10; i++) {
  await client.mutate({
    mutation: doc("Deposit"),
    variables: { input: { walletId: wallet.id, amount: `${i}.00` }, idempotencyKey: `apollo-${i}` },
  });
}

// Pages of 4 merged by the cache's Relay policy through fetchMore.
const history = client.watchQuery({ query: doc("History"), variables: { first: 4 }, fetchPolicy: "network-only" });
const first = await history.refetch();
check(first.data.transactions.edges.length === 4, "the first page has 4 edges");
let page = first.data;
while (page.transactions.pageInfo.hasNextPage) {
  const more = await history.fetchMore({ variables: { after: page.transactions.pageInfo.endCursor } });
  check(more.data.transactions.edges.length <= 4, "fetchMore returns one page");
  page = client.readQuery({ query: doc("History"), variables: { first: 4 } });
}
const amounts = page.transactions.edges.map((e) => e.node.amount);
check(
  JSON.stringify(amounts) === JSON.stringify(["10.00", "9.00", "8.00", "7.00", "6.00", "5.00", "4.00", "3.00", "2.00", "1.00"]),
  `the merged pages hold every deposit once, newest first: ${amounts}`,
);

// A contract code from extensions.code: more than the balance, to Bob.
const ann = token;
const bobEmail = `apollo-bob-${Date.now()}@example.com`;
token = (
  await client.mutate({
    mutation: doc("Register"),
    variables: { input: { email: bobEmail, password: "correct horse battery", displayName: "Bob" } },
  })
).data.register.accessToken;
await client.mutate({ mutation: doc("OpenWallet"), variables: { currency: "USD" } });
token = ann;
try {
  await client.mutate({
    mutation: doc("Transfer"),
    variables: { input: { fromWalletId: wallet.id, toEmail: bobEmail, amount: "500.00" }, idempotencyKey: "too-much" },
  });
  throw new Error("a transfer beyond the balance succeeded");
} catch (err) {
  check(CombinedGraphQLErrors.is(err), `a GraphQL error, not ${err}`);
  const code = err.errors[0].extensions?.code;
  check(code === "INSUFFICIENT_FUNDS", `INSUFFICIENT_FUNDS from extensions.code, not ${code}`);
}

// A live event over GraphQLWsLink.
const events = [];
const sub = client.subscribe({ query: doc("BalanceUpdated"), variables: { walletId: wallet.id } }).subscribe({
  next: (r) => events.push(r.data.balanceUpdated),
});
await new Promise((r) => setTimeout(r, 300));
await client.mutate({
  mutation: doc("Deposit"),
  variables: { input: { walletId: wallet.id, amount: "0.50" }, idempotencyKey: "apollo-live" },
});
for (let i = 0; i < 50 && events.length === 0; i++) await new Promise((r) => setTimeout(r, 100));
check(events.length === 1 && events[0].wallet.balance === "55.50" && events[0].delta === "0.50", `one live event: ${JSON.stringify(events)}`);
sub.unsubscribe();
await wsClient.dispose();
for (let i = 0; i < 30 && closeCode === null; i++) await new Promise((r) => setTimeout(r, 100));
check(closeCode === 1000, `graphql-ws saw close code ${closeCode}, not 1000`);
client.stop();
console.log("ok");
