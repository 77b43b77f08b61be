// The timeline's drawing and interaction (see checker/visualize.py for what it shows and why).
// Reads the JSON in <script id="data">; no network, no libraries. Op rows are arrays:
// [call s, return s | null, process, words, linearization # (or -1), state after, point s | null, flag]
// flag: 0 plain, 1 in the minimal illegal sub-history, 2 could not be placed next.
"use strict";
(function () {
  const D = JSON.parse(document.getElementById("data").textContent);
  const canvas = document.getElementById("tl"), ctx = canvas.getContext("2d");
  const tip = document.getElementById("tip"), chooser = document.getElementById("key");
  const LEFT = 8, TOP = 34, LANE = 18, AXIS = 26;
  let key = null, lay = null, view = [0, 1], drag = null, hovered = -1;

  function layout(k) {
    // Lanes: each op on the first lane free at its invoke. Unknown outcomes are laid out (and
    // drawn) as long as the key's longest known op, so they never hold a lane to the end.
    const ops = k.ops, idx = ops.map((_, i) => i).sort((a, b) => ops[a][0] - ops[b][0]);
    let longest = 0;
    for (const o of ops) if (o[1] !== null) longest = Math.max(longest, o[1] - o[0]);
    const unknownLen = Math.max(longest, (D.end || 1) / 400);
    const laneEnd = [], lane = new Int32Array(ops.length), end = new Float64Array(ops.length);
    for (const i of idx) {
      const o = ops[i];
      end[i] = o[1] === null ? o[0] + unknownLen : o[1];
      let l = laneEnd.findIndex((t) => t < o[0]);
      if (l < 0) { l = laneEnd.length; laneEnd.push(0); }
      laneEnd[l] = end[i]; lane[i] = l;
    }
    let t0 = Infinity, t1 = -Infinity;
    for (let i = 0; i < ops.length; i++) { t0 = Math.min(t0, ops[i][0]); t1 = Math.max(t1, end[i]); }
    if (!isFinite(t0)) { t0 = 0; t1 = D.end || 1; }
    const pad = Math.max((t1 - t0) * 0.02, 1e-4);
    return { lane, end, lanes: laneEnd.length, full: [Math.max(0, t0 - pad), t1 + pad], order: idx,
             placed: ops.filter((o) => o[4] > 0).length };
  }

  function choose(i) {
    key = D.keys[i]; lay = layout(key); view = lay.full.slice(); chooser.value = String(i);
    const bad = key.ops.filter((o) => o[7] === 2).length;
    document.getElementById("keyinfo").textContent = `${key.ops.length} operations, ${lay.lanes} lanes, ` +
      `verdict ${key.valid === false ? "INVALID" : key.valid}` + (key.reason ? ` (${key.reason})` : "") +
      (bad ? `, ${bad} could not be placed` : "") + (lay.placed ? `, ${lay.placed} linearized` : "");
    draw();
  }

  const x = (t) => LEFT + (canvas.clientWidth - 2 * LEFT) * (t - view[0]) / (view[1] - view[0]);
  const tAt = (px) => view[0] + (px - LEFT) * (view[1] - view[0]) / (canvas.clientWidth - 2 * LEFT);

  function niceStep(span) {
    const raw = span / 10, p = Math.pow(10, Math.floor(Math.log10(raw)));
    return [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw);
  }

  let hatch = null;
  function pattern() {
    if (hatch) return hatch;
    const c = document.createElement("canvas"); c.width = c.height = 6;
    const g = c.getContext("2d"); g.fillStyle = "#fff"; g.fillRect(0, 0, 6, 6);
    g.strokeStyle = "#f0b860"; g.lineWidth = 2; g.beginPath(); g.moveTo(0, 6); g.lineTo(6, 0); g.stroke();
    hatch = ctx.createPattern(c, "repeat"); return hatch;
  }

  function draw() {
    const dpr = window.devicePixelRatio || 1, w = canvas.clientWidth;
    const h = TOP + Math.max(lay.lanes, 1) * LANE + AXIS;
    canvas.style.height = h + "px"; canvas.width = w * dpr; canvas.height = h * dpr;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0); ctx.clearRect(0, 0, w, h); ctx.font = "11px monospace";
    const bottom = h - AXIS;
    for (const [name, color, a, b] of D.faults) {  // fault intervals across every lane
      if (b < view[0] || a > view[1]) continue;
      ctx.globalAlpha = 0.35; ctx.fillStyle = color;
      ctx.fillRect(x(a), TOP - 14, Math.max(x(b) - x(a), 1), bottom - TOP + 14);
      ctx.globalAlpha = 1; ctx.fillStyle = "#555"; ctx.fillText(name, Math.max(x(a), LEFT) + 2, TOP - 4);
    }
    ctx.fillStyle = "#8a5a00";
    for (const [t] of D.nemesis) if (t >= view[0] && t <= view[1]) ctx.fillRect(x(t) - 1, TOP - 26, 2, 8);
    const ops = key.ops;
    for (let i = 0; i < ops.length; i++) {
      const o = ops[i], a = o[0], b = lay.end[i];
      if (b < view[0] || a > view[1]) continue;
      const x0 = x(a), x1 = Math.max(x(b), x0 + (o[7] ? 7 : 2)), y = TOP + lay.lane[i] * LANE;
      ctx.fillStyle = o[7] === 2 ? "#e05a5a" : o[1] === null ? pattern() : o[4] > 0 ? "#7cc48a" : "#9bbbe0";
      ctx.fillRect(x0, y + 2, x1 - x0, LANE - 5);
      if (o[1] === null) { ctx.fillStyle = "#a06000"; ctx.fillText("?", x1 + 2, y + 12); }
      if (o[7] === 1 || o[7] === 2) { ctx.strokeStyle = "#000"; ctx.lineWidth = 2; ctx.strokeRect(x0, y + 2, x1 - x0, LANE - 5); }
      if (i === hovered) { ctx.strokeStyle = "#1a4fd0"; ctx.lineWidth = 2; ctx.strokeRect(x0 - 1, y + 1, x1 - x0 + 2, LANE - 3); }
      if (o[6] !== null && x1 - x0 >= 8) { ctx.fillStyle = "#000"; ctx.fillRect(x(o[6]) - 1, y, 2, LANE - 1); }  // room for a tick
      if (x1 - x0 > 70) {
        ctx.save(); ctx.beginPath(); ctx.rect(x0, y, x1 - x0, LANE); ctx.clip();
        ctx.fillStyle = "#111"; ctx.fillText(o[3], x0 + 4, y + 12); ctx.restore();
      }
    }
    ctx.strokeStyle = "#999"; ctx.lineWidth = 1; ctx.beginPath(); ctx.moveTo(LEFT, bottom + 2); ctx.lineTo(w - LEFT, bottom + 2); ctx.stroke();
    const step = niceStep(view[1] - view[0]); ctx.fillStyle = "#444"; ctx.textAlign = "center";
    for (let t = Math.ceil(view[0] / step) * step; t <= view[1]; t += step) {
      ctx.fillRect(x(t), bottom + 2, 1, 5);
      ctx.fillText(D.unit === "s" ? +t.toFixed(6) + "s" : "#" + Math.round(t), x(t), bottom + 18);
    }
    ctx.textAlign = "left";
  }

  function opAt(px, py) {
    const l = Math.floor((py - TOP) / LANE);
    if (l < 0 || l >= lay.lanes) return -1;
    const t = tAt(px), slack = (view[1] - view[0]) * 3 / canvas.clientWidth;
    for (let i = 0; i < key.ops.length; i++)
      if (lay.lane[i] === l && key.ops[i][0] - slack <= t && t <= lay.end[i] + slack) return i;
    return -1;
  }

  function describe(o) {
    const at = (t, digits) => D.unit === "s" ? t.toFixed(digits) + "s" : "event " + Math.round(t);
    const when = `invoked ${at(o[0], 3)}, ` + (o[1] === null ? "outcome unknown (info: may take effect any time after its invoke, or never)" : `returned ${at(o[1], 3)}`);
    const lin = o[4] > 0 ? `linearized #${o[4]} of ${lay.placed}, at ${at(o[6], 4)}\nstate after: ${o[5]}`
      : o[7] === 2 ? "could not be linearized next after the longest prefix" : "not in the checker's linearization";
    return `${o[3]}\nprocess ${o[2]}; ${when}\n${lin}` + (o[7] ? "\npart of the minimal illegal sub-history" : "");
  }

  canvas.addEventListener("mousemove", (e) => {
    const r = canvas.getBoundingClientRect(), px = e.clientX - r.left, py = e.clientY - r.top;
    if (drag) {
      const dt = (drag.px - px) * (view[1] - view[0]) / (canvas.clientWidth - 2 * LEFT);
      view = [drag.view[0] + dt, drag.view[1] + dt]; draw(); return;
    }
    const i = opAt(px, py);
    if (i !== hovered) { hovered = i; draw(); }
    if (i < 0) { tip.style.display = "none"; return; }
    tip.textContent = describe(key.ops[i]); tip.style.display = "block";
    tip.style.left = Math.min(e.clientX + 14, window.innerWidth - 420) + "px"; tip.style.top = (e.clientY + 14) + "px";
  });
  canvas.addEventListener("mouseleave", () => { tip.style.display = "none"; hovered = -1; draw(); });
  canvas.addEventListener("mousedown", (e) => { drag = { px: e.clientX - canvas.getBoundingClientRect().left, view: view.slice() }; });
  window.addEventListener("mouseup", () => { drag = null; });
  canvas.addEventListener("wheel", (e) => {
    e.preventDefault();
    const t = tAt(e.clientX - canvas.getBoundingClientRect().left), f = e.deltaY > 0 ? 1.25 : 0.8;
    view = [t - (t - view[0]) * f, t + (view[1] - t) * f]; draw();
  }, { passive: false });
  canvas.addEventListener("dblclick", () => { view = lay.full.slice(); draw(); });
  document.getElementById("reset").addEventListener("click", () => { view = lay.full.slice(); draw(); });
  document.getElementById("jump").addEventListener("click", () => {
    const i = D.keys.findIndex((k) => k.valid === false);
    if (i < 0) return;
    if (key !== D.keys[i]) choose(i);
    const bad = key.ops.map((o, j) => j).filter((j) => key.ops[j][7] > 0);
    const a = Math.min(...bad.map((j) => key.ops[j][0])), b = Math.max(...bad.map((j) => lay.end[j]));
    const pad = Math.max((b - a) * 0.3, 1e-3); view = [a - pad, b + pad]; draw();
  });
  chooser.addEventListener("change", () => choose(+chooser.value));
  window.addEventListener("resize", () => draw());
  D.keys.forEach((k, i) => {
    const o = document.createElement("option"); o.value = String(i);
    o.textContent = `${k.name}: ${k.valid === false ? "INVALID" : k.valid === true ? "valid" : "unknown"} (${k.ops.length} ops)`;
    chooser.appendChild(o);
  });
  document.getElementById("jump").disabled = !D.keys.some((k) => k.valid === false);
  // For tests and the curious: where an op is drawn, in viewport pixels.
  window.raftlabTimeline = {
    keys: () => D.keys.map((k) => k.name), current: () => key && key.name, view: () => view.slice(),
    opCenter(i) {
      const r = canvas.getBoundingClientRect(), o = key.ops[i];
      return { x: r.left + (Math.max(x(o[0]), LEFT) + Math.min(x(lay.end[i]), canvas.clientWidth - LEFT)) / 2,
               y: r.top + TOP + lay.lane[i] * LANE + LANE / 2 };
    },
  };
  if (D.keys.length) choose(0);
  else document.getElementById("keyinfo").textContent = "no client operations in this history";
})();
