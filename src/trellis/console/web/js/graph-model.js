// Pure helpers over Kiali-shaped graph JSON: labels, drill-down links, health colours.
// No DOM and no cytoscape here, so the canvas and the accessible list say the same thing.

export const HEALTH_COLOURS = {
  Healthy: '#3e8635', Degraded: '#f0ab00', Failure: '#c9190b', NA: '#8a8d90',
};

export const NODE_SHAPES = {
  app: 'round-rectangle', workload: 'ellipse', service: 'triangle', unknown: 'diamond',
};

export function healthOf(data) {
  return HEALTH_COLOURS[data.healthStatus] ? data.healthStatus : 'NA';
}

export function nodeLabel(d) {
  if (d.nodeType === 'unknown') return 'unknown';
  if (d.nodeType === 'service') return d.service || d.id;
  if (d.nodeType === 'workload') return d.workload || d.id;
  const app = d.app || d.workload || d.id;
  return d.version ? `${app} ${d.version}` : app;
}

/** Hash route of the detail page a node drills down to, or null (unknown nodes have none). */
export function nodeHref(d) {
  const ns = encodeURIComponent(d.namespace || '');
  const to = (kind, name) => (name ? `#/namespaces/${ns}/${kind}/${encodeURIComponent(name)}` : null);
  if (d.nodeType === 'workload') return to('workloads', d.workload);
  if (d.nodeType === 'app') return to('apps', d.app);
  if (d.nodeType === 'service') return to('services', d.service);
  return null;
}

const num = (v) => {
  const n = Number.parseFloat(v);
  return Number.isFinite(n) ? n : 0;
};

export function edgeStats(d) {
  const t = d.traffic || {};
  const rates = t.rates || {};
  const tcp = t.protocol === 'tcp';
  return {
    protocol: t.protocol || 'http',
    rate: num(tcp ? rates.tcp : rates.http),
    percentErr: num(rates.httpPercentErr),
    p95: d.responseTime === undefined || d.responseTime === null ? null : num(d.responseTime),
    mtls: num(d.isMTLS) > 0,
  };
}

/** Short label drawn on an edge: rate, % errors, p95, and a lock marker where mTLS carried traffic. */
export function edgeLabel(d) {
  const s = edgeStats(d);
  const parts = [s.protocol === 'tcp' ? `${s.rate.toFixed(1)} B/s` : `${s.rate.toFixed(2)} rps`];
  if (s.protocol !== 'tcp') parts.push(`${s.percentErr.toFixed(1)}%`);
  if (s.p95 !== null) parts.push(`p95 ${Math.round(s.p95)}ms`);
  // The lock is written as text: emoji fonts are often missing on servers and kiosks.
  return (s.mtls ? '[mTLS] ' : '') + parts.join(' ');
}

/** The same facts as the edge label in words, for the accessible list. */
export function edgeDescription(d) {
  const s = edgeStats(d);
  const words = s.protocol === 'tcp'
    ? [`${s.rate.toFixed(1)} bytes/s TCP`]
    : [`${s.rate.toFixed(2)} requests/s`, `${s.percentErr.toFixed(1)}% errors`];
  if (s.p95 !== null) words.push(`p95 ${Math.round(s.p95)} ms`);
  words.push(s.mtls ? 'mTLS' : 'plaintext');
  words.push(`health ${healthOf(d)}`);
  return words.join(', ');
}

/** Cytoscape element definitions for a Kiali graph response. */
export function toCytoscape(graph) {
  const els = graph.elements || {};
  const nodes = (els.nodes || []).map(({ data }) => ({
    group: 'nodes',
    data: { ...data, label: nodeLabel(data), colour: HEALTH_COLOURS[healthOf(data)], shape: NODE_SHAPES[data.nodeType] || 'ellipse' },
    classes: [data.isRoot ? 'root' : '', data.isOutside ? 'outside' : '', data.proxySynced === false ? 'unsynced' : ''].join(' ').trim(),
  }));
  const edges = (els.edges || []).map(({ data }) => ({
    group: 'edges',
    data: { ...data, label: edgeLabel(data), colour: HEALTH_COLOURS[healthOf(data)] },
    classes: edgeStats(data).mtls ? 'mtls' : '',
  }));
  return [...nodes, ...edges];
}

export const GRAPH_STYLE = [
  { selector: 'node', style: {
    shape: 'data(shape)', 'background-color': '#fff', 'border-color': 'data(colour)', 'border-width': 3,
    width: 22, height: 22, label: 'data(label)', 'font-size': 12, 'text-valign': 'bottom', 'text-margin-y': 2,
    'text-background-color': '#fff', 'text-background-opacity': 0.85, 'text-background-padding': 1,
    'min-zoomed-font-size': 6,
  } },
  { selector: 'node.root', style: { 'border-style': 'double', 'border-width': 6 } },
  { selector: 'node.outside', style: { 'background-color': '#eeeeee' } },
  { selector: 'node.unsynced', style: { 'border-style': 'dashed' } },
  { selector: 'node:selected', style: { 'overlay-color': '#0066cc', 'overlay-opacity': 0.2 } },
  { selector: 'edge', style: {
    width: 1.5, 'line-color': 'data(colour)', 'target-arrow-color': 'data(colour)', 'target-arrow-shape': 'triangle',
    'curve-style': 'bezier', label: 'data(label)', 'font-size': 9, color: '#4f5255',
    'text-background-color': '#fafafa', 'text-background-opacity': 0.9, 'min-zoomed-font-size': 7,
  } },
  { selector: 'edge:selected', style: { width: 3 } },
];
