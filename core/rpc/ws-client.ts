/**
 * A Node WebSocket client for the web-mode server (tests, scripts, a future remote CLI).
 * The browser's client lives in the renderer; this one uses `ws` so it can set the Origin
 * header the server checks.
 */
import WebSocket from 'ws';
import { OvernightError, type RpcClient } from '../../contract/index.ts';
import { createWireClient } from './wire.ts';

export interface WsClient extends RpcClient {
  close(): Promise<void>;
}

export interface WsConnectOptions {
  /** `ws://host:port/rpc` (without the token). */
  url: string;
  token: string;
  /** Origin header to send; defaults to the server's own `http://host:port`. */
  origin?: string;
}

/**
 * Connect with explicit options, or with the page URL the server prints
 * (`http://127.0.0.1:PORT/#token=...`).
 */
export function connectWsClient(target: string | WsConnectOptions): Promise<WsClient> {
  const opts = typeof target === 'string' ? fromPageUrl(target) : target;
  const url = new URL(opts.url);
  url.searchParams.set('token', opts.token);
  const origin = opts.origin ?? `http://${url.host}`;
  const ws = new WebSocket(url, { origin });
  const wire = createWireClient((text) => {
    if (ws.readyState !== WebSocket.OPEN)
      throw new OvernightError('INTERNAL', 'the connection to the engine is closed');
    ws.send(text);
  });
  ws.on('message', (data) => wire.receive(data.toString()));

  return new Promise((resolve, reject) => {
    ws.once('unexpected-response', (_req, res) => {
      const code = res.statusCode === 401 || res.statusCode === 403 ? 'UNAUTHORIZED' : 'INTERNAL';
      reject(
        new OvernightError(
          code,
          `the server refused the connection: ${res.statusCode} ${res.statusMessage ?? ''}`.trim(),
        ),
      );
      ws.terminate();
    });
    ws.once('error', (err) =>
      reject(new OvernightError('INTERNAL', `cannot connect to ${opts.url}: ${err.message}`)),
    );
    ws.once('open', () => {
      ws.on('close', () =>
        wire.failAll(new OvernightError('INTERNAL', 'the connection to the engine closed')),
      );
      resolve({
        call: wire.client.call,
        on: wire.client.on,
        close: () =>
          new Promise<void>((done) => {
            if (ws.readyState === WebSocket.CLOSED) return done();
            ws.once('close', () => done());
            ws.close();
          }),
      });
    });
  });
}

function fromPageUrl(pageUrl: string): WsConnectOptions {
  const u = new URL(pageUrl);
  const token = new URLSearchParams(u.hash.slice(1)).get('token');
  if (!token) throw new OvernightError('INVALID_INPUT', `${pageUrl} has no #token=...`);
  const wsProto = u.protocol === 'https:' ? 'wss:' : 'ws:';
  return { url: `${wsProto}//${u.host}/rpc`, token, origin: `${u.protocol}//${u.host}` };
}
