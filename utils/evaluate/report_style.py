"""The style sheet of the HTML score report (inline, so the page needs no network)."""

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:16px 20px;color:#222;
background:#f7f7f7}
h1{font-size:1.45em;margin:0 0 4px}
h2{font-size:1.15em;margin:26px 0 8px;border-bottom:1px solid #ccc;padding-bottom:3px}
.meta{color:#555;margin:0 0 10px;font-size:14px}
.note{color:#555;font-size:13px;margin:6px 0}
table{border-collapse:collapse;font-size:14px;background:#fff;margin-bottom:6px}
th,td{border:1px solid #ddd;padding:3px 10px;text-align:right;font-variant-numeric:tabular-nums}
th:first-child,td:first-child{text-align:left}
thead th{background:#eee}
table.headline td{font-size:20px;font-weight:600;text-align:center;padding:4px 18px}
table.headline th{text-align:center}
.plots{display:flex;flex-wrap:wrap;gap:14px;align-items:flex-start}
.plots img{max-width:100%;height:auto;max-height:420px;border:1px solid #ddd;background:#fff}
.legend{font-size:13px;margin:6px 0 10px}
.legend span{display:inline-flex;align-items:center;margin-right:14px;white-space:nowrap}
.swatch{display:inline-block;width:13px;height:13px;border:1px solid #777;margin-right:5px}
nav.pages{margin:10px 0;font-size:14px}
nav.pages a,nav.pages strong{margin-right:7px}
.gallery{display:flex;flex-wrap:wrap;gap:8px}
figure.case{margin:0;background:#fff;border:1px solid #ddd;border-radius:4px;padding:4px}
.panels{display:flex;gap:2px}
.panels img{background:#000}
.panels img.up{image-rendering:pixelated}
figcaption{font-size:12.5px;margin-top:4px;max-width:390px;overflow-wrap:anywhere}
.rank{color:#777}
.dice{display:inline-block;min-width:3.4em;text-align:center;border-radius:3px;padding:0 4px;font-weight:600;color:#fff}
.bad{background:#c0392b}.mid{background:#d68910}.good{background:#1e8449}.none{background:#8a8a8a}
"""
