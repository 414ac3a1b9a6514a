// The dashboard in a real browser: Debian's Chromium, headless, driven by
// playwright-core against the real `agent-factory serve` (replay provider, data
// in a temp dir, 127.0.0.1 only). Run by ctest as browser.dashboard:
//   AF_BINARY=build/agent-factory AF_SOURCE_DIR=. AF_ARTIFACT_DIR=build/test-artifacts \
//     node --test tests/browser/dashboard.test.mjs
// Screenshots land in AF_ARTIFACT_DIR (dashboard-home.png, dashboard-feature.png).
import {after, before, test} from 'node:test';
import assert from 'node:assert/strict';
import {execFileSync, spawn} from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

const BINARY = process.env.AF_BINARY && path.resolve(process.env.AF_BINARY);
const SOURCE_DIR = process.env.AF_SOURCE_DIR && path.resolve(process.env.AF_SOURCE_DIR);
const ARTIFACT_DIR = process.env.AF_ARTIFACT_DIR || os.tmpdir();
const CHROMIUM = process.env.AF_CHROMIUM || '/usr/bin/chromium';

let chromium;
try {
  ({chromium} = await import('playwright-core'));
} catch (err) {
  throw new Error('playwright-core is not installed in tests/browser (' + err.message +
                  '): run scripts/setup (or: cd tests/browser && npm ci)');
}
if (!BINARY || !SOURCE_DIR) throw new Error('set AF_BINARY and AF_SOURCE_DIR (ctest does)');
if (!fs.existsSync(CHROMIUM)) {
  throw new Error(CHROMIUM + ' not found: run scripts/setup (installs Debian\'s chromium)');
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => { const {port} = s.address(); s.close(() => resolve(port)); });
  });
}

async function waitFor(what, fn, ms = 20000) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    try { if (await fn()) return; } catch (err) { last = err; }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('timed out waiting for ' + what + (last ? ': ' + last.message : ''));
}

let dir, server, serverLog = '', base, adminKey, browser;

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'af-browser-'));
  const port = await freePort();
  base = 'http://127.0.0.1:' + port;
  const env = Object.assign({}, process.env, {AF_PORT: String(port), AF_HOST: '127.0.0.1',
                                              AF_DATA_DIR: path.join(dir, 'data'), AF_LOG: 'warn'});
  for (const k of ['DATABASE_URL', 'REDIS_URL', 'AF_LLM_PROVIDER', 'ANTHROPIC_API_KEY',
                   'OPENAI_API_KEY', 'AF_CONFIG_DIR']) delete env[k];
  server = spawn(BINARY, ['serve'], {cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe']});
  server.on('error', (err) => { serverLog += 'cannot start ' + BINARY + ': ' + err.message; });
  server.stdout.on('data', (d) => { serverLog += d; });
  server.stderr.on('data', (d) => { serverLog += d; });
  await waitFor('the server on ' + base, async () => {
    if (server.exitCode !== null || server.pid === undefined) {
      throw new Error('serve exited: ' + serverLog);
    }
    return (await fetch(base + '/health/live')).ok;
  });
  adminKey = fs.readFileSync(path.join(dir, 'data', 'admin.key'), 'utf8').trim();
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // Without the background-networking flags Chromium keeps dialling Google
    // hosts this machine cannot reach.
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  if (browser) await browser.close();
  if (server && server.exitCode === null) {
    server.kill('SIGTERM');
    await new Promise((r) => server.once('exit', r));
  }
  if (dir) fs.rmSync(dir, {recursive: true, force: true});
});

// A fresh browser profile (empty localStorage) whose page errors fail the test.
async function newPage() {
  const context = await browser.newContext({viewport: {width: 1280, height: 900}});
  const page = await context.newPage();
  page.jsErrors = [];
  page.on('pageerror', (err) => page.jsErrors.push(err.message));
  return page;
}

async function apiPost(pathname, body, type) {
  const r = await fetch(base + pathname, {method: 'POST', body,
    headers: {'Authorization': 'Bearer ' + adminKey, 'Content-Type': type}});
  return {status: r.status, body: await r.json()};
}

test('asks for a key, refuses a wrong one, and keeps a good one', async () => {
  const page = await newPage();
  await page.goto(base + '/');
  await page.locator('#key-panel').waitFor({state: 'visible'});
  assert.equal(await page.locator('#home-view').isVisible(), false, 'home shown without a key');

  await page.fill('#key-input', 'af_' + 'x'.repeat(43));
  await page.click('#key-save');
  await page.locator('#key-error').filter({hasText: 'refused'}).waitFor();
  assert.equal(await page.locator('#home-view').isVisible(), false);

  await page.fill('#key-input', adminKey);
  await page.click('#key-save');
  await page.locator('#agents tbody tr').first().waitFor();
  assert.equal(await page.locator('#key-panel').isVisible(), false);
  // "API key" opens the panel; the current key can be kept without a reload.
  await page.click('#key-change');
  await page.locator('#key-panel').waitFor({state: 'visible'});
  assert.equal(await page.locator('#live').textContent(), 'live: off');
  await page.click('#key-keep');
  await page.locator('#live.live').waitFor();
  assert.equal(await page.locator('#key-panel').isVisible(), false);
  assert.equal(await page.locator('#home-view').isVisible(), true);
  // Kept in the browser: a new visit needs no key.
  await page.goto(base + '/');
  await page.locator('#agents tbody tr').first().waitFor();
  assert.equal(await page.locator('#key-panel').isVisible(), false);
  assert.deepEqual(page.jsErrors, []);
  await page.context().close();
});

test('/?token=KEY is stored and taken out of the address bar', async () => {
  const page = await newPage();
  await page.goto(base + '/?token=' + encodeURIComponent(adminKey));
  await page.locator('#agents tbody tr').first().waitFor();
  assert.equal(new URL(page.url()).searchParams.get('token'), null, 'key left in the URL');
  assert.equal(await page.evaluate(() => localStorage.getItem('agent-factory.api-key')), adminKey);
  // All seven roles are listed, with live states.
  await waitFor('seven agents', async () => (await page.locator('#agents tbody tr').count()) === 7);
  const roles = await page.locator('#agents tbody tr').evaluateAll(
      (rows) => rows.map((r) => r.dataset.role).sort());
  assert.deepEqual(roles, ['coder', 'coordinator', 'devops', 'optimizer', 'planner', 'reviewer',
                           'tester']);
  const states = await page.locator('#agents tbody tr').evaluateAll(
      (rows) => rows.map((r) => r.dataset.state));
  for (const s of states) assert.ok(['running', 'idle', 'busy'].includes(s), 'state ' + s);
  assert.match(await page.locator('#health').textContent(), /healthy/);
  assert.match(await page.locator('#system').textContent(), /database\s*healthy/);
  // A feature that does not exist is said so, on its page.
  await page.goto(base + '/#/features/f-doesnotexist');
  await page.locator('#feature-reason').filter({hasText: 'There is no feature f-doesnotexist'})
      .waitFor();
  assert.deepEqual(page.jsErrors, []);
  await page.context().close();
});

test('a vague PRP is refused with the work plan issues and creates nothing', async () => {
  const page = await newPage();
  await page.goto(base + '/?token=' + encodeURIComponent(adminKey));
  await page.locator('#agents tbody tr').first().waitFor();
  const before = (await (await fetch(base + '/api/v1/features',
      {headers: {'Authorization': 'Bearer ' + adminKey}})).json()).pagination.total;
  await page.fill('#prp-text', '# Make it better\n\nImprove the app.\n');
  await page.click('#prp-submit');
  const result = page.locator('#submit-result');
  await result.locator('.error').waitFor();
  assert.match(await result.textContent(), /Work plan challenged/i);
  assert.ok((await result.locator('ul.issues li').count()) > 0, 'no issues listed');
  assert.equal(new URL(page.url()).hash, '', 'navigated away on a refusal');
  const afterTotal = (await (await fetch(base + '/api/v1/features',
      {headers: {'Authorization': 'Bearer ' + adminKey}})).json()).pagination.total;
  assert.equal(afterTotal, before);
  await page.context().close();
});

test('submitting an example PRP shows it run to completed, live', async () => {
  const page = await newPage();
  await page.goto(base + '/?token=' + encodeURIComponent(adminKey));
  await page.locator('#agents tbody tr').first().waitFor();
  await page.locator('#live.live').waitFor();
  // A marker that a reload would wipe: everything below must arrive live.
  await page.evaluate(() => { window.noReload = true; });

  const prp = fs.readFileSync(path.join(SOURCE_DIR, 'examples/prp/python-slugify.md'), 'utf8');
  await page.fill('#prp-text', prp);
  await page.click('#prp-submit');
  await page.waitForURL(/#\/features\/f-/);
  const id = decodeURIComponent(new URL(page.url()).hash.replace('#/features/', ''));
  const view = page.locator('#feature-view');
  await page.locator(`#feature-view[data-feature-id="${id}"]`).waitFor();
  await page.locator('#feature-view[data-status="completed"]').waitFor({timeout: 120000});

  // The task graph: every task completed; the events arrived over SSE.
  const tasks = page.locator('#task-graph g.task');
  assert.ok((await tasks.count()) >= 1, 'no tasks in the graph');
  await waitFor('all tasks completed in the graph', async () =>
      (await tasks.evaluateAll((g) => g.every((n) => n.dataset.status === 'completed'))));
  await waitFor('the events up to completed', async () =>
      (await page.locator('#event-log li[data-type="feature.status"]').filter(
          {hasText: '→ completed'}).count()) === 1);
  for (const type of ['feature.created', 'task.created', 'llm.call', 'tool.call', 'gate.result',
                      'review.verdict']) {
    assert.ok((await page.locator(`#event-log li[data-type="${type}"]`).count()) > 0,
              'no ' + type + ' event shown');
  }
  // Gates with their output, the review, the diff, tokens and cost.
  await page.locator('#gates details.gate.passed').first().waitFor();
  assert.match(await page.locator('#gates').textContent(), /unittest/);
  assert.match(await page.locator('#reviews').textContent(), /approve/);
  await page.locator('#diff .file').first().waitFor();
  assert.match(await page.locator('#diff').textContent(), /\+\+\+ b\/textkit\/slug\.py/);
  const usage = await page.locator('#usage').textContent();
  assert.match(usage, /Model calls\s*[1-9]/);
  assert.match(usage, /Input tokens\s*[1-9]/);
  assert.match(await page.locator('#usage-cost').textContent(), /^\$\d+\.\d{4}$/);
  // The first task's details open on a click.
  await tasks.first().click();
  assert.match(await page.locator('#task-detail').textContent(), /Result:/);
  // No "null"/"undefined"/"NaN" leaks into the page (the diff and the raw
  // event log may legitimately contain such words).
  const prose = await page.evaluate(() => {
    const copy = document.getElementById('feature-view').cloneNode(true);
    for (const sel of ['#diff', '#event-log', 'pre']) copy.querySelectorAll(sel).forEach((n) => n.remove());
    return copy.textContent;
  });
  assert.doesNotMatch(prose, /\bnull\b|\bundefined\b|\bNaN\b|\[object Object\]/);
  await page.screenshot({path: path.join(ARTIFACT_DIR, 'dashboard-feature.png'), fullPage: true});

  // Back on the list, the feature is there with its stages all done. The list
  // drawn before the feature page may show for a moment: the one fetched on
  // the way back replaces it.
  await page.click('text=← all features');
  const row = page.locator(`#features tr[data-feature-id="${id}"][data-status="completed"]`);
  await row.waitFor({timeout: 5000});
  assert.equal(await row.locator('.stage.done').count(), 7);
  assert.equal(await page.evaluate(() => window.noReload), true, 'the page reloaded');
  assert.deepEqual(page.jsErrors, []);
  await page.context().close();
});

test('the home page follows a feature submitted elsewhere, without a reload', async () => {
  const page = await newPage();
  await page.goto(base + '/?token=' + encodeURIComponent(adminKey));
  await page.locator('#live.live').waitFor();
  await page.evaluate(() => { window.noReload = true; });
  const prp = fs.readFileSync(path.join(SOURCE_DIR, 'examples/prp/shell-wordfreq.md'), 'utf8');
  const posted = await apiPost('/api/v1/features', prp, 'text/markdown');
  assert.equal(posted.status, 201, JSON.stringify(posted.body));
  const row = page.locator(`#features tr[data-feature-id="${posted.body.id}"]`);
  await row.waitFor();
  await page.locator(`#features tr[data-feature-id="${posted.body.id}"][data-status="completed"]`)
      .waitFor({timeout: 120000});
  assert.equal(await page.evaluate(() => window.noReload), true, 'the page reloaded');

  // What the agents learned is searchable.
  await page.fill('#memory-query', 'wordfreq');
  await page.click('#memory-search');
  await page.locator('#memory-results li[data-memory-id]').first().waitFor();
  assert.match(await page.locator('#memory-results').textContent(), /wordfreq/);

  // The screenshot shows the agents and the features, both in view.
  await page.evaluate(() => window.scrollTo(0, 0));
  const shot = path.join(ARTIFACT_DIR, 'dashboard-home.png');
  await page.screenshot({path: shot, fullPage: true});
  assert.ok(fs.statSync(shot).size > 20000, 'the screenshot is nearly empty');
  for (const sel of ['#agents tbody tr[data-role="coder"]', `#features tr[data-feature-id="${posted.body.id}"]`]) {
    // Live events redraw the tables: a row can be replaced between finding it
    // and measuring it (boundingBox is then null), so measure until it holds.
    await waitFor(sel + ' drawn', async () => {
      const box = await page.locator(sel).boundingBox();
      return box && box.width > 0 && box.height > 0;
    }, 5000);
  }
  assert.deepEqual(page.jsErrors, []);
  await page.context().close();
});

async function apiGet(pathname) {
  const r = await fetch(base + pathname, {headers: {'Authorization': 'Bearer ' + adminKey}});
  return r.json();
}

// A feature the replay provider cannot plan: it fails at once, with "error" events.
async function submitFailing(title) {
  const posted = await apiPost('/api/v1/features', JSON.stringify(
      {title, description: 'nothing recorded for this', challenge_vague_requirements: false}),
      'application/json');
  assert.equal(posted.status, 201, JSON.stringify(posted.body));
  return posted.body.id;
}

test('memory search shows documents and memories with source and score; a memory opens its links', async () => {
  const doc = await apiPost('/api/v1/knowledge', JSON.stringify(
      {source: 'docs/kiwi-release.md', content: '# Release\n\nKiwi releases are tagged kiwi-vN and signed.'}),
      'application/json');
  assert.equal(doc.status, 201, JSON.stringify(doc.body));
  const first = await apiPost('/api/v1/memories', JSON.stringify(
      {content: 'Kiwi release tags are signed with the project key', type: 'constraint',
       importance: 8}), 'application/json');
  assert.equal(first.status, 201, JSON.stringify(first.body));
  const second = await apiPost('/api/v1/memories', JSON.stringify(
      {content: 'Kiwi release notes come from the changelog', type: 'code_pattern',
       links: [{to: first.body.id, type: 'relates_to', strength: 0.8}]}), 'application/json');
  assert.equal(second.status, 201, JSON.stringify(second.body));

  const page = await newPage();
  await page.goto(base + '/?token=' + encodeURIComponent(adminKey));
  await page.locator('#live.live').waitFor();
  await page.fill('#memory-query', 'kiwi release');
  await page.click('#memory-search');
  const chunk = page.locator('#memory-results li[data-kind="chunk"]').first();
  await chunk.waitFor();
  assert.match(await chunk.textContent(), /docs\/kiwi-release\.md/);
  assert.match(await chunk.textContent(), /score \d\.\d\d/);
  const mem = page.locator(`#memory-results li[data-memory-id="${second.body.id}"]`);
  await mem.waitFor();
  assert.match(await mem.textContent(), /memory · code_pattern/);
  await mem.click();
  const link = mem.locator(`.memory-links li[data-link-to="${first.body.id}"]`);
  await link.waitFor();
  assert.match(await link.textContent(), /relates_to \(0\.80\) Kiwi release tags are signed/);
  assert.deepEqual(page.jsErrors, []);
  await page.context().close();
});

test('a read-only key sees features, is told about agents once, and does not retry', async () => {
  const made = await apiPost('/api/v1/auth/api-keys',
                             JSON.stringify({name: 'viewer', permissions: ['features:read']}),
                             'application/json');
  assert.equal(made.status, 201, JSON.stringify(made.body));
  const page = await newPage();
  let agentCalls = 0;
  page.on('request', (r) => { if (new URL(r.url()).pathname === '/api/v1/agents') ++agentCalls; });
  await page.goto(base + '/?token=' + encodeURIComponent(made.body.key));
  await page.locator('#features tbody tr').first().waitFor();
  await page.locator('#agents-empty').filter({hasText: 'agents:read'}).waitFor();
  const before = agentCalls;
  const id = await submitFailing('events for a viewer');
  await page.locator(`#features tr[data-feature-id="${id}"][data-status="failed"]`).waitFor();
  assert.equal(agentCalls, before, 'GET /agents was retried on every event after a 403');
  assert.deepEqual(page.jsErrors, []);
  await page.context().close();
});

test('a pipeline "error" event is not a lost connection', async () => {
  const page = await newPage();
  await page.goto(base + '/?token=' + encodeURIComponent(adminKey));
  await page.locator('#live.live').waitFor();
  const id = await submitFailing('fails at once');
  await page.locator(`#features tr[data-feature-id="${id}"][data-status="failed"]`).waitFor();
  assert.equal(await page.locator('#live').textContent(), 'live');
  assert.deepEqual(page.jsErrors, []);
  await page.context().close();
});

test('a feature page shows nothing of the feature shown before it', async () => {
  const page = await newPage();
  await page.goto(base + '/?token=' + encodeURIComponent(adminKey));
  await page.locator('#agents tbody tr').first().waitFor();
  const done = (await apiGet('/api/v1/features?status=completed&limit=1')).features[0];
  assert.ok(done, 'no completed feature (the earlier tests make some)');
  const failed = await submitFailing('fails, no gates');
  await page.goto(base + '/#/features/' + done.id);
  await page.locator('#gates details.gate').first().waitFor();
  await page.locator('#reviews .review').first().waitFor();
  // Task details open from the keyboard too.
  await page.locator('#task-graph g.task').first().focus();
  await page.keyboard.press('Enter');
  assert.match(await page.locator('#task-detail').textContent(), /Result:/);

  await page.evaluate((id) => { location.hash = '#/features/' + id; }, failed);
  await page.locator(`#feature-view[data-feature-id="${failed}"][data-status="failed"]`).waitFor();
  assert.equal(await page.locator('#gates details.gate').count(), 0, 'gates of the other feature');
  assert.equal(await page.locator('#reviews .review').count(), 0, 'review of the other feature');
  assert.doesNotMatch(await page.locator('#diff-info').textContent(), /branch/,
                      'a feature that failed in planning has no branch');
  // Where it stopped and why, with what to do, not just "agent_error".
  const reason = await page.locator('#feature-reason').textContent();
  assert.match(reason, /^failed while planning \(agent_error\): .*replay/, reason);
  assert.equal(await page.locator('#feature-progress .stage.stopped').count(), 1);
  assert.equal(await page.locator('#feature-progress .stage.done').count(), 1);  // queued
  // Retry takes it up again where it stopped (planning); the replay provider
  // still has no answer, so it fails there again, and the events show both.
  assert.equal(await page.locator('#feature-cancel').isHidden(), true);
  await page.locator('#feature-retry').click();
  const status = page.locator('#event-log li[data-type="feature.status"]');
  await status.filter({hasText: 'failed → planning'}).waitFor();
  await waitFor('the retried feature to fail again',
                async () => (await status.filter({hasText: 'planning → failed'}).count()) === 2);
  await page.locator(`#feature-view[data-feature-id="${failed}"][data-status="failed"]`).waitFor();
  assert.equal(await page.locator('#feature-action-error').textContent(), '');

  // A link that does not decode is a feature that does not exist, not a
  // script error leaving the previous page's title.
  await page.evaluate(() => { location.hash = '#/features/%E0%A4%A'; });
  await page.locator('#feature-reason').filter({hasText: 'There is no feature'}).waitFor();
  assert.notEqual(await page.locator('#feature-title').textContent(), failed);
  await page.evaluate(() => { location.hash = '#/features/f-doesnotexist'; });
  await page.locator('#feature-reason').filter({hasText: 'There is no feature f-doesnotexist'})
      .waitFor();
  assert.equal(await page.locator('#feature-status').textContent(), '');
  assert.equal(await page.locator('#feature-meta').textContent(), '');
  assert.equal(await page.locator('#usage .card').count(), 0);
  assert.deepEqual(page.jsErrors, []);
  await page.context().close();
});

test('a burst of features: one list request at a time, and every feature reachable', async () => {
  const page = await newPage();
  await page.goto(base + '/?token=' + encodeURIComponent(adminKey));
  await page.locator('#live.live').waitFor();
  let inFlight = 0;
  let most = 0;
  const isList = (r) => new URL(r.url()).pathname === '/api/v1/features' && r.method() === 'GET';
  page.on('request', (r) => { if (isList(r)) most = Math.max(most, ++inFlight); });
  page.on('requestfinished', (r) => { if (isList(r)) inFlight--; });
  page.on('requestfailed', (r) => { if (isList(r)) inFlight--; });
  const ids = await Promise.all(Array.from({length: 55}, (_, i) => submitFailing('burst ' + i)));
  await waitFor('the burst listed', async () =>
      (await page.locator('#features-count').textContent()).includes(' of '), 60000);
  assert.ok(most <= 1, most + ' feature list requests at once');
  const total = (await apiGet('/api/v1/features?limit=1')).pagination.total;
  assert.ok(total > 50);
  await page.click('#features-more');
  // As long as the listing above may take on a loaded machine: 55 features
  // failing at once send a stream of events, each redrawing the list.
  await waitFor('more rows', async () => (await page.locator('#features tbody tr').count()) > 50,
                60000);
  assert.ok(ids.length === 55);
  assert.deepEqual(page.jsErrors, []);
  await page.context().close();
});

test('a key the browser cannot send is refused as a key, not as a dead server', async () => {
  const page = await newPage();
  await page.goto(base + '/');
  await page.fill('#key-input', 'ключ');
  await page.click('#key-save');
  await page.locator('#key-error').filter({hasText: 'not an API key'}).waitFor();
  assert.deepEqual(page.jsErrors, []);
  await page.context().close();
});

test('fits a 400 px wide screen without sideways scrolling', async () => {
  const context = await browser.newContext({viewport: {width: 400, height: 800}});
  const page = await context.newPage();
  await page.goto(base + '/?token=' + encodeURIComponent(adminKey));
  await page.locator('#agents tbody tr').first().waitFor();
  await page.locator('#features tbody tr').first().waitFor();
  assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= 400),
            'the page is wider than the screen');
  await context.close();
});

test('the Workers panel shows each process running agents; a dead one turns offline, live', async () => {
  const page = await newPage();
  await page.goto(base + '/?token=' + encodeURIComponent(adminKey));
  // serve runs every agent itself here: one process, all seven roles.
  const own = page.locator(`#workers tbody tr[data-pid="${server.pid}"]`);
  await own.waitFor();
  assert.equal(await own.getAttribute('data-state'), 'running');
  assert.equal(await own.getAttribute('data-host'), os.hostname());
  assert.equal(await own.getAttribute('data-kind'), 'serve');
  const text = await own.textContent();
  assert.match(text, /serve: API, coordinator, planner, optimizer, coder, tester, reviewer, devops/);
  assert.match(text, /7 \/ 7/);
  assert.match(text, /s ago/);
  // A worker killed two minutes ago left its agent busy in the store (as kill
  // -9 does). serve marks it offline and announces it; the page, already
  // open, follows from that event (its periodic refresh is 10 s away).
  const beat = Date.now() - 120000;
  execFileSync('sqlite3', [path.join(dir, 'data', 'agent-factory.db'), '.timeout 10000',
    'INSERT INTO agents (id, role, state, last_heartbeat_ms, current_task, counters, host, pid) ' +
    `VALUES ('coder-ghost-4242-1', 'coder', 'busy', ${beat}, 't-1', '{}', 'ghost', 4242)`]);
  const ghost = page.locator(
      '#workers tbody tr[data-host="ghost"][data-pid="4242"][data-state="offline"]');
  await ghost.waitFor({timeout: 15000});
  assert.equal(await ghost.getAttribute('data-kind'), 'worker');
  assert.match(await ghost.textContent(), /worker: coder/);
  await page.locator('#agents tbody tr[data-agent-id="coder-ghost-4242-1"][data-state="offline"]')
      .waitFor({timeout: 15000});
  // Live processes are listed first.
  const order = await page.locator('#workers tbody tr').evaluateAll(
      (rows) => rows.map((r) => r.dataset.state));
  assert.deepEqual(order, ['running', 'offline']);
  assert.equal(await own.getAttribute('data-state'), 'running');
  assert.deepEqual(page.jsErrors, []);
  await page.context().close();
});
