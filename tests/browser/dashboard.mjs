// Drives Debian's Chromium through the dashboard as an operator would:
// an unauthenticated request is refused, the one-time link logs in, the
// overview shows the agent count and each authority's time left, an agent
// page opens from the agents list, and the used link no longer works.
// Prints one JSON object (what it saw) on stdout; the Rust test
// (tests/tests/dashboard.rs) compares it with the CLI's --output json.
//
// Usage: node dashboard.mjs LOGIN_URL SCREENSHOT_PATH
// NODE_PATH must name the node_modules holding playwright-core.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { chromium } = require('playwright-core');

const [loginUrl, screenshot] = process.argv.slice(2);
const base = new URL(loginUrl).origin;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});
const out = { pages: {} };
try {
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  const page = await context.newPage();

  const before = await page.goto(`${base}/ui`);
  out.unauthenticated_status = before.status();

  await page.goto(loginUrl);
  out.after_login_url = page.url();
  out.agents_total = Number(await page.textContent('#agents-total'));
  out.authorities = await page.$$eval('tr[data-authority-id]', (rows) =>
    rows.map((r) => ({
      id: r.dataset.authorityId,
      kind: r.dataset.kind,
      state: r.dataset.state,
      not_after: Number(r.dataset.notAfter),
      time_left: r.querySelector('.time-left').textContent,
    })));
  out.chart = (await page.$('#issuance-chart')) !== null;
  out.pages.overview = await page.content();
  await page.screenshot({ path: screenshot, fullPage: true });

  await page.click('header a[href="/ui/agents"]');
  out.pages.agents = await page.content();
  await page.click('a.agent');
  out.agent_page_id = await page.textContent('#agent-id');
  out.pages.agent = await page.content();
  for (const name of ['entries', 'audit', 'anomalies']) {
    await page.goto(`${base}/ui/${name}`);
    out.pages[name] = await page.content();
    if (name === 'audit') out.chain_status = await page.textContent('#chain-status');
  }

  // The link was spent: a second browser cannot use it.
  const other = await browser.newContext({ ignoreHTTPSErrors: true });
  const again = await (await other.newPage()).goto(loginUrl);
  out.reused_link_status = again.status();
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(out));
