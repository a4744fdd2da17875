import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

import { realClock } from '../src/util.js';
import { FakeTransport, bulkAnswer, errorAnswer, events, itemsOf, makeClient, tick, waitFor, SESSION, UUID_RE } from '../testing/fakes.js';

test('below N nothing is sent until T has passed, then one batch', async () => {
  const { client, transport, clock } = makeClient(undefined, { maxBatchSize: 500, flushIntervalMs: 5000 });
  for (const e of events(3)) client.track(e);
  await tick();
  assert.equal(transport.requests.length, 0);
  clock.advance(4999);
  await tick();
  assert.equal(transport.requests.length, 0, 'nothing before T');
  clock.advance(1);
  await waitFor(() => transport.requests.length === 1);
  const [req] = transport.requests;
  assert.equal(req.method, 'POST');
  assert.equal(req.path, '/batch/events');
  assert.equal(req.json.mode, 'partial');
  assert.equal(itemsOf(req).length, 3);
  await waitFor(() => client.stats.sent === 3);
});

test('T counts from the oldest queued event, not from the last one', async () => {
  const { client, transport, clock } = makeClient(undefined, { flushIntervalMs: 1000 });
  client.track(events(1)[0]);
  clock.advance(900);
  client.track(events(1)[0]);
  clock.advance(100);
  await waitFor(() => transport.requests.length === 1);
  assert.equal(itemsOf(transport.requests[0]).length, 2);
});

test('N queued events are sent at once, without waiting for T', async () => {
  const { client, transport } = makeClient(undefined, { maxBatchSize: 10, flushIntervalMs: 60_000 });
  for (const e of events(25)) client.track(e);
  await waitFor(() => transport.requests.length === 2);
  await tick();
  assert.deepEqual(transport.requests.map((r) => itemsOf(r).length), [10, 10]);
  assert.equal(client.stats.queued, 5, 'the remainder waits for T or a flush');
  await client.flush();
  assert.deepEqual(transport.requests.map((r) => itemsOf(r).length), [10, 10, 5]);
  assert.equal(client.stats.sent, 25);
});

test('items go out in track order with the Argus event shape', async () => {
  const { client, transport, clock } = makeClient();
  const ids = [];
  ids.push(client.track({ sessionId: SESSION, category: 'page', name: 'view', data: { path: '/' } }));
  ids.push(client.track({ sessionId: SESSION, category: 'page', name: 'view', data: { path: '/a' }, stream: 'web', metadata: { v: 1 }, timestamp: new Date('2026-02-01T00:00:00Z') }));
  await client.flush();
  const items = itemsOf(transport.requests[0]);
  assert.deepEqual(items.map((i) => i.id), ids);
  assert.match(ids[0], UUID_RE);
  assert.deepEqual(items[0], { id: ids[0], session_id: SESSION, category: 'page', name: 'view', data: { path: '/' }, timestamp: new Date(clock.now()).toISOString() });
  assert.deepEqual(items[1], { id: ids[1], session_id: SESSION, category: 'page', name: 'view', stream: 'web', data: { path: '/a' }, timestamp: '2026-02-01T00:00:00.000Z', metadata: { v: 1 } });
});

test('sent_at is the clock at send time, and data is captured at track time', async () => {
  const { client, transport, clock } = makeClient(undefined, { flushIntervalMs: 2000 });
  const data = { n: 1 };
  client.track({ sessionId: SESSION, category: 'c', name: 'n', data });
  data.n = 2; // a change after track() is not sent: retries must resend the same content
  const trackedAt = clock.now();
  clock.advance(2000);
  await waitFor(() => transport.requests.length === 1);
  const body = transport.requests[0].json;
  assert.equal(body.sent_at, new Date(trackedAt + 2000).toISOString());
  assert.equal(body.items[0].timestamp, new Date(trackedAt).toISOString());
  assert.deepEqual(body.items[0].data, { n: 1 });
});

test('sendSentAt: false leaves sent_at out (imports whose timestamps are right)', async () => {
  const { client, transport } = makeClient(undefined, { sendSentAt: false });
  client.track(events(1)[0]);
  client.ingest.sendEvent({ streamId: 'web', eventType: 'click', data: { a: 1 } });
  await client.flush();
  assert.equal(transport.requests.length, 2);
  for (const r of transport.requests) assert.equal('sent_at' in r.json, false);
  assert.equal(transport.requests[0].json.mode, 'partial');
  assert.equal(transport.requests[1].json.stream_id, 'web');
});

test('a batch stays within maxBatchBytes', async () => {
  const { client, transport } = makeClient(undefined, { maxBatchBytes: 2000 });
  for (const e of events(20, { data: { pad: 'x'.repeat(300) } })) client.track(e);
  await client.flush();
  assert.ok(transport.requests.length > 1);
  for (const r of transport.requests) {
    const size = Buffer.byteLength(JSON.stringify(r.json));
    assert.ok(size <= 2000, `request of ${size} bytes`);
  }
  assert.equal(client.stats.sent, 20);
});

test('an event larger than a whole request fails alone, without a request', async () => {
  const { client, transport, errors } = makeClient(undefined, { maxBatchBytes: 1000 });
  client.track(events(1, { data: { pad: 'x'.repeat(2000) } })[0]);
  client.track(events(1)[0]);
  const r = await client.flush();
  assert.equal(r.failed, 1);
  assert.equal(r.sent, 1);
  assert.equal(errors[0].err.code, 'PAYLOAD_TOO_LARGE');
  assert.equal(transport.requests.length, 1);
});

test('track() never throws: bad input is reported to onError and returns null', async () => {
  const { client, transport, errors } = makeClient();
  const circular = { a: 1 };
  circular.self = circular;
  assert.equal(client.track(null), null);
  assert.equal(client.track('nope'), null);
  assert.equal(client.track({ sessionId: SESSION, category: 'c', name: 'n', data: circular }), null);
  assert.equal(client.track({ sessionId: SESSION, category: 'c', name: 'n', data: { big: 1n } }), null);
  const evil = { sessionId: SESSION, category: 'c', name: 'n', get data() { throw new Error('boom'); } };
  assert.equal(client.track(evil), null);
  const ok = client.track(events(1)[0]);
  assert.match(ok, UUID_RE);
  await client.flush();
  assert.equal(errors.length, 5);
  for (const { err } of errors) assert.equal(err.code, 'INVALID_ARGUMENT');
  assert.equal(itemsOf(transport.requests[0]).length, 1);
  assert.equal(client.stats.failed, 5);
});

test('onError and onDrop callbacks that throw do not disturb sending', async () => {
  const { client } = makeClient((rec) => bulkAnswer(rec, (_, i) => (i === 0 ? 400 : 201)), {
    maxQueueSize: 2,
    onError: () => {
      throw new Error('callback bug');
    },
    onDrop: () => {
      throw new Error('callback bug');
    },
  });
  for (const e of events(3)) client.track(e);
  const r = await client.flush();
  assert.deepEqual([r.sent, r.failed, r.dropped], [1, 1, 1]);
});

test('GET /limits sizes batches and turns gzip off when the server does not list it', async () => {
  const transport = new FakeTransport((rec) => {
    if (rec.path === '/limits') {
      return { status: 200, body: { bulk: { max_items: 4, max_bytes: 5242880, max_atomic_items: 100 }, request: { max_body_bytes: 6000000, max_decompressed_bytes: 5242880, content_encodings: [] } } };
    }
    return bulkAnswer(rec);
  });
  const { client } = makeClient(undefined, { transport, fetchLimits: true });
  for (const e of events(10)) client.track(e);
  await client.flush();
  assert.equal(transport.requests[0].path, '/limits');
  assert.equal(transport.requests.filter((r) => r.path === '/limits').length, 1, 'asked once');
  assert.deepEqual(transport.batches.map((r) => itemsOf(r).length), [4, 4, 2]);
  for (const r of transport.batches) assert.equal(r.headers['content-encoding'], undefined);
});

test('when GET /limits fails the defaults apply and sending goes on', async () => {
  const transport = new FakeTransport((rec) => (rec.path === '/limits' ? errorAnswer(404, 'ROUTE_NOT_FOUND') : bulkAnswer(rec)));
  const { client } = makeClient(undefined, { transport, fetchLimits: true });
  for (const e of events(30)) client.track(e);
  const r = await client.flush();
  assert.equal(r.sent, 30);
  assert.equal(transport.batches.length, 1);
  assert.equal(transport.batches[0].headers['content-encoding'], 'gzip');
});

test('the real timers are unref\'d', () => {
  const h = realClock.setTimeout(() => {}, 60_000);
  assert.equal(h.hasRef(), false);
  realClock.clearTimeout(h);
});

test('a process with queued events exits at once and flushes them on beforeExit', () => {
  const here = fileURLToPath(new URL('.', import.meta.url));
  const script = `
    import { FakeTransport } from '../testing/fakes.js';
    import { Client } from '../src/index.js';
    const transport = new FakeTransport();
    const client = new Client({ baseUrl: 'http://argus.test', apiKey: 'k', fetchLimits: false, flushIntervalMs: 60000, transport });
    client.track({ sessionId: '0190f0a2-5f5e-7c3a-9a1b-2c3d4e5f6a7b', category: 'c', name: 'n', data: { a: 1 } });
    process.on('exit', () => console.log('batches=' + transport.batches.length + ' sent=' + client.stats.sent));
  `;
  const started = Date.now();
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: here, encoding: 'utf8', timeout: 20_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /batches=1 sent=1/);
  assert.ok(Date.now() - started < 10_000, 'the 60 s flush timer did not hold the process');
});
