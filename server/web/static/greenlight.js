// Greenlight's only script (the Content-Security-Policy allows no inline script).
// 1. Pages marked data-poll refresh their [data-live] regions without a reload, backing off when
//    nothing changes. 2. Step logs: tail first, earlier/later lines on demand, a live stream (SSE)
//    for running steps, links to lines, search. Log text is always inserted with textContent.
// 3. Steps are <details>: a step that starts running or fails opens; a folded step's log loads
//    when it is first opened; a link to a step or to a line in a folded step opens it.
"use strict";

(() => {
  const FIRST_DELAY = 2000;
  const MAX_DELAY = 10000;
  const PAGE_LINES = 1000;
  const OPEN_STATES = new Set(["running", "failed", "errored", "timed_out"]);
  let delay = FIRST_DELAY;

  function schedulePoll() {
    setTimeout(poll, delay);
  }

  async function poll() {
    if (document.hidden) {
      schedulePoll();
      return;
    }
    try {
      const response = await fetch(location.href, { headers: { Accept: "text/html" }, cache: "no-store" });
      if (!response.ok) throw new Error(String(response.status));
      const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
      let changed = false;
      for (const region of fresh.querySelectorAll("[data-live]:not(.log)")) {
        const current = document.getElementById(region.id);
        if (!current) {
          location.reload(); // a new job appeared (a re-run): its log needs a viewer
          return;
        }
        if (current.innerHTML !== region.innerHTML || current.dataset.state !== region.dataset.state) {
          current.replaceWith(document.adoptNode(region));
          if (region.dataset.prefix) stepChanged(region.dataset.prefix, region.dataset.state);
          changed = true;
        }
      }
      delay = changed ? FIRST_DELAY : Math.min(delay * 1.5, MAX_DELAY);
      if (!fresh.body.dataset.poll) {
        delete document.body.dataset.poll;
        return; // finished: nothing will change any more
      }
    } catch (_error) {
      delay = Math.min(delay * 2, MAX_DELAY);
    }
    schedulePoll();
  }

  const views = new Map(); // log viewers by "job-step"

  // A step began running: open it and stream its log. It ended before we streamed: show its
  // last lines (once it is open).
  function stepChanged(prefix, state) {
    const view = views.get(prefix);
    if (OPEN_STATES.has(state)) stepDetails(prefix)?.setAttribute("open", "");
    if (!view || view.source) return;
    if (state === "running") {
      view.live = true;
      if (view.loaded) view.stream();
      else view.load();
    } else if (state !== "pending" && !view.ended && view.loaded) {
      view.ended = true;
      view.live = false;
      view.toEnd();
    }
  }

  function lineElement(prefix, number, segments) {
    const line = document.createElement("div");
    line.className = "line";
    line.id = `L${prefix}-${number}`;
    const link = document.createElement("a");
    link.className = "ln";
    link.href = `#${line.id}`;
    link.textContent = String(number);
    line.append(link);
    for (const [text, classes] of segments) {
      const span = document.createElement("span");
      if (classes) span.className = classes;
      span.textContent = text;
      line.append(span);
    }
    return line;
  }

  class LogView {
    constructor(root) {
      this.root = root;
      this.url = root.dataset.url;
      this.prefix = root.dataset.prefix;
      this.start = Number(root.dataset.start);
      this.end = Number(root.dataset.end);
      this.total = Number(root.dataset.total);
      this.live = root.dataset.live === "stream";
      this.box = root.querySelector(".lines");
      this.source = null;
      this.ended = false;
      // A folded step's log is not in the page: it is read when the step is first opened.
      this.loaded = root.dataset.lazy !== "1";
      this.details = root.closest("details");
      this.details?.addEventListener("toggle", () => {
        if (!this.details.open) return;
        if (!this.loaded) this.load();
        else if (!this.seen) this.box.scrollTop = this.box.scrollHeight;
        this.seen = true;
      });
      this.seen = this.details ? this.details.open : true;
      root.querySelector(".earlier").addEventListener("click", () => this.earlier());
      root.querySelector(".later").addEventListener("click", () => this.later());
      root.querySelector(".to-end").addEventListener("click", () => this.toEnd());
      root.querySelector("form.search").addEventListener("submit", (event) => {
        event.preventDefault();
        this.search(new FormData(event.target).get("q"));
      });
      this.box.scrollTop = this.box.scrollHeight;
      if (this.live) this.stream();
    }

    load() {
      this.loaded = true;
      this.toEnd();
    }

    rows(data) {
      const fragment = document.createDocumentFragment();
      data.lines.forEach((segments, i) => fragment.append(lineElement(this.prefix, data.start + i + 1, segments)));
      return fragment;
    }

    showStatus() {
      const status = this.root.querySelector(".status");
      status.textContent = this.total
        ? `lines ${this.start + 1}–${this.end} of ${this.total}${this.live ? " (live)" : ""}`
        : this.live ? "waiting for output…" : "no output";
      this.root.querySelector(".earlier").hidden = this.start === 0;
      this.root.querySelector(".later-bar").hidden = this.end >= this.total;
    }

    async range(query) {
      const response = await fetch(`${this.url}/lines?${query}`, { cache: "no-store" });
      if (!response.ok) throw new Error(`log lines: ${response.status}`);
      return response.json();
    }

    async earlier() {
      const data = await this.range(`start=${Math.max(0, this.start - PAGE_LINES)}&end=${this.start}`);
      const height = this.box.scrollHeight;
      this.box.prepend(this.rows(data));
      this.box.scrollTop += this.box.scrollHeight - height;
      this.start = data.start;
      this.total = data.total;
      this.showStatus();
    }

    async later() {
      const data = await this.range(`start=${this.end}&end=${this.end + PAGE_LINES}`);
      this.box.append(this.rows(data));
      this.end = data.start + data.lines.length;
      this.total = data.total;
      this.showStatus();
      if (this.live && this.end >= this.total) this.stream();
    }

    replaceWith(data) {
      this.box.replaceChildren(this.rows(data));
      this.start = data.start;
      this.end = data.start + data.lines.length;
      this.total = data.total;
      this.showStatus();
    }

    async jumpTo(number) {
      this.stopStream();
      const from = Math.max(0, number - 1 - 200);
      this.replaceWith(await this.range(`start=${from}&end=${from + 400}`));
      const line = document.getElementById(`L${this.prefix}-${number}`);
      if (line) {
        for (const hit of this.box.querySelectorAll(".hit")) hit.classList.remove("hit");
        line.classList.add("hit");
        line.scrollIntoView({ block: "center" });
      }
      if (this.live && this.end >= this.total) this.stream();
    }

    async toEnd() {
      this.stopStream();
      this.replaceWith(await this.range(`tail=${PAGE_LINES}`));
      this.box.scrollTop = this.box.scrollHeight;
      if (this.live) this.stream();
    }

    async search(query) {
      const results = this.root.querySelector(".results");
      results.replaceChildren();
      if (!query) return;
      const response = await fetch(`${this.url}/search?q=${encodeURIComponent(query)}`, { cache: "no-store" });
      if (!response.ok) return;
      const found = (await response.json()).lines;
      results.append(document.createTextNode(found.length ? `${found.length} match(es): ` : "no match"));
      for (const index of found) {
        const link = document.createElement("a");
        link.href = `#L${this.prefix}-${index + 1}`;
        link.textContent = String(index + 1);
        link.addEventListener("click", (event) => {
          event.preventDefault();
          history.replaceState(null, "", link.href);
          this.jumpTo(index + 1);
        });
        results.append(link);
      }
    }

    stopStream() {
      if (this.source) this.source.close();
      this.source = null;
    }

    stream() {
      if (this.source) return;
      // The browser resends Last-Event-ID (lines received) itself when it reconnects.
      this.source = new EventSource(`${this.url}/stream?after=${this.end}`);
      this.source.addEventListener("lines", (event) => {
        const data = JSON.parse(event.data);
        const skip = Math.max(0, this.end - data.start); // never show a line twice
        if (data.start > this.end) return; // the view moved away from the tail
        const atBottom = this.box.scrollTop + this.box.clientHeight >= this.box.scrollHeight - 30;
        data.lines = data.lines.slice(skip);
        data.start += skip;
        this.box.append(this.rows(data));
        this.end = data.start + data.lines.length;
        this.total = Math.max(this.total, this.end);
        if (atBottom) this.box.scrollTop = this.box.scrollHeight;
        this.showStatus();
      });
      this.source.addEventListener("end", () => {
        this.stopStream();
        this.live = false;
        this.ended = true;
        this.showStatus();
      });
    }
  }

  function stepDetails(prefix) {
    return document.getElementById(`step-${prefix}`);
  }

  // A link to a step opens it; a link to a line opens its step and shows the line (loading the
  // lines around it when they are not in the page).
  function openLinked() {
    const step = /^#step-(\d+-\d+)$/.exec(location.hash);
    if (step) {
      const details = stepDetails(step[1]);
      if (details && !details.open) {
        details.open = true;
        details.scrollIntoView();
      }
      return;
    }
    const match = /^#L(\d+-\d+)-(\d+)$/.exec(location.hash);
    if (!match) return;
    const view = views.get(match[1]);
    const details = stepDetails(match[1]);
    if (view) view.loaded = true; // jumpTo below reads the lines, not the toggle
    if (details && !details.open) details.open = true;
    const line = document.getElementById(location.hash.slice(1));
    if (line) line.scrollIntoView({ block: "center" });
    else if (view) view.jumpTo(Number(match[2]));
  }

  document.addEventListener("DOMContentLoaded", () => {
    for (const root of document.querySelectorAll(".log[data-url]")) {
      views.set(root.dataset.prefix, new LogView(root));
    }
    openLinked();
    window.addEventListener("hashchange", openLinked);
    if (document.body.dataset.poll) schedulePoll();
  });
})();
