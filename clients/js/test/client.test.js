import { test } from 'node:test';
import assert from 'node:assert/strict';

import { ArgusError, Client } from '../src/index.js';
import { FakeTransport, errorAnswer, makeClient } from '../testing/fakes.js';

test('sessions.create posts the metadata with an Idempotency-Key and the API key', async () => {
  const { client, transport } = makeClient(() => ({ status: 201, body: { id: 's1', created_at: '2026-03-01T12:00:00.000Z', metadata: { app: 'web' } } }));
  const s = await client.sessions.create({ metadata: { app: 'web' } });
  assert.equal(s.id, 's1');
  const [req] = transport.requests;
  assert.deepEqual([req.method, req.path], ['POST', '/sessions']);
  assert.deepEqual(req.json, { metadata: { app: 'web' } });
  assert.equal(req.headers['x-api-key'], 'argus_test_key');
  assert.equal(req.headers['content-type'], 'application/json');
  assert.equal(req.headers['content-encoding'], undefined, 'synchronous calls are not compressed');
  assert.ok(req.headers['idempotency-key']);
});

test('sessions.create retried after a 503 reuses its Idempotency-Key', async () => {
  const { client, transport, clock } = makeClient((_, i) => (i === 0 ? errorAnswer(503, 'SERVICE_UNAVAILABLE', 'down', {}, { 'Retry-After': '1' }) : { status: 201, body: { id: 's1' } }));
  await client.sessions.create();
  assert.equal(transport.requests.length, 2);
  assert.equal(transport.requests[0].headers['idempotency-key'], transport.requests[1].headers['idempotency-key']);
  assert.deepEqual(transport.requests[0].json, {});
  assert.deepEqual(clock.sleeps, [1000]);
});

test('errors throw ArgusError with status, code, message and details', async () => {
  const { client } = makeClient(() => errorAnswer(404, 'NOT_FOUND', 'no such session', { resource: 'session', id: 'x' }));
  await assert.rejects(client.sessions.get('x'), (err) => {
    assert.ok(err instanceof ArgusError);
    assert.ok(err instanceof Error);
    assert.equal(err.status, 404);
    assert.equal(err.code, 'NOT_FOUND');
    assert.equal(err.message, 'no such session');
    assert.deepEqual(err.details, { resource: 'session', id: 'x' });
    assert.equal(err.retryable, false);
    return true;
  });
});

test('an answer without the envelope (API Gateway) still throws ArgusError', async () => {
  const { client } = makeClient(() => ({ status: 401, body: { message: 'Unauthorized' } }));
  await assert.rejects(client.events.get('e'), { name: 'ArgusError', status: 401, code: 'HTTP_ERROR', message: 'Unauthorized' });
});

test('GETs are retried on 429/5xx/network errors up to requestMaxAttempts, then throw', async () => {
  const { client, transport } = makeClient(() => errorAnswer(429, 'RATE_LIMITED', 'slow', { reset_seconds: 2 }, { 'Retry-After': '2' }), { requestMaxAttempts: 3 });
  await assert.rejects(client.sessions.list(), (err) => err.code === 'RATE_LIMITED' && err.attempts === 3 && err.retryAfterMs === 2000);
  assert.equal(transport.requests.length, 3);
  const net = makeClient(() => new TypeError('fetch failed'), { requestMaxAttempts: 2 });
  await assert.rejects(net.client.streams.status('web'), { code: 'NETWORK_ERROR', status: 0 });
  assert.equal(net.transport.requests.length, 2);
});

test('events.list maps filters to the API names; iterate follows next_cursor', async () => {
  const pages = [
    { items: [{ id: 'a' }, { id: 'b' }], next_cursor: 'c1' },
    { items: [], next_cursor: 'c2' },
    { items: [{ id: 'c' }], next_cursor: null },
  ];
  const { client, transport } = makeClient((_, i) => ({ status: 200, body: pages[i] }));
  const seen = [];
  for await (const e of client.events.iterate({ sessionId: 's1', stream: 'web', timestampGte: new Date('2026-01-01T00:00:00Z'), limit: 2 })) seen.push(e.id);
  assert.deepEqual(seen, ['a', 'b', 'c']);
  assert.deepEqual(transport.requests.map((r) => r.query), [
    { session: 's1', stream: 'web', timestamp__gte: '2026-01-01T00:00:00.000Z', limit: '2' },
    { session: 's1', stream: 'web', timestamp__gte: '2026-01-01T00:00:00.000Z', limit: '2', cursor: 'c1' },
    { session: 's1', stream: 'web', timestamp__gte: '2026-01-01T00:00:00.000Z', limit: '2', cursor: 'c2' },
  ]);
});

test('query.events, query.iterateEvents, query.aggregate and streams.status', async () => {
  const { client, transport } = makeClient((rec) => {
    if (rec.path === '/query/events') {
      return rec.query.cursor
        ? { status: 200, body: { events: [{ event_id: '2' }], total_count: 2, has_more: false, next_cursor: null } }
        : { status: 200, body: { events: [{ event_id: '1' }], total_count: 2, has_more: true, next_cursor: 'k' } };
    }
    if (rec.path === '/query/aggregate') return { status: 200, body: { results: [{ values: [{ field: '*', operation: 'count', value: 2 }] }] } };
    return { status: 200, body: { stream_id: 'a b', status: 'idle' } };
  });
  const page = await client.query.events({ streamId: 'web', eventType: 'click', startTime: '2026-01-01T00:00:00Z', limit: 1, offset: 0 });
  assert.equal(page.has_more, true);
  assert.deepEqual(transport.requests[0].query, { stream_id: 'web', event_type: 'click', start_time: '2026-01-01T00:00:00Z', limit: '1', offset: '0' });
  const all = [];
  for await (const e of client.query.iterateEvents({ streamId: 'web', offset: 0 })) all.push(e.event_id);
  assert.deepEqual(all, ['1', '2']);
  assert.deepEqual(transport.requests[2].query, { stream_id: 'web', cursor: 'k' }, 'no offset with a cursor');

  const agg = await client.query.aggregate({
    streamId: 'web',
    timeWindow: { start: new Date('2026-01-01T00:00:00Z'), end: '2026-01-02T00:00:00Z' },
    aggregations: [{ field: '*', operation: 'count' }],
    groupBy: 'event_type',
    interval: 'hour',
  });
  assert.equal(agg.results[0].values[0].value, 2);
  assert.deepEqual(transport.requests[3].json, {
    stream_id: 'web',
    time_window: { start: '2026-01-01T00:00:00.000Z', end: '2026-01-02T00:00:00Z' },
    aggregations: [{ field: '*', operation: 'count' }],
    group_by: 'event_type',
    interval: 'hour',
  });
  await client.streams.status('a b');
  assert.equal(transport.requests[4].url, 'http://argus.test/streams/a%20b/status');
});

test('rate-limit headers are kept in client.rateLimit', async () => {
  const { client } = makeClient(() => ({
    status: 200,
    headers: { 'RateLimit-Limit': '1000', 'RateLimit-Remaining': '998', 'RateLimit-Reset': '1200', 'Argus-Events-Limit': '100000', 'Argus-Events-Remaining': '99000' },
    body: { items: [], next_cursor: null },
  }));
  assert.equal(client.rateLimit, null);
  await client.sessions.list();
  assert.deepEqual(client.rateLimit, { limit: 1000, remaining: 998, resetSeconds: 1200, eventsLimit: 100000, eventsRemaining: 99000 });
});

test('configuration: env ARGUS_URL / ARGUS_API_KEY, bearer tokens, and clear errors when missing', async () => {
  const saved = { url: process.env.ARGUS_URL, key: process.env.ARGUS_API_KEY };
  try {
    process.env.ARGUS_URL = 'http://from-env:3000/';
    process.env.ARGUS_API_KEY = 'argus_env';
    const transport = new FakeTransport(() => ({ status: 200, body: {} }));
    const c = new Client({ transport, flushOnExit: false });
    assert.equal(c.baseUrl, 'http://from-env:3000');
    await c.limits();
    assert.equal(transport.requests[0].url, 'http://from-env:3000/limits');
    assert.equal(transport.requests[0].headers['x-api-key'], 'argus_env');
    assert.ok(!JSON.stringify(c).includes('argus_env'), 'the key is not an enumerable property');

    const b = new Client({ transport, bearerToken: 'jwt', flushOnExit: false });
    await b.limits();
    assert.equal(transport.requests[1].headers.authorization, 'Bearer jwt');
    assert.equal(transport.requests[1].headers['x-api-key'], undefined);

    delete process.env.ARGUS_URL;
    delete process.env.ARGUS_API_KEY;
    assert.throws(() => new Client({ apiKey: 'k' }), { name: 'ArgusError', code: 'INVALID_ARGUMENT', message: /ARGUS_URL/ });
    assert.throws(() => new Client({ baseUrl: 'http://x' }), { code: 'INVALID_ARGUMENT', message: /ARGUS_API_KEY/ });
    assert.throws(() => new Client({ baseUrl: 'http://x', apiKey: 'k', maxBatchSize: 0 }), { code: 'INVALID_ARGUMENT' });
  } finally {
    if (saved.url === undefined) delete process.env.ARGUS_URL;
    else process.env.ARGUS_URL = saved.url;
    if (saved.key === undefined) delete process.env.ARGUS_API_KEY;
    else process.env.ARGUS_API_KEY = saved.key;
  }
});

test('client.request reaches any route', async () => {
  const { client, transport } = makeClient(() => ({ status: 200, body: { stream_id: 'web', retention_days: 30 } }));
  const s = await client.request('patch', '/streams/web', { body: { retention_days: 30 } });
  assert.equal(s.retention_days, 30);
  assert.deepEqual([transport.requests[0].method, transport.requests[0].json], ['PATCH', { retention_days: 30 }]);
});
