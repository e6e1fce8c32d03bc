// Traffic graph: cytoscape canvas (dagre layout) beside an accessible list of the same nodes
// and edges; the list's links are the keyboard path to the detail pages.

import { api } from '../api.js';
import { h, fill, healthBadge, pageTitle } from '../dom.js';
import { effectiveNamespaces, selectedNamespaces, setSelectedNamespaces } from '../session.js';
import {
  GRAPH_STYLE, HEALTH_COLOURS, edgeDescription, healthOf, nodeHref, nodeLabel, toCytoscape,
} from '../graph-model.js';

const GRAPH_TYPES = [['versionedApp', 'Versioned app'], ['app', 'App'], ['workload', 'Workload'], ['service', 'Service']];
const DURATIONS = [['60s', 'Last 1m'], ['300s', 'Last 5m'], ['3600s', 'Last 1h']];
const REFRESH_MS = 10_000;
// Below this zoom labels are unreadable: show the sources at a readable size and let the
// user pan or zoom out (keyboard users have the list beside the canvas and the zoom buttons).
const MIN_FIT_ZOOM = 0.7;

let libs = null;

async function loadLibraries() {
  if (!libs) {
    const [cy, dagre] = await Promise.all([import('cytoscape'), import('cytoscape-dagre')]);
    cy.default.use(dagre.default);
    libs = cy.default;
  }
  return libs;
}

function option([value, text], current) {
  return h('option', { value, selected: value === current }, text);
}

export async function render(main, _params, query) {
  const all = ((await api.get('/api/namespaces')) || []).map((n) => n.name);
  const state = {
    namespaces: query.get('namespaces') ? query.get('namespaces').split(',') : effectiveNamespaces(all),
    graphType: query.get('graphType') || 'versionedApp',
    duration: query.get('duration') || '60s',
    refresh: query.get('refresh') !== 'off',
  };
  // The first graph downloads while cytoscape is still being parsed.
  const firstGraph = fetchGraph(state);
  firstGraph.catch(() => {});
  const librariesLoading = loadLibraries();
  const ui = buildControls(all, state);
  const canvas = h('div', { id: 'graph-canvas', role: 'img', 'aria-label': 'Traffic graph (loading)', 'data-state': 'loading' });
  const side = h('section', { class: 'graph-side', 'aria-label': 'Graph nodes and edges' });
  let cy = null;
  ui.toolbar.append(zoomButtons(() => cy));
  main.append(pageTitle('Traffic graph'), ui.toolbar, legend(), h('div', { class: 'graph-layout' }, canvas, side));

  const cytoscape = await librariesLoading;
  cy = cytoscape({ container: canvas, style: GRAPH_STYLE, wheelSensitivity: 0.3, boxSelectionEnabled: false });
  cy.on('tap', 'node', (event) => {
    const href = nodeHref(event.target.data());
    if (href) location.hash = href;
  });

  let timer = null;
  let prefetched = firstGraph;
  const load = async () => {
    ui.status.textContent = 'Loading…';
    try {
      const graph = await (prefetched || fetchGraph(state));
      prefetched = null;
      draw(cy, canvas, graph);
      fillSide(side, cy, graph);
      ui.status.textContent = `Updated ${new Date().toLocaleTimeString()}`;
    } catch (err) {
      ui.status.textContent = '';
      fill(side, h('p', { class: 'error', role: 'alert' }, `Could not load the graph: ${err.message}`));
    }
  };
  const schedule = () => {
    clearInterval(timer);
    timer = state.refresh ? setInterval(load, REFRESH_MS) : null;
  };
  ui.onChange = () => {
    setSelectedNamespaces(state.namespaces);
    history.replaceState(null, '', `#/graph?${new URLSearchParams({
      namespaces: state.namespaces.join(','), graphType: state.graphType, duration: state.duration,
      refresh: state.refresh ? 'on' : 'off',
    })}`);
    schedule();
    load();
  };
  ui.onRefresh = load;
  schedule();
  await load();
  return () => { clearInterval(timer); cy.destroy(); };
}

function buildControls(all, state) {
  const ui = { onChange: () => {}, onRefresh: () => {} };
  const nsSelect = h('select', { id: 'graph-namespaces', multiple: true, size: Math.min(4, Math.max(2, all.length)) },
    all.map((n) => h('option', { value: n, selected: state.namespaces.includes(n) }, n)));
  nsSelect.addEventListener('change', () => {
    state.namespaces = [...nsSelect.selectedOptions].map((o) => o.value);
    ui.onChange();
  });
  const typeSelect = h('select', { id: 'graph-type' }, GRAPH_TYPES.map((t) => option(t, state.graphType)));
  typeSelect.addEventListener('change', () => { state.graphType = typeSelect.value; ui.onChange(); });
  const durSelect = h('select', { id: 'graph-duration' }, DURATIONS.map((d) => option(d, state.duration)));
  durSelect.addEventListener('change', () => { state.duration = durSelect.value; ui.onChange(); });
  const refresh = h('input', { type: 'checkbox', id: 'graph-refresh', checked: state.refresh });
  refresh.addEventListener('change', () => { state.refresh = refresh.checked; ui.onChange(); });
  ui.status = h('span', { class: 'notice', role: 'status', 'aria-live': 'polite' });
  ui.toolbar = h('div', { class: 'toolbar' },
    h('label', { for: 'graph-namespaces' }, 'Namespaces', nsSelect),
    h('label', { for: 'graph-type' }, 'Graph type', typeSelect),
    h('label', { for: 'graph-duration' }, 'Window', durSelect),
    h('label', { class: 'inline', for: 'graph-refresh' }, refresh, 'Auto refresh (10 s)'),
    h('button', { type: 'button', onclick: () => ui.onRefresh() }, 'Refresh now'),
    ui.status);
  return ui;
}

function legend() {
  return h('div', { class: 'legend', 'aria-hidden': 'true' },
    Object.entries(HEALTH_COLOURS).map(([name, c]) => h('span', { style: `--c:${c}` }, name === 'NA' ? 'No traffic' : name)),
    h('span', {}, 'Shapes: ▢ app, ○ workload, △ service, ◇ unknown; double border = traffic source; dashed = proxy not synced; [mTLS] = mutual TLS (lock)'));
}

async function fetchGraph(state) {
  const qs = new URLSearchParams({
    namespaces: state.namespaces.join(','), graphType: state.graphType, duration: state.duration,
  });
  return api.get(`/api/namespaces/graph?${qs}`);
}

/** Updates data in place when the node set is unchanged (auto refresh keeps the layout still). */
function draw(cy, canvas, graph) {
  const elements = toCytoscape(graph);
  const ids = new Set(elements.map((e) => e.data.id));
  const same = cy.elements().length === ids.size && cy.elements().every((e) => ids.has(e.id()));
  if (same) {
    for (const e of elements) cy.getElementById(e.data.id).data(e.data).classes(e.classes);
    markReady(cy, canvas);
    return;
  }
  cy.elements().remove();
  cy.add(elements);
  const layout = cy.layout({
    name: 'dagre', rankDir: 'LR', nodeSep: 6, rankSep: 120, edgeSep: 6, nodeDimensionsIncludeLabels: true,
    fit: true, padding: 20,
  });
  layout.one('layoutstop', () => {
    fitReadable(cy);
    markReady(cy, canvas);
  });
  layout.run();
}

function fitReadable(cy) {
  cy.fit(undefined, 20);
  if (cy.zoom() >= MIN_FIT_ZOOM) return;
  const roots = cy.nodes('.root');
  cy.zoom(MIN_FIT_ZOOM);
  cy.center(roots.length ? roots : cy.nodes());
  const box = cy.elements().boundingBox();
  cy.panBy({ x: 20 - (box.x1 * cy.zoom() + cy.pan().x), y: 0 });
}

function zoomButtons(getCy) {
  const zoom = (factor) => {
    const cy = getCy();
    if (cy) cy.zoom({ level: cy.zoom() * factor, renderedPosition: { x: cy.width() / 2, y: cy.height() / 2 } });
  };
  return h('span', { class: 'toolbar', role: 'group', 'aria-label': 'Zoom' },
    h('button', { type: 'button', onclick: () => zoom(1.25) }, 'Zoom in'),
    h('button', { type: 'button', onclick: () => zoom(0.8) }, 'Zoom out'),
    h('button', { type: 'button', onclick: () => getCy() && getCy().fit(undefined, 20) }, 'Fit'));
}

function markReady(cy, canvas) {
  const n = cy.nodes().length;
  const m = cy.edges().length;
  canvas.setAttribute('aria-label', `Traffic graph: ${n} nodes, ${m} edges. The same nodes and edges are listed beside it.`);
  canvas.dataset.nodes = String(n);
  canvas.dataset.edges = String(m);
  canvas.dataset.state = 'ready';
  window.trellisGraphRenderedAt = performance.now();
}

function fillSide(side, cy, graph) {
  const nodes = (graph.elements && graph.elements.nodes) || [];
  const edges = (graph.elements && graph.elements.edges) || [];
  const byId = new Map(nodes.map(({ data }) => [data.id, data]));
  const name = (id) => (byId.has(id) ? nodeLabel(byId.get(id)) : id);
  const select = (id) => { cy.elements().unselect(); cy.getElementById(id).select(); };
  fill(side,
    h('h2', {}, `Nodes (${nodes.length})`),
    h('ul', { id: 'graph-nodes' }, nodes.map(({ data }) => nodeItem(data, select))),
    h('h2', {}, `Edges (${edges.length})`),
    h('ul', { id: 'graph-edges' }, edges.map(({ data }) => h('li', { 'data-id': data.id },
      h('span', {}, `${name(data.source)} → ${name(data.target)}`),
      h('span', { class: 'edge-meta' }, edgeDescription(data))))));
}

function nodeItem(data, select) {
  const href = nodeHref(data);
  const text = `${nodeLabel(data)} (${data.nodeType}, ${data.namespace || 'no namespace'})`;
  const label = href
    ? h('a', { href, onfocus: () => select(data.id), onmouseenter: () => select(data.id) }, text)
    : h('span', {}, text);
  const unsynced = data.proxySynced === false
    ? h('span', { class: 'edge-meta' }, `proxy ${data.proxyStatus || 'not synced'}`) : null;
  return h('li', { 'data-id': data.id }, label, ' ', healthBadge(healthOf(data)), unsynced);
}
