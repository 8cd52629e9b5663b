/**
 * A step's Timeline as a self-contained SVG: one lane per stream, one bar
 * per stage span on the GPU's time axis, so that two-batch overlap shows as
 * bars of two lanes side by side in time. No dependency beyond strings.
 */
import type { TimelineSpan } from '../../cuda/timeline.js';
import { STAGES } from './moe-cases.js';

const WIDTH = 960;
const MARGIN = { left: 90, right: 20, top: 56, bottom: 80 };
const LANE_HEIGHT = 44;
const BAR_HEIGHT = 28;
const PALETTE = ['#1f77b4', '#2ca02c', '#d62728', '#ff7f0e', '#9467bd', '#8c564b', '#17becf', '#7f7f7f'];

function escapeXml(text: string): string {
  return text.replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c]!);
}

/** A round tick step giving about eight ticks over `range`. */
function tickStep(range: number): number {
  const raw = range / 8 || 1;
  const power = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw)!;
}

/** Each label's colour: the known stages in a fixed order, so that figures compare; others after them. */
function colours(labels: readonly string[]): Map<string, string> {
  const known = STAGES as readonly string[];
  const extra = labels.filter((l) => !known.includes(l));
  return new Map([...known, ...extra].map((l, i) => [l, PALETTE[i % PALETTE.length]!]));
}

export function renderTimelineSvg(spans: readonly TimelineSpan[], title: string, subtitle = ''): string {
  const lanes = Math.max(1, ...spans.map((s) => s.lane + 1));
  const endUs = Math.max(1, ...spans.map((s) => s.endUs));
  const step = tickStep(endUs);
  const axisEnd = Math.ceil(endUs / step) * step;
  const plotRight = WIDTH - MARGIN.right;
  const x = (us: number) => MARGIN.left + (us / axisEnd) * (plotRight - MARGIN.left);
  const laneTop = (lane: number) => MARGIN.top + lane * LANE_HEIGHT;
  const bottom = laneTop(lanes);
  const height = bottom + MARGIN.bottom;
  const labels = [...new Set(spans.map((s) => s.label))];
  const colour = colours(labels);
  const n = (v: number) => v.toFixed(1);
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="sans-serif">`,
    `<rect width="${WIDTH}" height="${height}" fill="#fff"/>`,
    `<text x="${MARGIN.left}" y="22" font-size="15" font-weight="bold">${escapeXml(title)}</text>`,
    `<text x="${MARGIN.left}" y="40" font-size="11" fill="#555">${escapeXml(subtitle)}</text>`,
  ];
  for (let lane = 0; lane < lanes; lane++) {
    out.push(`<text x="${MARGIN.left - 8}" y="${n(laneTop(lane) + LANE_HEIGHT / 2)}" font-size="12" text-anchor="end" dominant-baseline="middle">stream ${lane}</text>`);
  }
  for (let v = 0; v <= axisEnd + step * 1e-9; v += step) {
    const tx = n(x(v));
    out.push(`<line x1="${tx}" x2="${tx}" y1="${MARGIN.top}" y2="${bottom + 4}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${tx}" y="${bottom + 18}" font-size="11" text-anchor="middle">${Number(v.toPrecision(6))}</text>`);
  }
  out.push(`<text x="${(MARGIN.left + plotRight) / 2}" y="${bottom + 36}" font-size="12" text-anchor="middle">µs on the GPU, from the step's first event</text>`);
  for (const s of spans) {
    const y = laneTop(s.lane) + (LANE_HEIGHT - BAR_HEIGHT) / 2;
    const w = Math.max(1, x(s.endUs) - x(s.startUs));
    const tip = `${s.label}, stream ${s.lane}: ${s.startUs.toFixed(1)}–${s.endUs.toFixed(1)} µs (${(s.endUs - s.startUs).toFixed(1)} µs)`;
    out.push(
      `<rect class="span" data-label="${escapeXml(s.label)}" data-lane="${s.lane}" x="${n(x(s.startUs))}" y="${n(y)}" width="${n(w)}" height="${BAR_HEIGHT}" fill="${colour.get(s.label)}" stroke="#fff" stroke-width="0.5"><title>${escapeXml(tip)}</title></rect>`,
    );
  }
  labels.forEach((l, i) => {
    const lx = MARGIN.left + i * 120;
    const ly = bottom + 58;
    out.push(`<rect x="${lx}" y="${ly - 6}" width="12" height="12" fill="${colour.get(l)}"/>`);
    out.push(`<text x="${lx + 18}" y="${ly}" font-size="11" dominant-baseline="middle">${escapeXml(l)}</text>`);
  });
  out.push('</svg>', '');
  return out.join('\n');
}
