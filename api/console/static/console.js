// sopflow console: draws the Mermaid graphs and uPlot charts of a page, after it loads
// and after every htmx swap. Data comes from <script type="application/json"> blocks
// (never executed), so no inline script is needed and the CSP forbids any.
(function () {
  "use strict";

  function drawGraphs(root) {
    if (!window.mermaid) return;
    var nodes = root.querySelectorAll("pre.mermaid:not([data-processed])");
    if (!nodes.length) return;
    window.mermaid.initialize({ startOnLoad: false, securityLevel: "strict", theme: "neutral" });
    window.mermaid.run({ nodes: nodes }).then(function () {
      document.body.setAttribute("data-graphs-drawn", "true");
    }).catch(function (error) {
      document.body.setAttribute("data-graphs-drawn", "error");
      console.error("mermaid:", error);
    });
  }

  var COLOURS = ["#2458c6", "#a15c00", "#b42318", "#1a7f37", "#7a3fb0"];

  function readData(id) {
    var source = document.getElementById(id);
    return source ? JSON.parse(source.textContent) : null;
  }

  function dailyChart(node, data) {
    var names = Object.keys(data.series);
    var series = [{ label: "day" }].concat(names.map(function (name, i) {
      return { label: name, stroke: COLOURS[i % COLOURS.length], width: 2,
               paths: window.uPlot.paths.stepped({ align: 1 }), points: { show: false } };
    }));
    var columns = [data.days].concat(names.map(function (name) { return data.series[name]; }));
    return new window.uPlot({
      width: node.clientWidth || 600, height: 220, series: series,
      scales: { x: { time: false } },
      axes: [{ label: "day" }, { label: "count" }],
    }, columns, node);
  }

  function monthsChart(node, data) {
    var key = node.getAttribute("data-series");
    var values = data[key].map(function (v) { return v === null ? null : v; });
    var index = data.months.map(function (_, i) { return i; });
    return new window.uPlot({
      width: node.clientWidth || 320, height: 200,
      title: node.getAttribute("data-label"),
      series: [{ label: "month", value: function (_, i) { return i == null ? "" : data.months[i] || ""; } },
               { label: node.getAttribute("data-label"), stroke: COLOURS[0], width: 2,
                 points: { show: true, size: 6 } }],
      scales: { x: { time: false } },
      axes: [{ values: function (_, ticks) { return ticks.map(function (t) { return data.months[t] || ""; }); } }, {}],
    }, [index, values], node);
  }

  function drawCharts(root) {
    if (!window.uPlot) return;
    root.querySelectorAll("[data-chart]:not([data-drawn])").forEach(function (node) {
      var data = readData(node.getAttribute("data-source"));
      if (!data) return;
      var kind = node.getAttribute("data-chart");
      var chart = kind === "daily" ? dailyChart(node, data) : monthsChart(node, data);
      node.setAttribute("data-drawn", "true");
      window.addEventListener("resize", function () {
        chart.setSize({ width: node.clientWidth, height: chart.height });
      });
    });
  }

  function draw(root) {
    drawGraphs(root);
    drawCharts(root);
  }

  document.addEventListener("DOMContentLoaded", function () { draw(document); });
  document.addEventListener("htmx:afterSwap", function (event) { draw(event.detail.target || document); });
})();
