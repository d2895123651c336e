import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { methods, OvernightError, type SystemInfo } from '../../contract/index.ts';
import { createDispatcher } from './dispatcher.ts';
import { createEventBus } from './events.ts';
import type { Handler, Handlers } from './handlers.ts';
import { createInMemoryClient } from './in-memory.ts';

const sampleInfo: SystemInfo = {
  platform: 'linux',
  arch: 'x64',
  cpuModel: 'test',
  cpuCores: 2,
  cpuPhysicalCores: 1,
  ramTotal: 1,
  ramFree: 1,
  inferenceBackends: ['cpu'],
  trainerBackends: ['cpu'],
  trainerBackend: {
    backend: 'cpu',
    reason: 'CPU: no GPU addon built (npm run build:native:vulkan)',
  },
  gpus: [],
  appVersion: '0.0.0',
  dataDir: '/tmp/x',
};

/** Every method answers that this dispatcher test does not serve it, unless overridden. */
function handlers(overrides: Partial<Handlers> = {}): Handlers {
  const out: Record<string, Handler<never>> = {};
  for (const name of Object.keys(methods)) {
    out[name] = () => {
      throw new OvernightError('UNSUPPORTED', `${name} is not served by this test`);
    };
  }
  return { ...(out as unknown as Handlers), 'system.info': () => sampleInfo, ...overrides };
}

function setup(overrides: Partial<Handlers> = {}) {
  const internal: unknown[] = [];
  const dispatcher = createDispatcher(handlers(overrides), {
    onInternalError: (_m, e) => internal.push(e),
  });
  const events = createEventBus({ validate: true });
  const client = createInMemoryClient({ dispatcher, events });
  return { dispatcher, events, client, internal };
}

async function rejectsWith(
  p: Promise<unknown>,
  code: string,
  pattern: RegExp,
): Promise<OvernightError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof OvernightError, `expected an OvernightError, got ${String(err)}`);
    assert.equal(err.code, code);
    assert.match(err.message, pattern);
    return err;
  }
  assert.fail('expected a rejection');
}

describe('dispatcher', () => {
  it('runs a valid call', async () => {
    const { client } = setup();
    assert.deepEqual(await client.call('system.info', {}), sampleInfo);
  });

  it('rejects a bad payload with INVALID_INPUT naming the field and what was expected', async () => {
    const { client } = setup({ 'models.add': () => assert.fail('handler must not run') });
    await rejectsWith(
      client.call('models.add', { path: 42 as never }),
      'INVALID_INPUT',
      /^models\.add: path: expected string, received number$/,
    );
    await rejectsWith(
      client.call('models.add', {} as never),
      'INVALID_INPUT',
      /path: expected string, received undefined/,
    );
    await rejectsWith(client.call('models.add', { path: '' }), 'INVALID_INPUT', /path: .*>=1/);
    await rejectsWith(
      client.call('models.show', null as never),
      'INVALID_INPUT',
      /id: expected string/,
    );
  });

  it('passes validated (parsed) params to the handler', async () => {
    let seen: unknown;
    const { client } = setup({
      'models.remove': (p) => {
        seen = p;
        return { removed: true };
      },
    });
    await client.call('models.remove', { id: 'abc', extra: 1 } as never);
    assert.deepEqual(seen, { id: 'abc' });
  });

  it('answers UNKNOWN_METHOD for a method the contract does not have', async () => {
    const { dispatcher } = setup();
    const r = await dispatcher.dispatch('models.fly', {});
    assert.deepEqual(r, {
      ok: false,
      error: { code: 'UNKNOWN_METHOD', message: 'unknown method "models.fly"' },
    });
    const proto = await dispatcher.dispatch('__proto__', {});
    assert.equal(proto.ok ? 'ok' : proto.error.code, 'UNKNOWN_METHOD');
  });

  it('passes an OvernightError through as its code and message', async () => {
    const { client } = setup({
      'models.show': ({ id }) => {
        throw new OvernightError('NOT_FOUND', `no model with id "${id}"`);
      },
    });
    await rejectsWith(
      client.call('models.show', { id: 'x' }),
      'NOT_FOUND',
      /^no model with id "x"$/,
    );
  });

  it('reports any other throw as INTERNAL with the message only, never a stack', async () => {
    const { client, dispatcher, internal } = setup({
      'system.info': () => {
        throw new TypeError('cannot read properties of undefined (reading "gpu")');
      },
    });
    const err = await rejectsWith(client.call('system.info', {}), 'INTERNAL', /reading "gpu"/);
    assert.doesNotMatch(err.message, /\n\s+at /);
    const raw = await dispatcher.dispatch('system.info', {});
    assert.deepEqual(Object.keys(raw.ok ? {} : raw.error).sort(), ['code', 'message']);
    assert.equal(internal.length, 2);
  });

  it('reports a handler result that breaks the output schema as INTERNAL naming the field', async () => {
    const { client } = setup({
      'system.info': () => ({ ...sampleInfo, cpuCores: 'two' }) as never,
    });
    await rejectsWith(
      client.call('system.info', {}),
      'INTERNAL',
      /system\.info returned an invalid result: cpuCores: expected number/,
    );
  });

  it('a handler that throws an OvernightError answers its code and message', async () => {
    const { dispatcher } = setup();
    const r = await dispatcher.dispatch('models.list', {});
    assert.deepEqual(r, {
      ok: false,
      error: { code: 'UNSUPPORTED', message: 'models.list is not served by this test' },
    });
  });
});

describe('event bus', () => {
  it('delivers events to subscribers and in-memory clients; unsubscribe stops them', async () => {
    const { events, client } = setup();
    const seen: unknown[] = [];
    const viaClient: unknown[] = [];
    const off = events.subscribe('models.changed', (p) => seen.push(p));
    const offClient = client.on('models.changed', (p) => viaClient.push(p));
    events.emit('models.changed', { ids: ['a'] });
    await new Promise((r) => setTimeout(r, 0));
    off();
    offClient();
    events.emit('models.changed', { ids: ['b'] });
    await new Promise((r) => setTimeout(r, 0));
    assert.deepEqual(seen, [{ ids: ['a'] }]);
    assert.deepEqual(viaClient, [{ ids: ['a'] }]);
  });

  it('refuses an invalid payload in dev/test', () => {
    const events = createEventBus({ validate: true });
    assert.throws(
      () => events.emit('models.changed', { ids: 'a' } as never),
      (e: unknown) =>
        e instanceof OvernightError &&
        /models\.changed has an invalid payload: ids: expected array/.test(e.message),
    );
  });

  it('a throwing listener does not break the emitter or other listeners', () => {
    const errors: unknown[] = [];
    const events = createEventBus({
      validate: true,
      onListenerError: (_e, err) => errors.push(err),
    });
    const seen: unknown[] = [];
    events.subscribe('models.changed', () => {
      throw new Error('listener bug');
    });
    events.subscribe('models.changed', (p) => seen.push(p));
    events.emit('models.changed', { ids: [] });
    assert.equal(seen.length, 1);
    assert.equal(errors.length, 1);
  });
});

describe('in-memory client', () => {
  it('rejects calls after close', async () => {
    const { client } = setup();
    client.close();
    await rejectsWith(client.call('system.info', {}), 'INTERNAL', /closed/);
  });
});
