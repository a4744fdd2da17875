// @argus/sdk: the JavaScript client of the Argus event-ingestion API.
export { Client, VERSION } from './client.js';
export { ArgusError } from './errors.js';
export { FetchTransport } from './transport.js';
