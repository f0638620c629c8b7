// The 'Content intelligence' half: panels from /api/content.

import {
  el, slot, fill, empty, fmtInt, fmtBig, fmtScore, fmtPct, fmtRate, fmtSeconds, fmtMinute, fmtTime,
  shortDid, kpi, table, cell, barCell, bars, sectionNote, usable,
} from "./dom.js";

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

export function renderContent(data) {
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
}
