// A local Hugging Face Hub to try `ft train recipes/alpaca.yaml` against without the real Hub:
//   npx tsx test/serve-hub.ts [PORT]        (then, in another shell, as it prints)
//   HF_ENDPOINT=http://127.0.0.1:PORT HF_HOME=/tmp/ft-hf npx ft train recipes/alpaca.yaml --max_steps 1
// It serves a tiny random Llama under TinyLlama/TinyLlama-1.1B-Chat-v1.0 and 64 Alpaca-style rows under tatsu-lab/alpaca,
// speaking the Hub's HTTP API (test/hub-server.ts). Ctrl-C stops it.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { DEMO_DATASET, DEMO_MODEL, seedAlpacaDemo } from './hub-fixtures.ts';
import { startHubServer } from './hub-server.ts';

const port = process.argv[2] ? Number(process.argv[2]) : 0;
const work = mkdtempSync(path.join(tmpdir(), 'ft-serve-hub-'));
const hub = await startHubServer([], { port });
await seedAlpacaDemo(hub, work);
process.stdout.write(
  `local Hub at ${hub.url} (LFS files from ${hub.cdnUrl}) serving ${DEMO_MODEL} and dataset ${DEMO_DATASET}\n` +
    `try: HF_ENDPOINT=${hub.url} HF_HOME=${path.join(tmpdir(), 'ft-hf')} npx ft train recipes/alpaca.yaml --max_steps 1\n`,
);
const stop = async () => {
  await hub.close();
  rmSync(work, { recursive: true, force: true });
  process.exit(0);
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
