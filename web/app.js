// The operator page of analytics-service (docs/operator-page.md). Plain JavaScript, no build
// step, no library. Rules kept throughout:
// - every string from the API goes into the page as text (textContent, .value, setAttribute on
//   non-URL attributes), never as HTML;
// - the token lives in this tab's sessionStorage and travels only as an Authorization header;
//   images are fetched with it and shown through blob: URLs (revoked when replaced);
// - the live image refreshes about twice a second while the tab is visible, not at all while
//   it is hidden (Page Visibility API).
'use strict';

(() => {
  const TOKEN_KEY = 'analytics-service.token';
  const LIVE_PERIOD_MS = 500;
  const LIST_PERIOD_MS = 2000;
  const EVENTS_PERIOD_MS = 3000;
  const EVENT_COUNT = 30;
  const SVG_NS = 'http://www.w3.org/2000/svg';

  const $ = (id) => document.getElementById(id);

  // ---- small DOM helpers: text only ----------------------------------------------------
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'text') e.textContent = String(v);
      else if (k === 'className') e.className = v;
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children) {
      if (c === undefined || c === null) continue;
      e.append(typeof c === 'string' ? document.createTextNode(c) : c);
    }
    return e;
  }

  function svgEl(tag, attrs) {
    const e = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'text') e.textContent = String(v);
      else e.setAttribute(k, String(v));
    }
    return e;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  // ---- the token and every data call ---------------------------------------------------
  class AuthError extends Error {}

  function token() {
    return sessionStorage.getItem(TOKEN_KEY);
  }

  function askToken(message) {
    $('token-message').textContent = message || '';
    $('token-dialog').hidden = false;
    $('token-input').value = '';
    $('token-input').focus();
  }

  async function api(method, path, body) {
    const headers = { Accept: 'application/json' };
    const t = token();
    if (t) headers.Authorization = 'Bearer ' + t;
    const init = { method, headers, cache: 'no-store', credentials: 'omit', referrerPolicy: 'no-referrer' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const r = await fetch(path, init);
    if (r.status === 401) {
      askToken(t ? 'The service refused this token; enter it again.' : 'This service needs its API token.');
      throw new AuthError('unauthorized');
    }
    return r;
  }

  async function jsonOf(r) {
    try {
      return await r.json();
    } catch (e) {
      return { error: 'bad_reply', message: 'the service answered ' + r.status + ' without JSON', details: [] };
    }
  }

  function errorText(body, status) {
    if (body && typeof body.message === 'string') return body.message;
    return 'the service answered ' + status;
  }

  $('token-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const v = $('token-input').value.trim();
    if (!v) {
      $('token-message').textContent = 'Enter the token.';
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, v);
    $('token-dialog').hidden = true;
    $('token-change').hidden = false;
    refreshCameras();
  });
  $('token-change').addEventListener('click', () => askToken(''));

  // ---- health (no token) -----------------------------------------------------------------
  async function refreshHealth() {
    try {
      const r = await fetch('/api/health', { cache: 'no-store', credentials: 'omit' });
      const h = await r.json();
      $('health').textContent = 'service ' + h.status;
      $('health').className = 'pill ' + (h.status === 'ok' ? 'good' : 'bad');
    } catch (e) {
      $('health').textContent = 'service unreachable';
      $('health').className = 'pill bad';
    }
  }

  // ---- the camera list -------------------------------------------------------------------
  const rows = new Map(); // camera id -> {tr, cells, camera}
  let cameras = new Map(); // camera id -> camera view (last listing)

  function fps(x) {
    return typeof x === 'number' ? x.toFixed(1) : '-';
  }

  function makeRow(id) {
    const tr = el('tr', { 'data-testid': 'camera-row-' + id });
    const cells = {
      id: el('td', { className: 'id', text: id }),
      state: el('td', {}, el('span', { className: 'state', 'data-testid': 'camera-state-' + id })),
      owner: el('td', { 'data-testid': 'camera-owner-' + id }),
      fps: el('td', { 'data-testid': 'camera-fps-' + id }),
      error: el('td', { className: 'last-error', 'data-testid': 'camera-error-' + id }),
      actions: el('td', { className: 'actions' }),
    };
    const live = el('button', { type: 'button', 'data-testid': 'camera-live-' + id, text: 'Live' });
    live.addEventListener('click', () => openLive(id));
    const edit = el('button', { type: 'button', 'data-testid': 'camera-edit-' + id, text: 'Edit' });
    edit.addEventListener('click', () => openForm(cameras.get(id)));
    const toggle = el('button', { type: 'button', 'data-testid': 'camera-toggle-' + id, text: 'Deactivate' });
    toggle.addEventListener('click', () => toggleCamera(id));
    const del = el('button', { type: 'button', className: 'danger', 'data-testid': 'camera-delete-' + id, text: 'Delete' });
    let armed = null;
    del.addEventListener('click', () => {
      if (!armed) {
        del.textContent = 'Really delete?';
        del.setAttribute('data-armed', 'true');
        armed = setTimeout(() => {
          armed = null;
          del.textContent = 'Delete';
          del.removeAttribute('data-armed');
        }, 4000);
        return;
      }
      clearTimeout(armed);
      armed = null;
      deleteCamera(id);
    });
    cells.actions.append(live, edit, toggle, del);
    for (const c of Object.values(cells)) tr.append(c);
    return { tr, cells, toggle };
  }

  function renderCameras(list) {
    cameras = new Map(list.map((c) => [c.camera_id, c]));
    const body = $('camera-rows');
    for (const [id, row] of rows) {
      if (!cameras.has(id)) {
        row.tr.remove();
        rows.delete(id);
      }
    }
    for (const c of list) {
      let row = rows.get(c.camera_id);
      if (!row) {
        row = makeRow(c.camera_id);
        rows.set(c.camera_id, row);
        body.append(row.tr);
      }
      const state = row.cells.state.firstChild;
      const shown = c.status === 'inactive' && c.state === 'stopped' ? 'stopped' : c.state;
      state.textContent = shown + (c.status === 'inactive' ? ' (inactive)' : '');
      state.className = 'state ' + String(c.state);
      state.setAttribute('data-state', String(c.state));
      row.cells.owner.textContent = c.owner == null ? '-' : String(c.owner);
      row.cells.fps.textContent = fps(c.input_fps) + ' / ' + fps(c.processed_fps);
      row.cells.error.textContent = c.last_error == null ? '' : String(c.last_error);
      row.toggle.textContent = c.status === 'inactive' ? 'Activate' : 'Deactivate';
    }
    $('cameras-empty').hidden = list.length > 0;
  }

  async function refreshCameras() {
    try {
      const r = await api('GET', '/api/cameras');
      const body = await jsonOf(r);
      if (!r.ok) {
        $('cameras-message').textContent = errorText(body, r.status);
        return;
      }
      $('cameras-message').textContent = '';
      if (token()) $('token-change').hidden = false;
      renderCameras(Array.isArray(body.cameras) ? body.cameras : []);
    } catch (e) {
      if (!(e instanceof AuthError)) $('cameras-message').textContent = 'cannot list the cameras: ' + e.message;
    }
  }

  // the body that re-posts a camera as it is, with `change` applied to its parameters
  function cameraBody(c, params) {
    return { camera_id: c.camera_id, status: c.status, stream_url: c.stream_url, parameters: params };
  }

  async function fetchCamera(id) {
    const r = await api('GET', '/api/cameras/' + encodeURIComponent(id));
    const body = await jsonOf(r);
    if (!r.ok) throw new Error(errorText(body, r.status));
    return body;
  }

  async function toggleCamera(id) {
    try {
      const c = await fetchCamera(id);
      const b = cameraBody(c, c.parameters);
      b.status = c.status === 'inactive' ? 'active' : 'inactive';
      const r = await api('POST', '/api/cameras', b);
      const body = await jsonOf(r);
      $('cameras-message').textContent = r.ok ? '' : errorText(body, r.status);
      refreshCameras();
    } catch (e) {
      if (!(e instanceof AuthError)) $('cameras-message').textContent = e.message;
    }
  }

  async function deleteCamera(id) {
    try {
      const r = await api('DELETE', '/api/cameras/' + encodeURIComponent(id));
      const body = await jsonOf(r);
      $('cameras-message').textContent = r.ok ? '' : errorText(body, r.status);
      if (r.ok && live.id === id) closeLive();
      refreshCameras();
    } catch (e) {
      if (!(e instanceof AuthError)) $('cameras-message').textContent = e.message;
    }
  }

  // ---- add / edit form -------------------------------------------------------------------
  // Every parameter of the API (docs/api.md); anything else a camera carries (parameters of a
  // newer service) goes through the "other parameters" JSON field untouched.
  const TOP_FIELDS = [
    { key: 'camera_id', type: 'text', label: 'Camera id', help: '1 to 128 characters of A-Z a-z 0-9 . _ : -' },
    { key: 'stream_url', type: 'text', label: 'Stream URL', help: 'rtsp://, rtsps://, http(s)://, or a file inside STREAM_FILE_ROOT; a masked password (***) sent back unchanged is kept' },
    { key: 'status', type: 'select', label: 'Status', options: ['active', 'inactive'] },
  ];
  const PARAM_FIELDS = [
    { key: 'detection_classes', type: 'list', label: 'Detection classes', help: 'COCO names, comma-separated; empty = all 80' },
    { key: 'confidence_threshold', type: 'number', label: 'Confidence threshold', help: '0 to 1 (default 0.5)' },
    { key: 'enable_object_detection', type: 'bool', label: 'Object detection', def: true },
    { key: 'enable_motion_detection', type: 'bool', label: 'Motion detection', def: true },
    { key: 'motion_threshold', type: 'number', label: 'Motion threshold', help: 'fraction 0 to 1 of the frame or zones (default 0.1)' },
    { key: 'detect_on', type: 'select', label: 'Detect on', options: ['every_frame', 'motion'] },
    { key: 'enable_anpr', type: 'bool', label: 'ANPR (plates)', def: false },
    { key: 'anpr_region', type: 'text', label: 'ANPR region', help: 'e.g. CZ; empty = guessed from the plate' },
    { key: 'frame_skip', type: 'number', label: 'Frame skip', help: 'process every Nth frame (default 1)' },
    { key: 'max_fps', type: 'number', label: 'Max fps', help: 'processed frames per second, at most 120 (default 30)' },
    { key: 'decode', type: 'select', label: 'Decode', options: ['auto', 'all', 'keyframes'] },
    { key: 'frame_detections', type: 'bool', label: 'Per-frame detection events', def: true },
    { key: 'loop_file', type: 'bool', label: 'Loop a file source', def: false },
    { key: 'file_realtime', type: 'bool', label: 'Play a file in real time', def: true },
    { key: 'roi_zones', type: 'json', label: 'ROI zones (JSON)', help: 'easier: draw them in the live view' },
    { key: 'lines', type: 'json', label: 'Lines (JSON)', help: 'counting lines; easier: draw them in the live view' },
  ];
  const OTHER = { key: 'other', type: 'json', label: 'Other parameters (JSON object)', help: 'parameters this page has no field for, kept as they are' };
  const KNOWN_PARAMS = new Set(PARAM_FIELDS.map((f) => f.key));
  const inputs = new Map(); // key -> input element
  const errors = new Map(); // key -> error element
  let editing = null; // the camera being edited, or null when adding

  function buildForm() {
    const root = $('form-fields');
    for (const f of [...TOP_FIELDS, ...PARAM_FIELDS, OTHER]) {
      const id = 'field-' + f.key;
      let input;
      if (f.type === 'select') {
        input = el('select', { id, name: f.key }, ...f.options.map((o) => el('option', { value: o, text: o })));
      } else if (f.type === 'bool') {
        input = el('input', { id, name: f.key, type: 'checkbox' });
      } else if (f.type === 'json') {
        input = el('textarea', { id, name: f.key, rows: 3, spellcheck: 'false' });
      } else {
        input = el('input', { id, name: f.key, type: 'text', spellcheck: 'false', inputmode: f.type === 'number' ? 'decimal' : undefined });
      }
      input.setAttribute('data-testid', 'field-' + f.key);
      const err = el('span', { className: 'field-error', 'data-testid': 'error-' + f.key, 'aria-live': 'polite' });
      inputs.set(f.key, input);
      errors.set(f.key, err);
      const label = el('label', { for: id, text: f.label });
      const row = el('div', { className: 'field field-' + f.type }, label, input);
      if (f.help) row.append(el('small', { className: 'muted', text: f.help }));
      row.append(err);
      root.append(row);
    }
  }

  function setForm(c) {
    const p = (c && c.parameters) || {};
    inputs.get('camera_id').value = c ? c.camera_id : '';
    inputs.get('camera_id').readOnly = !!c;
    inputs.get('stream_url').value = c ? c.stream_url : '';
    inputs.get('status').value = c ? c.status : 'active';
    for (const f of PARAM_FIELDS) {
      const input = inputs.get(f.key);
      const v = p[f.key];
      if (f.type === 'bool') input.checked = v === undefined || v === null ? f.def : !!v;
      else if (f.type === 'list') input.value = Array.isArray(v) ? v.join(', ') : '';
      else if (f.type === 'json') input.value = v === undefined || v === null || (Array.isArray(v) && v.length === 0) ? '' : JSON.stringify(v, null, 1);
      else if (f.type === 'select') input.value = v == null ? f.options[0] : String(v);
      else input.value = v === undefined || v === null ? '' : String(v);
    }
    const other = {};
    for (const [k, v] of Object.entries(p)) if (!KNOWN_PARAMS.has(k)) other[k] = v;
    inputs.get('other').value = Object.keys(other).length ? JSON.stringify(other, null, 1) : '';
  }

  function clearErrors() {
    for (const e of errors.values()) e.textContent = '';
    for (const i of inputs.values()) i.removeAttribute('aria-invalid');
    $('form-message').textContent = '';
    $('form-warnings').textContent = '';
  }

  function showFieldError(key, text) {
    const e = errors.get(key);
    e.textContent = e.textContent ? e.textContent + ' ' + text : text;
    inputs.get(key).setAttribute('aria-invalid', 'true');
  }

  // `[0].parameters.roi_zones[1].points` -> {key: 'roi_zones', rest: '[1].points'}
  function fieldOf(path) {
    let p = String(path || '').replace(/^\[\d+\]\.?/, '');
    let params = false;
    if (p.startsWith('parameters.')) {
      p = p.slice('parameters.'.length);
      params = true;
    }
    const m = p.match(/^[A-Za-z0-9_]+/);
    if (!m) return null;
    const key = m[0];
    const rest = p.slice(key.length);
    if (params) return { key: KNOWN_PARAMS.has(key) ? key : 'other', rest: KNOWN_PARAMS.has(key) ? rest : p };
    return inputs.has(key) && !KNOWN_PARAMS.has(key) && key !== 'other' ? { key, rest } : null;
  }

  function showDetails(body, status, fallback) {
    const details = Array.isArray(body && body.details) ? body.details : [];
    let placed = 0;
    for (const d of details) {
      const f = fieldOf(d && d.path);
      const msg = String(d && d.message);
      if (f) {
        showFieldError(f.key, f.rest ? f.rest.replace(/^\./, '') + ': ' + msg : msg);
        placed++;
      } else {
        fallback(String(d && d.path) + ': ' + msg);
      }
    }
    if (!placed || details.length === 0) fallback(errorText(body, status));
    else $('form-message').textContent = errorText(body, status);
  }

  function readForm() {
    const problems = [];
    const params = {};
    for (const f of PARAM_FIELDS) {
      const input = inputs.get(f.key);
      if (f.type === 'bool') {
        params[f.key] = input.checked;
      } else if (f.type === 'select') {
        params[f.key] = input.value;
      } else if (f.type === 'list') {
        const items = input.value.split(',').map((s) => s.trim()).filter((s) => s.length);
        if (items.length || (editing && editing.parameters && f.key in editing.parameters)) params[f.key] = items;
      } else if (f.type === 'json') {
        const text = input.value.trim();
        if (!text) {
          if (editing && editing.parameters && f.key in editing.parameters) params[f.key] = [];
          continue;
        }
        try {
          params[f.key] = JSON.parse(text);
        } catch (e) {
          problems.push([f.key, 'is not valid JSON: ' + e.message]);
        }
      } else if (f.type === 'number') {
        const text = input.value.trim();
        if (!text) continue; // the service's default
        const n = Number(text);
        params[f.key] = Number.isFinite(n) ? n : text; // the service says what is wrong
      } else {
        const text = input.value.trim();
        if (text) params[f.key] = text;
        else if (editing && editing.parameters && editing.parameters[f.key] != null) params[f.key] = null;
      }
    }
    const otherText = inputs.get('other').value.trim();
    if (otherText) {
      try {
        const o = JSON.parse(otherText);
        if (!o || typeof o !== 'object' || Array.isArray(o)) throw new Error('must be a JSON object');
        for (const [k, v] of Object.entries(o)) if (!KNOWN_PARAMS.has(k)) params[k] = v;
      } catch (e) {
        problems.push(['other', e.message]);
      }
    }
    const body = {
      camera_id: inputs.get('camera_id').value.trim(),
      status: inputs.get('status').value,
      stream_url: inputs.get('stream_url').value.trim(),
      parameters: params,
    };
    return { body, problems };
  }

  function openForm(c) {
    editing = c || null;
    clearErrors();
    setForm(editing);
    $('form-title').textContent = editing ? 'Edit camera ' + editing.camera_id : 'Add camera';
    $('form-panel').hidden = false;
    (editing ? inputs.get('stream_url') : inputs.get('camera_id')).focus();
  }

  function closeForm() {
    $('form-panel').hidden = true;
    editing = null;
  }

  $('camera-add').addEventListener('click', () => openForm(null));
  $('form-cancel').addEventListener('click', closeForm);
  $('camera-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearErrors();
    const { body, problems } = readForm();
    if (problems.length) {
      for (const [k, m] of problems) showFieldError(k, m);
      return;
    }
    try {
      const r = await api('POST', '/api/cameras', body);
      const reply = await jsonOf(r);
      if (!r.ok) {
        showDetails(reply, r.status, (m) => {
          const f = $('form-message');
          f.textContent = f.textContent ? f.textContent + ' ' + m : m;
        });
        return;
      }
      const warnings = Array.isArray(reply.warnings) ? reply.warnings : [];
      if (warnings.length) {
        $('form-warnings').textContent =
          'Saved; the service ignored: ' + warnings.map((w) => String(w.path) + ' (' + String(w.message) + ')').join(', ');
        editing = (reply.cameras && reply.cameras[0]) || editing;
      } else {
        closeForm();
      }
      refreshCameras();
    } catch (e) {
      if (!(e instanceof AuthError)) $('form-message').textContent = 'cannot save: ' + e.message;
    }
  });

  // ---- live view -----------------------------------------------------------------------
  const live = { id: null, timer: null, busy: false, url: null, frame: null };

  function openLive(id) {
    if (live.id !== id) {
      live.id = id;
      if (live.url) URL.revokeObjectURL(live.url);
      live.url = null;
      $('live-image').removeAttribute('src');
      editor.load(cameras.get(id));
      clear($('event-feed'));
    }
    $('live-title').textContent = id;
    $('live-panel').hidden = false;
    $('live-status').textContent = 'waiting for a frame…';
    scheduleLive(0);
    refreshEvents();
    $('live-panel').scrollIntoView({ block: 'start' });
  }

  function closeLive() {
    live.id = null;
    clearTimeout(live.timer);
    live.timer = null;
    if (live.url) URL.revokeObjectURL(live.url);
    live.url = null;
    $('live-image').removeAttribute('src');
    $('live-panel').hidden = true;
  }

  function scheduleLive(delay) {
    clearTimeout(live.timer);
    live.timer = null;
    if (live.id === null || document.hidden) return; // resumed by visibilitychange
    live.timer = setTimeout(refreshLive, delay);
  }

  async function refreshLive() {
    live.timer = null;
    if (live.id === null || document.hidden || live.busy) return;
    const id = live.id;
    live.busy = true;
    try {
      const path = '/api/cameras/' + encodeURIComponent(id) + '/latest.jpg?bbox=1&zones=1&motion=1';
      const r = await api('GET', path);
      if (live.id !== id) return;
      if (r.ok && (r.headers.get('Content-Type') || '').startsWith('image/')) {
        const blob = await r.blob();
        if (live.id !== id) return;
        const url = URL.createObjectURL(blob);
        const img = $('live-image');
        const old = live.url;
        live.url = url;
        img.src = url;
        if (old) {
          // the old image stays on screen until the new one has decoded
          img.decode().catch(() => {}).finally(() => URL.revokeObjectURL(old));
        }
        const n = r.headers.get('X-Frame-Number');
        const ts = r.headers.get('X-Frame-Timestamp');
        $('live-status').textContent = (n ? 'frame ' + n : '') + (ts ? ' at ' + ts : '');
      } else {
        const body = await jsonOf(r);
        $('live-status').textContent = 'no frame: ' + errorText(body, r.status);
      }
    } catch (e) {
      if (!(e instanceof AuthError)) $('live-status').textContent = 'no frame: ' + e.message;
    } finally {
      live.busy = false;
      if (live.id === id) scheduleLive(LIVE_PERIOD_MS);
    }
  }

  $('live-close').addEventListener('click', closeLive);
  $('live-image').addEventListener('load', () => editor.resize());

  // ---- zone and line editor --------------------------------------------------------------
  const round = (v) => Math.round(Math.min(1, Math.max(0, v)) * 10000) / 10000;

  const editor = {
    camera: null,
    zones: [], // [{name, points, ...other fields kept}]
    lines: [],
    hadLines: false,
    selected: null, // {kind: 'zone'|'line', i}
    drawing: null, // {kind, points}
    drag: null, // {kind, i, p, pointerId}
    w: 1280,
    h: 720,

    load(c) {
      this.camera = c || null;
      const p = (c && c.parameters) || {};
      this.zones = Array.isArray(p.roi_zones) ? p.roi_zones.map((z) => ({ ...z, points: z.points.map((q) => [q[0], q[1]]) })) : [];
      this.hadLines = Array.isArray(p.lines);
      this.lines = this.hadLines ? p.lines.map((l) => ({ ...l, points: l.points.map((q) => [q[0], q[1]]) })) : [];
      this.selected = null;
      this.drawing = null;
      $('editor-message').textContent = '';
      $('editor-note').textContent = '';
      this.render();
    },

    list(kind) {
      return kind === 'zone' ? this.zones : this.lines;
    },

    resize() {
      const img = $('live-image');
      if (img.naturalWidth > 0 && (img.naturalWidth !== this.w || img.naturalHeight !== this.h)) {
        this.w = img.naturalWidth;
        this.h = img.naturalHeight;
        $('zone-editor').setAttribute('viewBox', '0 0 ' + this.w + ' ' + this.h);
        this.render();
      }
    },

    // the pointer's position as normalised image coordinates
    at(ev) {
      const r = $('zone-editor').getBoundingClientRect();
      return [round((ev.clientX - r.left) / r.width), round((ev.clientY - r.top) / r.height)];
    },

    uniqueName(kind) {
      const names = new Set(this.list(kind).map((s) => s.name));
      for (let n = 1; ; n++) {
        const name = kind + '-' + n;
        if (!names.has(name)) return name;
      }
    },

    start(kind) {
      this.finish(true);
      this.drawing = { kind, points: [] };
      this.selected = null;
      $('zone-name').value = '';
      $('editor-message').textContent = '';
      this.render();
    },

    // closes the shape being drawn; `quiet` drops one that is too short without a message
    finish(quiet) {
      const d = this.drawing;
      if (!d) return true;
      const need = d.kind === 'zone' ? 3 : 2;
      if (d.points.length < need) {
        if (!quiet) {
          $('editor-message').textContent = 'A ' + d.kind + ' needs ' + need + ' points; click on the image.';
          return false;
        }
        this.drawing = null;
        this.render();
        return true;
      }
      const typed = $('zone-name').value.trim();
      const list = this.list(d.kind);
      const name = typed && !list.some((s) => s.name === typed) ? typed : this.uniqueName(d.kind);
      list.push({ name, points: d.points });
      this.drawing = null;
      this.selected = { kind: d.kind, i: list.length - 1 };
      this.render();
      return true;
    },

    click(ev) {
      if (this.drag) return;
      const d = this.drawing;
      if (!d) {
        if (ev.target === $('zone-editor')) {
          this.selected = null;
          this.render();
        }
        return;
      }
      d.points.push(this.at(ev));
      if (d.kind === 'line' && d.points.length === 2) this.finish(false);
      else if (d.kind === 'zone' && d.points.length === 64) this.finish(false);
      else this.render();
    },

    select(kind, i) {
      if (this.drawing) return;
      this.selected = { kind, i };
      this.render();
    },

    remove() {
      if (this.drawing) {
        this.drawing = null;
      } else if (this.selected) {
        this.list(this.selected.kind).splice(this.selected.i, 1);
        this.selected = null;
      }
      this.render();
    },

    rename(text) {
      if (this.selected) this.list(this.selected.kind)[this.selected.i].name = text;
      this.renderList();
      this.renderShapes();
    },

    startDrag(ev, kind, i, p) {
      if (this.drawing) {
        // clicking the first corner of a zone being drawn closes it
        return;
      }
      ev.preventDefault();
      ev.stopPropagation();
      this.selected = { kind, i };
      this.drag = { kind, i, p, pointerId: ev.pointerId, moved: false };
      $('zone-editor').setPointerCapture(ev.pointerId);
      this.render();
    },

    moveDrag(ev) {
      const g = this.drag;
      if (!g || ev.pointerId !== g.pointerId) return;
      this.list(g.kind)[g.i].points[g.p] = this.at(ev);
      g.moved = true;
      this.renderShapes();
    },

    endDrag(ev) {
      const g = this.drag;
      if (!g || ev.pointerId !== g.pointerId) return;
      // the click that follows the pointerup is not a new point
      setTimeout(() => {
        this.drag = null;
      }, 0);
      this.render();
    },

    render() {
      this.renderShapes();
      this.renderList();
      const d = this.drawing;
      const sel = this.selected ? this.list(this.selected.kind)[this.selected.i] : null;
      const name = $('zone-name');
      name.disabled = !d && !sel;
      if (sel && document.activeElement !== name) name.value = sel.name;
      if (!d && !sel) name.value = '';
      $('shape-finish').disabled = !d;
      $('shape-delete').disabled = !d && !sel;
      $('zone-editor').classList.toggle('drawing', !!d);
      $('zone-new').classList.toggle('active', !!d && d.kind === 'zone');
      $('line-new').classList.toggle('active', !!d && d.kind === 'line');
    },

    renderShapes() {
      const svg = $('zone-editor');
      clear(svg);
      const W = this.w;
      const H = this.h;
      const r = Math.max(W, H) * 0.009;
      const px = (q) => q[0] * W + ',' + q[1] * H;
      const isSel = (kind, i) => this.selected && this.selected.kind === kind && this.selected.i === i;
      const label = (q, text, cls) => {
        const t = svgEl('text', { x: q[0] * W + r * 1.5, y: q[1] * H - r * 1.5, class: 'label ' + cls, 'font-size': r * 3, text });
        svg.append(t);
      };
      const handles = (kind, i, pts) => {
        pts.forEach((q, p) => {
          const c = svgEl('circle', { cx: q[0] * W, cy: q[1] * H, r, class: 'handle', 'data-testid': 'handle-' + kind + '-' + i + '-' + p });
          c.addEventListener('pointerdown', (ev) => this.startDrag(ev, kind, i, p));
          svg.append(c);
        });
      };
      this.zones.forEach((z, i) => {
        const poly = svgEl('polygon', { points: z.points.map(px).join(' '), class: 'zone' + (isSel('zone', i) ? ' selected' : '') });
        poly.addEventListener('click', (ev) => {
          if (!this.drawing) {
            ev.stopPropagation();
            this.select('zone', i);
          }
        });
        svg.append(poly);
        label(z.points[0], z.name, 'zone');
        if (isSel('zone', i)) handles('zone', i, z.points);
      });
      this.lines.forEach((l, i) => {
        const [a, b] = l.points;
        const line = svgEl('line', { x1: a[0] * W, y1: a[1] * H, x2: b[0] * W, y2: b[1] * H, class: 'cross' + (isSel('line', i) ? ' selected' : '') });
        line.addEventListener('click', (ev) => {
          if (!this.drawing) {
            ev.stopPropagation();
            this.select('line', i);
          }
        });
        svg.append(line);
        // the `in` side: walking from the first end to the second, the right-hand side
        const mx = ((a[0] + b[0]) / 2) * W;
        const my = ((a[1] + b[1]) / 2) * H;
        const dx = (b[0] - a[0]) * W;
        const dy = (b[1] - a[1]) * H;
        const len = Math.hypot(dx, dy) || 1;
        const tip = [mx + (-dy / len) * r * 5, my + (dx / len) * r * 5];
        svg.append(svgEl('line', { x1: mx, y1: my, x2: tip[0], y2: tip[1], class: 'in-arrow' }));
        svg.append(svgEl('text', { x: tip[0] + r, y: tip[1] + r, class: 'label line', 'font-size': r * 2.5, text: 'in' }));
        label(b, l.name, 'line');
        if (isSel('line', i)) handles('line', i, l.points);
      });
      const d = this.drawing;
      if (d && d.points.length) {
        svg.append(svgEl('polyline', { points: d.points.map(px).join(' '), class: 'draft' }));
        d.points.forEach((q, p) => {
          const c = svgEl('circle', { cx: q[0] * W, cy: q[1] * H, r, class: 'handle draft' + (p === 0 ? ' first' : '') });
          if (p === 0 && d.kind === 'zone') {
            c.addEventListener('click', (ev) => {
              ev.stopPropagation();
              if (d.points.length >= 3) this.finish(false);
            });
          }
          svg.append(c);
        });
      }
    },

    renderList() {
      const ul = $('shape-list');
      clear(ul);
      const add = (kind, s, i) => {
        const sel = this.selected && this.selected.kind === kind && this.selected.i === i;
        const li = el(
          'li',
          { className: sel ? 'selected' : '', 'data-testid': kind + '-item-' + i },
          el('span', { className: 'kind', text: kind }),
          ' ',
          el('span', { className: 'name', text: s.name }),
          ' ',
          el('small', { className: 'muted', text: s.points.length + ' points' }),
        );
        li.addEventListener('click', () => this.select(kind, i));
        ul.append(li);
      };
      this.zones.forEach((z, i) => add('zone', z, i));
      this.lines.forEach((l, i) => add('line', l, i));
      if (this.drawing) {
        ul.append(el('li', { className: 'selected' }, el('span', { className: 'kind', text: 'new ' + this.drawing.kind }), ' ' + this.drawing.points.length + ' points'));
      }
    },

    // writes roi_zones (and lines) into the camera, every other parameter as it is now
    async save() {
      const msg = $('editor-message');
      const note = $('editor-note');
      msg.textContent = '';
      note.textContent = '';
      if (this.drawing && !this.finish(false)) return;
      const id = live.id;
      if (id === null) return;
      const strip = (s) => ({ ...s, points: s.points.map((q) => [round(q[0]), round(q[1])]) });
      try {
        const c = await fetchCamera(id);
        const params = { ...c.parameters, roi_zones: this.zones.map(strip) };
        const sendLines = this.lines.length > 0 || this.hadLines || Array.isArray(c.parameters.lines);
        if (sendLines) params.lines = this.lines.map(strip);
        const r = await api('POST', '/api/cameras', cameraBody(c, params));
        const reply = await jsonOf(r);
        if (!r.ok) {
          const details = Array.isArray(reply.details) ? reply.details : [];
          msg.textContent = errorText(reply, r.status) + (details.length ? ': ' : '') + details.map((d) => String(d.path) + ' ' + String(d.message)).join('; ');
          return;
        }
        const saved = (reply.cameras && reply.cameras[0]) || c;
        const ignored = (Array.isArray(reply.warnings) ? reply.warnings : []).filter((w) => /(^|\.)lines$/.test(String(w.path)));
        const keep = this.lines;
        cameras.set(id, saved);
        this.load(saved);
        if (sendLines && ignored.length) {
          this.lines = keep; // kept on screen, not saved
          this.render();
          msg.textContent = 'Zones saved, but this service does not know lines (' + String(ignored[0].message) + '): the lines were not saved.';
        } else {
          note.textContent = 'Saved.';
        }
      } catch (e) {
        if (!(e instanceof AuthError)) msg.textContent = 'cannot save: ' + e.message;
      }
    },
  };

  const svg = $('zone-editor');
  svg.addEventListener('click', (ev) => editor.click(ev));
  svg.addEventListener('pointermove', (ev) => editor.moveDrag(ev));
  svg.addEventListener('pointerup', (ev) => editor.endDrag(ev));
  svg.addEventListener('pointercancel', (ev) => editor.endDrag(ev));
  $('zone-new').addEventListener('click', () => editor.start('zone'));
  $('line-new').addEventListener('click', () => editor.start('line'));
  $('shape-finish').addEventListener('click', () => editor.finish(false));
  $('shape-delete').addEventListener('click', () => editor.remove());
  $('zone-name').addEventListener('input', (ev) => {
    if (editor.selected) editor.rename(ev.target.value);
  });
  $('zone-save').addEventListener('click', () => editor.save());
  $('zone-revert').addEventListener('click', () => editor.load(cameras.get(live.id)));

  // ---- events ------------------------------------------------------------------------------
  const thumbs = new Map(); // thumbnail key -> blob URL (or '' while loading / missing)
  const MAX_THUMBS = 100;

  function summary(ev) {
    const t = String(ev.event_type);
    if (t === 'object') {
      const why = ev.update_reason ? ' (' + ev.update_reason + ')' : '';
      const zones = Array.isArray(ev.zones) && ev.zones.length ? ' in ' + ev.zones.join(', ') : '';
      return ev.class_name + ' ' + ev.lifecycle + why + zones + ' · ' + ev.track_id;
    }
    if (t === 'detection') {
      const ds = Array.isArray(ev.detections) ? ev.detections : [];
      return ds.map((d) => d.class_name + ' ' + Math.round(d.confidence * 100) + '%').join(', ');
    }
    if (t === 'motion') {
      const zones = Array.isArray(ev.zones) && ev.zones.length ? ' in ' + ev.zones.join(', ') : '';
      return 'area ' + Math.round((ev.affected_area_percentage || 0) * 100) + '%' + zones;
    }
    if (t === 'anpr') {
      const a = ev.anpr_result || {};
      return 'plate ' + a.text + (a.region ? ' (' + a.region + ')' : '') + ' ' + Math.round((a.confidence || 0) * 100) + '%';
    }
    if (t === 'counts') return JSON.stringify({ zones: ev.zones, lines: ev.lines });
    return '';
  }

  async function loadThumb(img, trackId, key) {
    if (thumbs.has(key)) {
      const url = thumbs.get(key);
      if (url) img.src = url;
      else img.remove();
      return;
    }
    thumbs.set(key, '');
    try {
      const r = await api('GET', '/api/objects/' + encodeURIComponent(trackId) + '/thumbnail.jpg');
      if (!r.ok) {
        img.remove();
        return;
      }
      const url = URL.createObjectURL(await r.blob());
      thumbs.set(key, url);
      img.src = url;
      while (thumbs.size > MAX_THUMBS) {
        const [k, u] = thumbs.entries().next().value;
        if (u) URL.revokeObjectURL(u);
        thumbs.delete(k);
      }
    } catch (e) {
      img.remove();
    }
  }

  async function refreshEvents() {
    if (live.id === null || document.hidden) return;
    const id = live.id;
    try {
      const r = await api('GET', '/api/events?camera_id=' + encodeURIComponent(id) + '&count=' + EVENT_COUNT);
      const body = await jsonOf(r);
      if (live.id !== id) return;
      if (!r.ok) {
        $('events-message').textContent = errorText(body, r.status);
        return;
      }
      $('events-message').textContent = '';
      const list = $('event-feed');
      clear(list);
      const events = Array.isArray(body.events) ? body.events : [];
      if (!events.length) list.append(el('li', { className: 'muted', text: 'no events yet' }));
      for (const entry of events) {
        const ev = entry.event || {};
        const li = el(
          'li',
          { 'data-testid': 'event', 'data-event-type': String(ev.event_type) },
          el('time', { text: String(ev.timestamp || '') }),
          ' ',
          el('span', { className: 'type ' + String(ev.event_type), text: String(ev.event_type) }),
          ' ',
          el('span', { className: 'what', text: summary(ev) }),
        );
        const snap = ev.snapshot;
        if (snap && typeof snap === 'object' && snap.thumbnail_key && ev.track_id) {
          const img = el('img', { className: 'thumb', alt: 'snapshot of ' + String(ev.track_id) });
          li.prepend(img);
          loadThumb(img, String(ev.track_id), String(snap.thumbnail_key));
        }
        list.append(li);
      }
    } catch (e) {
      if (!(e instanceof AuthError)) $('events-message').textContent = 'cannot read events: ' + e.message;
    }
  }

  // ---- timers and visibility -------------------------------------------------------------
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden) {
      refreshCameras();
      refreshEvents();
      scheduleLive(0);
    } else {
      clearTimeout(live.timer);
      live.timer = null;
    }
  });
  setInterval(() => {
    if (!document.hidden && $('token-dialog').hidden) refreshCameras();
  }, LIST_PERIOD_MS);
  setInterval(() => {
    if (!document.hidden && $('token-dialog').hidden) refreshEvents();
  }, EVENTS_PERIOD_MS);
  setInterval(() => {
    if (!document.hidden) refreshHealth();
  }, 10000);

  buildForm();
  refreshHealth();
  refreshCameras();
})();
