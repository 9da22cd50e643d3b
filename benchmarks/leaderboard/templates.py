# ruff: noqa: E501  (HTML/CSS/JS template text: long lines are kept whole for readability)
"""Jinja2 templates, CSS and JavaScript of the static site (all inline; nothing is fetched)."""

from __future__ import annotations

CSS = """
:root{--fg:#1d232a;--muted:#5f6b76;--line:#d8dde3;--best:#0b6b3a;--bestbg:#e3f4ea;--ctrl:#f2f0ea;
--warn:#8a4b00;--warnbg:#fff4de;--link:#0b57a4}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);margin:0 auto;
max-width:1400px;padding:0 18px 40px}
a{color:var(--link)}
header{display:flex;flex-wrap:wrap;align-items:baseline;gap:18px;border-bottom:1px solid var(--line)}
header h1{font-size:20px;margin:14px 0 10px}
nav a{margin-right:12px}
nav a.here{font-weight:600;color:var(--fg);text-decoration:none}
.disclaimer{background:var(--warnbg);color:var(--warn);border:1px solid #f0d39a;border-radius:6px;
padding:10px 14px;margin:14px 0}
.filters{display:flex;flex-wrap:wrap;gap:14px;align-items:center;background:#f6f8fa;border:1px solid var(--line);
border-radius:6px;padding:8px 12px;margin:10px 0 16px;position:sticky;top:0;z-index:2}
.filters label{font-weight:600}
.filters select{margin-left:4px}
.legend{color:var(--muted);font-size:12px}
table{border-collapse:collapse;margin:6px 0 18px;font-size:13px}
th,td{border-bottom:1px solid var(--line);padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa;position:relative;overflow-wrap:anywhere;font-size:12px}
th.unranked{background:#fbfaf5;color:var(--muted);font-weight:500}
th[data-sort]{cursor:pointer;user-select:none}
th[data-sort]::after{content:"⇅";color:#a0a8b0;margin-left:4px;font-size:11px}
th[aria-sort=ascending]::after{content:"▲";color:var(--fg)}
th[aria-sort=descending]::after{content:"▼";color:var(--fg)}
td.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
td.best{background:var(--bestbg);color:var(--best);font-weight:600}
.star{color:var(--best);margin-right:2px}
.rank{color:var(--muted);font-size:11px;margin-left:4px}
tr.control td{background:var(--ctrl);color:#6b665a;font-style:italic}
tr.control td.reach{outline:2px solid #d08a00;outline-offset:-2px}
.badge{display:inline-block;font-size:10px;font-style:normal;border-radius:8px;padding:0 6px;margin-left:4px;
border:1px solid #bbb;color:#555;background:#fff}
.badge.pretrained{border-color:#2c7;color:#064}
.badge.scratch{border-color:#c93;color:#743}
.na{color:#8a6d3b}
.status{font-size:12px;color:var(--muted);margin:2px 0}
.model-name{white-space:nowrap}
.cfg{display:block;white-space:normal;font-size:11px;color:var(--muted);max-width:200px}
td.ds{min-width:130px;max-width:190px;overflow-wrap:anywhere}
.sd{display:block;font-size:11px;color:var(--muted)}
td.why{white-space:normal;color:#8a6d3b;font-size:12px;text-align:left}
td.overall[title]{color:var(--muted);font-size:12px}
button.toggle{border:0;background:none;cursor:pointer;padding:0 4px 0 0;color:var(--link);font-size:12px}
tr.provrow td{background:#fafbfc;border-bottom:2px solid var(--line)}
tr.provrow p{margin:2px 0;font-size:12px}
.tablewrap{overflow-x:auto;max-width:100%}
.provenance-ok{background:var(--bestbg);color:var(--best);border:1px solid #9fd6b4;border-radius:6px;padding:8px 14px;margin:10px 0}
.provenance-mixed{background:#fdecea;color:#8a1c12;border:1px solid #f0b0a8;border-radius:6px;padding:8px 14px;margin:10px 0}
.card{background:#f6f8fa;border:1px solid var(--line);border-radius:6px;padding:8px 12px;margin:8px 0;font-size:13px}
.card p{margin:4px 0}
table.defs{width:100%}
table.defs td{font-size:12px}
dl.defs{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;font-size:13px}
dl.defs dt{font-weight:600}
dl.defs dd{margin:0}
details.prov summary{cursor:pointer;font-size:12px;color:var(--muted);white-space:nowrap}
details.prov dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 10px;font-size:12px;margin:6px 0;
max-width:560px}
details.prov dt{font-weight:600}
details.prov dd{margin:0;word-break:break-all}
code{font-size:12px}
.charts,.gallery{display:flex;flex-wrap:wrap;gap:14px;align-items:flex-start}
svg.chart{border:1px solid var(--line);border-radius:4px;background:#fff}
svg .ct{font-size:13px;font-weight:600}
svg .cs{font-size:10px;fill:#6b7680;font-weight:400}
svg .cl,svg .cv{font-size:11px}
svg .bm{fill:#6f9fcf}
svg .bb{fill:#0b6b3a}
svg .bc{fill:#c9c3b4}
svg .eb{stroke:#222;stroke-width:1.2;fill:none}
svg .ax{stroke:#888;stroke-width:1;fill:none}
figure{margin:0;border:1px solid var(--line);border-radius:4px;padding:6px;background:#fff;max-width:460px}
figure img{max-width:100%;height:auto;display:block}
figure.summaryfig{max-width:none;display:inline-block}
figure.summaryfig figcaption{max-width:860px}
table.runs td{overflow-wrap:anywhere}
table.runs code{font-size:11px}
figcaption{font-size:12px;color:var(--muted);margin-top:4px}
section.dataset{border-top:2px solid var(--line);margin-top:22px}
h2{font-size:18px;margin:20px 0 6px}
h3{font-size:15px;margin:16px 0 6px}
.improve{color:var(--best);font-weight:600}
.worsen{color:#a12;font-weight:600}
footer{margin-top:30px;color:var(--muted);font-size:12px;border-top:1px solid var(--line);padding-top:8px}
[hidden]{display:none!important}
"""

JS = """
(function(){
  "use strict";
  var all=function(sel,root){return Array.prototype.slice.call((root||document).querySelectorAll(sel));};
  function provOf(tr){var id=tr.getAttribute("data-id");return id?document.getElementById("prov-"+id):null;}
  function syncProv(tr){
    var p=provOf(tr); if(!p){return;}
    var b=tr.querySelector("button.toggle");
    p.hidden=tr.hidden||!(b&&b.getAttribute("aria-expanded")==="true");
  }
  function applyFilters(){
    var f={};
    all("select[data-filter]").forEach(function(s){f[s.getAttribute("data-filter")]=s.value;});
    var shown=0;
    all("[data-row]").forEach(function(el){
      var ok=Object.keys(f).every(function(k){return !f[k]||el.getAttribute("data-"+k)===f[k];});
      el.hidden=!ok;
      if(ok&&el.tagName==="TR"&&el.closest("table.board")){shown++;}
    });
    all("[data-section]").forEach(function(sec){
      var k=sec.getAttribute("data-section"), v=sec.getAttribute("data-"+k);
      var rows=all("tr[data-row]",sec);
      var empty=rows.length>0&&rows.every(function(r){return r.hidden;});
      sec.hidden=(f[k]&&f[k]!==v)||empty;
    });
    all("tr[data-row][data-id]").forEach(syncProv);
    var c=document.getElementById("shown-count");
    if(c){c.textContent=shown+" row"+(shown===1?"":"s")+" shown";}
  }
  function cellValue(row,idx){
    var c=row.cells[idx];
    if(!c){return "";}
    var v=c.getAttribute("data-v");
    return v===null?c.textContent.trim():v;
  }
  function sortBy(table,th){
    var idx=Array.prototype.indexOf.call(th.parentNode.children,th);
    var num=th.getAttribute("data-sort")==="num";
    var cur=th.getAttribute("aria-sort");
    var dir=cur==="ascending"?"descending":cur==="descending"?"ascending":(th.getAttribute("data-first")||"ascending");
    all("th[aria-sort]",table).forEach(function(h){h.removeAttribute("aria-sort");});
    th.setAttribute("aria-sort",dir);
    var body=table.tBodies[0], rows=Array.prototype.slice.call(body.rows).filter(function(r){return !r.classList.contains("provrow");});
    rows.sort(function(a,b){
      var x=cellValue(a,idx), y=cellValue(b,idx);
      var ex=x===""||(num&&isNaN(parseFloat(x))), ey=y===""||(num&&isNaN(parseFloat(y)));
      if(ex||ey){return ex===ey?0:(ex?1:-1);}
      var c=num?parseFloat(x)-parseFloat(y):x.localeCompare(y);
      return dir==="ascending"?c:-c;
    });
    rows.forEach(function(r){body.appendChild(r);var p=provOf(r);if(p){body.appendChild(p);}});
  }
  all("table.sortable").forEach(function(table){
    all("th[data-sort]",table).forEach(function(th){
      th.tabIndex=0;
      th.addEventListener("click",function(){sortBy(table,th);});
      th.addEventListener("keydown",function(e){if(e.key==="Enter"||e.key===" "){e.preventDefault();sortBy(table,th);}});
    });
  });
  all("button.toggle").forEach(function(b){
    b.addEventListener("click",function(){
      var open=b.getAttribute("aria-expanded")!=="true";
      b.setAttribute("aria-expanded",open?"true":"false");
      b.textContent=open?"▾":"▸";
      syncProv(b.closest("tr"));
    });
  });
  all("select[data-filter]").forEach(function(s){s.addEventListener("change",applyFilters);});
  var reset=document.getElementById("reset-filters");
  if(reset){reset.addEventListener("click",function(){
    all("select[data-filter]").forEach(function(s){s.value="";});applyFilters();});}
  applyFilters();
})();
"""

BASE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }} — cgcbench leaderboard</title>
<style>{{ css }}</style>
</head>
<body>
<header>
<h1>cgcbench leaderboard</h1>
<nav><a href="index.html"{% if page == "index" %} class="here"{% endif %}>Overview</a>
{% for s in suites %}<a href="{{ s.href }}"{% if page == s.name %} class="here"{% endif %}>{{ s.name }}</a>
{% endfor %}<a href="definitions.html"{% if page == "definitions" %} class="here"{% endif %}>definitions</a></nav>
</header>
<p class="disclaimer" id="disclaimer"><strong>These are not the published models' numbers.</strong>
The results below come from models trained from scratch (init <code>scratch</code>), small models and
control methods, run on small data sets by this repository's harness ({% if n_quick %}{{ n_quick }}
of {{ n_rows }} rows{% else %}none{% endif %} with <code>--quick</code> settings; each row's provenance
lists its model settings). They show how the methods compare under these conditions only; do not cite
them as the performance of the published, pretrained models.{% if n_pretrained %} Rows marked
<span class="badge pretrained">pretrained</span> used a checkpoint a user supplied (its sha256 is in
the row's provenance).{% endif %}</p>
{% if provenance_banner %}<p class="{{ 'provenance-ok' if provenance_clean else 'provenance-mixed' }}" id="provenance-banner">{{ provenance_banner }}</p>{% endif %}
{% from "macros.html" import filters as filter_bar %}{{ filter_bar(filter_options) }}
{% block body %}{% endblock %}
<footer>
Built {{ generated_at }} by <code>cgcbench leaderboard build</code> (cgcbench {{ version }}) from
{{ n_records }} record{{ "" if n_records == 1 else "s" }} ({{ sources|join(", ") }}){% if dropped %};
{{ dropped }}{% endif %}. Mean ± sd over seeds (sample sd). Ranks: per dataset and ranked metric among
non-control models, ties averaged; score = mean of the control-scaled ranked metrics, rank = rank by score
(<a href="definitions.html">definitions</a>). Grey column headers are shown, not ranked. Controls are
unranked and shown in grey italics; an orange outline marks a control that reaches the best model's score.
In the rank column: control, n/a (could not run), failed, incomplete (a ranked metric missing), fixture
(dataset never ranked), no controls (no scaling reference) — hover or open ▸ for the reason. {{ row_policy }}
Machine-readable: <a href="results.json">results.json</a> · Markdown: <a href="README.md">README.md</a>.
</footer>
<script>{{ js }}</script>
</body>
</html>
"""

MACROS = """
{% macro filters(options) -%}
<form class="filters" id="filters" onsubmit="return false">
{% for key, values in options.items() %}<label>{{ key }}
<select data-filter="{{ key }}" id="filter-{{ key }}"><option value="">all</option>
{% for v in values %}<option value="{{ v }}">{{ v }}</option>{% endfor %}
</select></label>
{% endfor %}<button type="button" id="reset-filters">reset</button>
<span id="shown-count" class="legend"></span>
<span class="legend">Click a column header to sort. ★ best model per column; #n rank.</span>
</form>
{%- endmacro %}

{% macro prov(p) -%}
<details class="prov" open><summary>{{ p.summary }}</summary><dl>
<dt>dataset</dt><dd>{{ p.dataset }} (version {{ p.version }})</dd>
{% for f, h in p.sha256.items() %}<dt>sha256</dt><dd>{{ f }}: <code>{{ h }}</code></dd>{% endfor %}
<dt>model</dt><dd>{{ p.model }} · init {{ p.init }}</dd>
<dt>checkpoint</dt><dd>{% if p.checkpoints %}{% for c in p.checkpoints %}<code>{{ c }}</code> {% endfor %}
{% else %}none (no checkpoint loaded){% endif %}</dd>
<dt>seeds</dt><dd>{{ p.seeds }}</dd>
<dt>git commit</dt><dd><code>{{ p.git }}</code></dd>
<dt>hardware</dt><dd>{{ p.hardware }}</dd>
<dt>wall time</dt><dd>{{ p.wall }}</dd>
<dt>peak memory</dt><dd>{{ p.memory }}</dd>
<dt>packages</dt><dd>{{ p.packages }}</dd>
<dt>records</dt><dd>{% for r in p.records %}<code>{{ r }}</code><br>{% endfor %}</dd>
</dl></details>
{%- endmacro %}

{% macro board(rows, metrics, show_dataset, table_id) -%}
{% set ncols = (1 if show_dataset else 0) + 5 + metrics|length %}
<div class="tablewrap"><table class="board sortable" id="{{ table_id }}">
<thead><tr>
{% if show_dataset %}<th data-sort="text">dataset</th>{% endif %}
<th data-sort="text">model</th><th data-sort="text">init</th><th data-sort="num" title="number of seeds">seeds</th>
{% for m in metrics %}<th data-sort="num" data-metric="{{ m.name }}" data-first="{{ m.first }}"{% if not m.ranked %} class="unranked"{% endif %}
 title="{{ m.definition }} ({{ 'higher' if m.high else 'lower' }} is better{% if not m.ranked %}; shown, not ranked: {{ m.why_not_ranked }}{% endif %})">{{ m.title }} {{ '↑' if m.high else '↓' }}</th>
{% endfor %}<th data-sort="num" data-metric="score" data-first="descending" title="mean of the ranked metrics, each scaled between the negative (0) and positive (1) controls">score</th>
<th data-sort="num" data-metric="overall_rank" title="rank by score among non-control models">rank</th>
</tr></thead>
<tbody>
{% for r in rows %}<tr data-row data-id="{{ r.id }}" class="{{ 'control' if r.is_control else 'model' }}" data-suite="{{ r.suite }}"
 data-dataset="{{ r.dataset }}" data-model="{{ r.label }}" data-init="{{ r.init }}" data-config="{{ r.config_hash }}">
{% if show_dataset %}<td class="ds"><a href="{{ r.suite_href }}#{{ r.anchor }}">{{ r.dataset }}</a></td>{% endif %}
<td data-v="{{ r.display }}" class="model-name"><button type="button" class="toggle" aria-expanded="false" aria-controls="prov-{{ r.id }}" title="status, scaled scores and provenance">▸</button>{{ r.label }}{% if r.is_control %}<span class="badge">control</span>{% endif %}{% if r.config_tag %}<span class="cfg">[{{ r.config_tag }}]</span>{% endif %}</td>
<td><span class="badge {{ r.init }}">{{ r.init }}</span></td>
<td class="num" data-v="{{ r.n_seeds }}" title="seeds {{ r.seeds }}">{{ r.n_seeds }}</td>
{% if r.all_na and r.unranked %}<td class="why" colspan="{{ metrics|length }}" data-metric="{{ metrics[0].name if metrics else '' }}" data-v="">{{ r.unranked }}</td>
{% else %}{% for c in r.cells %}<td class="num{{ ' best' if c.best }}{{ ' reach' if c.reach }}" data-metric="{{ c.metric }}"
 data-v="{{ c.sort }}"{% if c.title %} title="{{ c.title }}"{% endif %}>{% if c.best %}<span class="star" title="best model">★</span>{% endif %}<span class="val{{ ' na' if c.na }}">{{ c.text }}</span>
{%- if c.rank %}<span class="rank">#{{ c.rank }}</span>{% endif %}{% if c.sd %}<span class="sd">{{ c.sd }}</span>{% endif %}</td>
{% endfor %}{% endif %}<td class="num score" data-v="{{ r.score_sort }}">{{ r.score }}</td>
<td class="num overall" data-v="{{ r.overall_sort }}"{% if r.unranked %} title="not ranked: {{ r.unranked }}"{% endif %}>{{ r.overall }}</td>
</tr>
<tr class="provrow" id="prov-{{ r.id }}" hidden><td colspan="{{ ncols }}">
<p class="status"><b>status</b> {{ r.status }}{% if r.unranked %} · <b>not ranked:</b> {{ r.unranked }}{% endif %}</p>
<p><b>control-scaled scores</b> {{ r.scaled }}{% if r.config_tag %} · <b>configuration</b> {{ r.config_tag }}{% endif %} · <b>configuration hash</b> <code>{{ r.config_hash }}</code></p>
{{ prov(r.prov) }}
</td></tr>
{% endfor %}</tbody>
</table></div>
{%- endmacro %}
"""

INDEX = """{% extends "base.html" %}{% from "macros.html" import board %}
{% block body %}
<h2>Summary across suites</h2>
<figure class="summaryfig">{{ summary_svg }}
<figcaption>Each cell: a method's control-scaled score (mean of its ranked metrics, each scaled so that the
suite's negative control scores 0 and its positive control 1), averaged over the suite's ranked datasets.
{{ scaling_rule }} Metric definitions, dataset cards and method versions: <a href="definitions.html">definitions</a>.</figcaption></figure>
{% if unscored %}<ul class="legend" id="unscored">{% for suite, why in unscored.items() %}<li><b>{{ suite }}</b> has no scores: {{ why }}.</li>{% endfor %}</ul>{% endif %}
<p>Each table lists, per suite, every model on every dataset: the mean ± sd of the suite's metrics over
seeds, the rank of each model per ranked metric within its dataset, its control-scaled score and its rank.
Open ▸ on a row for its status, scaled scores and provenance. Follow a suite's name for dataset cards,
per-dataset plots, ablations and per-run provenance.</p>
{% for s in suites %}<section class="suite" data-section="suite" data-suite="{{ s.name }}" id="suite-{{ s.name }}">
<h2><a href="{{ s.href }}">{{ s.name }}</a></h2>
{% if s.description %}<p class="legend">{{ s.description }} Scaling references — {{ s.references }}.</p>{% endif %}
{{ board(s.rows, s.metrics, true, "board-" ~ s.name) }}
</section>
{% endfor %}
{% endblock %}
"""

SUITE = """{% extends "base.html" %}{% from "macros.html" import board %}
{% block body %}
<h2>{{ suite.name }}</h2>
{% if suite.description %}<p>{{ suite.description }}</p>{% endif %}
<details id="definitions-{{ suite.name }}" class="defs"><summary><b>Metric definitions, directions and sources</b> (also on <a href="definitions.html">definitions</a>)</summary>
<table class="defs" id="metrics-{{ suite.name }}"><thead><tr><th>metric</th><th>direction</th><th>ranked</th><th>definition</th><th>source</th></tr></thead><tbody>
{% for m in suite.metrics %}<tr data-metric="{{ m.name }}"><td><b>{{ m.title }}</b></td><td>{{ 'higher is better ↑' if m.high else 'lower is better ↓' }}</td>
<td>{{ 'ranked' if m.ranked else 'shown, not ranked: ' ~ m.why_not_ranked }}</td><td class="definition">{{ m.definition }}</td>
<td>{% if m.url %}<a href="{{ m.url }}">{{ m.source }}</a>{% else %}{{ m.source }}{% endif %}</td></tr>
{% endfor %}</tbody></table>
</details>
<p class="legend">Scaling references — {{ suite.references }}. {{ scaling_rule }}</p>
<p>Datasets: {% for d in suite.datasets %}<a href="#{{ d.anchor }}">{{ d.name }}</a>{{ ", " if not loop.last }}{% endfor %}</p>
{% for d in suite.datasets %}
<section class="dataset" id="{{ d.anchor }}" data-section="dataset" data-dataset="{{ d.name }}" data-suite="{{ suite.name }}">
<h2>{{ d.name }}</h2>
{% if d.card %}<div class="card dataset-card" data-dataset="{{ d.name }}"><p><b class="card-title">{{ d.card.title }}</b></p>
<p class="card-description">{{ d.card.description }}</p>
<p>Citation: {% if d.card.citation_url %}<a href="{{ d.card.citation_url }}">{{ d.card.citation }}</a>{% else %}{{ d.card.citation or "—" }}{% endif %}
 · licence: {{ d.card.license or "—" }}{% if d.card.link_url %} · <a href="{{ d.card.link_url }}">data</a>{% endif %}{% if d.card.source %} · source: {{ d.card.source }}{% endif %}</p></div>{% endif %}
{% if d.unranked %}<p class="disclaimer">Not ranked: {{ d.unranked }}.</p>{% endif %}
<p class="legend">version {{ d.version }}{% for f, h in d.sha256.items() %} · {{ f }} sha256 <code>{{ h }}</code>{% endfor %}</p>
{{ board(d.rows, suite.metrics, false, "board-" ~ d.anchor) }}
<h3>Metrics per model</h3>
<div class="charts">{% for c in d.charts %}{{ c }}{% endfor %}</div>
{% if d.plots %}<h3>Plots from the runs</h3>
<p class="legend">One run per model (its lowest seed); images are the suite's own artifacts.</p>
{% for kind, figs in d.plots %}<h4>{{ kind }}</h4><div class="gallery">
{% for f in figs %}<figure data-row data-suite="{{ suite.name }}" data-dataset="{{ d.name }}" data-model="{{ f.model }}"
 data-init="{{ f.init }}"><a href="{{ f.src }}"><img src="{{ f.src }}" alt="{{ kind }}: {{ f.model }}, seed {{ f.seed }}"></a>
<figcaption>{{ f.model }} · seed {{ f.seed }}</figcaption></figure>
{% endfor %}</div>
{% endfor %}{% endif %}
<h3>Ablations</h3>
{% if d.ablations %}<table class="ablation sortable" id="ablation-{{ d.anchor }}">
<thead><tr><th data-sort="text">variant</th><th data-sort="text">base</th><th data-sort="text">metric</th>
<th data-sort="num">pairs (seeds)</th><th data-sort="num">base</th><th data-sort="num">variant</th>
<th data-sort="num">Δ variant − base</th><th>95% interval</th></tr></thead><tbody>
{% for a in d.ablations %}<tr data-row data-suite="{{ suite.name }}" data-dataset="{{ d.name }}" data-model="{{ a.variant }}"
 data-init="{{ a.init }}">
<td>{{ a.variant }}</td><td>{{ a.base }}</td><td>{{ a.metric }} {{ '↑' if a.high else '↓' }}</td>
<td class="num" data-v="{{ a.n }}" title="seeds {{ a.seeds }}">{{ a.n }}</td>
<td class="num" data-v="{{ a.base_mean }}">{{ a.base_text }}</td><td class="num" data-v="{{ a.variant_mean }}">{{ a.variant_text }}</td>
<td class="num {{ a.css }}" data-v="{{ a.diff }}">{{ a.diff_text }}</td><td class="num">{{ a.interval }}</td></tr>
{% endfor %}</tbody></table>
<p class="legend">Paired by seed; interval from the t distribution over the paired differences
(none when fewer than two seeds pair up). Green: the interval excludes 0 and the variant is better; red: worse.</p>
{% else %}<p class="legend">No variant of a model in these records has its base model on this dataset
(variants are written <code>model:variant</code>, e.g. <code>cgc:no-graph</code>).</p>{% endif %}
<h3>Runs</h3>
<div class="tablewrap"><table class="runs sortable" id="runs-{{ d.anchor }}"><thead><tr><th data-sort="text">model</th><th data-sort="num">seed</th>
<th data-sort="text">status</th><th data-sort="text">init</th><th>checkpoint sha256</th><th data-sort="text">git commit</th>
<th data-sort="num">wall time (s)</th><th data-sort="num">peak RSS (MB)</th><th data-sort="num">GPU peak (MB)</th><th>hardware</th>
<th>record</th></tr></thead><tbody>
{% for r in d.runs %}<tr data-row data-suite="{{ suite.name }}" data-dataset="{{ d.name }}" data-model="{{ r.model }}"
 data-init="{{ r.init }}" class="{{ 'control' if r.is_control else 'model' }}">
<td>{{ r.display }}</td><td class="num">{{ r.seed }}</td><td>{{ r.status }}</td><td>{{ r.init }}</td>
<td title="{{ r.checkpoint }}"><code>{{ r.checkpoint[:12] }}</code></td><td><code>{{ r.git }}</code></td>
<td class="num" data-v="{{ r.wall_v }}">{{ r.wall }}</td><td class="num" data-v="{{ r.rss_v }}">{{ r.rss }}</td>
<td class="num" data-v="{{ r.gpu_v }}">{{ r.gpu }}</td><td>{{ r.hardware }}</td><td><code>{{ r.record_id }}</code>
{% if r.run_id %}<br><span class="legend">MLflow run {{ r.run_id }}</span>{% endif %}</td></tr>
{% endfor %}</tbody></table></div>
</section>
{% endfor %}
{% endblock %}
"""

DEFINITIONS = """{% extends "base.html" %}
{% block body %}
<h2>How to read the board</h2>
<p>{{ scaling_rule }}</p>
<p>{{ row_policy }}</p>
{% if unranked_datasets %}<p>Datasets shown but never ranked: {% for k, v in unranked_datasets.items() %}<b>{{ k }}</b> — {{ v }}{{ "; " if not loop.last }}{% endfor %}.</p>{% endif %}
<h2>Metrics</h2>
{% for s in suites %}<h3 id="metrics-{{ s.name }}">{{ s.name }}</h3>
<p class="legend">Scaling references — {{ s.references }}.</p>
<table class="defs metric-defs" data-suite="{{ s.name }}"><thead><tr><th>metric</th><th>direction</th><th>ranked</th><th>definition</th><th>source</th></tr></thead><tbody>
{% for m in s.metrics %}<tr data-metric="{{ m.name }}"><td><b>{{ m.title }}</b></td><td>{{ 'higher is better ↑' if m.high else 'lower is better ↓' }}</td>
<td>{{ 'ranked' if m.ranked else 'shown, not ranked: ' ~ m.why_not_ranked }}</td><td class="definition">{{ m.definition }}</td>
<td>{% if m.url %}<a href="{{ m.url }}">{{ m.source }}</a>{% else %}{{ m.source }}{% endif %}</td></tr>
{% endfor %}</tbody></table>
{% endfor %}
<h2>Datasets</h2>
<table class="defs" id="dataset-cards"><thead><tr><th>dataset</th><th>title and description</th><th>citation</th><th>licence</th><th>link</th></tr></thead><tbody>
{% for d in datasets %}<tr data-dataset="{{ d.name }}"><td><b>{{ d.name }}</b><br><span class="legend">version {{ d.version }}</span></td>
<td><b class="card-title">{{ d.title }}</b><br><span class="card-description">{{ d.description }}</span></td>
<td>{% if d.citation_url %}<a href="{{ d.citation_url }}">{{ d.citation }}</a>{% else %}{{ d.citation or "—" }}{% endif %}</td>
<td>{{ d.license or "—" }}</td><td>{% if d.link_url %}<a href="{{ d.link_url }}">data</a>{% else %}{{ d.source or "—" }}{% endif %}</td></tr>
{% endfor %}</tbody></table>
<h2>Methods</h2>
<table class="defs" id="method-cards"><thead><tr><th>model</th><th>library</th><th>versions run</th><th>paper</th><th>repository</th></tr></thead><tbody>
{% for m in methods %}<tr data-model="{{ m.name }}"{% if m.is_control %} class="control"{% endif %}><td><b>{{ m.name }}</b>{% if m.is_control %}<span class="badge">control</span>{% endif %}</td>
<td>{{ m.library }}</td><td>{{ m.versions }}</td>
<td>{% if m.url %}<a href="{{ m.url }}">{{ m.paper or m.url }}</a>{% else %}{{ m.paper or "—" }}{% endif %}</td>
<td>{% if m.repository %}<a href="{{ m.repository }}">{{ m.repository }}</a>{% else %}—{% endif %}</td></tr>
{% endfor %}</tbody></table>
{% endblock %}
"""
