import { test } from 'node:test';
import assert from 'node:assert/strict';
import { gunzipSync } from 'node:zlib';

import { gzip } from '../src/util.js';
import { bulkAnswer, errorAnswer, events, itemsOf, makeClient } from '../testing/fakes.js';

test('batches are gzipped: Content-Encoding gzip, and the body decompresses to the JSON batch', async () => {
  const { client, transport } = makeClient();
  const ids = events(50).map((e) => client.track(e));
  await client.flush();
  const [req] = transport.requests;
  assert.equal(req.headers['content-encoding'], 'gzip');
  assert.equal(req.headers['content-type'], 'application/json');
  assert.ok(req.rawBody instanceof Uint8Array);
  assert.deepEqual([...req.rawBody.subarray(0, 2)], [0x1f, 0x8b], 'gzip magic');
  const body = JSON.parse(gunzipSync(req.rawBody).toString('utf8'));
  assert.equal(body.mode, 'partial');
  assert.match(body.sent_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  assert.deepEqual(body.items.map((i) => i.id), ids);
  assert.ok(req.rawBody.length < Buffer.byteLength(JSON.stringify(body)), 'smaller than the JSON');
});

test('gzip: false sends the plain JSON text', async () => {
  const { client, transport } = makeClient(undefined, { gzip: false });
  client.track(events(1)[0]);
  await client.flush();
  const [req] = transport.requests;
  assert.equal(req.headers['content-encoding'], undefined);
  assert.equal(typeof req.rawBody, 'string');
  assert.equal(JSON.parse(req.rawBody).items.length, 1);
});

test('415 to a gzipped batch: resent uncompressed at once, and uncompressed from then on', async () => {
  const { client, transport, clock } = makeClient((rec) =>
    rec.headers['content-encoding'] === 'gzip' ? errorAnswer(415, 'UNSUPPORTED_MEDIA_TYPE') : bulkAnswer(rec),
  );
  client.track(events(1)[0]);
  await client.flush();
  client.track(events(1)[0]);
  const r = await client.flush();
  assert.deepEqual(transport.requests.map((q) => q.headers['content-encoding'] ?? 'none'), ['gzip', 'none', 'none']);
  assert.deepEqual(itemsOf(transport.requests[1]), itemsOf(transport.requests[0]));
  assert.deepEqual(clock.sleeps, [], 'no backoff for the fallback');
  assert.equal(r.sent, 2);
});

test('the CompressionStream path (browsers) produces the same JSON', async () => {
  const text = JSON.stringify({ items: events(20), s: 'é ✓' });
  const viaStream = await gzip(text, { prefer: 'stream' });
  const viaZlib = await gzip(text);
  assert.equal(gunzipSync(viaStream).toString('utf8'), text);
  assert.equal(gunzipSync(viaZlib).toString('utf8'), text);
});
