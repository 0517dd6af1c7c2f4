/** Anything shaped like a Hugging Face access token, or an Authorization header's credentials. */
const TOKEN_SHAPED = /\bhf_[A-Za-z0-9_-]{6,}/g;
const AUTH_HEADER = /\b(Bearer|Basic|token)\s+[A-Za-z0-9._~+/=-]{6,}/gi;

/** `text` with each of `secrets`, every hf_ token and every Authorization credential replaced by "***". */
export function redact(text: string, secrets: readonly string[] = []): string {
  let out = text;
  for (const s of secrets) if (s) out = out.split(s).join('***');
  return out.replace(TOKEN_SHAPED, 'hf_***').replace(AUTH_HEADER, '$1 ***');
}
