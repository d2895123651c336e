/**
 * Serves the built renderer (dist/renderer) read-only: GET/HEAD only, no path traversal,
 * correct content types, a CSP on HTML. Paths without an extension fall back to index.html
 * (client-side routing). A missing build gets a page saying how to build it.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { extname, join, resolve, sep } from 'node:path';

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.gif': 'image/gif',
  '.webp': 'image/webp',
  '.ico': 'image/x-icon',
  '.woff': 'font/woff',
  '.woff2': 'font/woff2',
  '.ttf': 'font/ttf',
  '.txt': 'text/plain; charset=utf-8',
  '.wasm': 'application/wasm',
};

const SECURITY_HEADERS = {
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Resource-Policy': 'same-origin',
};

/** CSP for our HTML: everything from this origin; WebSocket back to this server only. */
export function contentSecurityPolicy(wsOrigins: readonly string[]): string {
  return [
    "default-src 'self'",
    `connect-src 'self' ${wsOrigins.join(' ')}`,
    "script-src 'self'",
    // Svelte transitions and component styles set inline styles.
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data: blob:",
    "font-src 'self' data:",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
}

export function createStaticHandler(rendererDir: string, csp: (req: IncomingMessage) => string) {
  const root = resolve(rendererDir);

  function send(
    res: ServerResponse,
    status: number,
    type: string,
    body: string,
    extra: Record<string, string> = {},
  ): void {
    res.writeHead(status, {
      'Content-Type': type,
      'Content-Length': Buffer.byteLength(body),
      ...SECURITY_HEADERS,
      ...extra,
    });
    res.end(res.req.method === 'HEAD' ? undefined : body);
  }

  async function serveFile(
    req: IncomingMessage,
    res: ServerResponse,
    file: string,
    size: number,
  ): Promise<void> {
    const ext = extname(file).toLowerCase();
    const type = CONTENT_TYPES[ext] ?? 'application/octet-stream';
    const headers: Record<string, string | number> = {
      'Content-Type': type,
      'Content-Length': size,
      ...SECURITY_HEADERS,
    };
    if (ext === '.html') {
      headers['Content-Security-Policy'] = csp(req);
      headers['Cache-Control'] = 'no-store';
    } else {
      headers['Cache-Control'] = file.includes(`${sep}assets${sep}`)
        ? 'public, max-age=31536000, immutable'
        : 'no-cache';
    }
    res.writeHead(200, headers);
    if (req.method === 'HEAD') return void res.end();
    createReadStream(file)
      .on('error', () => res.destroy())
      .pipe(res);
  }

  async function fileSize(p: string): Promise<number | null> {
    try {
      const s = await stat(p);
      return s.isFile() ? s.size : null;
    } catch {
      return null;
    }
  }

  return async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      return send(res, 405, 'text/plain; charset=utf-8', 'method not allowed\n', {
        Allow: 'GET, HEAD',
      });
    }
    let pathname: string;
    try {
      pathname = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    } catch {
      return send(res, 400, 'text/plain; charset=utf-8', 'bad request\n');
    }
    if (pathname.includes('\0'))
      return send(res, 400, 'text/plain; charset=utf-8', 'bad request\n');

    const index = join(root, 'index.html');
    const indexSize = await fileSize(index);
    if (indexSize === null) {
      return send(res, 503, 'text/html; charset=utf-8', notBuiltPage(root), {
        'Content-Security-Policy': "default-src 'none'; style-src 'unsafe-inline'",
      });
    }

    const target = resolve(root, '.' + pathname);
    if (target !== root && !target.startsWith(root + sep)) {
      return send(res, 404, 'text/plain; charset=utf-8', 'not found\n');
    }
    const size = target === root ? null : await fileSize(target);
    if (size !== null) return serveFile(req, res, target, size);
    if (extname(pathname) === '') return serveFile(req, res, index, indexSize);
    return send(res, 404, 'text/plain; charset=utf-8', 'not found\n');
  };
}

function notBuiltPage(root: string): string {
  const esc = root.replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Overnight: renderer not built</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:4em auto;padding:0 1em}code{background:#eee;padding:.1em .3em}</style>
</head><body>
<h1>The Overnight interface is not built</h1>
<p>The engine is running, but there is no built renderer in <code>${esc}</code>.</p>
<p>Run <code>npm run build:renderer</code> (or start with <code>npm run serve</code>, which builds it first), then reload this page.</p>
</body></html>
`;
}
