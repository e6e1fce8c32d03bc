// Per-pod panels of a workload page: the Envoy config summary (from config_dump) and a logs tail.

import { api, seg } from '../api.js';
import { h, fill, table } from '../dom.js';

function podSelect(id, pods) {
  return h('select', { id }, pods.map((p) => h('option', { value: p.name }, p.name)));
}

const text = (v) => (v === undefined || v === null ? '' : typeof v === 'object' ? JSON.stringify(v) : String(v));
const count = (v) => (Array.isArray(v) ? String(v.length) : text(v));
const listed = (v) => (Array.isArray(v) ? v.join(', ') || 'none' : text(v));
const hostName = (v) => (typeof v === 'string' ? v : `${v.name}${v.routes === undefined ? '' : ` (${v.routes} routes)`}`);

export function configTables(dump) {
  return [
    h('h3', {}, 'Listeners'),
    table(null, ['Name', 'Address', 'Filter chains'],
      (dump.listeners || []).map((l) => [text(l.name), text(l.address), count(l.filterChains)])),
    h('h3', {}, 'Routes'),
    table(null, ['Name', 'Virtual hosts'],
      (dump.routes || []).map((r) => [text(r.name), (r.virtualHosts || []).map(hostName).join(', ')])),
    h('h3', {}, 'Clusters'),
    table(null, ['Name', 'Type', 'Endpoints'],
      (dump.clusters || []).map((c) => [text(c.name), text(c.type), listed(c.endpoints)])),
  ];
}

export function envoyConfigSection(ns, pods) {
  const section = h('section', { 'aria-labelledby': 'envoy-title' }, h('h2', { id: 'envoy-title' }, 'Envoy config'));
  if (!pods.length) return section.append(h('p', { class: 'notice' }, 'No pods.')), section;
  const select = podSelect('config-pod', pods);
  const body = h('div', { id: 'envoy-config' });
  const load = async () => {
    fill(body, h('p', { class: 'notice' }, 'Loading…'));
    try {
      fill(body, configTables(await api.get(`/api/namespaces/${seg(ns)}/pods/${seg(select.value)}/config_dump`)));
    } catch (err) {
      fill(body, h('p', { class: 'error' }, err.message));
    }
  };
  select.addEventListener('change', load);
  section.append(h('div', { class: 'toolbar' }, h('label', { for: 'config-pod' }, 'Pod', select)), body);
  load();
  return section;
}

export function logsSection(ns, pods) {
  const section = h('section', { 'aria-labelledby': 'logs-title' }, h('h2', { id: 'logs-title' }, 'Logs'));
  if (!pods.length) return section.append(h('p', { class: 'notice' }, 'No pods.')), section;
  const pod = podSelect('logs-pod', pods);
  const container = h('select', { id: 'logs-container' },
    h('option', { value: 'app' }, 'app'), h('option', { value: 'proxy' }, 'proxy'));
  const out = h('pre', { class: 'logs', id: 'logs', tabindex: '0', 'aria-label': 'Log lines' });
  const load = async () => {
    try {
      const body = await api.get(`/api/namespaces/${seg(ns)}/pods/${seg(pod.value)}/logs?container=${container.value}&tailLines=100`);
      out.textContent = ((body && body.entries) || [])
        .map((e) => (e.timestamp ? `${e.timestamp} ${e.message}` : e.message)).join('\n') || '(no log lines)';
    } catch (err) {
      out.textContent = `error: ${err.message}`;
    }
  };
  pod.addEventListener('change', load);
  container.addEventListener('change', load);
  section.append(h('div', { class: 'toolbar' },
    h('label', { for: 'logs-pod' }, 'Pod', pod),
    h('label', { for: 'logs-container' }, 'Container', container),
    h('button', { type: 'button', onclick: load }, 'Refresh logs')), out);
  load();
  return section;
}
