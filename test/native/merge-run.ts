// Child process of the merge tests that also load node-llama-cpp (the native addon and
// node-llama-cpp never share a process): runs one merge and prints its result as JSON.
//   node --import tsx test/native/merge-run.ts '<MergeOptions JSON>'
import { mergeAdapter, type MergeOptions } from '../../native/ts/binding.ts';

const o = JSON.parse(process.argv[2]!) as MergeOptions;
try {
  const r = await mergeAdapter(o, () => {}).promise;
  process.stdout.write(JSON.stringify({ ok: true, result: r }) + '\n');
} catch (e) {
  const err = e as Error & { code?: string };
  process.stdout.write(JSON.stringify({ ok: false, code: err.code, message: err.message }) + '\n');
  process.exitCode = 1;
}
