import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RpcError } from '../rpc/errors.ts';
import { load } from './load.ts';

function deferred<T>() {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => ((resolve = res), (reject = rej)));
  return { promise, resolve, reject };
}

test('a load is loading while it runs, then applies its result and clears the error', async () => {
  const s = { loading: false, error: 'stale' as string | null, list: [] as string[] };
  const d = deferred<string[]>();
  const p = load(
    s,
    () => d.promise,
    (v) => (s.list = v),
  );
  assert.equal(s.loading, true);
  d.resolve(['a']);
  assert.equal(await p, true);
  assert.deepEqual(s, { loading: false, error: null, list: ['a'] });
});

test('a failed load sets the error and keeps the last good data', async () => {
  const s = { loading: false, error: null as string | null, list: ['a'] };
  const ok = await load(
    s,
    () => Promise.reject(new RpcError('DISCONNECTED', 'models.list: not connected to the engine.')),
    (v: string[]) => (s.list = v),
  );
  assert.equal(ok, false);
  assert.deepEqual(s, {
    loading: false,
    error: 'models.list: not connected to the engine.',
    list: ['a'],
  });
});

test('when loads overlap, an older one that finishes last changes nothing', async () => {
  const s = { loading: false, error: null as string | null, list: [] as string[] };
  const older = deferred<string[]>();
  const newer = deferred<string[]>();
  const p1 = load(
    s,
    () => older.promise,
    (v) => (s.list = v),
  );
  const p2 = load(
    s,
    () => newer.promise,
    (v) => (s.list = v),
  );
  newer.resolve(['new']);
  assert.equal(await p2, true);
  older.resolve(['old']);
  assert.equal(await p1, false);
  assert.deepEqual(s, { loading: false, error: null, list: ['new'] });

  const failing = deferred<string[]>();
  const p3 = load(
    s,
    () => failing.promise,
    (v) => (s.list = v),
  );
  const p4 = load(
    s,
    () => Promise.resolve(['newest']),
    (v) => (s.list = v),
  );
  assert.equal(await p4, true);
  failing.reject(new Error('old failure'));
  assert.equal(await p3, false);
  assert.deepEqual(s, { loading: false, error: null, list: ['newest'] });
});
