// StreamPulse dashboard: fetches /api/content and /api/pipeline on load and every refresh_s.
// Every value from the API is put in the page with textContent or setAttribute on data-*
// attributes, never parsed as markup: post texts, hashtags and entities are hostile input.
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";
  let refreshMs = 5000;
  let timer = null;

  // --- building DOM -----------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined) continue;
      if (key === "class") node.className = value;
      else node.setAttribute(key, String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function svg(tag, attrs) {
    const node = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
    return node;
  }

  function slot(id) {
    return document.querySelector(`[data-testid="${id}"]`);
  }

  function fill(id, ...children) {
    const node = slot(id);
    if (node) node.replaceChildren(...children.filter((c) => c !== null && c !== undefined));
  }

  function empty(text) {
    return el("div", { class: "empty" }, text);
  }

  // --- formatting (predictable: tests read these) ----------------------------------------

  const grouped = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });

  function fmtInt(n) {
    return n === null || n === undefined ? "–" : String(Math.round(n));
  }
  function fmtBig(n) {
    return n === null || n === undefined ? "–" : grouped.format(n);
  }
  function fmtScore(x) {
    return x === null || x === undefined ? "–" : Number(x).toFixed(3);
  }
  function fmtPct(x) {
    return x === null || x === undefined ? "–" : (100 * x).toFixed(1) + "%";
  }
  function fmtRate(x) {
    if (x === null || x === undefined) return "–";
    return x >= 100 ? grouped.format(x) : x.toFixed(1);
  }
  function fmtMs(ms) {
    if (ms === null || ms === undefined) return "–";
    if (ms < 1000) return ms.toFixed(ms < 10 ? 1 : 0) + " ms";
    return fmtSeconds(ms / 1000);
  }
  function fmtSeconds(s) {
    if (s === null || s === undefined) return "–";
    const units = [["d", 86400], ["h", 3600], ["min", 60]];
    for (const [unit, size] of units) if (Math.abs(s) >= size) return (s / size).toFixed(1) + " " + unit;
    return s.toFixed(1) + " s";
  }
  function fmtMinute(iso) {
    // "2026-01-01T12:34:00Z" -> "12:34" (UTC, as the tables are)
    return iso ? iso.slice(11, 16) : "–";
  }
  function fmtTime(iso) {
    return iso ? iso.replace("T", " ").replace("Z", " UTC") : "–";
  }
  function shortDid(did) {
    return did && did.length > 28 ? did.slice(0, 16) + "…" + did.slice(-8) : did || "";
  }

  // --- pieces -----------------------------------------------------------------------------

  function kpi(label, value, tone, testid) {
    return el("div", { class: "kpi" + (tone ? " " + tone : ""), "data-testid": testid },
      el("div", { class: "value" }, value), el("div", { class: "label" }, label));
  }

  function rows(pairs) {
    const box = el("div", { class: "rows" });
    for (const [k, v, testid] of pairs) {
      box.append(el("span", { class: "k" }, k), el("span", { class: "v", "data-testid": testid }, v));
    }
    return box;
  }

  function table(testid, columns, items, rowFor) {
    const head = el("tr", {}, ...columns.map(([name, cls]) => el("th", { class: cls }, name)));
    const body = el("tbody");
    for (const item of items) body.append(rowFor(item));
    return el("table", { "data-testid": testid }, el("thead", {}, head), body);
  }

  function cell(col, text, cls) {
    return el("td", { "data-col": col, class: cls }, text);
  }

  function barCell(col, text, fraction, cls) {
    const bar = el("span", { class: "bar " + (cls || "") });
    bar.style.width = Math.max(0, Math.min(1, fraction || 0)) * 100 + "%";
    return el("td", { "data-col": col, class: "barcell num" }, el("span", {}, text), bar);
  }

  function bars(values, height, titles) {
    const max = Math.max(1, ...values);
    const width = Math.max(values.length, 1);
    const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: "none", role: "img" });
    values.forEach((v, i) => {
      const h = (v / max) * (height - 2);
      const rect = svg("rect", { x: i + 0.1, y: height - h, width: 0.8, height: h, fill: "#2f81f7" });
      if (titles) {
        const title = svg("title");
        title.textContent = titles[i];
        rect.append(title);
      }
      chart.append(rect);
    });
    return chart;
  }

  function sparkline(values) {
    const points = values.map((v) => (v === null || v === undefined ? 0 : v));
    if (points.length < 2) return null;
    const max = Math.max(...points, 1e-9);
    const chart = svg("svg", { viewBox: `0 0 ${points.length - 1} 30`, preserveAspectRatio: "none" });
    const coords = points.map((v, i) => `${i},${(30 - (v / max) * 28).toFixed(2)}`).join(" ");
    chart.append(svg("polyline", { points: coords, fill: "none", stroke: "#4fb3ff", "stroke-width": 1.5, "vector-effect": "non-scaling-stroke" }));
    return el("div", { class: "spark" }, chart);
  }

  function sectionNote(id, section, ready) {
    if (!section) return fill(id, "");
    if (section.state === "waiting") return fill(id, "Waiting: " + section.message);
    if (section.state === "error") return fill(id, el("span", { class: "error" }, section.message));
    fill(id, ready || "");
  }

  function usable(section) {
    return section && section.state === "ready";
  }

  // --- content ----------------------------------------------------------------------------

  function renderPosts(s) {
    sectionNote("posts-note", s, s && s.newest ? `event minutes up to ${fmtTime(s.newest)}` : "");
    if (!usable(s) || !s.points.length) {
      fill("posts-kpis");
      return fill("posts-chart", empty("No posts yet"));
    }
    fill("posts-kpis",
      kpi("posts in the newest minute", fmtBig(s.latest_posts), null, "posts-latest"),
      kpi("mean per minute", fmtRate(s.mean_per_minute), null, "posts-mean"),
      kpi(`posts in the newest ${s.minutes} min`, fmtBig(s.total_posts), null, "posts-total"));
    const values = s.points.map((p) => p.posts);
    const titles = s.points.map((p) => `${fmtMinute(p.minute)} UTC: ${p.posts} posts`);
    fill("posts-chart", bars(values, 100, titles),
      el("div", { class: "axis" }, el("span", {}, fmtMinute(s.points[0].minute)),
        el("span", {}, `max ${fmtBig(Math.max(...values))}/min`),
        el("span", {}, fmtMinute(s.points[s.points.length - 1].minute) + " UTC")));
  }

  function renderToxicity(s) {
    const extra = usable(s) && s.since
      ? `${fmtTime(s.since)} – ${fmtMinute(s.until)}, ${s.languages} languages` : "";
    sectionNote("toxicity-note", s, extra);
    if (!usable(s) || !s.rows.length) return fill("toxicity-body", empty("No scored posts yet"));
    fill("toxicity-body", table("toxicity-by-language",
      [["lang"], ["posts", "num"], ["toxic", "num"], ["toxic %", "num"], ["mean", "num"], ["p95", "num"]],
      s.rows, (r) => el("tr", {
        "data-testid": "toxicity-row", "data-lang": r.lang, "data-posts": r.posts,
        "data-toxic-posts": r.toxic_posts, "data-mean-toxicity": fmtScore(r.mean_toxicity),
        "data-p95-toxicity": fmtScore(r.p95_toxicity),
      },
      cell("lang", r.lang, "name"), cell("posts", fmtInt(r.posts), "num"),
      cell("toxic_posts", fmtInt(r.toxic_posts), "num"), cell("toxic_share", fmtPct(r.toxic_share), "num"),
      barCell("mean_toxicity", fmtScore(r.mean_toxicity), r.mean_toxicity, "toxic"),
      cell("p95_toxicity", fmtScore(r.p95_toxicity), "num"))));
  }

  function trendingNote(s) {
    return usable(s) && s.window_start ? `window ${fmtTime(s.window_start)} – ${fmtMinute(s.window_end)}` : "";
  }

  function renderEntities(s) {
    sectionNote("entities-note", s, trendingNote(s));
    if (!usable(s) || !s.rows.length) return fill("entities-body", empty("No entities yet"));
    const max = Math.max(...s.rows.map((r) => r.posts), 1);
    const t = table("trending-entities", [["entity"], ["label"], ["posts", "num"], ["authors", "num"]],
      s.rows, (r) => el("tr", {
        "data-testid": "trending-entity-row", "data-entity": r.entity, "data-label": r.label,
        "data-posts": r.posts, "data-authors": r.authors,
      },
      cell("entity", r.entity, "name"), cell("label", r.label),
      barCell("posts", fmtInt(r.posts), r.posts / max), cell("authors", fmtInt(r.authors), "num")));
    t.setAttribute("data-window-start", s.window_start || "");
    t.setAttribute("data-window-end", s.window_end || "");
    fill("entities-body", t);
  }

  function renderHashtags(s) {
    sectionNote("hashtags-note", s, trendingNote(s));
    if (!usable(s) || !s.rows.length) return fill("hashtags-body", empty("No hashtags yet"));
    const max = Math.max(...s.rows.map((r) => r.posts), 1);
    const t = table("trending-hashtags", [["hashtag"], ["posts", "num"], ["authors", "num"]],
      s.rows, (r) => el("tr", {
        "data-testid": "trending-hashtag-row", "data-hashtag": r.hashtag,
        "data-posts": r.posts, "data-authors": r.authors,
      },
      cell("hashtag", "#" + r.hashtag, "name"),
      barCell("posts", fmtInt(r.posts), r.posts / max), cell("authors", fmtInt(r.authors), "num")));
    t.setAttribute("data-window-start", s.window_start || "");
    t.setAttribute("data-window-end", s.window_end || "");
    fill("hashtags-body", t);
  }

  function renderAnomalies(s) {
    sectionNote("anomalies-note", s, usable(s) ? "minutes ≥ 3σ above their trailing hour" : "");
    if (!usable(s) || !s.rows.length) return fill("anomalies-body", empty("No anomalies"));
    fill("anomalies-body", table("anomalies",
      [["metric"], ["minute (UTC)"], ["value", "num"], ["trailing mean", "num"], ["z", "num"]],
      s.rows, (r) => el("tr", { "data-testid": "anomaly-row", "data-metric": r.metric, "data-minute": r.window_start },
        cell("metric", r.metric), cell("window_start", fmtTime(r.window_start).slice(0, 16)),
        cell("value", r.metric === "toxicity" ? fmtScore(r.value) : fmtBig(r.value), "num"),
        cell("trailing_mean", r.metric === "toxicity" ? fmtScore(r.trailing_mean) : fmtBig(r.trailing_mean), "num"),
        cell("z_score", r.z_score === null ? "–" : r.z_score.toFixed(1), "num"))));
  }

  function renderViral(s) {
    sectionNote("viral-note", s, usable(s) ? `posted in the newest ${s.window_minutes} min, by weighted engagement per minute` : "");
    if (!usable(s) || !s.rows.length) return fill("viral-body", empty("No engagement yet"));
    const list = el("div", { "data-testid": "viral-posts" });
    for (const r of s.rows) {
      const link = typeof r.link === "string" && r.link.startsWith("https://bsky.app/")
        ? el("a", { href: r.link, target: "_blank", rel: "noopener noreferrer" }, "open") : null;
      list.append(el("div", { class: "post", "data-testid": "viral-post", "data-uri": r.post_uri },
        el("div", { class: "text", dir: "auto" }, r.text === null ? "(text not in enriched_posts)" : r.text),
        el("div", { class: "meta" },
          el("span", { class: "did" }, shortDid(r.did)),
          el("span", {}, `♥ ${fmtInt(r.likes)}`), el("span", {}, `⟲ ${fmtInt(r.reposts)}`),
          el("span", {}, `↩ ${fmtInt(r.replies)}`),
          el("span", { "data-col": "viral_velocity" }, `${r.viral_velocity.toFixed(1)}/min`),
          el("span", {}, fmtTime(r.posted_at)), link)));
    }
    fill("viral-body", list);
  }

  function renderBots(s) {
    sectionNote("bots-note", s, usable(s) ? `flagged at bot score ≥ ${s.threshold}` : "");
    if (!usable(s) || !s.rows.length) return fill("bots-body", empty("No author activity yet"));
    fill("bots-body", table("bot-accounts",
      [["account"], ["actions", "num"], ["follows", "num"], ["gap", "num"], ["score", "num"]],
      s.rows, (r) => el("tr", {
        "data-testid": "bot-row", "data-did": r.did, "data-bot-score": fmtScore(r.bot_score),
        class: r.likely ? "likely" : null,
      },
      el("td", { "data-col": "did", class: "did" }, shortDid(r.did), r.likely ? " " : null,
        r.likely ? el("span", { class: "badge" }, "likely") : null),
      cell("actions", fmtInt(r.posts + r.replies + r.likes + r.reposts + r.follows), "num"),
      cell("follows", fmtInt(r.follows), "num"),
      cell("mean_interval_s", r.mean_interval_s === null ? "–" : fmtSeconds(r.mean_interval_s), "num"),
      cell("bot_score", fmtScore(r.bot_score), "num"))));
  }

  function renderContent(data) {
    const state = data.state || "error";
    const pill = slot("content-state");
    pill.setAttribute("data-state", state);
    pill.textContent = { ready: "live", waiting: "waiting for the first checkpoint", error: "error" }[state] || state;
    const message = slot("content-message");
    message.hidden = state === "ready";
    message.textContent = state === "ready" ? "" : data.message || "";
    const fresh = data.freshness;
    slot("data-freshness").textContent = fresh
      ? `data committed ${fmtSeconds(fresh.commit_age_s)} ago` : "no committed data yet";
    slot("content-window").textContent = data.window_minutes
      ? `recent = newest ${data.window_minutes} min of event time · top ${data.top_n}` : "";
    renderPosts(data.posts_per_minute);
    renderToxicity(data.toxicity_by_language);
    renderEntities(data.trending_entities);
    renderHashtags(data.trending_hashtags);
    renderAnomalies(data.anomalies);
    renderViral(data.viral_posts);
    renderBots(data.bot_accounts);
    if (data.refresh_s) refreshMs = Math.max(1000, data.refresh_s * 1000);
  }

  // --- pipeline ---------------------------------------------------------------------------

  function notScraped(id, what) {
    fill(id, empty(`No ${what} metrics: add its /metrics URL to STREAMPULSE_DASHBOARD__METRICS_TARGETS`));
  }

  function series(history, key) {
    return sparkline(history.map((h) => h[key]));
  }

  function renderIngest(s, history) {
    if (!s) return notScraped("ingest-body", "ingest");
    const lagTone = s.lag_s === null ? null : s.lag_s > 60 ? "warn" : "good";
    const top = s.by_collection.map((c) => [c.collection.split(".").pop(), fmtRate(c.per_s) + "/s"]);
    fill("ingest-body",
      el("div", { class: "kpis" },
        kpi("events/s", fmtRate(s.events_per_s), null, "ingest-rate"),
        kpi("lag", fmtSeconds(s.lag_s), lagTone, "ingest-lag")),
      series(history, "ingest_events_per_s"),
      rows([
        ["produced/s", fmtRate(s.produced_per_s)],
        ["received", s.received_bytes_per_s === null ? "–" : fmtRate(s.received_bytes_per_s / 1024) + " KiB/s"],
        ["connected", s.connected === null ? "–" : s.connected ? "yes" : "no"],
        ["reconnects", fmtInt(s.reconnects_total)],
        ["Kafka ack p50 / p99", s.ack_latency_ms ? `${fmtMs(s.ack_latency_ms.p50)} / ${fmtMs(s.ack_latency_ms.p99)}` : "–"],
        ...top,
      ]));
  }

  function renderEnrich(s, history) {
    if (!s) return notScraped("enrich-body", "enrich");
    const tone = s.breaker === "open" || s.paused ? "bad" : s.breaker === "half-open" ? "warn" : null;
    const models = Object.entries(s.model_latency_ms || {});
    fill("enrich-body",
      el("div", { class: "kpis" },
        kpi("enriched/s", fmtRate(s.enriched_per_s), null, "enrich-rate"),
        kpi("gateway", s.paused ? "paused" : s.breaker || "–", tone, "enrich-breaker")),
      series(history, "enriched_per_s"),
      rows([
        ["consumed/s", fmtRate(s.consumed_per_s)],
        ["gateway requests/s", fmtRate(s.model_requests_per_s)],
        ["failed requests/s", fmtRate(s.model_failures_per_s)],
        ["retries/s", fmtRate(s.retries_per_s)],
        ["end to end p50 / p99", s.end_to_end_ms ? `${fmtMs(s.end_to_end_ms.p50)} / ${fmtMs(s.end_to_end_ms.p99)}` : "–"],
      ]),
      models.length ? table("enrich-model-latency", [["model"], ["p50", "num"], ["p99", "num"]], models,
        ([name, q]) => el("tr", { "data-model": name }, cell("model", name),
          cell("p50", fmtMs(q.p50), "num"), cell("p99", fmtMs(q.p99), "num"))) : null);
  }

  function renderModels(s, history) {
    if (!s) return notScraped("models-body", "model server");
    fill("models-body",
      el("div", { class: "kpis" },
        kpi("texts/s", fmtRate(s.texts_per_s), null, "models-rate"),
        kpi("errors/s", fmtRate(s.errors_per_s), s.errors_per_s > 0 ? "bad" : null, "models-errors")),
      series(history, "model_texts_per_s"),
      s.by_model.length ? table("models-table",
        [["model"], ["texts/s", "num"], ["batch p50/p99", "num"], ["inference p50/p99", "num"], ["queued", "num"]],
        s.by_model, (m) => el("tr", { "data-model": m.model },
          cell("model", m.model), cell("texts_per_s", fmtRate(m.texts_per_s), "num"),
          cell("batch_size", m.batch_size ? `${fmtRate(m.batch_size.p50)} / ${fmtRate(m.batch_size.p99)}` : "–", "num"),
          cell("inference_ms", m.inference_ms ? `${fmtMs(m.inference_ms.p50)} / ${fmtMs(m.inference_ms.p99)}` : "–", "num"),
          cell("queued", fmtInt(m.queued), "num"))) : empty("No model has answered yet"));
  }

  function renderLag(s) {
    if (!s) return fill("lag-body", empty("No consumer groups configured"));
    if (s.error) return fill("lag-body", el("div", { class: "error" }, s.error));
    const items = [];
    for (const g of s.groups) {
      if (!g.topics.length) items.push({ group: g.group, topic: "(no committed offsets)", lag: null });
      for (const t of g.topics) items.push({ group: g.group, topic: t.topic, lag: t.lag });
    }
    fill("lag-body", table("consumer-lag", [["group"], ["topic"], ["lag", "num"]], items,
      (r) => el("tr", { "data-group": r.group, "data-topic": r.topic },
        cell("group", r.group, "name"), cell("topic", r.topic, "name"), cell("lag", fmtBig(r.lag), "num"))));
  }

  function renderDeadLetters(s) {
    fill("dead-letters-body",
      el("div", { class: "kpis" },
        kpi("total", fmtBig(s.total), s.total > 0 ? "warn" : "good", "dead-letters-total"),
        kpi("per second", fmtRate(s.per_s), s.per_s > 0 ? "bad" : null, "dead-letters-rate")),
      s.rows.length ? table("dead-letters", [["stage"], ["reason"], ["total", "num"], ["/s", "num"]], s.rows,
        (r) => el("tr", { "data-stage": r.stage, "data-reason": r.reason },
          cell("stage", r.stage), cell("reason", r.reason, "name"),
          cell("total", fmtInt(r.total), "num"), cell("per_s", fmtRate(r.per_s), "num"))) : null);
  }

  function renderCheckpoint(s) {
    if (!s) return fill("checkpoint-body", empty("No checkpoint information"));
    const tone = s.age_s === null || s.age_s === undefined ? null : s.age_s > 120 ? "bad" : s.age_s > 30 ? "warn" : "good";
    const source = s.source === "flink" ? "Flink REST API" : "newest Paimon commit (no Flink REST URL)";
    const details = s.source === "flink"
      ? [["job", `${s.job || "–"} (${s.job_state || "–"})`], ["completed / failed", `${fmtInt(s.completed)} / ${fmtInt(s.failed)}`],
        ["duration", fmtMs(s.duration_ms)]]
      : [["table", s.table || "–"], ["snapshot", fmtInt(s.snapshot_id)]];
    fill("checkpoint-body",
      el("div", { class: "kpis" }, kpi("since the last checkpoint", fmtSeconds(s.age_s), tone, "checkpoint-age")),
      s.error ? el("div", { class: "error" }, s.error) : null,
      rows([["source", source, "checkpoint-source"], ["completed at", fmtTime(s.completed_at)], ...details]));
  }

  function renderPipeline(data) {
    const targets = data.targets || [];
    fill("pipeline-targets", ...(targets.length ? targets.map((t) =>
      el("span", { class: "chip " + (t.up ? "up" : "down"), title: t.error || t.url, "data-target": t.name },
        `${t.name} ${t.up ? "up" : "down"}`)) : [el("span", { class: "muted" }, "no metrics targets configured")]));
    const history = data.history || [];
    renderIngest(data.ingest, history);
    renderEnrich(data.enrich, history);
    renderModels(data.models, history);
    renderLag(data.consumer_lag);
    renderDeadLetters(data.dead_letters || { total: 0, per_s: null, rows: [] });
    renderCheckpoint(data.checkpoint);
  }

  // --- refresh loop -----------------------------------------------------------------------

  async function getJson(path) {
    const response = await fetch(path, { cache: "no-store" });
    if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
    return response.json();
  }

  async function refresh() {
    const results = await Promise.allSettled([getJson("/api/content"), getJson("/api/pipeline")]);
    const [content, pipeline] = results;
    if (content.status === "fulfilled") renderContent(content.value);
    if (pipeline.status === "fulfilled" && pipeline.value.targets) renderPipeline(pipeline.value);
    const failed = results.filter((r) => r.status === "rejected");
    const stamp = slot("last-updated");
    if (failed.length) {
      slot("content-state").setAttribute("data-state", "offline");
      slot("content-state").textContent = "dashboard unreachable, retrying";
    } else {
      stamp.textContent = "updated " + new Date().toLocaleTimeString("en-GB", { hour12: false });
      stamp.setAttribute("data-updated-at", new Date().toISOString());
    }
    document.body.setAttribute("data-loaded", "true");
  }

  async function loop() {
    try {
      await refresh();
    } catch (error) {
      console.error(error);
    }
    timer = setTimeout(loop, refreshMs);
  }

  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && timer !== null) {
      clearTimeout(timer);
      loop();
    }
  });
  loop();
})();
