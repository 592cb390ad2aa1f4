// The hookstream console: pick a webhook, watch its stream live through EventSource and a stream token.
"use strict";

(() => {
  const MAX_ROWS = 500;
  const RECONNECT_DELAY_MS = 3000;
  const $ = (id) => document.getElementById(id);
  const ui = {
    keyForm: $("key-form"), apiKey: $("api-key"), account: $("account"), webhook: $("webhook"),
    webhookInfo: $("webhook-info"), afterSeq: $("after-seq"), connect: $("connect"), pause: $("pause"),
    clear: $("clear"), message: $("message"), state: $("state"), reconnects: $("reconnects"),
    lastSeq: $("last-seq"), count: $("count"), events: $("events"), empty: $("empty"),
  };
  const app = {
    key: sessionStorage.getItem("hookstream-key") || "",
    types: [],
    webhooks: new Map(),
    source: null,
    webhookId: null,
    lastSeq: null,
    count: 0,
    reconnects: 0,
    wasOpen: false,
    paused: false,
    retryTimer: null,
  };

  function say(text, isError = false) {
    ui.message.textContent = text;
    ui.message.classList.toggle("error", isError);
  }

  function setState(state, label) {
    ui.state.dataset.state = state;
    ui.state.className = "pill";
    ui.state.textContent = label;
  }

  function showCounters() {
    ui.reconnects.textContent = String(app.reconnects);
    ui.lastSeq.textContent = app.lastSeq === null ? "–" : String(app.lastSeq);
    ui.count.textContent = String(app.count);
  }

  async function api(path, options = {}) {
    const response = await fetch(path, {
      ...options,
      headers: { "x-api-key": app.key, "content-type": "application/json", ...(options.headers || {}) },
    });
    const body = response.status === 204 ? null : await response.json().catch(() => null);
    if (!response.ok) {
      const message = body && body.error ? body.error.message : `HTTP ${response.status}`;
      const error = new Error(message);
      error.status = response.status;
      throw error;
    }
    return body;
  }

  function option(value, text) {
    const element = document.createElement("option");
    element.value = value;
    element.textContent = text;
    return element;
  }

  async function loadAccounts(event) {
    event.preventDefault();
    app.key = ui.apiKey.value.trim();
    sessionStorage.setItem("hookstream-key", app.key);
    say("Loading accounts…");
    try {
      const [accounts, types] = await Promise.all([api("/v2/accounts"), api("/v2/event-types")]);
      app.types = types.data.flatMap((entry) => [entry.type, ...(entry.aliases || [])]);
      ui.account.replaceChildren(option("", accounts.data.length ? "Choose an account" : "No accounts yet"));
      for (const account of accounts.data) {
        const label = account.name ? `${account.name} (${account.account_id})` : account.account_id;
        ui.account.append(option(account.account_id, label));
      }
      ui.account.disabled = accounts.data.length === 0;
      say(`${accounts.data.length} account${accounts.data.length === 1 ? "" : "s"} loaded.`);
    } catch (error) {
      say(`Could not load accounts: ${error.message}`, true);
    }
  }

  async function loadWebhooks() {
    const accountId = ui.account.value;
    ui.webhook.replaceChildren(option("", "Pick an account"));
    ui.webhook.disabled = true;
    ui.connect.disabled = true;
    if (!accountId) return;
    try {
      const webhooks = await api(`/v2/webhooks?account_id=${encodeURIComponent(accountId)}`);
      app.webhooks = new Map(webhooks.data.map((webhook) => [webhook.webhook_id, webhook]));
      ui.webhook.replaceChildren(option("", webhooks.data.length ? "Choose a webhook" : "This account has no webhooks"));
      for (const webhook of webhooks.data) {
        const state = webhook.is_active ? "active" : "stopped";
        ui.webhook.append(option(webhook.webhook_id, `${webhook.webhook_id} · ${webhook.mode} · ${state}`));
      }
      ui.webhook.disabled = webhooks.data.length === 0;
    } catch (error) {
      say(`Could not load webhooks: ${error.message}`, true);
    }
  }

  function pickWebhook() {
    const webhook = app.webhooks.get(ui.webhook.value);
    ui.connect.disabled = !webhook;
    ui.webhookInfo.textContent = webhook ? `Filter: ${webhook.events.join(", ")}` : "";
  }

  function closeSource() {
    clearTimeout(app.retryTimer);
    app.retryTimer = null;
    if (app.source) {
      app.source.close();
      app.source = null;
    }
  }

  async function open(afterSeq) {
    closeSource();
    setState("connecting", "connecting");
    let token;
    try {
      token = await api(`/v2/webhooks/${app.webhookId}/stream-token`, { method: "POST" });
    } catch (error) {
      return closed(`Could not get a stream token: ${error.message}`);
    }
    let url = token.data.stream_url;
    if (afterSeq !== null) url += `&afterSeq=${afterSeq}`;
    const source = new EventSource(url);
    app.source = source;
    app.wasOpen = false;
    source.addEventListener("open", () => {
      if (app.wasOpen) app.reconnects += 1;
      app.wasOpen = true;
      setState("open", "live");
      say("Connected; events appear as they are appended.");
      showCounters();
    });
    source.addEventListener("error", () => {
      if (source !== app.source) return;
      if (source.readyState === EventSource.CONNECTING) {
        setState("connecting", "reconnecting");
        say("Connection lost; the browser is reconnecting from the last seq it saw.");
      } else {
        recover();
      }
    });
    // The stream names each message after its event type, so listen for every type in the catalog.
    const handler = (event) => received(event);
    for (const type of app.types) {
      source.addEventListener(type, handler);
      source.addEventListener(`${type}.truncated`, handler);
    }
    source.addEventListener("message", handler);
    source.addEventListener("pruned", (event) => {
      const info = JSON.parse(event.data);
      notice(`Retention deleted events after seq ${info.afterSeq}; the stream goes on from seq ${info.oldestSeq}.`);
    });
  }

  // EventSource gave up (the server answered 204, 401, 404 or 429): find out why, and reconnect when it makes sense.
  async function recover() {
    closeSource();
    if (app.paused || !app.webhookId) return;
    try {
      const webhook = await api(`/v2/webhooks/${app.webhookId}`);
      if (!webhook.data.is_active) {
        return closed("The webhook is stopped, so its stream ended. Start it and connect again.");
      }
    } catch (error) {
      if (error.status === 404) return closed("The webhook was deleted.");
    }
    setState("connecting", "reconnecting");
    say(`Stream closed; reconnecting in ${RECONNECT_DELAY_MS / 1000} s from seq ${app.lastSeq ?? "(live)"}.`);
    app.retryTimer = setTimeout(() => {
      app.reconnects += 1;
      showCounters();
      open(app.lastSeq);
    }, RECONNECT_DELAY_MS);
  }

  function closed(text) {
    closeSource();
    setState("closed", "closed");
    say(text, true);
    ui.connect.textContent = "Connect";
    ui.pause.disabled = true;
  }

  function received(event) {
    let envelope;
    try {
      envelope = JSON.parse(event.data);
    } catch {
      return;
    }
    app.lastSeq = Number(event.lastEventId || envelope.seq);
    app.count += 1;
    showCounters();
    row(envelope);
  }

  function formatTime(timestamp) {
    const moment = new Date(timestamp);
    if (Number.isNaN(moment.getTime())) return timestamp || "";
    return moment.toLocaleString(undefined, {
      year: "numeric", month: "short", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit", fractionalSecondDigits: 3,
    });
  }

  function row(envelope) {
    const item = document.createElement("li");
    item.className = "event fresh";
    item.dataset.seq = String(envelope.seq);
    const details = document.createElement("details");
    details.open = true;
    const summary = document.createElement("summary");
    const seq = document.createElement("span");
    seq.className = "seq";
    seq.textContent = `#${envelope.seq}`;
    const type = document.createElement("span");
    type.className = "type";
    type.textContent = envelope.type;
    const time = document.createElement("time");
    time.className = "time";
    time.dateTime = envelope.timestamp || "";
    time.textContent = formatTime(envelope.timestamp);
    summary.append(seq, type, time);
    const json = document.createElement("pre");
    json.textContent = JSON.stringify(envelope, null, 2);
    details.append(summary, json);
    item.append(details);
    insert(item);
  }

  function notice(text) {
    const item = document.createElement("li");
    item.className = "event notice";
    const summary = document.createElement("summary");
    summary.textContent = text;
    item.append(summary);
    insert(item);
  }

  function insert(item) {
    ui.empty.hidden = true;
    ui.events.prepend(item);
    while (ui.events.children.length > MAX_ROWS) ui.events.lastElementChild.remove();
  }

  function requestedSeq() {
    const raw = ui.afterSeq.value.trim();
    return raw === "" ? null : Math.max(0, Math.floor(Number(raw)));
  }

  function toggleConnection() {
    if (app.webhookId) {
      closeSource();
      app.webhookId = null;
      app.paused = false;
      setState("idle", "not connected");
      say("Disconnected.");
      ui.connect.textContent = "Connect";
      ui.pause.textContent = "Pause";
      ui.pause.disabled = true;
      return;
    }
    app.webhookId = ui.webhook.value;
    app.lastSeq = requestedSeq();
    app.reconnects = 0;
    app.paused = false;
    showCounters();
    ui.connect.textContent = "Disconnect";
    ui.pause.disabled = false;
    open(app.lastSeq);
  }

  function togglePause() {
    if (!app.webhookId) return;
    app.paused = !app.paused;
    if (app.paused) {
      closeSource();
      setState("paused", "paused");
      say(`Paused at seq ${app.lastSeq ?? "(none yet)"}; resume to get everything since, without gaps.`);
      ui.pause.textContent = "Resume";
    } else {
      ui.pause.textContent = "Pause";
      open(app.lastSeq);
    }
  }

  function clearEvents() {
    ui.events.replaceChildren();
    ui.empty.hidden = false;
    app.count = 0;
    showCounters();
  }

  ui.apiKey.value = app.key;
  ui.keyForm.addEventListener("submit", loadAccounts);
  ui.account.addEventListener("change", loadWebhooks);
  ui.webhook.addEventListener("change", pickWebhook);
  ui.connect.addEventListener("click", toggleConnection);
  ui.pause.addEventListener("click", togglePause);
  ui.clear.addEventListener("click", clearEvents);
})();
