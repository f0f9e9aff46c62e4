// Headless Chromium, driven by playwright-core, through real logins.
// Usage: node browser.mjs JSON  where JSON = {"logins": [{"name", "start"}...], "together":
// [[name...]...], "foreign": URL}. Prints {"name": "final page text", ...} as JSON.
import { chromium } from 'playwright-core';

const plan = JSON.parse(process.argv[2]);
const browser = await chromium.launch({
  executablePath: process.env.PWT_TEST_CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--host-resolver-rules=MAP rebound.test 127.0.0.1'],
});

// Goes through whatever the provider shows (a login form, a consent screen, or nothing when
// the browser has a session already) until the app answers.
async function login(page, start) {
  await page.goto(start, { waitUntil: 'domcontentloaded' });
  const deadline = Date.now() + 30000;
  while (Date.now() < deadline) {
    const text = await page.innerText('body').catch(() => '');
    if (/logged in|no login session|Unroutable|Misdirected|: /.test(text) && !/Sign-in|Authorize/.test(text)) {
      return `${new URL(page.url()).host} ${text.trim()}`;
    }
    if (await page.$('input[name=login]')) {
      await page.fill('input[name=login]', 'alice');
      await page.fill('input[name=password]', 'pw');
      await Promise.all([page.waitForNavigation({ waitUntil: 'domcontentloaded' }).catch(() => {}), page.click('button[type=submit]')]);
    } else if (await page.$('button[autofocus]')) {
      await Promise.all([page.waitForNavigation({ waitUntil: 'domcontentloaded' }).catch(() => {}), page.click('button[autofocus]')]);
    } else {
      await page.waitForTimeout(100);
    }
  }
  return `timed out at ${page.url()}: ${(await page.innerText('body').catch(() => '')).slice(0, 200)}`;
}

const out = {};
// One at a time, each in a fresh context.
for (const l of plan.logins) {
  const context = await browser.newContext();
  try { out[l.name] = await login(await context.newPage(), l.start); } catch (e) { out[l.name] = `failed: ${e.message.split('\n')[0]}`; }
  await context.close();
}
// At the same time, in one browser profile (one cookie jar).
// Logins at the same moment through the one callback, each in a browser session of its own:
// oidc-provider binds a code to the session's latest grant for the client, so two logins of
// one client racing in one browser session can void the first code whatever routes them.
for (const group of plan.together || []) {
  const contexts = await Promise.all(group.map(() => browser.newContext()));
  const pages = await Promise.all(contexts.map((c) => c.newPage()));
  const results = await Promise.all(group.map((l, i) => login(pages[i], l.start).catch(e => `failed: ${e.message.split('\n')[0]}`)));
  group.forEach((l, i) => { out[l.name] = results[i]; });
  await Promise.all(contexts.map((c) => c.close()));
}
// Visits in order in one browser profile (one cookie jar), each page's text.
if (plan.visits) {
  const context = await browser.newContext();
  const page = await context.newPage();
  for (const v of plan.visits) {
    try {
      await page.goto(v.url, { waitUntil: 'domcontentloaded' });
      out[v.name] = (await page.innerText('body')).trim();
    } catch (e) { out[v.name] = `failed: ${e.message.split('\n')[0]}`; }
  }
  await context.close();
}
// The same in browser profiles of their own (persistent contexts in the given directories:
// each worktree's PWT_BROWSER_PROFILE), one after the other.
for (const p of plan.profiles || []) {
  const context = await chromium.launchPersistentContext(p.dir, {
    executablePath: process.env.PWT_TEST_CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run'],
  });
  const page = await context.newPage();
  for (const v of p.visits) {
    try {
      await page.goto(v.url, { waitUntil: 'domcontentloaded' });
      out[v.name] = (await page.innerText('body')).trim();
    } catch (e) { out[v.name] = `failed: ${e.message.split('\n')[0]}`; }
  }
  await context.close();
}
if (plan.foreign) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const resp = await page.goto(plan.foreign, { waitUntil: 'domcontentloaded' });
  out.foreign = `${resp.status()} ${(await page.innerText('body')).trim()}`;
  await context.close();
}
await browser.close();
console.log(JSON.stringify(out));
