// Agent Factory dashboard: one page, no build step, no third-party code.
// Reads the REST API (docs/API.md) with the key the user gave once (kept in
// localStorage), and stays current over the server-sent event streams: every
// event re-renders what it touches, so the page never reloads.
// All server text goes into the page through textContent (never innerHTML).
'use strict';

const KEY_STORAGE = 'agent-factory.api-key';
const STAGES = ['queued', 'planning', 'implementing', 'testing', 'reviewing', 'delivering',
                'completed'];
const TERMINAL = new Set(['completed', 'failed', 'cancelled']);
const MAX_EVENTS_SHOWN = 2000;
// Every event type the server sends (SSE "event:" names; EventSource needs a
// listener per name).
const EVENT_TYPES = ['feature.created', 'feature.status', 'task.created', 'task.status',
                     'agent.started', 'agent.heartbeat', 'agent.offline', 'llm.call',
                     'llm.circuit', 'llm.fallback', 'llm.rate_limited', 'tool.call', 'reply.refused', 'gate.result', 'review.verdict',
                     'memory.stored', 'context.summary', 'budget.warning', 'error'];
const MAX_DIFF_LINES = 6000;

const $ = (id) => document.getElementById(id);

// --- Elements ----------------------------------------------------------------

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k.startsWith('data-')) e.setAttribute(k, String(v));
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function svg(tag, attrs, ...children) {
  const e = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'text') e.textContent = v;
    else e.setAttribute(k, String(v));
  }
  for (const c of children) if (c) e.append(c);
  return e;
}

function badge(text, kind) {
  return el('span', {class: 'badge ' + (kind || text), text});
}

function ago(iso) {
  if (!iso) return 'never';
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (s < 60) return s + ' s ago';
  if (s < 3600) return Math.round(s / 60) + ' min ago';
  if (s < 86400) return Math.round(s / 3600) + ' h ago';
  return new Date(iso).toLocaleString();
}

function clip(s, n) {
  s = String(s ?? '');
  return s.length > n ? s.slice(0, n - 1) + '…' : s;
}

// Runs fn at most once per `ms` and never twice at once, always after the
// last call (trailing edge): a burst of events costs one request, not one each.
function throttle(fn, ms) {
  let busy = false;
  let again = false;
  return function run() {
    if (busy) { again = true; return; }
    busy = true;
    again = false;
    Promise.resolve().then(fn).finally(() => {
      setTimeout(() => { busy = false; if (again) run(); }, ms);
    });
  };
}

// --- The API key and requests ---------------------------------------------------

let apiKey = '';

function takeKeyFromUrl() {
  const url = new URL(location.href);
  const token = url.searchParams.get('token');
  if (!token) return;
  localStorage.setItem(KEY_STORAGE, token.trim());
  // Keep the key out of the address bar, history and bookmarks.
  url.searchParams.delete('token');
  history.replaceState(null, '', url.pathname + url.search + url.hash);
}

class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || ('HTTP ' + status));
    this.status = status;
    this.code = e.code || '';
    this.hint = e.hint || '';
    this.details = e.details;
  }
  describe() {
    return this.message + (this.hint ? ' — ' + this.hint : '');
  }
}

async function api(path, options = {}) {
  const headers = Object.assign({'Authorization': 'Bearer ' + apiKey}, options.headers || {});
  // A request that never answers must not hold back for good what waits for
  // it (the lists refresh one request at a time).
  const signal = options.signal || AbortSignal.timeout(30000);
  let response;
  try {
    response = await fetch(path, Object.assign({}, options, {headers, signal}));
  } catch (err) {
    throw new ApiError(0, {error: {message: 'the server did not answer (' + err.message + ')',
                                   hint: 'is agent-factory serve still running?'}});
  }
  let body = null;
  try { body = await response.json(); } catch (_) { /* not JSON */ }
  if (response.status === 401) {
    askForKey('The server refused the key: ' + new ApiError(401, body).describe());
  }
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

// `message` empty: the user asked to change a working key, which they may
// keep after all; otherwise the current key was refused.
function askForKey(message) {
  stopStreams();
  $('key-keep').hidden = !apiKey || !!message;
  $('key-error').textContent = message || '';
  $('key-panel').hidden = false;
  $('home-view').hidden = true;
  $('feature-view').hidden = true;
  $('key-input').focus();
}

async function useKey(key) {
  agentsForbidden = false;
  // fetch() refuses header values outside Latin-1 before anything is sent;
  // say so instead of "the server did not answer".
  if (!/^[\x21-\x7e]+$/.test(key)) {
    askForKey('That is not an API key: keys are "af_" followed by 64 hex digits (see ' +
              '<data_dir>/admin.key).');
    return false;
  }
  apiKey = key;
  try {
    await api('/api/v1/agents');
  } catch (err) {
    if (err.status === 401) return false;  // askForKey already showed why
    if (err.status !== 403) {               // a read-only key may lack agents:read
      askForKey(err.describe());
      return false;
    }
  }
  $('key-panel').hidden = true;
  startStreams();
  route();
  return true;
}

// --- Live events -----------------------------------------------------------------

let globalStream = null;
let featureStream = null;

function setLive(on, text) {
  $('live').textContent = text || (on ? 'live' : 'live: reconnecting');
  $('live').className = 'badge ' + (on ? 'live' : 'off');
}

// The event named "error" shares its name with EventSource's own connection
// error, which carries no data: only messages with data are events.
function parsed(handler) {
  return (m) => { if (typeof m.data === 'string') handler(JSON.parse(m.data)); };
}

function startStreams() {
  stopStreams();
  // No Last-Event-ID: only new events; the lists are read from the API.
  globalStream = new EventSource('/api/v1/events?access_token=' + encodeURIComponent(apiKey));
  // On (re)connecting, re-read what events may have changed while away.
  globalStream.onopen = () => { setLive(true); refreshAgents(); refreshFeatures(); refreshHealth(); };
  // onerror also receives the server's events named "error" (with data):
  // those are pipeline errors, not a lost connection.
  globalStream.onerror = (m) => {
    if (typeof m.data === 'string') return;
    setLive(false);
    refreshHealth();
  };
  globalStream.onmessage = parsed(onGlobalEvent);
  for (const type of EVENT_TYPES) globalStream.addEventListener(type, parsed(onGlobalEvent));
}

function stopStreams() {
  if (globalStream) globalStream.close();
  globalStream = null;
  setLive(false, 'live: off');
  closeFeatureStream();
}

function onGlobalEvent(e) {
  if (e.type.startsWith('agent.') || e.type === 'task.status' || e.type === 'llm.call') {
    refreshAgents();
  }
  // A worker starting, stopping or being found dead: its row changes.
  if (e.type === 'agent.started' || e.type === 'agent.offline') refreshWorkers();
  if (e.type.startsWith('feature.') || e.type === 'task.status') refreshFeatures();
  if (e.type === 'memory.stored') refreshMemory();
}

// --- Home: agents, features, submit, memory, system ----------------------------------

let agentsForbidden = false;  // the key lacks agents:read: stop asking on every event

const refreshAgents = throttle(async () => {
  if ($('home-view').hidden || agentsForbidden) return;
  let agents = [];
  try {
    agents = (await api('/api/v1/agents')).agents;
  } catch (err) {
    agentsForbidden = err.status === 403;
    $('agents-empty').hidden = false;
    $('agents-empty').textContent = 'Cannot list agents: ' + err.describe();
    return;
  }
  const rows = agents.map((a) => el('tr', {'data-agent-id': a.id, 'data-role': a.role,
                                           'data-state': a.state},
    el('td', {text: a.id}), el('td', {text: a.role}), el('td', {}, badge(a.state)),
    el('td', {}, a.current_task ? el('code', {text: a.current_task}) : '—'),
    el('td', {text: ago(a.last_heartbeat)}),
    el('td', {text: (a.counters.jobs_done ?? 0) + ' / ' + (a.counters.jobs_failed ?? 0)})));
  $('agents').tBodies[0].replaceChildren(...rows);
  $('agents-empty').hidden = agents.length > 0;
}, 250);

// The seven stages; a failed or cancelled feature shows where it stopped when
// `stoppedAt` is known (the feature page knows it, the list does not).
function stageBar(status, stoppedAt) {
  const ended = status === 'failed' || status === 'cancelled';
  const at = STAGES.indexOf(ended ? stoppedAt : status);
  const bar = el('div', {class: 'stages' + (ended ? ' ' + status : ''),
                         title: ended && stoppedAt ? status + ' while ' + stoppedAt : status});
  STAGES.forEach((s, i) => {
    let cls = 'stage';
    if (status === 'completed' || i < at) cls += ' done';
    else if (i === at) cls += ended ? ' stopped' : ' now';
    bar.append(el('span', {class: cls, title: s}));
  });
  return bar;
}

const FEATURES_PAGE = 50;
let featuresShown = FEATURES_PAGE;

const refreshFeatures = throttle(async () => {
  if ($('home-view').hidden) return;
  let page;
  try {
    page = await api('/api/v1/features?limit=' + featuresShown);
  } catch (err) {
    $('features-empty').hidden = false;
    $('features-empty').textContent = 'Cannot list features: ' + err.describe();
    return;
  }
  const rows = page.features.map((f) => el('tr', {'data-feature-id': f.id,
                                                  'data-status': f.status},
    el('td', {}, el('a', {href: '#/features/' + f.id, text: f.title || f.id}),
       el('div', {class: 'muted small', text: f.id})),
    el('td', {text: f.project}),
    el('td', {}, badge(f.status), f.reason ? el('div', {class: 'muted small',
                                                      text: clip(f.reason, 80)}) : null),
    el('td', {}, stageBar(f.status)),
    el('td', {text: ago(f.updated_at)})));
  const focused = document.activeElement && document.activeElement.closest &&
                  document.activeElement.closest('#features tr[data-feature-id]');
  $('features').tBodies[0].replaceChildren(...rows);
  // Redrawn on every event: keep the keyboard where it was.
  if (focused) {
    $('features').querySelector(`tr[data-feature-id="${CSS.escape(focused.dataset.featureId)}"] a`)
        ?.focus();
  }
  $('features-empty').hidden = page.features.length > 0;
  if (page.features.length === 0) $('features-empty').textContent =
      'No features yet. Submit a PRP below.';
  const total = page.pagination.total;
  $('features-more').hidden = !page.pagination.has_more;
  $('features-count').textContent = page.pagination.has_more
    ? 'Showing ' + page.features.length + ' of ' + total + ' features.' : '';
}, 250);

// Every process that runs agents (serve, workers), from /health: one row per
// host and pid, its state by the same heartbeat rule as the agents table.
// serve is shown as what it is: the API beside its coordinator and optimizer
// (and its agents, unless started with --no-agents).
function renderWorkers(workers) {
  const rows = workers.map((w) => el('tr', {'data-host': w.host, 'data-pid': w.pid,
                                            'data-state': w.state, 'data-kind': w.kind},
    el('td', {text: w.host || '?'}), el('td', {text: w.pid}),
    el('td', {text: w.kind === 'serve' ? 'serve: ' + ['API', ...(w.roles || [])].join(', ')
                                       : 'worker: ' + (w.roles || []).join(', ')}),
    el('td', {}, badge(w.state)),
    el('td', {text: w.live + ' / ' + w.agents}),
    el('td', {text: ago(w.last_heartbeat), title: w.last_heartbeat || ''})));
  $('workers').tBodies[0].replaceChildren(...rows);
  $('workers-empty').hidden = workers.length > 0;
}

const refreshWorkers = throttle(() => refreshHealth(), 500);

async function refreshHealth() {
  try {
    const response = await fetch('/health');
    const h = await response.json();
    $('health').textContent = h.status;
    $('health').className = 'badge ' + h.status;
    const rows = [['version', h.version], ['environment', h.environment]];
    for (const [name, value] of Object.entries(h.components || {})) {
      if (name === 'agents') {
        const states = Object.entries(value).map(([r, s]) => r + ': ' + s).join(', ');
        rows.push(['agents', states || 'none']);
      } else {
        rows.push([name, typeof value === 'string' ? value : JSON.stringify(value)]);
      }
    }
    $('system').tBodies[0].replaceChildren(...rows.map(([k, v]) =>
        el('tr', {'data-component': k}, el('th', {text: k}), el('td', {text: v ?? ''}))));
    renderWorkers(h.workers || []);
  } catch (err) {
    $('health').textContent = 'unreachable';
    $('health').className = 'badge unhealthy';
  }
}

async function submitPrp(ev) {
  ev.preventDefault();
  const text = $('prp-text').value;
  const out = $('submit-result');
  out.replaceChildren();
  if (!text.trim()) {
    out.append(el('p', {class: 'error', text: 'The PRP is empty: paste one or load a file.'}));
    return;
  }
  $('prp-submit').disabled = true;
  try {
    const f = await api('/api/v1/features', {method: 'POST', body: text,
                                             headers: {'Content-Type': 'text/markdown'}});
    // No status here: this line outlives the page it leads to, where the
    // status is live.
    out.append(el('p', {class: 'ok'}, 'Submitted ', el('a', {href: '#/features/' + f.id,
                                                           text: f.id}), '.'));
    $('prp-text').value = '';
    location.hash = '#/features/' + f.id;
  } catch (err) {
    const issues = err.details && err.details.issues;
    const bytes = new Blob([text]).size;
    let message = err.describe();
    if (err.status === 0 && bytes > 1048576) {
      // Far over its body limit the server drops the connection unanswered.
      message = 'The server closed the connection while receiving this ' +
                (bytes / 1048576).toFixed(1) + ' MiB PRP: it is over the server\'s body limit ' +
                '(1 MiB unless configured otherwise). Shorten it.';
    } else if (Array.isArray(issues) && issues.length) {
      // The message repeats the issues listed below; keep its first line.
      message = err.message.split('\n')[0].replace(/:$/, '') + (err.hint ? ' — ' + err.hint : '');
    }
    out.append(el('p', {class: 'error', text: message}));
    if (Array.isArray(issues)) {
      out.append(el('ul', {class: 'issues'}, ...issues.map((i) =>
          el('li', {text: typeof i === 'string' ? i : JSON.stringify(i)}))));
    }
  } finally {
    $('prp-submit').disabled = false;
  }
}

function loadPrpFile() {
  const file = $('prp-file').files[0];
  if (!file) return;
  file.text().then((t) => { $('prp-text').value = t; });
}

async function refreshMemory(ev) {
  if (ev) ev.preventDefault();
  const q = $('memory-query').value.trim();
  const list = $('memory-results');
  if (!q) { if (ev) list.replaceChildren(); return; }
  try {
    // Documents and memories: the knowledge search, and the memories' own
    // recall (so a memory shows even when the search favours documents).
    const query = encodeURIComponent(q);
    const [kb, mem] = await Promise.all([
      api('/api/v1/knowledge/search?max_results=20&query=' + query),
      api('/api/v1/memories?limit=20&query=' + query)]);
    const seen = new Set();
    const results = [];
    for (const r of kb.results) {
      seen.add(r.id);
      results.push(r);
    }
    for (const m of mem.memories) {
      if (seen.has(m.id)) continue;
      results.push({id: m.id, kind: 'memory', source: 'memory:' + m.id, score: m.score || 0,
                    content: m.content, type: m.type, importance: m.importance});
    }
    results.sort((a, b) => b.score - a.score);
    if (results.length === 0) {
      list.replaceChildren(el('li', {class: 'empty', text: 'Nothing matches “' + q + '”.'}));
      return;
    }
    list.replaceChildren(...results.map(memoryResultItem));
  } catch (err) {
    list.replaceChildren(el('li', {class: 'error', text: err.describe()}));
  }
}

// One search result: where it comes from and its score; a memory opens its
// links when clicked.
function memoryResultItem(r) {
  const isMemory = r.kind === 'memory';
  const where = isMemory
      ? 'memory · ' + (r.type || '') + (r.importance ? ' · importance ' + r.importance : '')
      : r.source + (r.heading ? ' › ' + r.heading : '') + ' · chunk ' + r.chunk;
  const item = el('li', {'data-memory-id': r.id, 'data-kind': isMemory ? 'memory' : 'chunk',
                         class: isMemory ? 'clickable' : null},
      el('div', {class: 'muted small', text: where + ' · score ' + Number(r.score).toFixed(2)}),
      el('div', {class: 'result-content', text: r.content}));
  if (isMemory) {
    item.title = 'Show its links';
    item.addEventListener('click', () => showMemoryLinks(item, r.id));
  }
  return item;
}

async function showMemoryLinks(item, id) {
  const old = item.querySelector('.memory-links');
  if (old) { old.remove(); return; }
  const box = el('div', {class: 'memory-links small'});
  item.append(box);
  try {
    const m = await api('/api/v1/memories/' + encodeURIComponent(id));
    const byId = new Map((m.linked || []).map((x) => [x.id, x]));
    if (!m.links || m.links.length === 0) {
      box.append(el('div', {class: 'muted', text: 'No links.'}));
      return;
    }
    box.append(el('ul', {}, ...m.links.map((l) => {
      const other = l.from === id ? l.to : l.from;
      const arrow = l.from === id ? '→' : '←';
      const o = byId.get(other);
      const text = o ? (o.summary || o.content) : other;
      return el('li', {'data-link-to': other},
          arrow + ' ' + l.type + ' (' + Number(l.strength).toFixed(2) + ') ', el('span', {text}));
    })));
  } catch (err) {
    box.append(el('div', {class: 'error', text: err.describe()}));
  }
}

// --- The feature page ---------------------------------------------------------------

let currentFeature = null;   // id shown on the feature page
let featureStatus = '';
let diffShownFor = '';      // the feature whose delivered diff is on the page

function closeFeatureStream() {
  if (featureStream) featureStream.close();
  featureStream = null;
}

function showFeature(id) {
  if (currentFeature !== id) {
    currentFeature = id;
    featureStatus = '';
    diffShownFor = '';
    $('event-log').replaceChildren();
    $('task-graph').replaceChildren();
    $('diff').replaceChildren();
    $('diff-info').textContent = '';
    $('feature-title').textContent = id;
    // Nothing of the previous feature may stay on the page.
    $('feature-status').textContent = '';
    $('feature-status').className = 'badge';
    $('feature-meta').textContent = '';
    $('feature-reason').textContent = '';
    $('feature-action-error').textContent = '';
    $('feature-cancel').hidden = true;
    $('feature-retry').hidden = true;
    $('feature-progress').replaceChildren();
    $('usage').replaceChildren();
    $('event-count').textContent = '';
    $('gates').replaceChildren(el('p', {class: 'empty', text: 'No gate has run yet.'}));
    $('reviews').replaceChildren(el('p', {class: 'empty', text: 'No review yet.'}));
    delete $('feature-view').dataset.featureId;
    delete $('feature-view').dataset.status;
    closeFeatureStream();
    // last_event_id=0: the whole history first, then live. On a reconnect the
    // browser sends Last-Event-ID itself, which the server prefers.
    featureStream = new EventSource('/api/v1/features/' + encodeURIComponent(id) +
                                    '/events?last_event_id=0&access_token=' +
                                    encodeURIComponent(apiKey));
    const onEvent = parsed(onFeatureEvent);
    featureStream.onmessage = onEvent;
    for (const type of EVENT_TYPES) featureStream.addEventListener(type, onEvent);
  }
  refreshFeature();
}

function onFeatureEvent(e) {
  if (e.feature_id !== currentFeature) return;
  const log = $('event-log');
  if (log.querySelector('li[data-seq="' + e.seq + '"]')) return;
  log.append(el('li', {'data-seq': e.seq, 'data-type': e.type, class: 'ev ' + e.type.replace('.', '-')},
    el('span', {class: 'muted small', text: new Date(e.ts).toLocaleTimeString()}), ' ',
    el('strong', {text: e.type}), ' ',
    e.agent ? el('span', {class: 'agent', text: e.agent}) : null, ' ',
    e.task_id ? el('code', {text: e.task_id.replace(e.feature_id + '-', '')}) : null, ' ',
    el('span', {text: describeEvent(e)})));
  while (log.children.length > MAX_EVENTS_SHOWN) log.firstElementChild.remove();
  $('event-count').textContent = '(' + log.children.length + ')';
  const nearBottom = window.innerHeight + window.scrollY >= document.body.scrollHeight - 80;
  if (nearBottom && !TERMINAL.has(featureStatus)) log.lastElementChild.scrollIntoView({block: 'end'});
  refreshFeature();
}

function describeEvent(e) {
  const d = e.data || {};
  switch (e.type) {
    case 'feature.created': return '“' + clip(d.title, 80) + '” in ' + d.project;
    case 'feature.status':
    case 'task.status': return (d.from || '') + ' → ' + d.to + (d.reason ? ': ' + clip(d.reason, 160) : '');
    case 'task.created': return d.role + ': ' + clip(d.title, 100) +
                                (d.dependencies && d.dependencies.length ? ' (after ' +
                                 d.dependencies.map((x) => x.replace(e.feature_id + '-', ''))
                                     .join(', ') + ')' : '');
    case 'llm.call': return d.provider + '/' + d.model + ' · ' + d.input_tokens + ' in, ' +
                            d.output_tokens + ' out · $' + Number(d.cost_usd || 0).toFixed(4) +
                            (d.replayed ? ' · replayed' : '') +
                            (d.latency_ms ? ' · ' + d.latency_ms + ' ms' : '');
    case 'llm.circuit': return d.provider + ' circuit ' + d.state + ' after ' +
                               d.consecutive_failures + ' failures; next attempt at ' +
                               new Date(d.next_attempt_ms).toLocaleTimeString();
    case 'llm.fallback': return d.role + ': ' + d.provider + '/' + d.model + ' unavailable, using ' +
                                d.fallback_provider + '/' + d.fallback_model;
    case 'llm.rate_limited': return d.provider + ' rate limited: calls wait ' +
                                    Math.ceil((d.wait_ms || 0) / 1000) + ' s';
    case 'tool.call': return d.tool + ' ' + clip(JSON.stringify(d.args || {}), 120) +
                             (d.ok === false ? ' ✗ ' : ' ✓ ') + clip(d.result || d.error || '', 120);
    case 'reply.refused': return d.role + ' reply not used: ' + clip(d.problem, 300);
    case 'gate.result': return d.gate + ' → ' + (d.passed ? 'passed' : 'FAILED (exit ' +
                               d.exit_code + (d.timed_out ? ', timed out' : '') + ')');
    case 'review.verdict': return d.verdict + ' (round ' + d.round + ')';
    case 'budget.warning': return '$' + Number(d.spent_today_usd || 0).toFixed(4) + ' of the $' +
                                  Number(d.daily_usd || 0).toFixed(4) + ' daily budget spent today';
    case 'context.summary': return d.role + ' context condensed: ' + d.tokens_before + ' → ' +
                                   d.tokens_after + ' tokens' + (d.fallback ? ' (' + clip(d.fallback, 120) + ')' : '');
    case 'error': return (d.job ? d.job + ' job: ' : d.where ? d.where + ': ' : '') +
                         clip(d.message || JSON.stringify(d), 400);
    default: return clip(JSON.stringify(d), 200);
  }
}

const refreshFeature = throttle(async () => {
  const id = currentFeature;
  if (!id || $('feature-view').hidden) return;
  let f;
  try {
    f = await api('/api/v1/features/' + encodeURIComponent(id));
  } catch (err) {
    $('feature-title').textContent = id;
    $('feature-reason').textContent = err.status === 404
      ? 'There is no feature ' + id + '.' : 'Cannot load the feature: ' + err.describe();
    return;
  }
  if (id !== currentFeature) return;
  featureStatus = f.status;
  $('feature-view').dataset.featureId = f.id;
  $('feature-view').dataset.status = f.status;
  $('feature-title').textContent = f.title || f.id;
  $('feature-status').textContent = f.status;
  $('feature-status').className = 'badge ' + f.status;
  $('feature-meta').textContent = f.id + ' · project ' + f.project + ' · ' + f.priority +
                                  ' priority · created ' + ago(f.created_at);
  const ended = f.ended || {};
  $('feature-progress').replaceWith(Object.assign(stageBar(f.status, ended.stage),
                                                  {id: 'feature-progress'}));
  $('feature-reason').textContent = !f.ended ? (f.reason || '')
    : f.status + (ended.stage ? ' while ' + ended.stage : '') +
      (f.reason ? ' (' + f.reason + ')' : '') + (ended.message ? ': ' + ended.message : '') +
      (ended.hint ? ' — ' + ended.hint : '');
  $('feature-cancel').hidden = TERMINAL.has(f.status);
  $('feature-retry').hidden = f.status !== 'failed' && f.status !== 'cancelled';
  renderUsage(f);
  renderTaskGraph(f.tasks);
  renderGates(f.artifacts.gate_results);
  renderReviews(f.artifacts.review_verdicts);
  if (TERMINAL.has(f.status) && diffShownFor !== f.id) await renderDiff(f);
  else if (!TERMINAL.has(f.status)) {
    $('diff-info').textContent = 'The diff is written when the feature is delivered.';
  }
}, 300);

function renderUsage(f) {
  const u = f.usage || {};
  const card = (label, value) => el('div', {class: 'card'}, el('div', {class: 'muted small', text: label}),
                                    el('div', {class: 'big', text: value}));
  const done = f.tasks.filter((t) => t.status === 'completed').length;
  $('usage').replaceChildren(...[
    card('Tasks done', done + ' / ' + f.tasks.length),
    card('Model calls', u.calls ?? 0),
    card('Input tokens', (u.input_tokens ?? 0).toLocaleString()),
    card('Output tokens', (u.output_tokens ?? 0).toLocaleString()),
    card('Cost', '$' + Number(u.cost_usd || 0).toFixed(4)),
    f.artifacts.branch
      ? card('Branch', f.artifacts.branch + (f.artifacts.delivered === false ? ' (not delivered)' : ''))
      : null,
  ].filter(Boolean));
  $('usage').querySelectorAll('.big')[4].id = 'usage-cost';
}

// Tasks in columns by dependency depth (longest chain of dependencies before
// them), edges from each dependency to its dependant.
function renderTaskGraph(tasks) {
  const box = $('task-graph');
  if (!tasks.length) {
    box.replaceChildren(el('p', {class: 'empty', text: 'The planner has not made tasks yet.'}));
    return;
  }
  const byId = new Map(tasks.map((t) => [t.id, t]));
  const depth = new Map();
  const depthOf = (t, seen = new Set()) => {
    if (depth.has(t.id)) return depth.get(t.id);
    if (seen.has(t.id)) return 0;  // a cycle would have been refused; stay safe
    seen.add(t.id);
    let d = 0;
    for (const dep of t.dependencies || []) {
      const p = byId.get(dep) || byId.get(t.feature_id + '-' + dep);
      if (p) d = Math.max(d, depthOf(p, seen) + 1);
    }
    depth.set(t.id, d);
    return d;
  };
  const columns = [];
  for (const t of tasks) (columns[depthOf(t)] ||= []).push(t);
  const W = 210, H = 54, GX = 60, GY = 16, PAD = 10;
  const pos = new Map();
  columns.forEach((col, c) => col.forEach((t, r) =>
      pos.set(t.id, {x: PAD + c * (W + GX), y: PAD + r * (H + GY)})));
  const rows = Math.max(...columns.map((c) => c.length));
  const g = svg('svg', {width: PAD * 2 + columns.length * (W + GX) - GX,
                        height: PAD * 2 + rows * (H + GY) - GY, role: 'img',
                        'aria-label': 'task graph'});
  g.append(svg('defs', {}, svg('marker', {id: 'arrow', viewBox: '0 0 10 10', refX: 10, refY: 5,
                                          markerWidth: 7, markerHeight: 7, orient: 'auto'},
                                   svg('path', {d: 'M0,0 L10,5 L0,10 z', class: 'arrowhead'}))));
  for (const t of tasks) {
    for (const dep of t.dependencies || []) {
      const from = pos.get(dep) || pos.get(t.feature_id + '-' + dep);
      const to = pos.get(t.id);
      if (!from) continue;
      const x1 = from.x + W, y1 = from.y + H / 2, x2 = to.x, y2 = to.y + H / 2;
      g.append(svg('path', {class: 'edge', 'marker-end': 'url(#arrow)',
                            d: `M${x1},${y1} C${x1 + GX / 2},${y1} ${x2 - GX / 2},${y2} ${x2},${y2}`}));
    }
  }
  for (const t of tasks) {
    const p = pos.get(t.id);
    const node = svg('g', {class: 'task ' + t.status, 'data-task-id': t.id,
                           'data-status': t.status, transform: `translate(${p.x},${p.y})`},
      svg('title', {text: t.title + '\n' + t.status + (t.assigned_agent ? ' · ' + t.assigned_agent : '') +
                          '\n' + (t.description || '')}),
      svg('rect', {width: W, height: H, rx: 6}),
      svg('text', {x: 10, y: 21, class: 'title', text: clip(t.title, 26)}),
      svg('text', {x: 10, y: 41, class: 'sub', text: t.role + ' · ' + t.status.replace('_', ' ') +
                                                   (t.attempts > 1 ? ' · try ' + t.attempts : '')}));
    node.setAttribute('tabindex', '0');
    node.setAttribute('role', 'button');
    node.addEventListener('click', () => showTask(t));
    node.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); showTask(t); }
    });
    g.append(node);
  }
  const detail = box.querySelector('#task-detail');
  const focused = document.activeElement && document.activeElement.dataset &&
                  document.activeElement.dataset.taskId;
  box.replaceChildren(g, detail || el('div', {id: 'task-detail'}));
  // Redrawn on every event: keep the keyboard where it was.
  if (focused) g.querySelector(`g.task[data-task-id="${CSS.escape(focused)}"]`)?.focus();
}

function showTask(t) {
  const r = t.result || {};
  $('task-detail').replaceChildren(...[el('h4', {text: t.title}),
    el('p', {class: 'muted small', text: t.id + ' · ' + t.role + ' · ' + t.status +
                                       (t.assigned_agent ? ' · ' + t.assigned_agent : '')}),
    el('p', {text: t.description || ''}),
    r.summary ? el('p', {}, el('strong', {text: 'Result: '}), r.summary) : null,
    r.error ? el('p', {class: 'error', text: r.error}) : null,
    t.files && t.files.length ? el('p', {class: 'muted small', text: 'files: ' + t.files.join(', ')}) : null,
  ].filter(Boolean));
}

function renderGates(gates) {
  if (!gates.length) return;
  $('gates').replaceChildren(...gates.map((e) => {
    const d = e.data;
    return el('details', {class: 'gate ' + (d.passed ? 'passed' : 'failed'), 'data-seq': e.seq,
                          open: !d.passed},
      el('summary', {}, badge(d.passed ? 'passed' : 'failed'), ' ', el('code', {text: d.gate}),
         el('span', {class: 'muted small', text: ' exit ' + d.exit_code + ' · ' + d.duration_ms +
                                                 ' ms' + (d.timed_out ? ' · timed out' : '') +
                                                 (d.sandbox ? ' · ' + d.sandbox : '')})),
      el('pre', {class: 'output', text: d.output || '(no output)'}));
  }));
}

function renderReviews(verdicts) {
  if (!verdicts.length) return;
  $('reviews').replaceChildren(...verdicts.map((e) => el('div', {class: 'review', 'data-seq': e.seq},
    el('p', {}, badge(e.data.verdict), ' round ' + e.data.round + ' · ' + (e.agent || '')),
    el('ul', {}, ...(e.data.comments || []).map((c) => el('li', {text: typeof c === 'string' ? c : JSON.stringify(c)}))))));
}

async function renderDiff(f) {
  let d;
  try {
    d = await api('/api/v1/features/' + encodeURIComponent(f.id) + '/diff');
  } catch (err) {
    $('diff-info').textContent = 'Cannot load the diff: ' + err.describe();
    return;
  }
  diffShownFor = f.id;
  if (!d.available) {
    $('diff-info').textContent = f.status === 'completed'
      ? 'No diff was written for this feature.'
      : 'The feature ended ' + f.status + ' before delivery, so there is no diff' +
        (f.tasks.some((t) => t.status === 'completed')
          ? '; its commits are on branch af/' + f.id + ' in the project workspace.' : '.');
    return;
  }
  const lines = d.diff.split('\n');
  $('diff-info').textContent = d.bytes.toLocaleString() + ' bytes' +
      (f.artifacts.branch ? ' · branch ' + f.artifacts.branch : '') +
      (d.truncated ? ' · truncated by the server' : '') +
      (lines.length > MAX_DIFF_LINES ? ' · showing the first ' + MAX_DIFF_LINES + ' lines' : '');
  const frag = document.createDocumentFragment();
  for (const line of lines.slice(0, MAX_DIFF_LINES)) {
    let cls = '';
    if (line.startsWith('+++') || line.startsWith('---') || line.startsWith('diff ')) cls = 'file';
    else if (line.startsWith('+')) cls = 'add';
    else if (line.startsWith('-')) cls = 'del';
    else if (line.startsWith('@@')) cls = 'hunk';
    frag.append(el('span', {class: cls, text: line + '\n'}));
  }
  $('diff').replaceChildren(frag);
}

async function cancelFeature() {
  if (!currentFeature || !confirm('Cancel feature ' + currentFeature + '?')) return;
  try {
    await api('/api/v1/features/' + encodeURIComponent(currentFeature), {method: 'DELETE'});
    $('feature-action-error').textContent = '';
  } catch (err) {
    // Its own line: refreshFeature rewrites the reason.
    $('feature-action-error').textContent = 'Cannot cancel: ' + err.describe();
  }
  refreshFeature();
}

// A failed or cancelled feature goes on where it stopped (with the server's
// settings: a raised limit needs its restart first).
async function retryFeature() {
  if (!currentFeature) return;
  try {
    await api('/api/v1/features/' + encodeURIComponent(currentFeature) + '/retry',
              {method: 'POST'});
    $('feature-action-error').textContent = '';
  } catch (err) {
    $('feature-action-error').textContent = 'Cannot retry: ' + err.describe();
  }
  refreshFeature();
}

// --- Routing ------------------------------------------------------------------------

function route() {
  if (!apiKey) return;
  const m = location.hash.match(/^#\/features\/([^/]+)$/);
  $('home-view').hidden = !!m;
  $('feature-view').hidden = !m;
  if (m) {
    // A hand-typed or cut link may not decode ("%E0%A4%A"): asked for as it
    // is, the server says there is no such feature.
    let id = m[1];
    try { id = decodeURIComponent(m[1]); } catch (e) { /* kept as typed */ }
    showFeature(id);
  } else {
    currentFeature = null;
    closeFeatureStream();
    refreshAgents();
    refreshFeatures();
    refreshHealth();
  }
  window.scrollTo(0, 0);
}

function init() {
  takeKeyFromUrl();
  $('key-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const key = $('key-input').value.trim();
    if (!key) { $('key-error').textContent = 'Paste a key first.'; return; }
    localStorage.setItem(KEY_STORAGE, key);
    $('key-input').value = '';
    useKey(key);
  });
  $('key-change').addEventListener('click', () => askForKey(''));
  $('key-keep').addEventListener('click', () => useKey(apiKey));
  $('submit-form').addEventListener('submit', submitPrp);
  $('prp-file').addEventListener('change', loadPrpFile);
  $('memory-form').addEventListener('submit', refreshMemory);
  $('feature-cancel').addEventListener('click', cancelFeature);
  $('feature-retry').addEventListener('click', retryFeature);
  $('features-more').addEventListener('click', () => {
    featuresShown += FEATURES_PAGE;
    refreshFeatures();
  });
  window.addEventListener('hashchange', route);
  refreshHealth();
  setInterval(refreshHealth, 10000);
  // Heartbeat ages and "updated ... ago" drift; redraw them now and then.
  setInterval(() => { refreshAgents(); }, 15000);
  const key = localStorage.getItem(KEY_STORAGE);
  if (key) useKey(key);
  else askForKey('');
}

init();
