/**
 * Hand-rolled SVG line charts (no dependency): numeric or categorical x, linear
 * or log axes, one polyline + markers per series, a legend.
 */
export interface Series {
  name: string;
  color: string;
  dash?: boolean;
  points: [number, number][];
}

export interface ChartSpec {
  title: string;
  xLabel: string;
  yLabel: string;
  xLog?: boolean;
  yLog?: boolean;
  /** Categorical x: point x values are indices into these labels. */
  xCategories?: string[];
  /** Formats numeric tick labels. */
  xFormat?: (v: number) => string;
  yFormat?: (v: number) => string;
  series: Series[];
  width: number;
  height: number;
  /** Legend in a right-hand margin of this many pixels instead of inside the plot. */
  legendRight?: number;
}

export const PALETTE: Record<string, string> = {
  'forkgc-fork': '#d62728',
  'forkgc-fork-huge': '#ff7f0e',
  'forkgc-stw': '#1f77b4',
  'forkgc-stw-huge': '#17becf',
  'forkgc-fork-unchecked': '#bcbd22',
  'forkgc-fork-always': '#7f7f7f',
  v8: '#2ca02c',
  'd-gc': '#9467bd',
  'd-gc-fork': '#e377c2',
  boehm: '#8c564b',
};

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

function niceLinearTicks(min: number, max: number, n = 5): number[] {
  const span = max - min || 1;
  const step0 = span / n;
  const mag = Math.pow(10, Math.floor(Math.log10(step0)));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => span / s <= n) ?? 10 * mag;
  const ticks: number[] = [];
  for (let v = Math.ceil(min / step) * step; v <= max + 1e-9 * span; v += step) ticks.push(+v.toPrecision(12));
  return ticks;
}

function logTicks(min: number, max: number, base = 10): number[] {
  const ticks: number[] = [];
  const lo = Math.floor(Math.log(min) / Math.log(base));
  const hi = Math.ceil(Math.log(max) / Math.log(base));
  for (let e = lo; e <= hi; e++) ticks.push(Math.pow(base, e));
  return ticks;
}

export function fmtNum(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e6) return `${+(v / 1e6).toPrecision(3)}M`;
  if (a >= 1e4) return `${+(v / 1e3).toPrecision(3)}k`;
  if (a >= 1) return `${+v.toPrecision(3)}`;
  return `${+v.toPrecision(2)}`;
}

/** One chart as an SVG <g> of the given size, translated to (x, y). */
export function chart(spec: ChartSpec, x = 0, y = 0): string {
  const { width: W, height: H } = spec;
  const m = { l: 62, r: 12 + (spec.legendRight ?? 0), t: 28, b: 44 };
  const pw = W - m.l - m.r;
  const ph = H - m.t - m.b;
  const pts = spec.series.flatMap((s) => s.points).filter(([a, b]) => Number.isFinite(a) && Number.isFinite(b));
  const out: string[] = [`<g transform="translate(${x},${y})">`];
  out.push(`<text x="${W / 2}" y="16" text-anchor="middle" font-size="12" font-weight="bold">${esc(spec.title)}</text>`);
  out.push(`<rect x="${m.l}" y="${m.t}" width="${pw}" height="${ph}" fill="#fff" stroke="#999"/>`);
  if (pts.length === 0) {
    out.push(`<text x="${m.l + pw / 2}" y="${m.t + ph / 2}" text-anchor="middle" fill="#888">no data</text></g>`);
    return out.join('\n');
  }
  const xsRaw = pts.map((p) => p[0]);
  const ysRaw = pts.map((p) => p[1]).filter((v) => !spec.yLog || v > 0);
  let xmin: number, xmax: number;
  if (spec.xCategories) {
    xmin = 0;
    xmax = Math.max(1, spec.xCategories.length - 1);
  } else {
    xmin = Math.min(...xsRaw);
    xmax = Math.max(...xsRaw);
  }
  let ymin = Math.min(...ysRaw);
  let ymax = Math.max(...ysRaw);
  if (spec.yLog) {
    ymin = Math.pow(10, Math.floor(Math.log10(ymin)));
    ymax = Math.pow(10, Math.ceil(Math.log10(ymax)));
    if (ymin === ymax) ymax = ymin * 10;
  } else {
    ymin = Math.min(0, ymin);
    ymax = ymax === ymin ? ymin + 1 : ymax * 1.05;
  }
  if (spec.xLog && !spec.xCategories) {
    xmin = Math.pow(2, Math.floor(Math.log2(xmin)));
    xmax = Math.pow(2, Math.ceil(Math.log2(xmax)));
    if (xmin === xmax) xmax = xmin * 2;
  } else if (xmin === xmax) {
    xmax = xmin + 1;
  }
  const sx = (v: number) =>
    m.l +
    (spec.xLog && !spec.xCategories
      ? (Math.log(v / xmin) / Math.log(xmax / xmin)) * pw
      : ((v - xmin) / (xmax - xmin)) * pw);
  const sy = (v: number) =>
    m.t + ph - (spec.yLog ? (Math.log(v / ymin) / Math.log(ymax / ymin)) * ph : ((v - ymin) / (ymax - ymin)) * ph);

  // Grid and ticks.
  const yt = spec.yLog ? logTicks(ymin, ymax) : niceLinearTicks(ymin, ymax);
  const yf = spec.yFormat ?? fmtNum;
  for (const t of yt) {
    if (t < ymin * 0.999 || t > ymax * 1.001) continue;
    const py = sy(t).toFixed(1);
    out.push(`<line x1="${m.l}" x2="${m.l + pw}" y1="${py}" y2="${py}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${m.l - 5}" y="${py}" dy="4" text-anchor="end" font-size="10">${esc(yf(t))}</text>`);
  }
  let xt: { v: number; label: string }[];
  if (spec.xCategories) xt = spec.xCategories.map((label, i) => ({ v: i, label }));
  else {
    const xf = spec.xFormat ?? fmtNum;
    const vals = spec.xLog ? logTicks(xmin, xmax, 2) : niceLinearTicks(xmin, xmax);
    xt = vals.filter((v) => v >= xmin * 0.999 && v <= xmax * 1.001).map((v) => ({ v, label: xf(v) }));
  }
  for (const t of xt) {
    const px = sx(t.v).toFixed(1);
    out.push(`<line x1="${px}" x2="${px}" y1="${m.t}" y2="${m.t + ph}" stroke="#f0f0f0"/>`);
    out.push(`<text x="${px}" y="${m.t + ph + 14}" text-anchor="middle" font-size="10">${esc(t.label)}</text>`);
  }
  out.push(`<text x="${m.l + pw / 2}" y="${H - 8}" text-anchor="middle" font-size="11">${esc(spec.xLabel)}</text>`);
  out.push(
    `<text transform="translate(13,${m.t + ph / 2}) rotate(-90)" text-anchor="middle" font-size="11">${esc(spec.yLabel)}</text>`,
  );

  // Series.
  for (const s of spec.series) {
    const p = s.points.filter(([a, b]) => Number.isFinite(a) && Number.isFinite(b) && (!spec.yLog || b > 0));
    if (p.length === 0) continue;
    const d = p.map(([a, b]) => `${sx(a).toFixed(1)},${sy(b).toFixed(1)}`).join(' ');
    out.push(
      `<polyline fill="none" stroke="${s.color}" stroke-width="2" ${s.dash ? 'stroke-dasharray="5,4"' : ''} points="${d}"/>`,
    );
    for (const [a, b] of p) {
      out.push(`<circle cx="${sx(a).toFixed(1)}" cy="${sy(b).toFixed(1)}" r="3" fill="${s.color}"><title>${esc(`${s.name}: ${fmtNum(b)}`)}</title></circle>`);
    }
  }
  // Legend: top-left inside the plot, or in the right margin.
  let ly = m.t + 12;
  const lx = spec.legendRight ? m.l + pw + 12 : m.l + 8;
  for (const s of spec.series) {
    if (!s.points.some(([a, b]) => Number.isFinite(a) && Number.isFinite(b))) continue;
    out.push(
      `<line x1="${lx}" x2="${lx + 20}" y1="${ly - 4}" y2="${ly - 4}" stroke="${s.color}" stroke-width="2" ${s.dash ? 'stroke-dasharray="5,4"' : ''}/>`,
    );
    out.push(`<text x="${lx + 24}" y="${ly}" font-size="10">${esc(s.name)}</text>`);
    ly += 14;
  }
  out.push('</g>');
  return out.join('\n');
}

export function svgDocument(width: number, height: number, body: string, title: string): string {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif">`,
    `<title>${esc(title)}</title>`,
    `<rect width="100%" height="100%" fill="#fafafa"/>`,
    body,
    '</svg>',
    '',
  ].join('\n');
}
