"""The printable receipt page (server-rendered HTML, inline CSS, inline SVG QR: prints without script
or network). Amounts are fen rendered as yuan text; nothing here does arithmetic on money."""

from __future__ import annotations

import datetime as dt
from html import escape

from edge.settle import yuan

from .receipts import qr_svg

CSS = """
body{font-family:"Noto Sans CJK SC","WenQuanYi Micro Hei","Microsoft YaHei",sans-serif;margin:0;padding:12px;
 max-width:420px;color:#000;background:#fff;font-size:15px}
h1{font-size:18px;text-align:center;margin:4px 0}
.tag{display:block;text-align:center;font-weight:bold;padding:4px;border:2px solid #000;margin:6px 0}
table{width:100%;border-collapse:collapse}td{padding:2px 0;vertical-align:top}td.r{text-align:right;white-space:nowrap}
.sum td{border-top:1px dashed #000;font-weight:bold}.qr{text-align:center}.qr svg{width:160px;height:160px}
.small{font-size:12px;color:#333;word-break:break-all}
@media print{button{display:none}body{padding:0}}
"""


def render(view: dict) -> str:
    s = view.get("setlinfo", {})
    t = dt.datetime.fromtimestamp(view["time_ms"] / 1000, dt.timezone(dt.timedelta(hours=8)))
    rows = "".join(f"<tr><td>{escape(str(l['name']))}<div class=small>{escape(l['med_list_codg'])}</div></td>"
                   f"<td class=r>{escape(str(l['cnt']))} × ¥{yuan(int(l['pric']))}<br>"
                   f"¥{yuan(int(l['det_item_fee_sumamt']))}</td></tr>" for l in view["lines"])
    tag = escape(view.get("mode_zh", ""))
    if view.get("claim_no"):
        tag += f"<br>待审核，理赔号 {escape(view['claim_no'])}<br>原因：{escape(view.get('cause_zh', ''))}"
    money = [("费用总额", s.get("medfee_sumamt")), ("统筹基金支付", s.get("fund_pay_sumamt")),
             ("个人账户支付", s.get("acct_pay")), ("现金支付", s.get("psn_cash_pay"))]
    if s.get("balc") is not None:
        money.append(("账户余额", s["balc"]))
    mrows = "".join(f"<tr{' class=sum' if i == 0 else ''}><td>{k}</td><td class=r>¥{yuan(int(v))}</td></tr>"
                    for i, (k, v) in enumerate(money) if v is not None)
    cancel = script = ""
    if view["kind"] == "settlement":
        # Cancel (撤销) journals a new entry; the receipt of the cancellation replaces this page.
        cancel = '<button id="cancel" type="button">撤销本次结算</button>'
        script = (f"<script>document.getElementById('cancel').onclick=async()=>{{"
                  f"if(!confirm('确认撤销流水号 {view['seq']} 的结算？'))return;"
                  f"const r=await fetch('/api/settlements/{view['seq']}/cancel',{{method:'POST',"
                  f"headers:{{'Content-Type':'application/json'}},body:JSON.stringify({{reason:'柜台撤销'}})}});"
                  f"const d=await r.json();if(r.ok)location.href=d.receipt_url;else alert(d.error.zh);}};</script>")
    svg = qr_svg(view["qr"]).decode("utf-8")
    svg = svg[svg.index("<svg"):]
    return f"""<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1"><title>结算凭证 {view['seq']}</title>
<style>{CSS}</style></head><body>
<h1>医疗保障结算凭证</h1><div class="tag" id="mode">{tag}</div>
<table>{rows}</table><table>{mrows}</table>
<p class="small">{escape(view['kind_zh'])} · {t:%Y-%m-%d %H:%M}<br>设备 {escape(view['device'])} · 流水号 <b id="seq">{view['seq']}</b>
<br>校验码 <b id="digest">{escape(view['digest'])}</b></p>
<div class="qr">{svg}</div><p class="small">{escape(view['qr'])}</p>
<button onclick="window.print()">打印</button> {cancel} <a href="/">返回</a>
{script}</body></html>"""
