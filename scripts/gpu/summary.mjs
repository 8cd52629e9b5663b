// Prints the key figures of a GPU pass (scripts/gpu/run.sh) from its JSON files.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const out = process.argv[2];
const read = (f) => (existsSync(join(out, f)) ? JSON.parse(readFileSync(join(out, f), 'utf8')) : undefined);

const doctor = read('doctor.json');
if (doctor) {
  const peers = doctor.peerAccess.every((row) => row.every(Boolean));
  console.log(`doctor: ${doctor.gpus.map((g) => `${g.name} cc${g.computeCapability}`).join(', ') || doctor.cuda.reason}; peers ${peers ? 'all' : 'incomplete'}; NCCL ${doctor.nccl.version ?? 'not found'}`);
}
const tests = read('gpu-tests.json');
if (tests) {
  console.log(`tests: ${tests.numPassedTests} passed, ${tests.numFailedTests} failed, ${tests.numPendingTests} skipped`);
  for (const f of tests.testResults ?? []) {
    for (const a of f.assertionResults ?? []) if (a.status === 'failed') console.log(`  FAILED ${a.fullName}: ${(a.failureMessages?.[0] ?? '').slice(0, 300)}`);
  }
}
for (const f of ['bench-ep-normal.json', 'bench-ep-ll.json']) {
  const r = read(f);
  if (!r) continue;
  console.log(`${f}:`);
  for (const row of r.rows) {
    const ref = row.deepep ? ` DeepEP ${row.deepep.value}${row.deepep.unit} ratio ${row.deepep.ratio}` : '';
    console.log(`  ${row.routing} ${row.numSms ?? '-'} ${row.op}: ${row.kernelUs} us ${row.gbps} GB/s${ref} js ${row.wallUs} us`);
  }
}
const nccl = read('bench-nccl.json');
if (nccl) console.log(`bench-nccl: ${JSON.stringify(nccl.ratios ?? nccl.results).slice(0, 600)}`);
