// Local OpenID Connect provider for wallet-bff integration tests.
//
// All protocol handling (discovery, /auth, PKCE S256, client authentication,
// /token, /me userinfo, id_token signing) is done by `oidc-provider` (panva,
// OpenID certified). The only custom code here is configuration and a
// non-interactive "interaction" endpoint that logs in + consents on behalf of
// the user named in the authorization request:
//
//   login_hint=<email>            email claim (default johndoe@example.com)
//   x_email_verified=true|false   email_verified claim (default true)
//   x_sub=<sub>                   subject (default "u-" + sha256(email)[0..24])
//
// Usage: node server.mjs [port]   (or OIDC_PORT; 0/unset = free port)
// Prints exactly one line to stdout once ready:  listening on http://127.0.0.1:PORT
// Env: OIDC_CLIENT_ID (wallet-bff), OIDC_CLIENT_SECRET (wallet-bff-secret),
//      OIDC_TOKEN_AUTH_METHOD (client_secret_basic | client_secret_post),
//      OIDC_REDIRECT_URIS (comma-separated exact list; unset = any
//      http://127.0.0.1:* / http://localhost:* URI is accepted).
//
// GET /_test/token-client-auth answers how the client presented its secret
// at the last token request: "header" (HTTP Basic) or "body" (oidc-provider
// itself accepts either for a client_secret_* client).
import { createHash, generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

const HOST = '127.0.0.1';
const port = Number(process.argv[2] ?? process.env.OIDC_PORT ?? 0);
const clientId = process.env.OIDC_CLIENT_ID ?? 'wallet-bff';
const clientSecret = process.env.OIDC_CLIENT_SECRET ?? 'wallet-bff-secret';
const authMethod = process.env.OIDC_TOKEN_AUTH_METHOD ?? 'client_secret_basic';
const exactRedirectUris = (process.env.OIDC_REDIRECT_URIS ?? '')
  .split(',').map((s) => s.trim()).filter(Boolean);

// sub -> { email, email_verified }; filled by the interaction endpoint.
const accounts = new Map();

const server = createServer();
await new Promise((resolve) => server.listen(port, HOST, resolve));
const issuer = `http://${HOST}:${server.address().port}`;

const signingKey = generateKeyPairSync('rsa', { modulusLength: 2048 })
  .privateKey.export({ format: 'jwk' });

const provider = new Provider(issuer, {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    token_endpoint_auth_method: authMethod,
    grant_types: ['authorization_code'],
    response_types: ['code'],
    redirect_uris: exactRedirectUris.length ? exactRedirectUris : ['http://127.0.0.1/callback'],
  }],
  jwks: { keys: [{ ...signingKey, use: 'sig', alg: 'RS256' }] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  pkce: { required: () => true }, // S256 only (oidc-provider default methods)
  claims: { openid: ['sub'], email: ['email', 'email_verified'] },
  conformIdTokenClaims: false, // also put scope claims (email...) into the id_token
  extraParams: ['x_email_verified', 'x_sub'],
  features: { devInteractions: { enabled: false } },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  findAccount: (ctx, sub) => {
    const account = accounts.get(sub);
    if (!account) return undefined;
    return { accountId: sub, claims: () => ({ sub, ...account }) };
  },
});

if (!exactRedirectUris.length) {
  provider.Client.prototype.redirectUriAllowed = function loopbackRedirectUriAllowed(value) {
    const url = URL.parse(value);
    return url !== null && url.protocol === 'http:'
      && ['127.0.0.1', 'localhost'].includes(url.hostname) && url.hash === '';
  };
}

// Non-interactive login + consent: the "user" is taken from the request params.
async function autoApprove(req, res) {
  const { params, grantId } = await provider.interactionDetails(req, res);
  const email = params.login_hint ?? 'johndoe@example.com';
  const sub = params.x_sub ?? `u-${createHash('sha256').update(email).digest('hex').slice(0, 24)}`;
  accounts.set(sub, { email, email_verified: params.x_email_verified !== 'false' });

  const existing = grantId ? await provider.Grant.find(grantId) : undefined;
  const grant = existing?.accountId === sub
    ? existing
    : new provider.Grant({ accountId: sub, clientId: params.client_id });
  grant.addOIDCScope(params.scope);
  await provider.interactionFinished(req, res, {
    login: { accountId: sub },
    consent: { grantId: await grant.save() },
  }, { mergeWithLastSubmission: false });
}

// Surface the (otherwise hidden) reasons of protocol errors on stderr for test debugging.
for (const event of ['authorization.error', 'grant.error', 'userinfo.error', 'server_error']) {
  provider.on(event, (ctx, err) => {
    console.error(`[oidc] ${event}: ${err.message}${err.error_detail ? ` (${err.error_detail})` : ''}`);
  });
}

let lastTokenClientAuth = 'none';

const callback = provider.callback();
server.on('request', (req, res) => {
  if (req.method === 'POST' && req.url.startsWith('/token')) {
    lastTokenClientAuth = req.headers.authorization ? 'header' : 'body';
  }
  if (req.method === 'GET' && req.url === '/_test/token-client-auth') {
    res.setHeader('content-type', 'text/plain');
    res.end(lastTokenClientAuth);
    return;
  }
  if (req.method === 'GET' && req.url.startsWith('/interaction/')) {
    autoApprove(req, res).catch((err) => {
      res.statusCode = 400;
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ error: err.name, error_description: err.message }));
    });
    return;
  }
  callback(req, res);
});

const shutdown = () => server.close(() => process.exit(0));
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);

process.stdout.write(`listening on ${issuer}\n`);
