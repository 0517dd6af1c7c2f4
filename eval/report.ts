// The eval report a person reads at a glance: a metrics table (models side by side), per-task scores, a bar
// chart of each metric per model, the training loss curve when there is one, and outputs side by side.
import { lossCurveSvg, niceTicks } from '../util/plot.ts';
import type { EvalResult, ModelResult } from './types.ts';

const PALETTE = ['#7f7f7f', '#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2'];

/** Metric names in display order: the built-ins first, then user metrics as they first appear. */
export function metricNames(models: ModelResult[]): string[] {
  const builtin = ['exact_match', 'f1', 'rougeL'];
  const all = new Set(models.flatMap((m) => Object.keys(m.metrics)));
  return [...builtin.filter((k) => all.has(k)), ...[...all].filter((k) => !builtin.includes(k))];
}

const num = (x: number, digits = 3) => (Number.isFinite(x) ? x.toFixed(digits) : '-');
const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
/** Text inside a markdown table cell: pipes escaped, newlines as <br>. */
const cell = (s: string) => (s === '' ? '*(empty)*' : s.replace(/\|/g, '\\|').replace(/\r?\n/g, '<br>'));

function settingsLine(r: EvalResult): string {
  const g = r.generation;
  const decoding =
    g.temperature > 0
      ? `sampling (temperature ${g.temperature}, top-k ${g.topK || 'off'}, top-p ${g.topP}, seed ${g.seed})`
      : 'greedy';
  return `${r.items.length} examples from ${r.data}; ${decoding}, max ${g.maxNewTokens} new tokens`;
}

function tasksOf(r: EvalResult): string[] {
  return [...new Set(r.models.flatMap((m) => Object.keys(m.byTask)))].sort((a, b) => a.localeCompare(b));
}

/** report.md: the tables and the first `examples` outputs side by side. */
export function markdownReport(r: EvalResult, examples: number): string {
  const names = metricNames(r.models);
  const out: string[] = [`# ft eval`, '', `Model \`${r.model}\`; ${settingsLine(r)}.`, ''];
  if (r.overlap)
    out.push(
      r.overlap.overlapping
        ? `**Warning:** ${r.overlap.overlapping} eval rows also appear in the training rows of ${r.overlap.trainedOn}.`
        : `No eval row appears in the training rows of ${r.overlap.trainedOn}.`,
      '',
    );
  out.push(
    '## Metrics',
    '',
    `| model | loss | perplexity | ${names.join(' | ')} |`,
    `|---|---:|---:|${names.map(() => '---:').join('|')}|`,
  );
  for (const m of r.models)
    out.push(
      `| ${m.name} | ${num(m.loss.loss, 4)} | ${num(m.loss.perplexity, 2)} | ${names.map((k) => num(m.metrics[k] ?? NaN)).join(' | ')} |`,
    );
  out.push(
    '',
    `Loss and perplexity over ${r.models[0]?.loss.tokens ?? 0} response tokens; metrics are means over examples (exact match and F1 after SQuAD normalization, ROUGE-L F-measure).`,
    '',
  );
  const tasks = tasksOf(r);
  if (tasks.length > 0) {
    out.push(
      '## Per task (ROUGE-L / exact match)',
      '',
      `| task | n | ${r.models.map((m) => m.name).join(' | ')} |`,
      `|---|---:|${r.models.map(() => '---:').join('|')}|`,
    );
    for (const t of tasks) {
      const n = r.models[0].byTask[t]?.count ?? 0;
      out.push(
        `| ${cell(t)} | ${n} | ${r.models.map((m) => (m.byTask[t] ? `${num(m.byTask[t].metrics.rougeL)} / ${num(m.byTask[t].metrics.exact_match)}` : '-')).join(' | ')} |`,
      );
    }
    out.push('');
  }
  const shown = r.items.slice(0, examples);
  out.push(`## Examples (${shown.length} of ${r.items.length}; all in results.jsonl)`, '');
  for (const it of shown) {
    out.push(
      `### ${it.index + 1}. ${it.task ?? it.where}`,
      '',
      '```text',
      it.prompt.trimEnd(),
      '```',
      '',
      `**Reference:** ${cell(it.reference)}`,
      '',
    );
    out.push('| model | output | EM | F1 | ROUGE-L |', '|---|---|---:|---:|---:|');
    for (const m of r.models) {
      const s = m.scores[it.index];
      out.push(
        `| ${m.name} | ${cell(m.outputs[it.index])} | ${num(s.exact_match, 0)} | ${num(s.f1, 2)} | ${num(s.rougeL, 2)} |`,
      );
    }
    out.push('');
  }
  return out.join('\n');
}

/** Grouped bars: one group per metric, one bar per model, values on a shared axis from 0. */
export function metricsBarChart(models: ModelResult[], names: string[], width = 720, height = 340): string {
  const m = { left: 56, right: 16, top: 40, bottom: 64 };
  const pw = width - m.left - m.right;
  const ph = height - m.top - m.bottom;
  const top = Math.max(1, ...models.flatMap((x) => names.map((k) => x.metrics[k] ?? 0)));
  const ticks = niceTicks(0, top, 5);
  const yMax = Math.max(top, ticks[ticks.length - 1]);
  const sy = (v: number) => m.top + ph - (v / yMax) * ph;
  const group = pw / Math.max(names.length, 1);
  const bar = Math.min(48, (group * 0.8) / Math.max(models.length, 1));
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="#fff"/>`,
    `<text x="${width / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold" fill="#222">Metrics per model</text>`,
  ];
  for (const t of ticks) {
    const y = sy(t).toFixed(1);
    out.push(
      `<line x1="${m.left}" x2="${m.left + pw}" y1="${y}" y2="${y}" stroke="#e5e5e5"/>`,
      `<text x="${m.left - 8}" y="${y}" text-anchor="end" dominant-baseline="middle" fill="#222">${t}</text>`,
    );
  }
  names.forEach((k, g) => {
    const x0 = m.left + g * group + (group - bar * models.length) / 2;
    models.forEach((model, i) => {
      const v = model.metrics[k] ?? 0;
      const x = x0 + i * bar;
      const y = sy(v);
      out.push(
        `<rect x="${x.toFixed(1)}" y="${y.toFixed(1)}" width="${(bar - 2).toFixed(1)}" height="${(m.top + ph - y).toFixed(1)}" fill="${PALETTE[i % PALETTE.length]}"><title>${esc(`${model.name} ${k}: ${num(v)}`)}</title></rect>`,
      );
      out.push(
        `<text x="${(x + (bar - 2) / 2).toFixed(1)}" y="${(y - 4).toFixed(1)}" text-anchor="middle" font-size="10" fill="#222">${num(v, 2)}</text>`,
      );
    });
    out.push(
      `<text x="${(m.left + g * group + group / 2).toFixed(1)}" y="${m.top + ph + 18}" text-anchor="middle" fill="#222">${esc(k)}</text>`,
    );
  });
  out.push(`<path d="M${m.left},${m.top}V${m.top + ph}H${m.left + pw}" fill="none" stroke="#333"/>`);
  models.forEach((model, i) => {
    const x = m.left + i * 150;
    const y = height - 18;
    out.push(
      `<rect x="${x}" y="${y - 9}" width="12" height="12" fill="${PALETTE[i % PALETTE.length]}"/>`,
      `<text x="${x + 18}" y="${y + 1}" dominant-baseline="middle" fill="#222">${esc(model.name)}</text>`,
    );
  });
  out.push('</svg>');
  return out.join('\n');
}

const CSS = `body{font-family:Helvetica,Arial,sans-serif;margin:24px auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:8px 0 20px}th,td{border:1px solid #ddd;padding:4px 8px;vertical-align:top}
th{background:#f4f4f4}td.n{text-align:right;font-variant-numeric:tabular-nums}td.best{font-weight:bold;background:#eef6ee}
pre{white-space:pre-wrap;margin:0;font-size:12px}.warn{color:#b00}
table.ex{table-layout:fixed;width:100%}.ex td{font-size:13px}.ex pre{overflow-wrap:anywhere}col.num{width:3em}`;

/** report.html: one self-contained page (inline SVG, no scripts). */
export function htmlReport(r: EvalResult, maxExamples = 200): string {
  const names = metricNames(r.models);
  const best = (k: string) => Math.max(...r.models.map((m) => m.metrics[k] ?? -Infinity));
  const lowest = Math.min(...r.models.map((m) => m.loss.loss));
  const out: string[] = [
    '<!doctype html>',
    '<html><head><meta charset="utf-8"><title>ft eval</title>',
    `<style>${CSS}</style></head><body>`,
    `<h1>ft eval</h1><p>Model <code>${esc(r.model)}</code>; ${esc(settingsLine(r))}.</p>`,
  ];
  if (r.overlap)
    out.push(
      r.overlap.overlapping
        ? `<p class="warn">Warning: ${r.overlap.overlapping} eval rows also appear in the training rows of ${esc(r.overlap.trainedOn)}.</p>`
        : `<p>No eval row appears in the training rows of ${esc(r.overlap.trainedOn)}.</p>`,
    );
  out.push(
    '<h2>Metrics</h2><table><tr><th>model</th><th>loss</th><th>perplexity</th>' +
      names.map((k) => `<th>${esc(k)}</th>`).join('') +
      '</tr>',
  );
  for (const m of r.models) {
    const lossCls = r.models.length > 1 && m.loss.loss === lowest ? 'n best' : 'n';
    const tds = names
      .map(
        (k) =>
          `<td class="${r.models.length > 1 && m.metrics[k] === best(k) ? 'n best' : 'n'}">${num(m.metrics[k] ?? NaN)}</td>`,
      )
      .join('');
    out.push(
      `<tr><td>${esc(m.name)}</td><td class="${lossCls}">${num(m.loss.loss, 4)}</td><td class="${lossCls}">${num(m.loss.perplexity, 2)}</td>${tds}</tr>`,
    );
  }
  out.push('</table>', metricsBarChart(r.models, names));
  for (const m of r.models) {
    if (m.training && m.training.length > 0)
      out.push(
        `<h2>Training loss: ${esc(m.name)}</h2>`,
        lossCurveSvg(m.training, { title: `training run of ${m.name}` }),
      );
  }
  const tasks = tasksOf(r);
  if (tasks.length > 0) {
    out.push(
      '<h2>Per task (ROUGE-L / exact match)</h2><table><tr><th>task</th><th>n</th>' +
        r.models.map((m) => `<th>${esc(m.name)}</th>`).join('') +
        '</tr>',
    );
    for (const t of tasks) {
      const cells = r.models
        .map(
          (m) =>
            `<td class="n">${m.byTask[t] ? `${num(m.byTask[t].metrics.rougeL)} / ${num(m.byTask[t].metrics.exact_match)}` : '-'}</td>`,
        )
        .join('');
      out.push(`<tr><td>${esc(t)}</td><td class="n">${r.models[0].byTask[t]?.count ?? 0}</td>${cells}</tr>`);
    }
    out.push('</table>');
  }
  const shown = r.items.slice(0, maxExamples);
  // fixed layout over the page's width, long words broken anywhere: every model's column stays on the page
  const cols = '<colgroup><col class="num">' + '<col>'.repeat(2 + r.models.length) + '</colgroup>';
  out.push(
    `<h2>Outputs side by side (${shown.length} of ${r.items.length})</h2><table class="ex">${cols}<tr><th>#</th><th>prompt</th><th>reference</th>` +
      r.models.map((m) => `<th>${esc(m.name)}</th>`).join('') +
      '</tr>',
  );
  for (const it of shown) {
    const outs = r.models
      .map(
        (m) =>
          `<td><pre>${esc(m.outputs[it.index])}</pre><small>R-L ${num(m.scores[it.index].rougeL, 2)}${m.scores[it.index].exact_match ? ' · exact' : ''}</small></td>`,
      )
      .join('');
    out.push(
      `<tr><td class="n">${it.index + 1}</td><td><pre>${esc(it.prompt.trimEnd())}</pre></td><td><pre>${esc(it.reference)}</pre></td>${outs}</tr>`,
    );
  }
  out.push('</table></body></html>', '');
  return out.join('\n');
}
