/**
 * In-memory transport for unit tests: a real RpcClient whose messages travel as JSON text
 * through the same wire code as the WebSocket transport, so a test sees exactly what a shell
 * would (JSON-safe payloads, `{ code, message }` errors) without a socket.
 */
import { OvernightError, type RpcClient } from '../../contract/index.ts';
import type { Dispatcher } from './dispatcher.ts';
import type { EventBus } from './events.ts';
import { createWireClient, encodeEvent, handleWireRequest } from './wire.ts';

export interface InMemoryClient extends RpcClient {
  close(): void;
}

export function createInMemoryClient(engine: {
  dispatcher: Dispatcher;
  events: EventBus;
}): InMemoryClient {
  let open = true;
  const wire = createWireClient((text) => {
    if (!open) throw new OvernightError('INTERNAL', 'the in-memory client is closed');
    void handleWireRequest(engine.dispatcher, text, { transport: 'in-memory' }).then((reply) => {
      if (open) wire.receive(reply);
    });
  });
  const unsubscribe = engine.events.subscribeAll((event, data) => {
    const text = encodeEvent(event, data);
    queueMicrotask(() => {
      if (open) wire.receive(text);
    });
  });
  return {
    call: wire.client.call,
    on: wire.client.on,
    close() {
      if (!open) return;
      open = false;
      unsubscribe();
      wire.failAll(new OvernightError('INTERNAL', 'the in-memory client is closed'));
    },
  };
}
