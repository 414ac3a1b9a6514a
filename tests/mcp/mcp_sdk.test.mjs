// `agent-factory mcp` driven by the official MCP TypeScript SDK client
// (@modelcontextprotocol/sdk, pinned in package-lock.json): the client
// launches the built binary over stdio with a fresh data directory.
//   cd tests/mcp && npm ci
//   AF_BINARY=build/agent-factory node --test tests/mcp/mcp_sdk.test.mjs
import {test, before, after} from 'node:test';
import assert from 'node:assert/strict';
import {execFileSync} from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

import {Client} from '@modelcontextprotocol/sdk/client/index.js';
import {StdioClientTransport} from '@modelcontextprotocol/sdk/client/stdio.js';
import {McpError} from '@modelcontextprotocol/sdk/types.js';

const BINARY = process.env.AF_BINARY && path.resolve(process.env.AF_BINARY);
if (!BINARY) throw new Error('set AF_BINARY (ctest does)');

const TOOLS = ['memory_remember', 'memory_recall', 'memory_list', 'memory_graph', 'memory_update',
               'memory_delete', 'kb_search', 'feature_submit', 'feature_status'];

let dir, env, client, stderr = '';

// A port nothing listens on: the feature tools must say the server is down.
function closedPort() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const {port} = s.address();
      s.close(() => resolve(port));
    });
  });
}

// The tool's structured answer; fails the test on an isError result.
async function call(name, args) {
  const r = await client.callTool({name, arguments: args});
  assert.notEqual(r.isError, true, `${name} failed: ${JSON.stringify(r.content)}`);
  assert.equal(r.content[0].type, 'text');
  assert.deepEqual(JSON.parse(r.content[0].text), r.structuredContent);
  return r.structuredContent;
}

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'af-mcp-'));
  env = Object.assign({}, process.env, {AF_DATA_DIR: path.join(dir, 'data'), AF_LOG: 'warn',
                                         AF_HOST: '127.0.0.1', AF_PORT: String(await closedPort())});
  for (const k of ['DATABASE_URL', 'REDIS_URL', 'AF_LLM_PROVIDER', 'ANTHROPIC_API_KEY',
                   'OPENAI_API_KEY', 'AF_CONFIG_DIR', 'AF_API_KEY']) delete env[k];

  // Documents for kb_search, ingested by the CLI into the same data directory.
  const docs = path.join(dir, 'docs');
  fs.mkdirSync(docs);
  fs.writeFileSync(path.join(docs, 'deploy.md'),
                   '# Deploying\n\nThe zebra service deploys with blue-green rollouts on Fridays.\n');
  fs.writeFileSync(path.join(docs, 'style.md'),
                   '# Style\n\nIndent with two spaces and keep lines under 100 columns.\n');
  execFileSync(BINARY, ['kb', 'populate', docs], {cwd: dir, env, stdio: 'pipe'});

  const transport = new StdioClientTransport({command: BINARY, args: ['mcp'], cwd: dir, env,
                                              stderr: 'pipe'});
  transport.stderr.on('data', (d) => { stderr += d; });
  client = new Client({name: 'agent-factory-test', version: '1.0.0'});
  await client.connect(transport);
});

after(async () => {
  if (client) await client.close();
  fs.rmSync(dir, {recursive: true, force: true});
});

test('initialize names the server and offers tools', () => {
  assert.equal(client.getServerVersion().name, 'agent-factory');
  assert.ok(client.getServerCapabilities().tools, 'no tools capability');
});

test('tools/list gives the nine tools, each with a closed object schema', async () => {
  const {tools} = await client.listTools();
  assert.deepEqual(tools.map((t) => t.name).sort(), [...TOOLS].sort());
  for (const t of tools) {
    assert.ok(t.description.length > 10, t.name);
    assert.equal(t.inputSchema.type, 'object', t.name);
    assert.equal(t.inputSchema.additionalProperties, false, t.name);
    assert.equal(typeof t.inputSchema.properties, 'object', t.name);
  }
  const remember = tools.find((t) => t.name === 'memory_remember');
  assert.deepEqual(remember.inputSchema.required, ['content']);
  assert.equal(remember.inputSchema.properties.importance.maximum, 10);
  assert.ok(remember.inputSchema.properties.type.enum.includes('bug_fix'));
});

test('remember, recall, graph, update, list and delete a memory', async () => {
  const a = await call('memory_remember', {
    content: 'The flaky login test needs the clock frozen with freezegun', type: 'bug_fix',
    importance: 8, tags: ['tests', 'login'], namespace: 'project:shop'});
  assert.match(a.id, /\S/);
  assert.equal(a.importance, 8);
  assert.equal(a.namespace, 'project:shop');

  const recalled = await call('memory_recall', {query: 'flaky login clock', max_results: 3,
                                                namespace: 'project:shop'});
  assert.ok(recalled.results.length >= 1, JSON.stringify(recalled));
  assert.equal(recalled.results[0].id, a.id);
  for (const k of ['id', 'source', 'chunk', 'score', 'content']) assert.ok(k in recalled.results[0], k);

  const graph = await call('memory_graph', {id: a.id, depth: 1});
  assert.equal(graph.nodes[0].id, a.id);

  const updated = await call('memory_update', {id: a.id, importance: 3, tags: ['tests']});
  assert.equal(updated.importance, 3);
  assert.deepEqual(updated.tags, ['tests']);
  assert.equal(updated.content, a.content);

  const listed = await call('memory_list', {namespace: 'project:shop', limit: 10});
  assert.deepEqual(listed.memories.map((m) => m.id), [a.id]);

  assert.deepEqual(await call('memory_delete', {id: a.id}), {deleted: a.id});
  const after = await call('memory_list', {namespace: 'project:shop'});
  assert.equal(after.memories.length, 0);
  const gone = await client.callTool({name: 'memory_graph', arguments: {id: a.id}});
  assert.equal(gone.isError, true);
  assert.match(gone.content[0].text, /error: /);
});

test('kb_search finds the ingested document first', async () => {
  const found = await call('kb_search', {query: 'zebra blue-green rollout', max_results: 2});
  assert.ok(found.results.length >= 1, JSON.stringify(found));
  assert.match(found.results[0].source, /deploy\.md$/);
  assert.ok(found.results[0].score > 0);
});

test('an unknown tool and bad arguments are protocol errors (invalid params)', async () => {
  await assert.rejects(client.callTool({name: 'no_such_tool', arguments: {}}),
                       (e) => e instanceof McpError && e.code === -32602);
  await assert.rejects(
      client.callTool({name: 'memory_remember', arguments: {content: 'x', importance: 11}}),
      (e) => e instanceof McpError && e.code === -32602 && /importance/.test(e.message));
  await assert.rejects(
      client.callTool({name: 'memory_recall', arguments: {}}),
      (e) => e instanceof McpError && e.code === -32602 && /query/.test(e.message));
  await assert.rejects(
      client.callTool({name: 'memory_remember', arguments: {content: 'x', colour: 'red'}}),
      (e) => e instanceof McpError && e.code === -32602 && /colour/.test(e.message));
});

test('feature tools with no server running say how to start it', async () => {
  const r = await client.callTool({name: 'feature_submit',
                                   arguments: {title: 'Slugify', description: 'Add a slug helper'}});
  assert.equal(r.isError, true);
  assert.match(r.content[0].text, /agent-factory serve/);
  const s = await client.callTool({name: 'feature_status', arguments: {id: 'feat-1'}});
  assert.equal(s.isError, true);
});

test('stdout carried only protocol messages (logs went to stderr)', async () => {
  // A stray line on stdout would have made the SDK's parser fail a request;
  // ping proves the stream is still in step.
  await client.ping();
  assert.doesNotMatch(stderr, /Parse error/);
});
