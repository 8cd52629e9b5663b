#!/usr/bin/env node
// Renders benchmark reports (what `wideep bench ep --json` and `wideep bench
// nccl --json` print) as one self-contained SVG, with no dependency beyond Node:
//   normal mode    bandwidth against SM budget, DeepEP's figures as marks and
//                  the NCCL baseline of the same run as dashed lines;
//   low-latency    kernel time against tokens per rank (one report per token
//                  count; give several), DeepEP's figures as marks;
//   nccl           all-reduce bus bandwidth against size and all-to-all time
//                  against rows per peer, PyTorch's NCCL beside when it ran.
// DeepEP's figures are the ones each report row carries (`deepep`), so this
// script holds no figures of its own.
//
//   node scripts/bench/plot.mjs [-o out.svg] report.json [report.json ...]
import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

const USAGE = 'usage: node scripts/bench/plot.mjs [-o out.svg] report.json [report.json ...]';

const PANEL_WIDTH = 760;
const PANEL_HEIGHT = 360;
const MARGIN = { left: 70, right: 230, top: 52, bottom: 48 };
const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#e377c2', '#17becf', '#7f7f7f', '#bcbd22'];

class UsageError extends Error {}

function escapeXml(text) {
  return String(text).replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c]);
}

function fmt(v) {
  return Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(4)));
}

// ---- reports to charts ------------------------------------------------------------
//
// A chart: { title, subtitle, xLabel, yLabel, xLog, series: [{ name, points: [[x, y]] }],
// anchors: [{ name, x, y }], references: [{ name, y }] }.

/** Adds point [x, y] to the series called `name`, creating it on first use. */
function addPoint(seriesByName, name, x, y) {
  if (!Number.isFinite(x) || !Number.isFinite(y)) return;
  let s = seriesByName.get(name);
  if (!s) seriesByName.set(name, (s = { name, points: [] }));
  s.points.push([x, y]);
}

function addAnchor(anchors, name, x, y) {
  if (!anchors.some((a) => a.name === name && a.x === x && a.y === y)) anchors.push({ name, x, y });
}

function finishSeries(seriesByName) {
  return [...seriesByName.values()].map((s) => ({ ...s, points: s.points.sort((a, b) => a[0] - b[0]) }));
}

/** "4 ranks, 4096 tokens/rank, hidden 7168, top-8 of 256" (without the token count when it is the x axis). */
function shapeOf(report, withTokens) {
  const c = report.config ?? {};
  const tokens = withTokens ? `, ${c.tokens} tokens/rank` : '';
  return `${report.worldSize} rank${report.worldSize === 1 ? '' : 's'}${tokens}, hidden ${c.hidden}, top-${c.topk} of ${c.experts}`;
}

/** Groups EP reports into panels: one per mode, routing and shape. */
function epCharts(reports) {
  const panels = new Map();
  for (const report of reports) {
    const normal = report.mode === 'normal';
    for (const row of report.rows) {
      const shape = shapeOf(report, normal);
      const key = `${report.mode}|${row.routing}|${shape}`;
      let p = panels.get(key);
      if (!p) {
        p = {
          title: `${normal ? 'Normal mode' : 'Low-latency mode'}, ${row.routing} routing`,
          subtitle: [shape, report.deepepSource ? `DeepEP: ${report.deepepSource}` : 'DeepEP: no figures at this rank count'].join('; '),
          xLabel: normal ? 'SMs (numSms)' : 'tokens per rank',
          yLabel: normal ? 'GB/s, bytes received per rank' : 'µs, CUDA events',
          xLog: false,
          seriesByName: new Map(),
          anchors: [],
          references: [],
        };
        panels.set(key, p);
      }
      if (normal) addNormalRow(p, row);
      else addLowLatencyRow(p, row, report.config.tokens);
    }
  }
  return [...panels.values()].map(({ seriesByName, ...p }) => ({ ...p, series: finishSeries(seriesByName) }));
}

function addNormalRow(p, row) {
  if (row.numSms === undefined) {
    // The NCCL baseline on the same rows: no SM budget, a line across.
    if (Number.isFinite(row.gbps) && !p.references.some((r) => r.name === row.op)) p.references.push({ name: row.op, y: row.gbps });
    return;
  }
  const name = row.sendSms === undefined ? row.op : `${row.op} (${row.sendSms} send SMs)`;
  addPoint(p.seriesByName, name, row.numSms, row.gbps);
  // A cached dispatch is compared with the same DeepEP figure as an uncached one.
  if (row.deepep?.unit === 'GB/s') addAnchor(p.anchors, `DeepEP ${row.op.replace(/-cached$/, '')}`, row.numSms, row.deepep.value);
}

function addLowLatencyRow(p, row, tokens) {
  addPoint(p.seriesByName, row.op, tokens, row.kernelUs);
  if (row.deepep?.unit === 'us') addAnchor(p.anchors, `DeepEP ${row.op}`, tokens, row.deepep.value);
}

function ncclCharts(report) {
  const gpus = [...new Set(report.gpus ?? [])].join(', ') || 'unknown GPUs';
  const subtitle = `${report.worldSize} ranks on ${gpus}, NCCL ${report.ncclVersion}, bf16`;
  const torch = report.torch?.available ? report.torch : undefined;
  const sides = [['wideep', report.results], ...(torch ? [[`PyTorch (NCCL ${torch.ncclVersion})`, torch.results]] : [])];
  const panel = (op, title, xLabel, yLabel, x, y) => {
    const seriesByName = new Map();
    for (const [name, results] of sides) for (const r of results) if (r.op === op) addPoint(seriesByName, name, x(r), y(r));
    return { title, subtitle, xLabel, yLabel, xLog: true, series: finishSeries(seriesByName), anchors: [], references: [] };
  };
  return [
    panel('all-reduce', 'NCCL all-reduce', 'MiB', 'bus bandwidth, GB/s', (r) => r.bytes / 2 ** 20, (r) => r.busbwGBs),
    panel('all-to-all', 'NCCL equal all-to-all', `rows per peer (hidden ${report.results.find((r) => r.hidden)?.hidden ?? '?'})`, 'µs per op', (r) => r.rowsPerPeer, (r) => r.timeUs),
  ].filter((c) => c.series.length > 0);
}

/** Checks that `value` is a report this script can draw; `file` names it in the error. */
function checkReport(value, file) {
  const bad = (what) => new UsageError(`${file}: ${what}; expected the JSON of 'wideep bench ep --json' or 'wideep bench nccl --json'`);
  if (typeof value !== 'object' || value === null) throw bad('not a JSON object');
  if (value.suite === 'ep') {
    if (value.mode !== 'normal' && value.mode !== 'low-latency') throw bad(`mode is ${JSON.stringify(value.mode)}`);
    if (!Array.isArray(value.rows) || typeof value.config !== 'object') throw bad('no rows or config');
    return value;
  }
  if (value.suite === 'nccl') {
    if (!Array.isArray(value.results)) throw bad('no results');
    return value;
  }
  throw bad(`suite is ${JSON.stringify(value.suite)}`);
}

function chartsOf(reports) {
  return [...epCharts(reports.filter((r) => r.suite === 'ep')), ...reports.filter((r) => r.suite === 'nccl').flatMap(ncclCharts)];
}

// ---- charts to SVG ----------------------------------------------------------------

/** A round step for about five ticks over `range`: 1, 2 or 5 times a power of ten. */
function tickStep(range) {
  const raw = range / 5 || 1;
  const power = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw);
}

/** The multiples of `step` in [lo, hi]. */
function linearTicks(lo, hi, step = tickStep(hi - lo)) {
  const ticks = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

/** Powers of two covering [lo, hi] (log axes: sizes and row counts). */
function logTicks(lo, hi) {
  const ticks = [];
  for (let e = Math.floor(Math.log2(lo)); 2 ** e <= hi * (1 + 1e-9); e++) if (2 ** e >= lo * (1 - 1e-9)) ticks.push(2 ** e);
  return ticks;
}

/** Maps data to pixels for one panel. */
function scales(chart, top) {
  const xs = [...chart.series.flatMap((s) => s.points.map((p) => p[0])), ...chart.anchors.map((a) => a.x)];
  const ys = [...chart.series.flatMap((s) => s.points.map((p) => p[1])), ...chart.anchors.map((a) => a.y), ...chart.references.map((r) => r.y)];
  const left = MARGIN.left;
  const right = PANEL_WIDTH - MARGIN.right;
  const plotTop = top + MARGIN.top;
  const bottom = top + PANEL_HEIGHT - MARGIN.bottom;
  let xLo = Math.min(...xs);
  let xHi = Math.max(...xs);
  if (chart.xLog) {
    xLo = 2 ** Math.floor(Math.log2(xLo));
    xHi = 2 ** Math.ceil(Math.log2(xHi));
    if (xLo === xHi) [xLo, xHi] = [xLo / 2, xHi * 2];
  } else {
    const pad = xLo === xHi ? Math.max(1, xLo / 2) : (xHi - xLo) * 0.05;
    [xLo, xHi] = [Math.max(0, xLo - pad), xHi + pad];
  }
  // From 0 to the first tick above every value, so that no point leaves the box.
  const yMax = Math.max(...ys) * 1.05 || 1;
  const yStep = tickStep(yMax);
  const yHi = Math.ceil(yMax / yStep) * yStep;
  const yTicks = linearTicks(0, yHi, yStep);
  const t = (v) => (chart.xLog ? Math.log2(v / xLo) / Math.log2(xHi / xLo) : (v - xLo) / (xHi - xLo));
  return {
    x: (v) => left + t(v) * (right - left),
    y: (v) => bottom - (v / yHi) * (bottom - plotTop),
    xTicks: chart.xLog ? logTicks(xLo, xHi) : linearTicks(xLo, xHi),
    yTicks,
    box: { left, right, top: plotTop, bottom },
  };
}

const n = (v) => v.toFixed(1);

/** A diamond at (cx, cy): the mark of a DeepEP figure. */
function diamond(cx, cy, r) {
  return `M${n(cx)} ${n(cy - r)}L${n(cx + r)} ${n(cy)}L${n(cx)} ${n(cy + r)}L${n(cx - r)} ${n(cy)}Z`;
}

function renderPanel(chart, top) {
  const s = scales(chart, top);
  const { left, right, top: pt, bottom } = s.box;
  const out = [`<g class="panel" data-title="${escapeXml(chart.title)}">`];
  out.push(`<text x="${left}" y="${top + 20}" font-size="15" font-weight="bold">${escapeXml(chart.title)}</text>`);
  out.push(`<text x="${left}" y="${top + 38}" font-size="11" fill="#555">${escapeXml(chart.subtitle)}</text>`);
  for (const v of s.yTicks) {
    const y = n(s.y(v));
    out.push(`<line x1="${left}" x2="${right}" y1="${y}" y2="${y}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${left - 6}" y="${y}" font-size="11" text-anchor="end" dominant-baseline="middle">${fmt(v)}</text>`);
  }
  for (const v of s.xTicks) {
    const x = n(s.x(v));
    out.push(`<line x1="${x}" x2="${x}" y1="${bottom}" y2="${bottom + 4}" stroke="#333"/>`);
    out.push(`<text x="${x}" y="${bottom + 17}" font-size="11" text-anchor="middle">${fmt(v)}</text>`);
  }
  out.push(`<rect x="${left}" y="${pt}" width="${right - left}" height="${bottom - pt}" fill="none" stroke="#333"/>`);
  out.push(`<text x="${(left + right) / 2}" y="${bottom + 36}" font-size="12" text-anchor="middle">${escapeXml(chart.xLabel)}</text>`);
  out.push(
    `<text x="${left - 52}" y="${(pt + bottom) / 2}" font-size="12" text-anchor="middle" transform="rotate(-90 ${left - 52} ${(pt + bottom) / 2})">${escapeXml(chart.yLabel)}</text>`,
  );

  const legend = [];
  chart.series.forEach((series, i) => {
    const color = PALETTE[i % PALETTE.length];
    const pts = series.points.map(([x, y]) => `${n(s.x(x))},${n(s.y(y))}`).join(' ');
    out.push(`<g class="series" data-name="${escapeXml(series.name)}" stroke="${color}" fill="${color}">`);
    out.push(`<polyline points="${pts}" fill="none" stroke-width="2"/>`);
    for (const [x, y] of series.points) {
      out.push(`<circle class="point" cx="${n(s.x(x))}" cy="${n(s.y(y))}" r="3.5" data-x="${x}" data-y="${y}"/>`);
    }
    out.push('</g>');
    legend.push({ name: series.name, color, kind: 'series' });
  });
  chart.references.forEach((ref, i) => {
    const color = PALETTE[(chart.series.length + i) % PALETTE.length];
    const y = n(s.y(ref.y));
    out.push(
      `<line class="reference" data-name="${escapeXml(ref.name)}" data-y="${ref.y}" x1="${left}" x2="${right}" y1="${y}" y2="${y}" stroke="${color}" stroke-width="1.5" stroke-dasharray="6 4"/>`,
    );
    legend.push({ name: `${ref.name} (same run)`, color, kind: 'reference' });
  });
  const anchorNames = [...new Set(chart.anchors.map((a) => a.name))];
  for (const a of chart.anchors) {
    const color = PALETTE[(chart.series.length + chart.references.length + anchorNames.indexOf(a.name)) % PALETTE.length];
    out.push(
      `<path class="anchor" data-name="${escapeXml(a.name)}" data-x="${a.x}" data-y="${a.y}" d="${diamond(s.x(a.x), s.y(a.y), 6)}" fill="none" stroke="${color}" stroke-width="2"/>`,
    );
  }
  anchorNames.forEach((name, i) => {
    legend.push({ name, color: PALETTE[(chart.series.length + chart.references.length + i) % PALETTE.length], kind: 'anchor' });
  });

  legend.forEach((item, i) => {
    const x = right + 14;
    const y = pt + 8 + i * 18;
    if (item.kind === 'series') out.push(`<line x1="${x}" x2="${x + 18}" y1="${y}" y2="${y}" stroke="${item.color}" stroke-width="2"/>`);
    if (item.kind === 'reference') out.push(`<line x1="${x}" x2="${x + 18}" y1="${y}" y2="${y}" stroke="${item.color}" stroke-dasharray="6 4"/>`);
    if (item.kind === 'anchor') out.push(`<path d="${diamond(x + 9, y, 5)}" fill="none" stroke="${item.color}" stroke-width="2"/>`);
    out.push(`<text x="${x + 24}" y="${y}" font-size="11" dominant-baseline="middle">${escapeXml(item.name)}</text>`);
  });
  out.push('</g>');
  return out.join('\n');
}

function renderSvg(charts) {
  const height = Math.max(1, charts.length) * PANEL_HEIGHT;
  const body = charts.length === 0 ? ['<text x="20" y="40" font-size="14">no rows to plot</text>'] : charts.map((c, i) => renderPanel(c, i * PANEL_HEIGHT));
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${PANEL_WIDTH}" height="${height}" viewBox="0 0 ${PANEL_WIDTH} ${height}" font-family="sans-serif">`,
    `<rect width="${PANEL_WIDTH}" height="${height}" fill="#fff"/>`,
    ...body,
    '</svg>',
    '',
  ].join('\n');
}

// ---- command line -----------------------------------------------------------------

function readReport(file) {
  let text;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new UsageError(`${file}: ${e.message}`);
  }
  try {
    return checkReport(JSON.parse(text), file);
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError(`${file}: not valid JSON (${e.message})`);
  }
}

function main(argv) {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { out: { type: 'string', short: 'o' }, help: { type: 'boolean', short: 'h' } } });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  if (positionals.length === 0) throw new UsageError('no report given');
  const svg = renderSvg(chartsOf(positionals.map(readReport)));
  if (values.out) writeFileSync(values.out, svg);
  else process.stdout.write(svg);
}

try {
  main(process.argv.slice(2));
} catch (e) {
  const usage = e instanceof UsageError || e?.code?.startsWith?.('ERR_PARSE_ARGS');
  process.stderr.write(`plot: ${e.message}\n${usage ? `${USAGE}\n` : ''}`);
  process.exitCode = usage ? 2 : 1;
}
