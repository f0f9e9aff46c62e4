// A real OpenID Connect provider (panva's oidc-provider) with exactly one registered
// redirect URI: the proxy's callback. Usage: node provider.mjs PORT REDIRECT_URI
import Provider from 'oidc-provider';

const [port, redirectUri] = process.argv.slice(2);
const provider = new Provider(`http://localhost:${port}`, {
  clients: [{
    client_id: 'pwt-app',
    client_secret: 'pwt-secret',
    redirect_uris: [redirectUri],
    response_types: ['code'],
    grant_types: ['authorization_code'],
  }],
  pkce: { required: () => true },
  cookies: { keys: ['pwt-test-cookie-key'] },
  findAccount: async (ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
});
provider.on('server_error', (ctx, err) => console.error('provider error', err));
provider.listen(Number(port), '127.0.0.1', () => console.log('ready'));
