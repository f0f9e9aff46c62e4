// A worktree's app with an unmodified OAuth library (openid-client): code flow with PKCE and
// the library's own random state. It takes the redirect URI from OAUTH_REDIRECT_URI, as pwt's
// README tells apps to, and keeps its login session in a cookie of its own origin.
//   GET /login?mode=query|form_post[&prefix=1]  starts a login (prefix=1: state starts with
//                                                OAUTH_STATE_PREFIX, for logins started on
//                                                localhost:<port>, which the proxy never sees)
//   GET|POST /auth/callback                     finishes it: "logged in to <FEATURE> as <sub>"
//   GET /set                                    sets pref=<FEATURE> for Domain=localhost
//   GET /cookies                                "cookies: <the Cookie header it got>"
// APP_COOKIE_DOMAIN: the login session's cookie names that Domain too (a common dev
// setting that browsers drop on <slug>.localhost unless the proxy keeps it home).
import * as client from 'openid-client';
import http from 'node:http';
import crypto from 'node:crypto';

const feature = process.env.FEATURE;
const redirectUri = process.env.OAUTH_REDIRECT_URI;
const port = Number(process.env.FRONTEND_PORT);
const bind = process.env.APP_BIND || '127.0.0.1';
const config = await client.discovery(new URL(process.env.OIDC_ISSUER), 'pwt-app', 'pwt-secret',
  undefined, { execute: [client.allowInsecureRequests] });
const sessions = new Map();
// The worktree's name in the cookie, so worktrees opened on localhost:<port> (one cookie jar
// for every port) do not overwrite each other's.
const cookieName = `sid_${feature.replace(/[^a-z0-9]/g, '_')}`;

function sid(req) {
  const m = (req.headers.cookie || '').match(new RegExp(`${cookieName}=([a-f0-9]+)`));
  return m && m[1];
}

async function body(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  return Buffer.concat(chunks).toString();
}

http.createServer(async (req, res) => {
  try {
    const url = new URL(req.url, 'http://app');
    if (url.pathname === '/login') {
      const verifier = client.randomPKCECodeVerifier();
      const state = (url.searchParams.get('prefix') ? process.env.OAUTH_STATE_PREFIX : '') + client.randomState();
      const id = crypto.randomBytes(16).toString('hex');
      sessions.set(id, { verifier, state });
      const to = client.buildAuthorizationUrl(config, {
        redirect_uri: redirectUri,
        scope: 'openid',
        code_challenge: await client.calculatePKCECodeChallenge(verifier),
        code_challenge_method: 'S256',
        state,
        response_mode: url.searchParams.get('mode') || 'query',
      });
      // form_post comes back as a cross-site POST (from the provider's page), which carries
      // only SameSite=None cookies; browsers accept Secure on localhost names over http.
      const samesite = url.searchParams.get('mode') === 'form_post' ? 'None; Secure' : 'Lax';
      const domain = process.env.APP_COOKIE_DOMAIN ? `; Domain=${process.env.APP_COOKIE_DOMAIN}` : '';
      res.writeHead(302, { location: to.href, 'set-cookie': `${cookieName}=${id}; Path=/; HttpOnly; SameSite=${samesite}${domain}` });
      return res.end();
    }
    if (url.pathname === '/auth/callback') {
      const s = sessions.get(sid(req));
      if (!s) {
        res.writeHead(400);
        return res.end(`no login session of ${feature} (cookie ${cookieName} missing)`);
      }
      // The callback URL as registered, whatever Host the browser came back on.
      const current = new URL(url.pathname + url.search, redirectUri);
      const input = req.method === 'POST'
        ? new Request(current, { method: 'POST', headers: { 'content-type': req.headers['content-type'] }, body: await body(req) })
        : current;
      const tokens = await client.authorizationCodeGrant(config, input,
        { pkceCodeVerifier: s.verifier, expectedState: s.state });
      res.writeHead(200, { 'content-type': 'text/plain' });
      return res.end(`logged in to ${feature} as ${tokens.claims().sub}`);
    }
    if (url.pathname === '/set') {
      res.writeHead(200, { 'content-type': 'text/plain', 'set-cookie': `pref=${feature}; Domain=localhost; Path=/; Max-Age=3600` });
      return res.end(`set: pref=${feature}`);
    }
    if (url.pathname === '/cookies') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      return res.end(`cookies: ${(req.headers.cookie || '').split('; ').filter(c => c.startsWith('pref=')).join('; ') || 'none'}`);
    }
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(`app ${feature}`);
  } catch (e) {
    res.writeHead(500, { 'content-type': 'text/plain' });
    res.end(`${feature}: ${e.message} ${e.cause ? JSON.stringify(e.cause) : ''}`);
  }
}).listen(port, bind, () => console.log('ready'));
