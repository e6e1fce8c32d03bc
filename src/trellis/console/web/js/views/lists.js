// Applications / Workloads / Services lists over the selected namespaces.

import { api, seg } from '../api.js';
import { h, fill, healthBadge, pageTitle, proxyStatus, table } from '../dom.js';
import { effectiveNamespaces } from '../session.js';
import { healthStatus, namespacePicker } from './namespace-picker.js';

const link = (ns, kind, name) => h('a', { href: `#/namespaces/${seg(ns)}/${kind}/${seg(name)}` }, name);

const KINDS = {
  workloads: {
    title: 'Workloads',
    items: (body) => body.workloads || [],
    headings: ['Name', 'Namespace', 'App', 'Version', 'Health', 'Sidecar', 'Proxy status'],
    row: (ns, w) => [link(ns, 'workloads', w.name), ns, w.app || '', w.version || '',
      healthBadge(healthStatus(w.health)), w.istioSidecar ? 'yes' : 'missing', proxyStatus(w.proxyStatus)],
  },
  services: {
    title: 'Services',
    items: (body) => body.services || [],
    headings: ['Name', 'Namespace', 'IP', 'Ports', 'Health'],
    row: (ns, s) => [link(ns, 'services', s.name), ns, s.ip || '', formatPorts(s.ports),
      healthBadge(healthStatus(s.health))],
  },
  apps: {
    title: 'Applications',
    items: (body) => body.applications || [],
    headings: ['Name', 'Namespace', 'Workloads', 'Health'],
    row: (ns, a) => [link(ns, 'apps', a.name), ns, (a.workloads || []).map(workloadName).join(', '),
      healthBadge(healthStatus(a.health))],
  },
};

export function workloadName(w) {
  return typeof w === 'string' ? w : w.name || w.workloadName || '';
}

export function formatPorts(ports) {
  return (ports || []).map((p) => (typeof p === 'object' ? `${p.name || ''} ${p.port}/${p.protocol || ''}`.trim() : String(p))).join(', ');
}

export async function render(main, [kind]) {
  const spec = KINDS[kind];
  const all = ((await api.get('/api/namespaces')) || []).map((n) => n.name);
  const body = h('div', { id: `${kind}-list` });
  const load = async (namespaces) => {
    fill(body, h('p', { class: 'notice', role: 'status' }, 'Loading…'));
    const pages = await Promise.all(namespaces.map(async (ns) => [ns, await api.get(`/api/namespaces/${seg(ns)}/${kind}`)]));
    const rows = pages.flatMap(([ns, page]) => spec.items(page || {}).map((item) => spec.row(ns, item)));
    fill(body, table(null, spec.headings, rows));
  };
  const chosen = effectiveNamespaces(all);
  main.append(pageTitle(spec.title), h('div', { class: 'toolbar' }, namespacePicker(all, chosen, load)), body);
  await load(chosen);
}
