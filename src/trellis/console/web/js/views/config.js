// Istio config: list per namespace and kind, view YAML, create/edit with inline validation
// (POST /api/istio/validate) before Apply, delete with a confirm. Write actions are only shown
// to roles that may write; the server checks the role on every call anyway.

import { api, seg } from '../api.js';
import { h, fill, pageTitle, table } from '../dom.js';
import { effectiveNamespaces, session } from '../session.js';
import { namespacePicker } from './namespace-picker.js';

const NEW_TEMPLATE = (ns) => `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: my-route
  namespace: ${ns}
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
`;

const detailHref = (r) => `#/istio/${seg(r.namespace)}/${seg(r.kind)}/${seg(r.name)}`;

export function checksView(validation, { id = 'validation' } = {}) {
  const region = h('div', { id, class: 'checks', role: 'status', 'aria-live': 'polite' });
  if (!validation) return region;
  const checks = validation.checks || [];
  if (!checks.length) {
    region.append(h('p', {}, validation.valid === false ? 'Invalid.' : '✓ Valid: no validation messages.'));
    return region;
  }
  region.append(table(validation.valid ? 'Valid, with messages' : 'Invalid', ['Code', 'Severity', 'Message', 'Path'],
    checks.map((c) => [c.code || '', h('span', { class: `sev-${c.severity}` }, c.severity || ''), c.message || '', c.path || ''])));
  return region;
}

function validationCell(v) {
  if (!v) return '';
  const n = (v.checks || []).length;
  if (v.valid && !n) return '✓ valid';
  return `${v.valid ? '⚠' : '✗'} ${n} message${n === 1 ? '' : 's'}`;
}

export async function renderList(main) {
  const all = ((await api.get('/api/namespaces')) || []).map((n) => n.name);
  const kindSelect = h('select', { id: 'config-kind' }, h('option', { value: '' }, 'All kinds'));
  const body = h('div', { id: 'config-list' });
  let resources = [];
  const draw = () => {
    const kind = kindSelect.value;
    const shown = resources.filter((r) => !kind || r.kind === kind);
    fill(body, table(null, ['Kind', 'Namespace', 'Name', 'Validation'],
      shown.map((r) => [r.kind, r.namespace, h('a', { href: detailHref(r) }, r.name), validationCell(r.validation)])));
  };
  const load = async (namespaces) => {
    const page = await api.get(`/api/istio/config?namespaces=${namespaces.map(seg).join(',')}`);
    resources = (page && page.resources) || [];
    const kinds = [...new Set(resources.map((r) => r.kind))].sort();
    const current = kindSelect.value;
    fill(kindSelect, h('option', { value: '' }, 'All kinds'), kinds.map((k) => h('option', { value: k, selected: k === current }, k)));
    draw();
  };
  kindSelect.addEventListener('change', draw);
  main.append(pageTitle('Istio config'), h('div', { class: 'toolbar' },
    namespacePicker(all, effectiveNamespaces(all), load),
    h('label', { for: 'config-kind' }, 'Kind', kindSelect),
    session.canWrite ? h('a', { href: '#/istio/new', class: 'button', id: 'create-config' }, 'Create') : null), body);
  await load(effectiveNamespaces(all));
}

export async function renderDetail(main, [ns, kind, name]) {
  const item = await api.get(`/api/namespaces/${seg(ns)}/istio/${seg(kind)}/${seg(name)}`);
  const path = `/api/namespaces/${seg(ns)}/istio/${seg(kind)}/${seg(name)}`;
  const error = h('p', { class: 'error', role: 'alert' });
  const remove = async () => {
    if (!window.confirm(`Delete ${kind} ${ns}/${name}?`)) return;
    try {
      await api.del(path);
      location.hash = '#/istio';
    } catch (err) {
      error.textContent = err.message;
    }
  };
  main.append(
    h('p', { class: 'notice' }, h('a', { href: '#/istio' }, '← Istio config')),
    pageTitle(`${kind}: ${ns}/${name}`),
    session.canWrite ? h('div', { class: 'toolbar' },
      h('a', { href: `${detailHref({ namespace: ns, kind, name })}/edit`, id: 'edit-config' }, 'Edit'),
      h('button', { type: 'button', class: 'danger', id: 'delete-config', onclick: remove }, 'Delete')) : null,
    error,
    h('h2', {}, 'Validation'), checksView(item.validation),
    h('h2', {}, 'YAML'), h('pre', { id: 'config-yaml', tabindex: '0' }, item.yaml || ''));
}

export async function renderEditor(main, params) {
  const editing = params.length === 3;
  const [ns, kind, name] = params;
  const all = ((await api.get('/api/namespaces')) || []).map((n) => n.name);
  const initial = editing
    ? (await api.get(`/api/namespaces/${seg(ns)}/istio/${seg(kind)}/${seg(name)}`)).yaml
    : NEW_TEMPLATE(effectiveNamespaces(all)[0] || 'default');
  const textarea = h('textarea', { id: 'config-editor', class: 'yaml', spellcheck: 'false' });
  textarea.value = initial || '';
  const nsSelect = h('select', { id: 'config-namespace', disabled: editing },
    (editing ? [ns] : all).map((n) => h('option', { value: n, selected: n === (ns || effectiveNamespaces(all)[0]) }, n)));
  const results = h('div', { id: 'validation-results' });
  const validate = async () => {
    try {
      const target = editing ? ns : nsSelect.value;
      fill(results, checksView(await api.postYaml(`/api/istio/validate?namespace=${seg(target)}`, textarea.value)));
    } catch (err) {
      fill(results, h('p', { class: 'error', role: 'alert' }, err.message));
    }
  };
  const apply = async () => {
    try {
      if (editing) await api.putYaml(`/api/namespaces/${seg(ns)}/istio/${seg(kind)}/${seg(name)}`, textarea.value);
      else await api.postYaml(`/api/namespaces/${seg(nsSelect.value)}/istio`, textarea.value);
      location.hash = '#/istio';
    } catch (err) {
      const checks = err.body && err.body.checks;
      fill(results, h('p', { class: 'error', role: 'alert' }, err.message),
        checks ? checksView({ valid: false, checks }, { id: 'apply-checks' }) : null);
    }
  };
  main.append(
    h('p', { class: 'notice' }, h('a', { href: '#/istio' }, '← Istio config')),
    pageTitle(editing ? `Edit ${kind}: ${ns}/${name}` : 'Create Istio config'),
    h('div', { class: 'toolbar' }, h('label', { for: 'config-namespace' }, 'Namespace', nsSelect)),
    h('label', { for: 'config-editor' }, 'YAML'), textarea,
    h('div', { class: 'toolbar' },
      h('button', { type: 'button', id: 'validate-config', onclick: validate }, 'Validate'),
      session.canWrite
        ? h('button', { type: 'button', class: 'primary', id: 'apply-config', onclick: apply }, 'Apply')
        : h('span', { class: 'notice' }, 'Your role is read-only: validation only.')),
    results);
}
