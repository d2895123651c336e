/**
 * The event bus: domains `emit` contract events; transports `subscribeAll` and forward them.
 * Payloads are validated against the contract in dev/test (NODE_ENV !== 'production'), so a
 * domain that emits a wrong shape fails loudly in tests instead of confusing a shell.
 */
import {
  events,
  formatZodError,
  OvernightError,
  type EventName,
  type EventPayload,
} from '../../contract/index.ts';

export type AnyEventListener = (event: EventName, data: unknown) => void;

export interface EventBus {
  emit<E extends EventName>(event: E, payload: EventPayload<E>): void;
  subscribe<E extends EventName>(
    event: E,
    listener: (payload: EventPayload<E>) => void,
  ): () => void;
  /** Every event (for transports). Returns the unsubscribe function. */
  subscribeAll(listener: AnyEventListener): () => void;
}

export interface EventBusOptions {
  validate?: boolean;
  /** A listener threw: reported here, never to the emitter. */
  onListenerError?: (event: EventName, err: unknown) => void;
}

export function createEventBus(options: EventBusOptions = {}): EventBus {
  const validate = options.validate ?? process.env.NODE_ENV !== 'production';
  const listeners = new Set<AnyEventListener>();

  return {
    emit(event, payload) {
      if (validate) {
        const r = events[event].payload.safeParse(payload);
        if (!r.success) {
          throw new OvernightError(
            'INTERNAL',
            `event ${event} has an invalid payload: ${formatZodError(r.error, 'payload')}`,
          );
        }
      }
      for (const l of [...listeners]) {
        try {
          l(event, payload);
        } catch (err) {
          options.onListenerError?.(event, err);
        }
      }
    },
    subscribe(event, listener) {
      const l: AnyEventListener = (e, data) => {
        if (e === event) listener(data as EventPayload<typeof event>);
      };
      listeners.add(l);
      return () => listeners.delete(l);
    },
    subscribeAll(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
}
