// Small helpers with no dependencies: ids, timestamps, byte lengths, gzip, timers.

const encoder = new TextEncoder();

/** A random UUID v4 (crypto.randomUUID, or getRandomValues where it is missing). */
export function uuid() {
  const c = globalThis.crypto;
  if (c && typeof c.randomUUID === 'function') return c.randomUUID();
  const b = new Uint8Array(16);
  if (c && typeof c.getRandomValues === 'function') c.getRandomValues(b);
  else for (let i = 0; i < 16; i++) b[i] = Math.floor(Math.random() * 256);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** UTF-8 length of a string, in bytes. */
export function utf8Length(s) {
  if (typeof Buffer !== 'undefined' && typeof Buffer.byteLength === 'function') return Buffer.byteLength(s, 'utf8');
  return encoder.encode(s).length;
}

/**
 * An RFC 3339 timestamp (UTC, milliseconds) from a Date, epoch milliseconds or a string
 * (strings are passed on as given: the server accepts any RFC 3339 offset).
 */
export function toTimestamp(value) {
  if (value instanceof Date) return value.toISOString();
  if (typeof value === 'number') return new Date(value).toISOString();
  return value;
}

let zlibModule;
function loadZlib() {
  if (zlibModule === undefined) {
    const name = 'node:zlib'; // a variable specifier: bundlers for browsers leave it alone
    zlibModule = import(/* webpackIgnore: true */ /* @vite-ignore */ name).then(
      (m) => (m && typeof m.gzipSync === 'function' ? m : m?.default ?? null),
      () => null,
    );
  }
  return zlibModule;
}

/**
 * Gzip a string. node:zlib's gzipSync where it exists, else CompressionStream (browsers,
 * Deno, workers); null when neither is available (the body then goes uncompressed).
 * @param {string} text
 * @param {{ prefer?: 'zlib' | 'stream' }} [opts] `stream` forces CompressionStream (tests)
 * @returns {Promise<Uint8Array|null>}
 */
export async function gzip(text, opts = {}) {
  const bytes = encoder.encode(text);
  if (opts.prefer !== 'stream') {
    const z = await loadZlib();
    if (z && typeof z.gzipSync === 'function') {
      const out = z.gzipSync(bytes);
      return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
    }
  }
  if (typeof CompressionStream === 'function') {
    const stream = new Blob([bytes]).stream().pipeThrough(new CompressionStream('gzip'));
    return new Uint8Array(await new Response(stream).arrayBuffer());
  }
  return null;
}

/**
 * The real clock. Timers are unref'd: a pending flush timer or backoff never keeps a Node
 * process alive on its own (flush() holds the process open while someone awaits it).
 */
export const realClock = {
  now: () => Date.now(),
  setTimeout(fn, ms) {
    const h = setTimeout(fn, ms);
    if (h && typeof h.unref === 'function') h.unref();
    return h;
  },
  clearTimeout(h) {
    clearTimeout(h);
  },
  sleep(ms) {
    return new Promise((resolve) => realClock.setTimeout(resolve, ms));
  },
};

/** Fill the missing members of an injected clock with the real ones. */
export function makeClock(clock = {}) {
  const c = {
    now: clock.now ?? realClock.now,
    setTimeout: clock.setTimeout ?? realClock.setTimeout,
    clearTimeout: clock.clearTimeout ?? realClock.clearTimeout,
  };
  c.sleep = clock.sleep ?? ((ms) => new Promise((resolve) => c.setTimeout(resolve, ms)));
  return c;
}

/** Invoke a user callback; whatever it throws is swallowed (the SDK's worker must go on). */
export function safeCall(fn, ...args) {
  if (typeof fn !== 'function') return;
  try {
    const r = fn(...args);
    if (r && typeof r.then === 'function') r.then(undefined, () => {});
  } catch {
    // a callback's failure is the caller's; it never stops delivery
  }
}

/** Keep a Node process alive until the promise settles (the SDK's own timers are unref'd). */
export async function holdOpen(promise) {
  const keepAlive = typeof setInterval === 'function' ? setInterval(() => {}, 1 << 30) : null;
  try {
    return await promise;
  } finally {
    if (keepAlive !== null) clearInterval(keepAlive);
  }
}
