// Interop check for the gate gRPC API: a Node.js (@grpc/grpc-js) client built straight
// from proto/gate/v1/gate.proto, showing the proto works from a language other than Python.
//
// Usage: node client.js HOST:PORT MODEL_SHA256 DATASET POLICY_NAME
//
// Lists datasets and policies, runs Evaluate on an already uploaded model (reading the
// accepted / progress / verdict stream), fetches the record with GetVerdict, and prints a
// single JSON summary on stdout. On a gRPC error it prints {"error": {code, details}} and
// exits 3.
'use strict';

const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const PROTO_ROOT = path.resolve(__dirname, '..', '..', 'proto');
const PROTO_FILE = path.join(PROTO_ROOT, 'gate', 'v1', 'gate.proto');
const DEADLINE_MS = 60 * 1000;

function loadGateService() {
  const definition = protoLoader.loadSync(PROTO_FILE, {
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
    // The proto root resolves gate/v1/*; google/protobuf/struct.proto comes from the
    // well-known types bundled with protobufjs.
    includeDirs: [PROTO_ROOT],
  });
  return grpc.loadPackageDefinition(definition).gate.v1.GateService;
}

function deadline() {
  return new Date(Date.now() + DEADLINE_MS);
}

function unary(client, method, request) {
  return new Promise((resolve, reject) => {
    client[method](request, { deadline: deadline() }, (err, response) => {
      if (err) reject(err);
      else resolve(response);
    });
  });
}

function evaluate(client, request) {
  return new Promise((resolve, reject) => {
    const result = {
      evaluation_id: null,
      progress_events: 0,
      last_progress: null,
      verdict: null,
    };
    const call = client.Evaluate(request, { deadline: deadline() });
    call.on('data', (event) => {
      switch (event.event) {
        case 'accepted':
          result.evaluation_id = event.accepted.evaluation_id;
          break;
        case 'progress':
          result.progress_events += 1;
          result.last_progress = { done: event.progress.done, total: event.progress.total };
          break;
        case 'verdict':
          result.verdict = event.verdict;
          break;
        default:
          break;
      }
    });
    call.on('error', reject);
    call.on('end', () => resolve(result));
  });
}

async function main(argv) {
  if (argv.length !== 4) {
    process.stderr.write('usage: node client.js HOST:PORT MODEL_SHA256 DATASET POLICY_NAME\n');
    return 2;
  }
  const [target, modelSha256, dataset, policyName] = argv;
  const GateService = loadGateService();
  const client = new GateService(target, grpc.credentials.createInsecure());
  try {
    const datasets = await unary(client, 'ListDatasets', {});
    const policies = await unary(client, 'ListPolicies', {});

    const run = await evaluate(client, {
      model_sha256: modelSha256,
      dataset,
      policy_name: policyName,
      labels: { pipeline_id: 'node-interop', git_sha: '', extra: { client: 'grpc-js' } },
    });
    if (run.evaluation_id === null || run.verdict === null) {
      throw new Error('Evaluate stream ended without ' +
        (run.evaluation_id === null ? 'an accepted event' : 'a verdict'));
    }
    const verdict = run.verdict;

    const record = await unary(client, 'GetVerdict', { evaluation_id: run.evaluation_id });

    const summary = {
      datasets: datasets.datasets.map((d) => d.name),
      policies: policies.policies.map((p) => p.name),
      evaluation_id: run.evaluation_id,
      progress_events: run.progress_events,
      last_progress: run.last_progress,
      decision: verdict.decision,
      verdict_json: JSON.parse(verdict.verdict_json),
      rules: verdict.rules.map((r) => ({ id: r.id, status: r.status, message: r.message })),
      get_verdict_state: record.state,
      get_verdict_decision: record.verdict ? record.verdict.decision : null,
    };
    process.stdout.write(JSON.stringify(summary) + '\n');
    return 0;
  } catch (err) {
    if (err && typeof err.code === 'number') {
      // A gRPC status error (ServiceError).
      process.stdout.write(JSON.stringify({ error: { code: err.code, details: err.details } }) + '\n');
      return 3;
    }
    process.stderr.write(`interop client failed: ${err && err.stack ? err.stack : err}\n`);
    return 1;
  } finally {
    client.close();
  }
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err) => {
    process.stderr.write(`interop client failed: ${err && err.stack ? err.stack : err}\n`);
    process.exitCode = 1;
  },
);
