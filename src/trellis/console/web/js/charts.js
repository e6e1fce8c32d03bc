// Small SVG line charts for the metrics API's series ({labels, datapoints: [[unix_s, value]]}).
// Drawn by hand: three charts per page do not justify a charting library.

const SVG = 'http://www.w3.org/2000/svg';
const COLOURS = ['#0066cc', '#c9190b', '#3e8635', '#f0ab00', '#6753ac'];
const W = 360;
const H = 150;
const PAD = { left: 44, right: 8, top: 8, bottom: 22 };

function svg(tag, attrs = {}, text) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

export function seriesName(series) {
  const labels = series.labels || {};
  return labels.stat || Object.values(labels).join(' ') || 'total';
}

function bounds(seriesList) {
  const points = seriesList.flatMap((s) => s.datapoints || []).map(([t, v]) => [Number(t), Number(v)]);
  if (!points.length) return null;
  const ts = points.map((p) => p[0]);
  const vs = points.map((p) => p[1]).filter(Number.isFinite);
  const t0 = Math.min(...ts);
  const t1 = Math.max(...ts);
  return { t0, t1: t1 > t0 ? t1 : t0 + 1, vmax: Math.max(...vs, 0) || 1 };
}

function formatValue(v) {
  if (v >= 100) return v.toFixed(0);
  if (v >= 1) return v.toFixed(1);
  return v.toFixed(2);
}

/** A <figure> with one polyline per series, axis extremes and a legend. */
export function lineChart(title, seriesList, unit) {
  const figure = document.createElement('figure');
  figure.className = 'chart';
  const b = bounds(seriesList);
  const last = seriesList.map((s) => `${seriesName(s)} ${formatValue(Number((s.datapoints || []).at(-1)?.[1] ?? 0))} ${unit}`);
  const root = svg('svg', { width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: 'img',
    'aria-label': b ? `${title}, latest: ${last.join('; ')}` : `${title}: no data` });
  const x = (t) => PAD.left + ((t - b.t0) / (b.t1 - b.t0)) * (W - PAD.left - PAD.right);
  const y = (v) => H - PAD.bottom - (v / b.vmax) * (H - PAD.top - PAD.bottom);
  root.append(svg('line', { x1: PAD.left, y1: H - PAD.bottom, x2: W - PAD.right, y2: H - PAD.bottom, stroke: '#d2d2d2' }));
  if (!b) {
    root.append(svg('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle' }, 'No data'));
  } else {
    root.append(svg('text', { x: PAD.left - 4, y: PAD.top + 8, 'text-anchor': 'end' }, `${formatValue(b.vmax)}`));
    root.append(svg('text', { x: PAD.left - 4, y: H - PAD.bottom, 'text-anchor': 'end' }, '0'));
    root.append(svg('text', { x: PAD.left, y: H - 6 }, new Date(b.t0 * 1000).toLocaleTimeString()));
    root.append(svg('text', { x: W - PAD.right, y: H - 6, 'text-anchor': 'end' }, new Date(b.t1 * 1000).toLocaleTimeString()));
    seriesList.forEach((s, i) => {
      const pts = (s.datapoints || []).map(([t, v]) => `${x(Number(t)).toFixed(1)},${y(Number(v) || 0).toFixed(1)}`).join(' ');
      const colour = COLOURS[i % COLOURS.length];
      root.append(svg('polyline', { points: pts, fill: 'none', stroke: colour, 'stroke-width': 1.5 }));
      // The latest point is marked: with one sample (a fresh mesh) a line has no length.
      const lastPoint = (s.datapoints || []).at(-1);
      if (lastPoint) root.append(svg('circle', { cx: x(Number(lastPoint[0])), cy: y(Number(lastPoint[1]) || 0), r: 2.5, fill: colour }));
    });
  }
  const caption = document.createElement('figcaption');
  caption.textContent = `${title} (${unit})`;
  const legend = document.createElement('div');
  seriesList.forEach((s, i) => {
    const item = document.createElement('span');
    item.className = 'legend-item';
    item.style.color = COLOURS[i % COLOURS.length];
    item.textContent = `■ ${seriesName(s)}`;
    legend.append(item);
  });
  figure.append(caption, root, legend);
  return figure;
}
