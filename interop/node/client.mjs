// Interop check from Node.js: calls genservice the way a caller in another language does,
// with stubs built at run time from the repository's .proto files, and decodes the rich
// error details of a failed call without any Go-generated code.
//
//   node client.mjs ADDR REVOKED_ADDR CERT_DIR
//
// ADDR is an instance whose backend key the gateway accepts, REVOKED_ADDR one whose key it
// rejects (as `genservice demo` starts them); CERT_DIR holds ca.crt, client.crt and
// client.key. Prints one PASS/FAIL line per check and "N passed, M failed"; exits 1 on any
// failure.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import protobuf from 'protobufjs';

const here = dirname(fileURLToPath(import.meta.url));
const protoRoot = join(here, '..', '..', 'proto');

const [addr, revokedAddr, certDir] = process.argv.slice(2);
if (!addr || !revokedAddr || !certDir) {
  console.error('usage: node client.mjs ADDR REVOKED_ADDR CERT_DIR');
  process.exit(2);
}

const SERVICE = 'livepeer.generation.v1.GenerationService';
const DEADLINE_MS = 20_000;

// The contract, loaded as any non-Go caller would: keepCase keeps the snake_case field
// names of the .proto (and of the Livepeer REST API).
const packageDefinition = protoLoader.loadSync(
  ['livepeer/generation/v1/generation_service.proto', 'livepeer/generation/v1/error_reason.proto'],
  { includeDirs: [protoRoot], keepCase: true, longs: String, enums: String, defaults: true, oneofs: true },
);
const proto = grpc.loadPackageDefinition(packageDefinition);
const GenerationService = proto.livepeer.generation.v1.GenerationService;

// google.rpc.Status and google.rpc.ErrorInfo, declared in rpc_status.proto beside this file.
const rpcRoot = new protobuf.Root().loadSync(join(here, 'rpc_status.proto'), { keepCase: true });
const RpcStatus = rpcRoot.lookupType('google.rpc.Status');
const ErrorInfo = rpcRoot.lookupType('google.rpc.ErrorInfo');

const ca = readFileSync(join(certDir, 'ca.crt'));
const clientKey = readFileSync(join(certDir, 'client.key'));
const clientCert = readFileSync(join(certDir, 'client.crt'));
const mtls = grpc.credentials.createSsl(ca, clientKey, clientCert);

// The demo's server certificate names both localhost and 127.0.0.1. Node deprecates an IP
// address as the TLS server name (RFC 6066), so verify it as localhost while connecting to
// the address given.
const channelOptions = { 'grpc.ssl_target_name_override': 'localhost' };

const clients = [];
function client(target, creds) {
  const c = new GenerationService(target, creds, channelOptions);
  clients.push(c);
  return c;
}

function call(c, method, request) {
  return new Promise((resolve, reject) => {
    c[method](request, { deadline: new Date(Date.now() + DEADLINE_MS) }, (err, response) =>
      err ? reject(err) : resolve(response),
    );
  });
}

// expectFailure runs fn, which must throw a gRPC error, and returns that error.
async function expectFailure(fn) {
  try {
    await fn();
  } catch (err) {
    if (typeof err?.code === 'number') return err;
    throw err;
  }
  assert.fail('the call succeeded; expected it to fail');
}

// errorInfo decodes the google.rpc.ErrorInfo in a gRPC error's status details.
function errorInfo(err) {
  const raw = err.metadata?.get('grpc-status-details-bin') ?? [];
  assert.equal(raw.length, 1, 'the error carries one grpc-status-details-bin trailer');
  const st = RpcStatus.toObject(RpcStatus.decode(raw[0]), { defaults: true });
  assert.equal(st.code, err.code, 'google.rpc.Status.code matches the gRPC status code');
  const any = st.details.find((d) => d.type_url.endsWith('/google.rpc.ErrorInfo'));
  assert.ok(any, `status details include a google.rpc.ErrorInfo (got ${st.details.map((d) => d.type_url).join(', ') || 'none'})`);
  return ErrorInfo.toObject(ErrorInfo.decode(any.value), { defaults: true });
}

const tests = [];
const test = (name, fn) => tests.push({ name, fn });

test('ErrorReason enum from error_reason.proto has the reasons as constants', () => {
  const en = packageDefinition['livepeer.generation.v1.ErrorReason'];
  assert.ok(en, 'livepeer.generation.v1.ErrorReason is loaded');
  const names = en.type.value.map((v) => v.name);
  assert.ok(names.includes('ERROR_REASON_UPSTREAM_API_KEY_REJECTED'), `enum values: ${names.join(', ')}`);
  assert.ok(names.includes('ERROR_REASON_CLIENT_CERTIFICATE_REQUIRED'));
});

test(`TextToImage over mTLS on ${addr} returns an image URL`, async () => {
  const res = await call(client(addr, mtls), 'TextToImage', { prompt: 'a red fox', seed: 3 });
  assert.ok(Array.isArray(res.images) && res.images.length > 0, 'at least one image');
  const url = new URL(res.images[0].url); // throws unless absolute
  assert.match(url.protocol, /^https?:$/);
  console.log(`      image ${res.images[0].url} seed=${res.images[0].seed}`);
});

test(`Llm on ${addr}: roles are enum names both ways`, async () => {
  const res = await call(client(addr, mtls), 'Llm', {
    messages: [
      { role: 'LLM_ROLE_SYSTEM', content: 'Be brief.' },
      { role: 'LLM_ROLE_USER', content: 'Say hi' },
    ],
  });
  assert.equal(res.choices?.length, 1, 'one choice');
  assert.equal(res.choices[0].message?.role, 'LLM_ROLE_ASSISTANT');
  assert.ok(res.choices[0].message?.content, 'the answer has text');
  console.log(`      ${res.choices[0].message.role}: ${JSON.stringify(res.choices[0].message.content)}`);
});

test(`Llm on ${addr}: a message without a role is INVALID_ARGUMENT naming messages[0].role`, async () => {
  const err = await expectFailure(() => call(client(addr, mtls), 'Llm', { messages: [{ content: 'hi' }] }));
  assert.equal(err.code, grpc.status.INVALID_ARGUMENT, `status code (${err.message})`);
  assert.equal(errorInfo(err).reason, 'INVALID_REQUEST');
  assert.match(err.details, /messages\[0\]\.role/);
});

// A 1×1 PNG: the simulator segments any image.
const png = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==',
  'base64',
);

test(`SegmentAnything2 on ${addr}: typed prompts in, typed masks out`, async () => {
  const res = await call(client(addr, mtls), 'SegmentAnything2', {
    image: { content: png, content_type: 'image/png' },
    point_coords: [{ x: 0.5, y: 0.5 }],
    point_labels: [1],
    box: { x1: 0, y1: 0, x2: 1, y2: 1 },
  });
  assert.ok(res.masks.length > 0, 'at least one mask');
  assert.equal(res.scores.length, res.masks.length, 'one score per mask');
  for (const m of res.masks) {
    assert.equal(m.values.length, m.height * m.width, `a ${m.height}×${m.width} mask has height×width values`);
  }
  console.log(`      ${res.masks.length} masks of ${res.masks[0].height}×${res.masks[0].width}, scores ${JSON.stringify(res.scores)}`);
});

test(`LlmStream on ${addr}: reads every event to the end (OK status, final finish_reason)`, async () => {
  const stream = client(addr, mtls).LlmStream(
    { messages: [{ role: 'LLM_ROLE_USER', content: 'Count to three' }] },
    { deadline: new Date(Date.now() + DEADLINE_MS) },
  );
  const events = [];
  const status = await new Promise((resolve, reject) => {
    stream.on('data', (ev) => events.push(ev));
    stream.on('error', reject);
    stream.on('status', resolve);
  });
  assert.equal(status.code, grpc.status.OK, `stream status ${status.code}: ${status.details}`);
  assert.ok(events.length > 1, `several events (got ${events.length})`);
  const last = events[events.length - 1];
  assert.ok(last.choices?.[0]?.finish_reason, 'the last event carries finish_reason');
  for (const ev of events.slice(0, -1)) {
    assert.equal(ev.choices?.[0]?.finish_reason ?? '', '', 'only the last event carries finish_reason');
  }
  const text = events.map((ev) => ev.choices?.[0]?.delta?.content ?? '').join('');
  assert.ok(text.length > 0, 'the deltas add up to some text');
  console.log(`      ${events.length} events: ${JSON.stringify(text)} finish_reason=${last.choices[0].finish_reason}`);
});

test(`TextToImage on ${revokedAddr} (backend key rejected): UNAUTHENTICATED with ErrorInfo`, async () => {
  const err = await expectFailure(() => call(client(revokedAddr, mtls), 'TextToImage', { prompt: 'a red fox' }));
  assert.equal(err.code, grpc.status.UNAUTHENTICATED, `status code (${err.message})`);
  const info = errorInfo(err);
  assert.equal(info.reason, 'UPSTREAM_API_KEY_REJECTED');
  assert.equal(info.domain, 'genservice');
  assert.equal(info.metadata.upstreamStatus, '401');
  assert.ok(info.metadata.keyFingerprint?.startsWith('sha256:'), `keyFingerprint ${info.metadata.keyFingerprint}`);
  // The reason is the enum value's name without its prefix, so callers can compare
  // against the generated constant.
  const en = packageDefinition['livepeer.generation.v1.ErrorReason'];
  assert.ok(en.type.value.some((v) => v.name === `ERROR_REASON_${info.reason}`));
  console.log(`      reason=${info.reason} domain=${info.domain} metadata=${JSON.stringify(info.metadata)}`);
});

test(`TextToImage on ${addr} without a client certificate: UNAUTHENTICATED, CLIENT_CERTIFICATE_REQUIRED`, async () => {
  const err = await expectFailure(() =>
    call(client(addr, grpc.credentials.createSsl(ca)), 'TextToImage', { prompt: 'a red fox' }),
  );
  assert.equal(err.code, grpc.status.UNAUTHENTICATED, `status code (${err.message})`);
  const info = errorInfo(err);
  assert.equal(info.reason, 'CLIENT_CERTIFICATE_REQUIRED');
  assert.equal(info.domain, 'genservice');
});

let passed = 0;
let failed = 0;
for (const { name, fn } of tests) {
  try {
    await fn();
    passed++;
    console.log(`PASS  ${name}`);
  } catch (err) {
    failed++;
    console.log(`FAIL  ${name}\n      ${String(err?.stack ?? err).split('\n').join('\n      ')}`);
  }
}
for (const c of clients) c.close();
console.log(`${passed} passed, ${failed} failed`);
process.exitCode = failed === 0 ? 0 : 1;
