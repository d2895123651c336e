/**
 * The web-mode token. `overnight serve` prints `http://127.0.0.1:PORT/#token=TOKEN`: the token is
 * in the fragment so it never reaches a server log or a Referer. On load we move it into
 * sessionStorage (survives reloads of this tab, not other tabs) and strip it from the address bar.
 */
const STORAGE_KEY = 'overnight.token';

export interface TokenEnv {
  location: Pick<Location, 'hash' | 'pathname' | 'search'>;
  storage: Pick<Storage, 'getItem' | 'setItem'>;
  history: Pick<History, 'replaceState'>;
}

/** Returns the token from the URL fragment (storing it) or from sessionStorage, else null. */
export function takeToken(env: TokenEnv): string | null {
  const params = new URLSearchParams(env.location.hash.replace(/^#\/?/, ''));
  const fromHash = params.get('token');
  if (fromHash) {
    env.storage.setItem(STORAGE_KEY, fromHash);
    params.delete('token');
    const rest = params.toString();
    env.history.replaceState(
      null,
      '',
      `${env.location.pathname}${env.location.search}#/${rest ? `?${rest}` : ''}`,
    );
    return fromHash;
  }
  return env.storage.getItem(STORAGE_KEY) || null;
}

export function rpcUrl(location: Pick<Location, 'protocol' | 'host'>, token: string): string {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}/rpc?token=${encodeURIComponent(token)}`;
}
