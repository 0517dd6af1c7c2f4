// Glob patterns as regexes, hand-written since Node 20's path.matchesGlob is experimental.
import { FtError } from './errors.ts';

export const isGlob = (s: string) => /[*?[]/.test(s);

/** The body of a regex for `*`, `?`, `[abc]` in `pattern`; `star` is what `*` matches. */
function globBody(pattern: string, star: string): string {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === '*') re += star;
    else if (c === '?') re += '[^/]';
    else if (c === '[') {
      const end = pattern.indexOf(']', i + 1);
      if (end < 0) throw new FtError(`glob '${pattern}': unclosed '['`);
      re += `[${pattern
        .slice(i + 1, end)
        .replace(/^!/, '^')
        .replace(/\\/g, '\\\\')}]`;
      i = end;
    } else re += c.replace(/[.+^${}()|\\]/g, '\\$&');
  }
  return re;
}

/** One path segment's glob (`*` stays inside the segment). */
export function segmentRegex(seg: string): RegExp {
  return new RegExp(`^${globBody(seg, '[^/]*')}$`);
}

/** A '/'-separated path glob: `*` stays inside a segment, `**` spans any number of folders (as `datasets` data_files). */
export function pathGlobRegex(pattern: string): RegExp {
  const parts = pattern.split('/');
  const re = parts.map((p, i) =>
    p === '**'
      ? i === parts.length - 1
        ? '.*'
        : '(?:[^/]+/)*'
      : globBody(p, '[^/]*') + (i < parts.length - 1 ? '/' : ''),
  );
  return new RegExp(`^${re.join('')}$`);
}

/**
 * Python's fnmatch as huggingface_hub's allow_patterns / ignore_patterns use it: `*` also matches '/',
 * and a pattern ending in '/' means everything under that folder.
 */
export function fnmatchRegex(pattern: string): RegExp {
  return new RegExp(`^${globBody(pattern.endsWith('/') ? pattern + '*' : pattern, '.*')}$`);
}
