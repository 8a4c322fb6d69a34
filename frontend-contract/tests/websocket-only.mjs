// A client that works as a React Native app may: every operation over the
// WebSocket (graphql-ws), no streaming HTTP. When its access token expires
// the server closes the socket with 4403; the client refreshes its session
// (refreshSession, a plain request) in connectionParams, graphql-ws
// reconnects and resubscribes, and a live subscription keeps delivering.
// Usage: node tests/websocket-only.mjs <http url of /graphql>. Prints "ok".
import { createClient } from "graphql-ws";
import WebSocket from "ws";
import { check, documentText, sleep } from "./contract.mjs";

const url = process.argv[2];
const doc = documentText;

// The session, and how a refresh is done (a plain, non-streaming request).
const post = async (query, variables) => {
  const res = await fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ query, variables }) });
  return res.json();
};
const email = `ws-only-${Date.now()}@example.com`;
const reg = await post(doc("Register"), { input: { email, password: "correct horse battery", displayName: "Native" } });
let session = reg.data.register;
let refreshes = 0;
let needsRefresh = false;
const closes = [];

const client = createClient({
  url: url.replace(/^http/, "ws") + "/ws",
  webSocketImpl: WebSocket,
  retryAttempts: 5,
  retryWait: () => sleep(200),
  shouldRetry: () => true,
  connectionParams: async () => {
    if (needsRefresh) {
      const r = await post(doc("RefreshSession"), { refreshToken: session.refreshToken });
      check(r.data?.refreshSession, `refresh failed: ${JSON.stringify(r)}`);
      session = r.data.refreshSession;
      refreshes++;
      needsRefresh = false;
    }
    return { authorization: `Bearer ${session.accessToken}` };
  },
  on: {
    closed: (event) => {
      closes.push(event.code);
      if (event.code === 4403) needsRefresh = true;
    },
  },
});

/** One query or mutation over the socket. */
const run = async (query, variables) => {
  const result = await client.iterate({ query, variables }).next();
  check(!result.value.errors, JSON.stringify(result.value.errors));
  return result.value.data;
};

const me = await run(doc("Me"), {});
check(me.me.email === email, "Me over the WebSocket");
const wallet = (await run(doc("OpenWallet"), { currency: "EUR" })).openWallet;
const events = [];
const stop = client.subscribe(
  { query: doc("BalanceUpdated"), variables: { walletId: wallet.id } },
  { next: (r) => r.data && events.push(r.data.balanceUpdated), error: (e) => events.push({ error: e }), complete: () => {} },
);
await sleep(300);
await run(doc("Deposit"), { input: { walletId: wallet.id, amount: "5.00" }, idempotencyKey: "ws-1" });
for (let i = 0; i < 50 && events.length < 1; i++) await sleep(100);
check(events[0]?.wallet?.balance === "5.00", `first event: ${JSON.stringify(events)}`);

// The access token expires: 4403, refresh, reconnect, resubscribe.
for (let i = 0; i < 100 && refreshes === 0; i++) await sleep(100);
check(closes.includes(4403), `the server closed with 4403: ${closes}`);
check(refreshes === 1, `one refresh, not ${refreshes}`);
await sleep(500);
await run(doc("Deposit"), { input: { walletId: wallet.id, amount: "2.50" }, idempotencyKey: "ws-2" });
for (let i = 0; i < 50 && events.length < 2; i++) await sleep(100);
check(events[1]?.wallet?.balance === "7.50", `the subscription delivers after the reconnect: ${JSON.stringify(events)}`);
stop();
await client.dispose();
console.log("ok");
