/**
 * Web mode: the engine behind HTTP (the built renderer) + WebSocket RPC at `/rpc`.
 *
 * Security: binds 127.0.0.1 unless told otherwise; every WebSocket upgrade must carry the
 * server's random token (`/rpc?token=...`, 401 otherwise) and an Origin of this server
 * (`http://<host>:<port>`, or localhost / 127.0.0.1 / [::1] on the same port; 403 otherwise).
 * The token reaches the page through the URL fragment (`/#token=...`), which browsers never
 * send to servers, so it stays out of HTTP logs and Referer headers.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { WebSocket, WebSocketServer } from 'ws';
import type { Dispatcher } from '../rpc/dispatcher.ts';
import type { EventBus } from '../rpc/events.ts';
import { encodeEvent, handleWireRequest } from '../rpc/wire.ts';
import { contentSecurityPolicy, createStaticHandler } from './static.ts';

export const DEFAULT_PORT = 7878;
export const DEFAULT_HOST = '127.0.0.1';
export const defaultRendererDir = fileURLToPath(new URL('../../dist/renderer/', import.meta.url));

export interface ServerOptions {
  engine: { dispatcher: Dispatcher; events: EventBus };
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 7878; 0 picks a free port. */
  port?: number;
  /** Built renderer; default `dist/renderer/` in the checkout. */
  rendererDir?: string;
  /** Fixed token (tests); default: 24 random bytes, base64url. */
  token?: string;
}

export interface RunningServer {
  /** Page URL with the token in the fragment: `http://127.0.0.1:PORT/#token=...`. */
  url: string;
  token: string;
  host: string;
  port: number;
  /** `ws://host:port/rpc` (append `?token=...`). */
  wsUrl: string;
  close(): Promise<void>;
}

const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;

export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const host = options.host ?? DEFAULT_HOST;
  const token = options.token ?? randomBytes(24).toString('base64url');
  const tokenBuf = Buffer.from(token);
  let port = options.port ?? DEFAULT_PORT;
  const urlHost = host.includes(':') ? `[${host}]` : host;
  /** What a browser would put in Host / Origin for this server (filled once the port is known). */
  let allowedHosts = new Set<string>();

  const csp = (req: IncomingMessage): string => {
    const reqHost = req.headers.host;
    const h =
      reqHost && /^[\w.:[\]-]+$/.test(reqHost) && isKnownHost(reqHost, reqHost)
        ? reqHost
        : `${urlHost}:${port}`;
    return contentSecurityPolicy([`ws://${h}`]);
  };
  const serveStatic = createStaticHandler(options.rendererDir ?? defaultRendererDir, csp);
  const http = createServer((req, res) => {
    serveStatic(req, res).catch(() => {
      if (!res.headersSent) res.writeHead(500);
      res.end();
    });
  });

  const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_MESSAGE_BYTES });
  const { dispatcher, events } = options.engine;

  http.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname !== '/rpc')
      return reject(socket, 404, 'Not Found', 'no WebSocket endpoint here; use /rpc');
    const given = Buffer.from(url.searchParams.get('token') ?? '');
    if (given.length !== tokenBuf.length || !timingSafeEqual(given, tokenBuf)) {
      return reject(socket, 401, 'Unauthorized', 'missing or wrong token');
    }
    const origin = req.headers.origin;
    if (!origin || !isAllowedOrigin(origin, req.headers.host)) {
      return reject(socket, 403, 'Forbidden', `origin ${origin ?? '(none)'} is not allowed`);
    }
    wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
  });

  /**
   * Bound to a wildcard address (0.0.0.0 / ::), the server cannot know the names it is reached
   * by, so a same-origin request (Origin host = Host header) is accepted too; the token still
   * has to match.
   */
  const wildcard = host === '0.0.0.0' || host === '::';
  function isKnownHost(h: string | undefined, reqHost: string | undefined): boolean {
    return !!h && (allowedHosts.has(h) || (wildcard && h === reqHost));
  }
  function isAllowedOrigin(origin: string, reqHost: string | undefined): boolean {
    let u: URL;
    try {
      u = new URL(origin);
    } catch {
      return false;
    }
    return u.protocol === 'http:' && isKnownHost(u.host, reqHost);
  }

  wss.on('connection', (ws: WebSocket) => {
    const unsubscribe = events.subscribeAll((event, data) => {
      if (ws.readyState === WebSocket.OPEN) ws.send(encodeEvent(event, data));
    });
    ws.on('message', (data, isBinary) => {
      if (isBinary) return;
      void handleWireRequest(dispatcher, data.toString(), { transport: 'websocket' }).then(
        (reply) => {
          if (ws.readyState === WebSocket.OPEN) ws.send(reply);
        },
      );
    });
    ws.on('close', unsubscribe);
    ws.on('error', () => ws.terminate());
  });

  await new Promise<void>((resolveListen, rejectListen) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      http.off('listening', onListening);
      if (err.code === 'EADDRINUSE') {
        rejectListen(
          new Error(`port ${port} on ${host} is already in use; pass --port 0 to pick a free one`),
        );
      } else if (err.code === 'EADDRNOTAVAIL' || err.code === 'ENOTFOUND') {
        rejectListen(new Error(`cannot listen on ${host}: it is not an address of this machine`));
      } else {
        rejectListen(err);
      }
    };
    const onListening = (): void => {
      http.off('error', onError);
      resolveListen();
    };
    http.once('error', onError);
    http.once('listening', onListening);
    http.listen(port, host);
  });
  port = (http.address() as AddressInfo).port;
  allowedHosts = new Set([
    `${urlHost}:${port}`,
    `localhost:${port}`,
    `127.0.0.1:${port}`,
    `[::1]:${port}`,
  ]);

  const pageHost = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : urlHost;
  let closing: Promise<void> | null = null;
  return {
    url: `http://${pageHost}:${port}/#token=${token}`,
    token,
    host,
    port,
    wsUrl: `ws://${pageHost}:${port}/rpc`,
    close() {
      closing ??= new Promise<void>((done) => {
        for (const ws of wss.clients) ws.terminate();
        wss.close();
        http.close(() => done());
        http.closeAllConnections();
      });
      return closing;
    },
  };
}

function reject(socket: Duplex, status: number, statusText: string, message: string): void {
  const body = `${message}\n`;
  socket.end(
    `HTTP/1.1 ${status} ${statusText}\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
}
