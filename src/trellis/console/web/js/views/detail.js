// Detail pages of a workload, service or app: health, pods and proxy status, metrics charts,
// and for workloads the Envoy config, logs and traces of their pods.

import { api, seg } from '../api.js';
import { h, fill, healthBadge, pageTitle, proxyStatus, table } from '../dom.js';
import { lineChart } from '../charts.js';
import { healthStatus } from './namespace-picker.js';
import { formatPorts, workloadName } from './lists.js';
import { envoyConfigSection, logsSection } from './pod-panels.js';
import { tracesSection } from './traces.js';

const TITLES = { workloads: 'Workload', services: 'Service', apps: 'Application' };

export async function render(main, [ns, kind, name]) {
  const body = await api.get(`/api/namespaces/${seg(ns)}/${kind}/${seg(name)}`);
  main.append(
    h('p', { class: 'notice' }, h('a', { href: `#/${kind}` }, `← ${TITLES[kind]}s`)),
    pageTitle(`${TITLES[kind]}: ${name}`));
  const sections = { workloads: workloadSections, services: serviceSections, apps: appSections }[kind](ns, body || {});
  main.append(...sections, metricsSection(ns, kind, name));
  if (kind === 'workloads') {
    const pods = (body && body.pods) || [];
    main.append(envoyConfigSection(ns, pods), logsSection(ns, pods));
  }
  main.append(await tracesSection(ns, kind, name));
}

const facts = (pairs) => h('dl', { class: 'cards' },
  pairs.filter(([, v]) => v !== undefined && v !== null && v !== '').map(([k, v]) => h('div', {}, h('dt', { class: 'notice' }, k), h('dd', {}, v))));

const labelsText = (labels) => Object.entries(labels || {}).map(([k, v]) => `${k}=${v}`).join(', ');
const wlLink = (ns, w) => h('a', { href: `#/namespaces/${seg(ns)}/workloads/${seg(workloadName(w))}` }, workloadName(w));
const svcName = (s) => (typeof s === 'string' ? s : s.name);

function workloadSections(ns, w) {
  return [
    facts([['Namespace', ns], ['Health', healthBadge(healthStatus(w.health))], ['Labels', labelsText(w.labels)],
      ['Sidecar', w.istioSidecar === false ? 'missing' : 'yes'], ['Proxy status', proxyStatus(w.proxyStatus)],
      ['Services', (w.services || []).map((s) => h('a', { href: `#/namespaces/${seg(ns)}/services/${seg(svcName(s))}` }, svcName(s), ' '))]]),
    h('h2', {}, 'Pods'),
    table(null, ['Name', 'IP', 'Status', 'Proxy status'],
      (w.pods || []).map((p) => [p.name, p.ip || '', p.status || '', proxyStatus(p.proxyStatus)])),
  ];
}

function configLinks(ns, items, kind) {
  return (items || []).map((c) => {
    const name = typeof c === 'string' ? c : c.name || (c.metadata && c.metadata.name);
    return h('a', { href: `#/istio/${seg(ns)}/${kind}/${seg(name)}` }, `${kind} ${name}`, ' ');
  });
}

function serviceSections(ns, body) {
  const s = body.service || body;
  return [
    facts([['Namespace', ns], ['Health', healthBadge(healthStatus(s.health || body.health))], ['IP', s.ip],
      ['Ports', formatPorts(s.ports)], ['Selector', labelsText(s.selector)],
      ['Config', [...configLinks(ns, body.virtualServices, 'VirtualService'), ...configLinks(ns, body.destinationRules, 'DestinationRule')]]]),
    h('h2', {}, 'Workloads'),
    table(null, ['Name', 'Proxy status'], (body.workloads || s.workloads || []).map((w) => [wlLink(ns, w), proxyStatus(w.proxyStatus)])),
  ];
}

function appSections(ns, body) {
  const a = body.application || body;
  return [
    facts([['Namespace', ns], ['Health', healthBadge(healthStatus(a.health))]]),
    h('h2', {}, 'Workloads'),
    table(null, ['Name', 'Proxy status'], (a.workloads || []).map((w) => [wlLink(ns, w), proxyStatus(w.proxyStatus)])),
  ];
}

function metricsSection(ns, kind, name) {
  const directions = kind === 'services' ? ['inbound'] : ['inbound', 'outbound'];
  const section = h('section', { 'aria-labelledby': 'metrics-title' }, h('h2', { id: 'metrics-title' }, 'Metrics (last 10 minutes)'));
  for (const direction of directions) {
    const cards = h('div', { class: 'cards', id: `metrics-${direction}` }, h('p', { class: 'notice' }, 'Loading…'));
    section.append(h('h3', {}, direction === 'inbound' ? 'Inbound' : 'Outbound'), cards);
    api.get(`/api/namespaces/${seg(ns)}/${kind}/${seg(name)}/metrics?direction=${direction}&duration=600&step=15`)
      .then((m) => fill(cards,
        lineChart('Request rate', m.request_count || [], 'req/s'),
        lineChart('Error rate', m.request_error_count || [], 'req/s'),
        lineChart('Latency', m.request_duration_millis || [], 'ms')))
      .catch((err) => fill(cards, h('p', { class: 'error' }, err.message)));
  }
  return section;
}
