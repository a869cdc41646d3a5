// The console's live updates: each element with data-live polls its JSON endpoint (same
// origin, the session's cookie) and swaps in the server-rendered, escaped HTML it gets.
"use strict";

(function () {
  const PERIOD_MS = 1500;

  function parse(html) {
    const holder = document.createElement("template");
    holder.innerHTML = html.trim();
    return holder.content;
  }

  async function fetchJson(url) {
    const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
    const type = response.headers.get("content-type") || "";
    if (!response.ok || !type.includes("application/json")) {
      return null; // signed out, gone, or the server away: stop polling
    }
    return response.json();
  }

  function rowOf(body, id) {
    for (const row of body.querySelectorAll("tr[data-saga-id]")) {
      if (row.dataset.sagaId === id) {
        return row;
      }
    }
    return null;
  }

  async function updateList(table) {
    const body = table.tBodies[0];
    const url = new URL(table.dataset.live, window.location.href);
    const ids = Array.from(body.querySelectorAll("tr[data-saga-id]"), (row) => row.dataset.sagaId);
    url.searchParams.set("ids", ids.join(","));
    if (table.dataset.top) {
      url.searchParams.set("top", table.dataset.top); // a first page: it takes new sagas
    }
    const data = await fetchJson(url);
    if (data === null) {
      return false;
    }
    for (const row of data.rows) {
      const old = rowOf(body, row.id);
      if (old) {
        old.replaceWith(parse(row.html));
      }
    }
    for (const id of data.gone) {
      const old = rowOf(body, id);
      if (old) {
        old.remove();
      }
    }
    for (const row of data.new.slice().reverse()) {
      if (!rowOf(body, row.id)) {
        body.prepend(parse(row.html));
      }
    }
    if (data.top) {
      table.dataset.top = data.top;
    }
    const empty = document.querySelector("p.empty");
    if (empty) {
      empty.hidden = body.rows.length > 0;
    }
    return true;
  }

  async function updateSection(section) {
    const data = await fetchJson(new URL(section.dataset.live, window.location.href));
    if (data === null) {
      return false;
    }
    if (String(data.version) !== section.dataset.version) {
      const open = new Set(Array.from(section.querySelectorAll("details[open]"), detailsKey));
      section.replaceChildren(parse(data.html));
      for (const details of section.querySelectorAll("details")) {
        details.open = open.has(detailsKey(details));
      }
      section.dataset.version = String(data.version);
    }
    return !data.final;
  }

  // What a <details> is across updates: its event's seq, else its class.
  function detailsKey(details) {
    const row = details.closest("[data-seq]");
    return row ? "seq:" + row.dataset.seq : "class:" + details.className;
  }

  function keepPolling(update) {
    const round = async () => {
      let again = false;
      try {
        again = await update();
      } catch (error) {
        again = true; // a dropped connection: try again next round
      }
      if (again) {
        window.setTimeout(round, PERIOD_MS);
      }
    };
    window.setTimeout(round, PERIOD_MS);
  }

  document.addEventListener("DOMContentLoaded", () => {
    for (const table of document.querySelectorAll("table[data-live]")) {
      keepPolling(() => updateList(table));
    }
    for (const section of document.querySelectorAll("section[data-live]")) {
      keepPolling(() => updateSection(section));
    }
    for (const form of document.querySelectorAll("form[data-confirm]")) {
      form.addEventListener("submit", (event) => {
        if (!window.confirm(form.dataset.confirm)) {
          event.preventDefault();
        }
      });
    }
  });
})();
