// HTTP client for the console API (docs/console-api.md). The session is an HttpOnly cookie,
// so the UI never sees or stores the token after login.

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

let onUnauthorized = () => {};

/** The app registers what to do when the session is gone (401): go to the login page. */
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

async function request(method, path, { body, contentType } = {}) {
  const headers = { Accept: 'application/json' };
  if (contentType) headers['Content-Type'] = contentType;
  const resp = await fetch(path, { method, headers, body, credentials: 'same-origin' });
  if (resp.status === 204) return null;
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!resp.ok) {
    const message = (data && data.error) || `${resp.status} ${resp.statusText}`;
    const err = new ApiError(resp.status, message, data);
    if (resp.status === 401 && !path.startsWith('/api/authenticate')) onUnauthorized(err);
    throw err;
  }
  return data;
}

export const api = {
  get: (path) => request('GET', path),
  del: (path) => request('DELETE', path),
  postYaml: (path, yaml) => request('POST', path, { body: yaml, contentType: 'application/yaml' }),
  putYaml: (path, yaml) => request('PUT', path, { body: yaml, contentType: 'application/yaml' }),
  authenticate: (token) => request('POST', '/api/authenticate', {
    body: new URLSearchParams({ token }).toString(),
    contentType: 'application/x-www-form-urlencoded',
  }),
};

/** Path segment encoding for names taken from API data. */
export const seg = (s) => encodeURIComponent(s);
