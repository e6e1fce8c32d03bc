// The namespace multi-select used by the list pages; the choice is shared with the graph.

import { h } from '../dom.js';
import { setSelectedNamespaces } from '../session.js';

export function namespacePicker(all, chosen, onChange) {
  const select = h('select', { id: 'namespaces', multiple: true, size: Math.min(4, Math.max(2, all.length)) },
    all.map((n) => h('option', { value: n, selected: chosen.includes(n) }, n)));
  select.addEventListener('change', () => {
    const names = [...select.selectedOptions].map((o) => o.value);
    setSelectedNamespaces(names);
    onChange(names.length ? names : all);
  });
  return h('label', { for: 'namespaces' }, 'Namespaces', select);
}

/** Status string of a health field, whether the server sends a string or {status}. */
export function healthStatus(health) {
  if (!health) return 'NA';
  return typeof health === 'string' ? health : health.status || 'NA';
}
