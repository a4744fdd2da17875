// Integration tests against a running Argus (`make dev` prints a key; the local API listens on
// http://127.0.0.1:3000). They run only when ARGUS_URL and ARGUS_API_KEY are set:
//
//   ARGUS_URL=http://127.0.0.1:3000 ARGUS_API_KEY=argus_... node --test test/integration.test.js
//
// Each test makes its own session or stream, so they can run against a database with data.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { gunzipSync } from 'node:zlib';

import { ArgusError, Client, FetchTransport } from '../src/index.js';

const BASE_URL = process.env.ARGUS_URL;
const API_KEY = process.env.ARGUS_API_KEY;
const skip = BASE_URL && API_KEY ? false : 'set ARGUS_URL and ARGUS_API_KEY to run the integration tests';
const PKG_ROOT = fileURLToPath(new URL('..', import.meta.url));
const OPTS = { skip, timeout: 180_000 };

/** A FetchTransport that remembers the batch requests it sent and their answers. */
class RecordingTransport extends FetchTransport {
  constructor() {
    super();
    this.log = [];
  }

  async request(req) {
    const res = await super.request(req);
    let ids = [];
    if (req.body !== undefined) {
      const text = req.headers['content-encoding'] === 'gzip' ? gunzipSync(req.body).toString('utf8') : String(req.body);
      const body = JSON.parse(text);
      ids = (body.items ?? body.events ?? []).map((item) => item.id ?? item.event_id);
    }
    this.log.push({ method: req.method, url: req.url, encoding: req.headers['content-encoding'], status: res.status, ids });
    return res;
  }
}

function newClient(options = {}) {
  const errors = [];
  const transport = options.transport ?? new RecordingTransport();
  const client = new Client({
    baseUrl: BASE_URL,
    apiKey: API_KEY,
    flushOnExit: false,
    onError: (err, item) => errors.push({ err, item }),
    ...options,
    transport,
  });
  return { client, errors, transport };
}

/** Retry fn until it stops throwing (reads trail writes: indexes, the aggregator). */
async function eventually(fn, { timeoutMs = 30_000, intervalMs = 250 } = {}) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (Date.now() > end) throw err;
      await new Promise((r) => setTimeout(r, intervalMs));
    }
  }
}

function describeErrors(errors) {
  return errors.slice(0, 5).map(({ err, item }) => `${err.status} ${err.code}: ${err.message} (${JSON.stringify(item).slice(0, 200)})`).join('\n');
}

function uniqueStream(tag) {
  return `sdk-js-${tag}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
}

test('1,000 tracked events are stored exactly once and read back through GET /events', OPTS, async () => {
  const { client, errors, transport } = newClient();
  const session = await client.sessions.create({ metadata: { sdk: 'js', test: 'integration' } });
  assert.match(session.id, /^[0-9a-f-]{36}$/i);

  const tracked = new Map();
  for (let i = 0; i < 1000; i++) {
    const id = client.track({ sessionId: session.id, category: 'sdk-test', name: 'tick', data: { i } });
    assert.ok(id, `event ${i} was dropped`);
    tracked.set(id, i);
  }
  assert.equal(tracked.size, 1000, 'ids are unique');

  const r = await client.shutdown({ timeoutMs: 150_000 });
  assert.equal(r.timedOut, false);
  assert.equal(errors.length, 0, describeErrors(errors));
  assert.deepEqual([r.sent, r.failed, r.dropped], [1000, 0, 0]);

  const batches = transport.log.filter((l) => l.url.endsWith('/batch/events'));
  assert.ok(batches.filter((b) => b.status === 200).length >= 2, 'default batches of 500');
  for (const b of batches) assert.equal(b.encoding, 'gzip', 'batches are sent gzipped');

  const reader = newClient().client;
  await eventually(async () => {
    const seen = new Map();
    for await (const ev of reader.events.iterate({ sessionId: session.id, limit: 1000 })) {
      seen.set(ev.id, (seen.get(ev.id) ?? 0) + 1);
      if (tracked.has(ev.id)) assert.equal(ev.data.i, tracked.get(ev.id), `data of ${ev.id}`);
    }
    const missing = [...tracked.keys()].filter((id) => !seen.has(id));
    const twice = [...seen].filter(([, n]) => n !== 1);
    const extra = [...seen.keys()].filter((id) => !tracked.has(id));
    assert.deepEqual({ missing: missing.length, twice, extra }, { missing: 0, twice: [], extra: [] });
  });

  const one = await reader.events.get([...tracked.keys()][0]);
  assert.equal(one.session_id, session.id);
  assert.equal(one.category, 'sdk-test');
  assert.equal(one.name, 'tick');
});

test('DataStream events: ingest.sendEvent, read back with GET /query/events, aggregated, stream status', OPTS, async () => {
  const { client, errors, transport } = newClient();
  const stream = uniqueStream('ds');
  const start = new Date(Date.now() - 60_000);
  const sent = new Map();
  for (let i = 0; i < 30; i++) {
    const eventType = i % 3 === 0 ? 'view' : 'click';
    const id = client.ingest.sendEvent({ streamId: stream, eventType, data: { i, amount: i }, metadata: { sdk: 'js' } });
    assert.ok(id);
    sent.set(id, eventType);
  }
  const r = await client.flush({ timeoutMs: 60_000 });
  assert.equal(errors.length, 0, describeErrors(errors));
  assert.deepEqual([r.sent, r.failed, r.timedOut], [30, 0, false]);
  const batches = transport.log.filter((l) => l.url.endsWith('/ingest/batch'));
  assert.ok(batches.length >= 1);
  for (const b of batches) assert.equal(b.encoding, 'gzip', 'batches are sent gzipped');

  await eventually(async () => {
    const seen = new Map();
    for await (const ev of client.query.iterateEvents({ streamId: stream, limit: 7 })) {
      seen.set(ev.event_id, (seen.get(ev.event_id) ?? 0) + 1);
      assert.equal(ev.event_type, sent.get(ev.event_id), `event_type of ${ev.event_id}`);
    }
    assert.equal(seen.size, 30);
    for (const id of sent.keys()) assert.equal(seen.get(id), 1, `${id} read back once`);
  });
  const page = await client.query.events({ streamId: stream, eventType: 'view', limit: 100 });
  assert.equal(page.events.length, 10);
  assert.ok(page.events.every((e) => e.event_type === 'view'));

  const end = new Date(Date.now() + 60_000);
  await eventually(async () => {
    const agg = await client.query.aggregate({
      streamId: stream,
      timeWindow: { start, end },
      aggregations: [{ field: '*', operation: 'count' }],
      groupBy: 'event_type',
    });
    const counts = Object.fromEntries(agg.results.map((row) => [row.group, row.values[0].value]));
    assert.deepEqual(counts, { click: 20, view: 10 });
  });
  const sum = await client.query.aggregate({
    streamId: stream,
    timeWindow: { start, end },
    aggregations: [{ field: 'data.amount', operation: 'sum' }, { field: '*', operation: 'count' }],
  });
  assert.deepEqual(sum.results[0].values.map((v) => v.value), [435, 30]);

  await eventually(async () => {
    const status = await client.streams.status(stream);
    assert.equal(status.stream_id, stream);
    assert.equal(status.events_processed, 30);
  });
});

test('sent_at: a client clock an hour fast still stores events at the server\'s time, keeping client_timestamp', OPTS, async () => {
  const skewMs = 3_600_000;
  const { client, errors } = newClient({ clock: { now: () => Date.now() + skewMs } });
  const session = await client.sessions.create();
  const id = client.track({ sessionId: session.id, category: 'sdk-test', name: 'skewed', data: { a: 1 } });
  const stream = uniqueStream('skew');
  const dsId = client.ingest.sendEvent({ streamId: stream, eventType: 'skewed', data: { a: 1 } });
  const r = await client.flush({ timeoutMs: 60_000 });
  // Without the correction the server would refuse these as TIMESTAMP_IN_FUTURE.
  assert.equal(errors.length, 0, describeErrors(errors));
  assert.equal(r.sent, 2);

  const ev = await eventually(() => client.events.get(id));
  assert.ok(Math.abs(Date.parse(ev.timestamp) - Date.now()) < 60_000, `stored timestamp ${ev.timestamp} is the server's time`);
  assert.ok('client_timestamp' in ev, 'the original timestamp is kept as client_timestamp');
  assert.ok(Math.abs(Date.parse(ev.client_timestamp) - (Date.parse(ev.timestamp) + skewMs)) < 60_000, `client_timestamp ${ev.client_timestamp}`);

  const dsEvent = await eventually(() => client.events.get(dsId));
  assert.ok(Math.abs(Date.parse(dsEvent.timestamp) - Date.now()) < 60_000, `DataStream event stored at ${dsEvent.timestamp}`);
});

test('validateOnly: the same answers, nothing written; invalid items go to onError without a retry', OPTS, async () => {
  const real = newClient().client;
  const session = await real.sessions.create();
  const { client, errors, transport } = newClient({ validateOnly: true });
  const ids = [0, 1, 2].map((i) => client.track({ sessionId: session.id, category: 'sdk-test', name: 'dry-run', data: { i } }));
  const bad = client.track({ sessionId: session.id, category: 'sdk-test', name: 'dry-run', data: {} }); // DATA_EMPTY
  const r = await client.flush({ timeoutMs: 60_000 });
  assert.deepEqual([r.sent, r.failed], [3, 1]);
  assert.equal(errors.length, 1);
  assert.equal(errors[0].err.status, 400);
  assert.equal(errors[0].item.id, bad);
  const carrying = transport.log.filter((l) => l.ids.includes(bad));
  assert.equal(carrying.at(-1).status, 200, 'sent until an answer named it');
  assert.equal(carrying.filter((l) => l.status === 200).length, 1, 'a 400 item is not retried');
  assert.ok(transport.log.every((l) => !l.url.includes('/batch/events') || l.url.endsWith('?validate_only=true')));
  for (const id of ids) {
    await assert.rejects(real.events.get(id), (err) => err instanceof ArgusError && err.status === 404 && err.code === 'NOT_FOUND');
  }
});

test('GET /limits, and errors as ArgusError', OPTS, async () => {
  const { client } = newClient();
  const limits = await client.limits();
  assert.ok(Number.isInteger(limits.bulk.max_items) && limits.bulk.max_items > 0);
  assert.ok(Number.isInteger(limits.bulk.max_bytes) && limits.bulk.max_bytes > 0);
  assert.ok(limits.request.content_encodings.includes('gzip'));
  assert.equal(typeof limits.rate_limits.window_seconds, 'number');

  await assert.rejects(client.sessions.get('00000000-0000-4000-8000-000000000000'), { name: 'ArgusError', status: 404, code: 'NOT_FOUND' });
  const wrong = new Client({ baseUrl: BASE_URL, apiKey: 'argus_not_a_real_key_000000000000000000000000000', flushOnExit: false });
  await assert.rejects(wrong.sessions.list(), (err) => err instanceof ArgusError && err.status === 401);
});

test('examples/quickstart.mjs runs and its events are stored', OPTS, async () => {
  const { stdout, stderr } = await promisify(execFile)(process.execPath, ['examples/quickstart.mjs'], {
    cwd: PKG_ROOT,
    env: { ...process.env, ARGUS_URL: BASE_URL, ARGUS_API_KEY: API_KEY },
    timeout: 120_000,
  }); // rejects on a non-zero exit code
  assert.equal(stderr, '');
  const m = stdout.match(/^session ([0-9a-f-]{36}): sent 4 events, 0 failed$/m);
  assert.ok(m, `unexpected output: ${stdout}`);

  const { client } = newClient();
  await eventually(async () => {
    const page = await client.events.list({ sessionId: m[1], limit: 100 });
    assert.deepEqual(page.items.map((e) => e.data.path).sort(), ['/', '/pricing', '/signup']);
  });
});
