/** Connection status every transport reports; the header shows it. */
export type ConnectionStatus =
  /** Opening the connection (first time or a retry). Calls wait for it. */
  | { state: 'connecting'; attempt: number }
  | { state: 'open' }
  /** Lost or refused; the next attempt starts at `retryAt` (ms since epoch). Calls fail fast. */
  | { state: 'offline'; attempt: number; retryAt: number; reason: string }
  /** The engine refused our token (or we have none). No retries: the user must open a fresh URL. */
  | { state: 'unauthorized'; reason: 'no-token' | 'rejected' }
  /** close() was called. */
  | { state: 'closed' };

export type StatusListener = (status: ConnectionStatus) => void;
