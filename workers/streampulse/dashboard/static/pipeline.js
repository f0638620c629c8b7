// The 'Pipeline' half: panels from /api/pipeline.

import {
  el, fill, empty, fmtInt, fmtBig, fmtRate, fmtMs, fmtSeconds, fmtTime, kpi, rows, table, cell,
  sparkline,
} from "./dom.js";

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

export function renderPipeline(data) {
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
