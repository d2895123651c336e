// The process export.test.ts kills: an engine on the test's data folder starts an adapter export
// named "killed", says "writing" once the first bytes are in its temporary file, then blocks
// (as a slow disk would) until it is killed.
import { createEngine } from '../../core/engine.ts';
import { writeFaults } from '../../core/export/files.ts';

const [dataDir, runId, outDir] = process.argv.slice(2) as [string, string, string];
const engine = createEngine({ dataDir });
writeFaults.beforeWrite = (_path, written) => {
  if (written === 0) return;
  process.stdout.write('writing\n');
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
};
await engine.dispatcher.call('export.run', { runId, format: 'adapter', outDir, name: 'killed' });
process.stderr.write('the export finished: it should have been killed\n');
process.exit(3);
