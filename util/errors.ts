/** An error caused by the user's input or environment: the CLI prints its one-line message, no stack. */
export class FtError extends Error {
  override name = 'FtError';
}

/** What a file system errno means for someone writing `target`. */
const IO_CAUSES: Record<string, string> = {
  ENOSPC: 'no space left on the device',
  EDQUOT: 'disk quota exceeded',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EROFS: 'read-only file system',
  ENOTDIR: 'a part of the path is a file, not a folder',
  EISDIR: 'is a folder, expected a file',
  EEXIST: 'already exists',
  ENAMETOOLONG: 'name too long',
  EMFILE: 'too many open files',
  EIO: 'input/output error',
};

/**
 * A file system error met while writing `target` as one FtError line naming the whole path, e.g.
 * "runs/x/checkpoint-5: cannot write: no space left on the device (ENOSPC)"; other errors are returned as they are.
 */
export function ioError(e: unknown, target: string): unknown {
  const code = (e as NodeJS.ErrnoException | null)?.code;
  if (e instanceof FtError || typeof code !== 'string' || !(code in IO_CAUSES)) return e;
  return new FtError(`${target}: cannot write: ${IO_CAUSES[code]} (${code})`);
}
