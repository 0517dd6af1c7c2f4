// report.html in a browser window of 1200 px: the outputs-side-by-side table must keep every model's column on the
// page however long its cells (an unbroken token run, a long prompt). The structure is checked always; a real
// headless Chromium lays the page out and measures it when /usr/bin/chromium is installed.
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import type { EvalItem } from './items.ts';
import { htmlReport } from './report.ts';
import type { EvalResult, ModelResult } from './types.ts';

const tmp = mkdtempSync(path.join(tmpdir(), 'ft-report-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const CHROMIUM = '/usr/bin/chromium';
const noise = 'f\u00fdq22x69~f64\u00e71990gestI\u00e728JSON###date94f64'.repeat(6); // no space to break at: base-model noise
const prompt =
  'Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\nSort the numbers from smallest to largest.\n\n### Input:\n' +
  '42, 7, 19, '.repeat(12) +
  '\n\n### Response:\n';

function model(name: string, output: string): ModelResult {
  const metrics = { exact_match: 0, f1: 0, rougeL: 0 };
  return {
    name,
    adapter: null,
    baseModel: null,
    loss: { loss: 3, perplexity: 20, tokens: 10 },
    metrics,
    byTask: {},
    outputs: [output, output],
    scores: [metrics, metrics],
    generationSeconds: 1,
    training: null,
  };
}

function report(): EvalResult {
  const item = (index: number): EvalItem => ({
    index,
    where: `e.jsonl line ${index + 1}`,
    hash: String(index),
    task: null,
    prompt,
    reference: '7, 19, 42',
    promptIds: [],
    example: { ids: new Int32Array(0), labels: new Int32Array(0) },
  });
  return {
    outDir: tmp,
    model: '/models/tiny-synth',
    data: 'e.jsonl',
    items: [item(0), item(1)],
    models: [
      model('base', noise),
      model('runs/alpaca-tiny/adapter', noise.toUpperCase()),
      model('other/adapter', '7, 19, 42'),
    ],
    generation: { maxNewTokens: 24, temperature: 0, topK: 0, topP: 1, seed: 0, batchSize: 8 },
    overlap: null,
    files: { results: '', summary: '', markdown: '', html: '' },
  };
}

describe('report.html outputs side by side', () => {
  it('lays the table out fixed over the page width, one column per model, long words broken anywhere', () => {
    const html = htmlReport(report());
    const css = /<style>([\s\S]*?)<\/style>/.exec(html)![1];
    expect(css).toMatch(/table\.ex\{[^}]*table-layout:fixed[^}]*\}/);
    expect(css).toMatch(/table\.ex\{[^}]*width:100%[^}]*\}/);
    expect(css).toMatch(/\.ex pre\{[^}]*overflow-wrap:anywhere[^}]*\}/);
    const table = /<table class="ex">([\s\S]*?)<\/table>/.exec(html)![1];
    // #, prompt, reference, then the three models: one <col> each
    expect(table.match(/<col[ >]/g)).toHaveLength(6);
    expect(table.match(/<th>/g)).toHaveLength(6);
  });

  it.skipIf(!existsSync(CHROMIUM))(
    'keeps every column inside a 1200 px Chromium window (skipped without /usr/bin/chromium)',
    async () => {
      // a measuring script appended to a copy of the page (report.html itself has no scripts)
      const probe = `<script>const vw = document.documentElement.clientWidth;
const cells = [...document.querySelectorAll('table.ex tr:nth-child(2) > td')].map((td) => Math.round(td.getBoundingClientRect().right));
document.body.setAttribute('data-layout', JSON.stringify({ vw, scroll: document.documentElement.scrollWidth, cells }));</script>`;
      const file = path.join(tmp, 'report.html');
      writeFileSync(file, htmlReport(report()).replace('</body>', `${probe}</body>`));
      const flags = [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
        '--window-size=1200,900',
      ];
      const { stdout } = await promisify(execFile)(CHROMIUM, [...flags, '--dump-dom', `file://${file}`], {
        timeout: 60_000,
      });
      const layout = JSON.parse(/data-layout="([^"]*)"/.exec(stdout)![1].replaceAll('&quot;', '"')) as {
        vw: number;
        scroll: number;
        cells: number[];
      };
      expect(layout.cells).toHaveLength(6);
      expect(layout.scroll).toBeLessThanOrEqual(layout.vw); // no horizontal scrollbar
      for (const right of layout.cells) expect(right).toBeLessThanOrEqual(layout.vw);
      await promisify(execFile)(
        CHROMIUM,
        [...flags, `--screenshot=${path.join(tmp, 'report.png')}`, `file://${file}`],
        { timeout: 60_000 },
      ); // to look at by hand
    },
    120_000,
  );
});
