// The HTTP layer: one method, request(), over global fetch. Tests inject a fake with the same
// method (see testing/fakes.js), so nothing in the SDK touches the network directly.

/**
 * @typedef {object} TransportRequest
 * @property {string} method
 * @property {string} url
 * @property {Record<string,string>} headers
 * @property {string|Uint8Array|undefined} body
 *
 * @typedef {object} TransportResponse
 * @property {number} status
 * @property {Record<string,string>} headers  lower-case names
 * @property {any} body  parsed JSON, the text when it is not JSON, null when empty
 */

export class FetchTransport {
  /**
   * @param {{ fetch?: typeof fetch, timeoutMs?: number }} [opts]
   */
  constructor({ fetch: fetchFn, timeoutMs = 30_000 } = {}) {
    this.fetch = fetchFn ?? globalThis.fetch;
    if (typeof this.fetch !== 'function') throw new TypeError('no global fetch: pass { fetch } or a transport');
    this.timeoutMs = timeoutMs;
  }

  /**
   * Send one request. Resolves with any HTTP answer; rejects only when none came back
   * (network error, timeout).
   * @param {TransportRequest} req
   * @returns {Promise<TransportResponse>}
   */
  async request({ method, url, headers, body }) {
    const init = { method, headers, body };
    if (this.timeoutMs > 0 && typeof AbortSignal !== 'undefined' && typeof AbortSignal.timeout === 'function') {
      init.signal = AbortSignal.timeout(this.timeoutMs);
    }
    const res = await this.fetch(url, init);
    const text = await res.text();
    const out = {};
    res.headers.forEach((v, k) => {
      out[k.toLowerCase()] = v;
    });
    let parsed = null;
    if (text) {
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = text;
      }
    }
    return { status: res.status, headers: out, body: parsed };
  }
}
