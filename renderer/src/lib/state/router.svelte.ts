/**
 * Hash routing: `#/models`, `#/models/<id>`, `#/system`. The first segment picks an entry of the
 * routes table; the rest are the page's params. Hash routes work the same over http:// and file://.
 */
export interface Location {
  /** First segment, e.g. "models"; "" for the root. */
  page: string;
  /** Remaining segments, URI-decoded. */
  params: string[];
}

export function parseHash(hash: string): Location {
  const path = hash.replace(/^#\/?/, '').split('?')[0] ?? '';
  const segments = path.split('/').filter(Boolean).map(safeDecode);
  return { page: segments[0] ?? '', params: segments.slice(1) };
}

export function href(page: string, ...params: string[]): string {
  return `#/${[page, ...params.map(encodeURIComponent)].join('/')}`;
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

export class Router {
  location: Location = $state(parseHash(window.location.hash));

  constructor() {
    window.addEventListener('hashchange', () => {
      this.location = parseHash(window.location.hash);
    });
  }

  go(page: string, ...params: string[]): void {
    window.location.hash = href(page, ...params);
  }
}
