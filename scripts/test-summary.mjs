// The counts in a node:test run's closing summary, as the spec reporter writes them ("ℹ pass 12")
// or TAP ("# pass 12"); NaN for a count that is not there. Used by scripts/check-cuda.mjs.
export function testCounts(output) {
  const num = (k) => Number(output.match(new RegExp(`^(?:ℹ|#) ${k} (\\d+)`, 'm'))?.[1] ?? NaN);
  return { tests: num('tests'), pass: num('pass'), fail: num('fail'), skipped: num('skipped') };
}
