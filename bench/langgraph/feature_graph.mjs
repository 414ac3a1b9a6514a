// The LangGraph.js side of bench/feature_load.sh: the minimal feature of
// af_feature_load (a plan with one task that writes one file, gate `true`,
// four model calls) as a 7-node graph -- coordinator, planner, optimizer,
// coder, tester, reviewer, devops -- with MemorySaver as the checkpointer, N
// graphs (threads) at once.
//
// The model: with --fake-url, the same scripted fake model as af_feature_load
// (`af_feature_load --fake-only`), called over HTTP in the OpenAI wire format
// with the same latency, so each call also pays for HTTP and JSON as ours do;
// the planner, coder (twice) and reviewer call it, the other nodes do their
// bookkeeping in memory. Without --fake-url each call is a timer of
// --latency-ms (a floor: no HTTP at all). This graph does no git, sandbox or
// database work: it is a floor for orchestration cost, not a like-for-like
// pipeline.
//
// Usage: node feature_graph.mjs [--features 1,50,500] [--latency-ms 50]
//                               [--fake-url http://127.0.0.1:PORT] [--alone-repeats 5]
// Prints, per N, a human line and a "RESULT impl=langgraph ..." line with
// wall time, efficiency (wall of one alone / wall of all, N = 1 runs first),
// CPU of this process per feature, created -> delivered p50/p99 and the peak
// RSS of this process so far (it only grows: the figure at N is the peak of
// every run up to N).
import { Annotation, END, MemorySaver, START, StateGraph } from "@langchain/langgraph";
import { setTimeout as sleep } from "node:timers/promises";
import { loadavg } from "node:os";
import { readFileSync } from "node:fs";

function parseArgs(argv) {
  const o = { features: [], latencyMs: 50, fakeUrl: "", aloneRepeats: 5 };
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[++i];
    if (v === undefined) throw new Error(`${a} needs a value`);
    if (a === "--features") o.features.push(...v.split(",").map(Number));
    else if (a === "--latency-ms") o.latencyMs = Number(v);
    else if (a === "--fake-url") o.fakeUrl = v;
    else if (a === "--alone-repeats") o.aloneRepeats = Number(v);
    else throw new Error(`unknown flag ${a}`);
  }
  if (o.features.length === 0) o.features = [1, 50];
  if (o.features.some((n) => !(n > 0))) throw new Error("--features takes positive numbers");
  // N = 1 first: it is the reference of every efficiency figure.
  o.features = [...o.features.filter((n) => n === 1), ...o.features.filter((n) => n !== 1)];
  return o;
}

const opts = parseArgs(process.argv);
const modelCalls = { planner: 0, coder: 0, reviewer: 0 };

// One model call. System prompts name the role as ours do ("You are the
// planner", "You are a coder", "You are the reviewer"), which is how the fake
// model tells the roles apart; the number of assistant messages is the turn.
async function callModel(role, messages, turn) {
  modelCalls[role]++;
  if (!opts.fakeUrl) {
    await sleep(opts.latencyMs);
    return scriptedTimerReply(role, turn);
  }
  const res = await fetch(`${opts.fakeUrl}/v1/chat/completions`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: "Bearer sk-bench" },
    body: JSON.stringify({ model: "gpt-4o-mini", messages, tools: TOOLS[role] }),
  });
  const body = await res.json();
  if (!res.ok) throw new Error(`model answered ${res.status}: ${JSON.stringify(body)}`);
  const call = body.choices[0].message.tool_calls[0];
  return { id: call.id, name: call.function.name, args: JSON.parse(call.function.arguments) };
}

// The replies the fake model gives, for the timer mode.
function scriptedTimerReply(role, turn) {
  if (role === "planner")
    return { id: "c1", name: "submit_plan", args: { tasks: [{ id: "t1", title: "Write the file", files: ["it.txt"] }] } };
  if (role === "coder")
    return turn === 0
      ? { id: "c2", name: "write_file", args: { path: "it.txt", content: "ok\n" } }
      : { id: "c3", name: "finish", args: { summary: "wrote it.txt" } };
  return { id: "c4", name: "submit_review", args: { verdict: "approve", comments: ["the gate passes"] } };
}

const tool = (name, properties) => ({
  type: "function",
  function: { name, parameters: { type: "object", properties } },
});
const TOOLS = {
  planner: [tool("submit_plan", { tasks: { type: "array" } })],
  coder: [tool("write_file", { path: { type: "string" }, content: { type: "string" } }), tool("finish", { summary: { type: "string" } })],
  reviewer: [tool("submit_review", { verdict: { type: "string" }, comments: { type: "array" } })],
};

const State = Annotation.Root({
  feature: Annotation(),
  status: Annotation(),
  plan: Annotation(),
  context: Annotation(),
  files: Annotation({ reducer: (a, b) => ({ ...a, ...b }), default: () => ({}) }),
  gate: Annotation(),
  verdict: Annotation(),
  deliveredAt: Annotation(),
  log: Annotation({ reducer: (a, b) => a.concat(b), default: () => [] }),
});

const graph = new StateGraph(State)
  .addNode("coordinator", async (s) => {
    if (!s.feature?.title || !(s.feature.validation_gates?.length > 0)) throw new Error("invalid feature");
    return { status: "planning", log: ["coordinator: accepted"] };
  })
  .addNode("planner", async (s) => {
    const call = await callModel("planner", [
      { role: "system", content: "You are the planner. Split the feature into tasks." },
      { role: "user", content: `# Feature: ${s.feature.title}\n${s.feature.description}` },
    ], 0);
    if (call.name !== "submit_plan" || !(call.args.tasks?.length > 0)) throw new Error(`planner: ${call.name}`);
    return { plan: call.args.tasks, status: "implementing", log: ["planner: plan"] };
  })
  .addNode("optimizer", async (s) => {
    const t = s.plan[0];
    return { context: `# Your task: ${t.title}\n${t.description ?? ""}\nFiles: ${(t.files ?? []).join(", ")}`, log: ["optimizer: context"] };
  })
  .addNode("coder", async (s) => {
    const messages = [
      { role: "system", content: "You are a coder. Do the task with the tools." },
      { role: "user", content: s.context },
    ];
    const files = {};
    for (let turn = 0; ; turn++) {
      const call = await callModel("coder", messages, turn);
      if (call.name === "finish") break;
      if (call.name !== "write_file") throw new Error(`coder: ${call.name}`);
      files[call.args.path] = call.args.content;
      messages.push({ role: "assistant", content: null, tool_calls: [{ id: call.id, type: "function", function: { name: call.name, arguments: JSON.stringify(call.args) } }] });
      messages.push({ role: "tool", tool_call_id: call.id, content: `wrote ${call.args.path}` });
      if (turn > 4) throw new Error("coder: no finish");
    }
    return { files, status: "testing", log: ["coder: done"] };
  })
  .addNode("tester", async (s) => {
    // The gate is `true`: it passes without running anything.
    return { gate: { command: s.feature.validation_gates[0], passed: true }, status: "reviewing", log: ["tester: gate passed"] };
  })
  .addNode("reviewer", async (s) => {
    const call = await callModel("reviewer", [
      { role: "system", content: "You are the reviewer. Review the change." },
      { role: "user", content: Object.entries(s.files).map(([p, c]) => `--- ${p}\n${c}`).join("\n") },
    ], 0);
    if (call.name !== "submit_review" || call.args.verdict !== "approve") throw new Error(`reviewer: ${call.name}`);
    return { verdict: "approve", status: "delivering", log: ["reviewer: approve"] };
  })
  .addNode("devops", async () => ({ status: "completed", deliveredAt: Date.now(), log: ["devops: delivered"] }))
  .addEdge(START, "coordinator")
  .addEdge("coordinator", "planner")
  .addEdge("planner", "optimizer")
  .addEdge("optimizer", "coder")
  .addEdge("coder", "tester")
  .addEdge("tester", "reviewer")
  .addEdge("reviewer", "devops")
  .addEdge("devops", END)
  .compile({ checkpointer: new MemorySaver() });

let threadSeq = 0;
// Runs n features at once; wall (ms), each one's created -> delivered (ms), failures.
async function runBatch(n) {
  const t0 = Date.now();
  const results = await Promise.allSettled(
    Array.from({ length: n }, async (_, i) => {
      const created = Date.now();
      const out = await graph.invoke(
        { feature: { title: `Bench feature #${i + 1}`, description: "one task writes one file", validation_gates: ["true"] } },
        { configurable: { thread_id: `t${++threadSeq}` } },
      );
      if (out.status !== "completed") throw new Error(`ended in ${out.status}`);
      return out.deliveredAt - created;
    }),
  );
  const wall = Date.now() - t0;
  const latencies = results.filter((r) => r.status === "fulfilled").map((r) => r.value);
  const failures = results.filter((r) => r.status === "rejected").map((r) => String(r.reason?.message ?? r.reason));
  return { wall, latencies, failures };
}

const pct = (v, p) => {
  if (v.length === 0) return -1;
  const s = [...v].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.round(p * (s.length - 1)))];
};

let aloneWall = -1;
let allOk = true;
const lgVersion = JSON.parse(readFileSync(new URL("./node_modules/@langchain/langgraph/package.json", import.meta.url))).version;
console.log(`== LangGraph.js ${lgVersion} ` +
  `(node ${process.version}), model ${opts.fakeUrl ? `over HTTP at ${opts.fakeUrl}` : "a timer"}, ` +
  `latency ${opts.latencyMs} ms, load average ${loadavg().map((x) => x.toFixed(2)).join(" ")}`);
// One warm-up feature (module loading, JIT), reported apart.
{
  const w = await runBatch(1);
  console.log(`warm-up: wall ${(w.wall / 1000).toFixed(3)} s${w.failures.length ? `, FAILED: ${w.failures[0]}` : ""}`);
}
for (const n of opts.features) {
  const rounds = n === 1 ? Math.max(1, opts.aloneRepeats) : 1;
  const walls = [], latencies = [], failures = [];
  const cpu0 = process.cpuUsage();
  for (let r = 0; r < rounds; r++) {
    const b = await runBatch(n);
    walls.push(b.wall);
    latencies.push(...b.latencies);
    failures.push(...b.failures);
  }
  const cpu = process.cpuUsage(cpu0);
  const wall = pct(walls, 0.5) / 1000;
  const ok = failures.length === 0;
  allOk &&= ok;
  if (n === 1 && ok) aloneWall = wall;
  const eff = aloneWall > 0 && ok ? (aloneWall / wall).toFixed(3) : "-";
  const cpuMs = (cpu.user + cpu.system) / 1000 / (n * rounds);
  const rssMb = process.resourceUsage().maxRSS / 1024;
  console.log(`N=${n}: wall ${wall.toFixed(3)} s${n === 1 ? ` (median of ${rounds}: ${walls.map((w) => (w / 1000).toFixed(3)).join(" ")})` : `, efficiency ${eff}`}, ` +
    `CPU per feature ${cpuMs.toFixed(1)} ms, created -> delivered p50 ${pct(latencies, 0.5)} ms p99 ${pct(latencies, 0.99)} ms, ` +
    `peak RSS so far ${rssMb.toFixed(1)} MB`);
  if (!ok) {
    allOk = false;
    console.log(`!! ${failures.length} of ${n * rounds} features did not complete; the first: ${failures[0]}`);
  }
  console.log(`RESULT impl=langgraph n=${n} latency_ms=${opts.latencyMs} completed=${latencies.length}/${n * rounds} ` +
    `wall_s=${wall.toFixed(3)} efficiency=${eff} cpu_ms=${cpuMs.toFixed(1)} children_cpu_ms=- ` +
    `p50_ms=${pct(latencies, 0.5)} p99_ms=${pct(latencies, 0.99)} peak_rss_mb=${rssMb.toFixed(1)} ok=${ok ? 1 : 0} ` +
    `model=${opts.fakeUrl ? "http" : "timer"}`);
}
console.log(`model calls by role: ${JSON.stringify(modelCalls)}`);
process.exit(allOk ? 0 : 1);
