/** An error caused by the user's input or environment: the CLI prints its one-line message, no stack. */
export class FtError extends Error {
  override name = 'FtError';
}
