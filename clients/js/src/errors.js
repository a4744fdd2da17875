/**
 * The one error type the SDK throws (plain calls) or reports (onError).
 *
 * `status` is the HTTP status, or an item's status in a bulk answer; 0 when no HTTP answer
 * came back (network error, timeout) or the SDK refused the input itself. `code` is Argus's
 * UPPER_SNAKE code (`VALIDATION_FAILED`, `ID_CONFLICT`, `RETRY_LATER`, `RATE_LIMITED`, ...) or
 * one of the SDK's own: `NETWORK_ERROR`, `TIMEOUT`, `INVALID_ARGUMENT`, `PAYLOAD_TOO_LARGE`
 * (an event bigger than a whole request), `HTTP_ERROR` (an answer without Argus's envelope,
 * e.g. API Gateway's `{"message": ...}`). `attempts` says how often it was sent.
 */
export class ArgusError extends Error {
  /**
   * @param {object} init
   * @param {number} [init.status]
   * @param {string} [init.code]
   * @param {string} [init.message]
   * @param {object} [init.details]
   * @param {boolean} [init.retryable]
   * @param {number|null} [init.retryAfterMs]
   * @param {Record<string,string>} [init.headers]
   * @param {unknown} [init.cause]
   */
  constructor({ status = 0, code = 'HTTP_ERROR', message, details = {}, retryable = false, retryAfterMs = null, headers = {}, cause } = {}) {
    super(message || code, cause === undefined ? undefined : { cause });
    this.name = 'ArgusError';
    this.status = status;
    this.code = code;
    this.details = details && typeof details === 'object' ? details : {};
    this.retryable = retryable;
    this.retryAfterMs = retryAfterMs;
    this.headers = headers;
    /** How many times the request was sent before this error was final (set by the batcher). */
    this.attempts = 0;
  }

  toJSON() {
    return { name: this.name, status: this.status, code: this.code, message: this.message, details: this.details };
  }
}

/** Statuses retried with backoff (whole request): 408, 429 and every 5xx. */
export function isRetryableStatus(status) {
  return status === 408 || status === 429 || (status >= 500 && status <= 599);
}

/**
 * Parse `Retry-After` (delta seconds or an HTTP date) into milliseconds, or null.
 * @param {string|null|undefined} value
 * @param {number} nowMs
 */
export function parseRetryAfter(value, nowMs) {
  if (value === undefined || value === null || value === '') return null;
  const s = String(value).trim();
  if (/^\d+(\.\d+)?$/.test(s)) return Math.round(Number(s) * 1000);
  const at = Date.parse(s);
  if (Number.isNaN(at)) return null;
  return Math.max(0, at - nowMs);
}

/**
 * Build an ArgusError from an HTTP answer (`{status, headers, body}` as the transport returns it).
 * @param {{status:number, headers:Record<string,string>, body:any}} res
 * @param {number} nowMs
 */
export function errorFromResponse(res, nowMs) {
  const body = res.body;
  const env = body && typeof body === 'object' && body.error && typeof body.error === 'object' ? body.error : null;
  const retryAfterMs = parseRetryAfter(res.headers?.['retry-after'], nowMs);
  if (env) {
    return new ArgusError({
      status: res.status,
      code: String(env.code || 'HTTP_ERROR'),
      message: String(env.message || `HTTP ${res.status}`),
      details: env.details || {},
      retryable: isRetryableStatus(res.status) || env.details?.retryable === true,
      retryAfterMs,
      headers: res.headers,
    });
  }
  let message = `HTTP ${res.status}`;
  if (body && typeof body === 'object' && typeof body.message === 'string') message = body.message;
  else if (typeof body === 'string' && body) message = body.slice(0, 500);
  return new ArgusError({
    status: res.status,
    code: 'HTTP_ERROR',
    message,
    retryable: isRetryableStatus(res.status),
    retryAfterMs,
    headers: res.headers,
  });
}

/** An error for a request that got no HTTP answer. */
export function networkError(cause) {
  const timeout = cause && (cause.name === 'TimeoutError' || cause.name === 'AbortError');
  return new ArgusError({
    status: 0,
    code: timeout ? 'TIMEOUT' : 'NETWORK_ERROR',
    message: timeout ? 'request timed out' : `network error: ${cause?.cause?.code || cause?.message || cause}`,
    retryable: true,
    cause,
  });
}
