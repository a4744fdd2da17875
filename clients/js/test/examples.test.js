import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { gunzipSync } from 'node:zlib';

const PKG_ROOT = fileURLToPath(new URL('..', import.meta.url));
const QUICKSTART = readFileSync(new URL('../examples/quickstart.mjs', import.meta.url), 'utf8');

test('examples/quickstart.mjs is short and README.md shows it verbatim', () => {
  assert.ok(QUICKSTART.trimEnd().split('\n').length <= 25);
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
  assert.ok(readme.includes('```js\n' + QUICKSTART + '```'), 'README quickstart block differs from examples/quickstart.mjs');
});

test("the repository's root README.md shows examples/quickstart.mjs verbatim", () => {
  const readme = readFileSync(new URL('../../../README.md', import.meta.url), 'utf8');
  const section = readme.split('### JavaScript SDK')[1] ?? '';
  assert.ok(section.includes('```js\n' + QUICKSTART + '```'), 'README.md JavaScript SDK block differs from clients/js/examples/quickstart.mjs');
});

test('examples/quickstart.mjs runs against a local stand-in for the API, over real HTTP and gzip', async () => {
  const seen = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      let buf = Buffer.concat(chunks);
      if (req.headers['content-encoding'] === 'gzip') buf = gunzipSync(buf);
      const body = buf.length ? JSON.parse(buf) : null;
      seen.push({ method: req.method, url: req.url, key: req.headers['x-api-key'], encoding: req.headers['content-encoding'], body });
      const reply = (status, b) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(b));
      };
      if (req.url === '/sessions') return reply(201, { id: '0190f0a2-5f5e-7c3a-9a1b-2c3d4e5f6a7b', created_at: new Date().toISOString() });
      const items = body?.items ?? body?.events;
      if (items) return reply(200, { succeeded: items.length, failed: 0, results: items.map((it, index) => ({ index, status: 201, id: it.id ?? it.event_id })) });
      return reply(404, { error: { code: 'ROUTE_NOT_FOUND', message: 'no', details: {} } });
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  try {
    const { stdout } = await promisify(execFile)(process.execPath, ['examples/quickstart.mjs'], {
      cwd: PKG_ROOT,
      env: { ...process.env, ARGUS_URL: `http://127.0.0.1:${server.address().port}`, ARGUS_API_KEY: 'argus_example' },
      timeout: 20_000,
    });
    assert.equal(stdout, 'session 0190f0a2-5f5e-7c3a-9a1b-2c3d4e5f6a7b: sent 4 events, 0 failed\n');
  } finally {
    server.close();
  }
  assert.ok(seen.every((r) => r.key === 'argus_example'));
  const batch = seen.find((r) => r.url === '/batch/events');
  assert.equal(batch.encoding, 'gzip');
  assert.deepEqual(batch.body.items.map((i) => i.data.path), ['/', '/pricing', '/signup']);
  const ingest = seen.find((r) => r.url === '/ingest/batch');
  assert.equal(ingest.body.stream_id, 'quickstart');
});
