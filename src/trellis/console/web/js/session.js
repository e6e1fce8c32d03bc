// Who is logged in, which namespaces are selected: the little state shared by all views.

const WRITE_ROLES = new Set(['cluster-admin', 'admin', 'edit']);
const NS_KEY = 'trellis.namespaces';

export const session = {
  username: null,
  role: null,
  get loggedIn() { return Boolean(this.username); },
  get canWrite() { return WRITE_ROLES.has(this.role); },
  set(info) {
    this.username = (info && info.username) || null;
    this.role = (info && info.role) || null;
  },
};

export function selectedNamespaces() {
  try {
    const saved = JSON.parse(localStorage.getItem(NS_KEY) || '[]');
    return Array.isArray(saved) ? saved : [];
  } catch {
    return [];
  }
}

export function setSelectedNamespaces(names) {
  localStorage.setItem(NS_KEY, JSON.stringify(names));
}

/** Selected namespaces that still exist, or all of them when none is selected. */
export function effectiveNamespaces(all) {
  const chosen = selectedNamespaces().filter((n) => all.includes(n));
  return chosen.length ? chosen : all;
}
