/** Event handler registry shared by both transports. */
import type { EventName, EventPayload } from '../../../../contract/index.ts';
import { parseEvent } from './validate.ts';

type Handler = (payload: never) => void;

export class EventHandlers {
  #handlers = new Map<EventName, Set<Handler>>();

  add<E extends EventName>(event: E, handler: (payload: EventPayload<E>) => void): () => void {
    let set = this.#handlers.get(event);
    if (!set) this.#handlers.set(event, (set = new Set()));
    set.add(handler as Handler);
    return () => set.delete(handler as Handler);
  }

  /** Validates and delivers one event from the wire. */
  deliver(event: string, data: unknown): void {
    const parsed = parseEvent(event, data);
    if (!parsed) return;
    for (const handler of this.#handlers.get(parsed.event) ?? []) {
      try {
        (handler as (p: unknown) => void)(parsed.data);
      } catch (err) {
        console.error(`Handler for "${event}" threw`, err);
      }
    }
  }
}
