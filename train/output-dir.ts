// A training run's hold on its output_dir, taken before anything is read or written: the folder exists and is
// writable, one run at a time holds it (util/lock.ts), what killed runs left (temp folders, a swap of adapter/ or a
// checkpoint half-done) is cleaned up, and an adapter/ that ft did not write is refused now rather than after the training.
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { FtError, ioError } from '../util/errors.ts';
import { removeTempEntries, repairDirSwaps } from '../util/fs.ts';
import { lockDir, type DirLock } from '../util/lock.ts';
import { assertReplaceable, outputKind, writeOutputMarker } from '../util/owned-dir.ts';

export const ADAPTER_DIR = 'adapter';
/** How a refusal in output_dir says to go on. */
export const OUTPUT_DIR_HINT = 'move it away or set another output_dir';

/** Takes `outputDir` for one run; release the returned lock when the run ends, however it ends. */
export async function claimOutputDir(outputDir: string, log: (line: string) => void): Promise<DirLock> {
  const st = await fsp.stat(outputDir).catch(() => null);
  if (st && !st.isDirectory()) throw new FtError(`${outputDir}: output_dir is a file, not a folder`);
  let lock: DirLock;
  try {
    await fsp.mkdir(outputDir, { recursive: true });
    lock = await lockDir(outputDir, 'ft train');
  } catch (e) {
    throw ioError(e, outputDir);
  }
  try {
    if (lock.replacedStale)
      log(`ft: ${outputDir}: took over the lock of pid ${lock.replacedStale.pid}, which is no longer running`);
    for (const repaired of await repairDirSwaps(outputDir)) log(`ft: ${repaired}`);
    const removed = await removeTempEntries(outputDir);
    if (removed.length > 0) log(`ft: ${outputDir}: removed ${removed.join(', ')}, left by a run that was killed`);
    await assertReplaceable(path.join(outputDir, ADAPTER_DIR), 'adapter', OUTPUT_DIR_HINT);
    if ((await outputKind(outputDir)) !== 'train-output') await writeOutputMarker(outputDir, 'train-output');
    return lock;
  } catch (e) {
    await lock.release();
    throw ioError(e, outputDir);
  }
}
