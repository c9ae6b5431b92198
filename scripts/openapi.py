"""Writes docs/openapi.json, the local API's OpenAPI 3.1 document:
`python3 scripts/openapi.py > docs/openapi.json`. A unit test in cli/src/api.rs
keeps its paths equal to the routes the daemon serves; the end-to-end tests
validate every reply against its schemas and drive every route with inputs
generated from it."""
import json
S = lambda **k: k
def obj(props, required=None, extra=False, desc=None):
    o = {"type": "object", "properties": props, "required": list(props) if required is None else required, "additionalProperties": extra}
    if desc: o["description"] = desc
    return o
I = {"type": "integer"}
Str = {"type": "string"}
NStr = {"type": ["string", "null"]}
ref = lambda n: {"$ref": f"#/components/schemas/{n}"}
totals = obj({k: I for k in ["sales","sales_cents","tax_cents","voids","voided_cents","refunds","refunded_cents","net_cents","cash_cents","card_cents"]}, desc="Totals of sales, voids and refunds, in cents.")
cell = obj({"count": I, "cents": I, "qty": I}, desc="Sales counted, net cents, net units (pieces or grams).")
schemas = {
 "Problem": obj({"type": Str, "title": Str, "status": I, "detail": Str,
   "code": {"type": "string", "enum": ["bad_json","invalid_body","bad_query","too_large","unsupported_media_type","method_not_allowed","unauthorized","misdirected","forbidden","rejected","not_found","idempotency_key_required","idempotency_key_reused","busy","damaged","disk_full","unavailable","failure"]},
   "exit_code": {"type": "integer", "enum": [1,3,4,5,6,7]}}, desc="An error (RFC 9457). `code` is stable; `exit_code` is what the command line exits with for the same failure."),
 "Line": obj({"sku": Str, "qty": I, "grams": I, "unit_price_cents": I, "discount_cents": I, "amount_cents": I, "tax_cents": I}, required=["sku","unit_price_cents","discount_cents","amount_cents","tax_cents"]),
 "Sale": obj({"receipt": Str, "kind": {"type": "string", "enum": ["sale","void","refund"]}, "till": Str, "till_id": Str, "day": Str, "hlc": I, "time": Str,
   "lines": {"type": "array", "items": ref("Line")}, "total_cents": I, "tax_cents": I, "tender": {"type": "string", "enum": ["cash","card"]}, "refers_to": Str},
   required=["receipt","kind","till","till_id","day","hlc","time","lines","total_cents","tax_cents","tender"], desc="A sale, void or refund."),
 "LineIn": obj({"sku": Str, "barcode": Str, "qty": {"type": "integer", "minimum": 1, "maximum": 10000}, "grams": {"type": "integer", "minimum": 1, "maximum": 100000}, "discount_cents": {"type": "integer", "minimum": 0}}, required=[], desc="One line: a `sku` or a `barcode` (not both); `qty` pieces (default 1) or `grams` for products sold by weight."),
 "SaleIn": obj({"lines": {"type": "array", "items": ref("LineIn"), "minItems": 1, "maxItems": 500}, "tender": {"type": "string", "enum": ["cash","card"]}}),
 "RefundIn": obj({"lines": {"type": "array", "items": obj({"sku": Str, "qty": {"type": "integer", "minimum": 1}}, required=["sku"])}}),
 "SalesPage": obj({"items": {"type": "array", "items": ref("Sale")}, "next": NStr}, desc="A page: pass `next` as `after` for the following one; null at the end."),
 "Product": obj({"sku": Str, "name": Str, "barcodes": {"type": "array", "items": Str}, "price_cents": I, "unit": {"type": "string", "enum": ["each","kg"]}, "tax_class": Str, "category": Str, "active": {"type": "boolean"}}),
 "ProductIn": obj({"sku": Str, "name": Str, "price_cents": {"type": "integer", "minimum": 0}, "unit": {"type": "string", "enum": ["each","kg"]}, "tax_class": Str, "category": Str, "barcodes": {"type": "array", "items": Str}}, required=["sku","name","price_cents"]),
 "PriceIn": obj({"price_cents": {"type": "integer", "minimum": 0}}),
 "ProductsPage": obj({"items": {"type": "array", "items": ref("Product")}, "next": NStr}),
 "StockLevel": obj({"sku": Str, "on_hand": I, "counted_at": {"type": ["integer","null"]}}),
 "Member": obj({"id": Str, "name": Str, "role": Str, "cert": Str, "revoked": Str, "addr": {}}, required=["id","name","role"]),
 "Totals": totals,
 "ReportCell": cell,
 "SalesReport": obj({"from": Str, "to": Str, "totals": ref("Totals"),
   "by_day": {"type": "object", "additionalProperties": ref("Totals")},
   "by_till": {"type": "object", "additionalProperties": ref("Totals")},
   "by_hour": {"type": "object", "additionalProperties": ref("ReportCell")},
   "by_tender": {"type": "object", "additionalProperties": ref("ReportCell")},
   "by_category": {"type": "object", "additionalProperties": ref("ReportCell")},
   "top_products": {"type": "array", "items": obj({"sku": Str, "count": I, "cents": I, "qty": I})}}),
 "Status": {"type": "object", "required": ["store","store_name","self","tills","sinks","alerts"], "properties": {"store": Str, "store_name": Str, "self": {"type": "object"}, "tills": {"type": "array", "items": {"type": "object"}}, "sinks": {"type": "array", "items": {"type": "object"}}, "alerts": {"type": "array", "items": Str}, "alert_details": {"type": "array", "items": {"type": "object", "required": ["id","kind","severity","subject","message"], "properties": {"id": Str, "kind": Str, "severity": {"type": "string", "enum": ["critical","warning"]}, "subject": NStr, "message": Str}}},
   "verdict": {"type": "string", "description": "One line: is every sale safe, and what needs doing first."},
   "unbacked": {"type": "integer", "description": "This till's changes on no other till and made after its newest backup: what a lost disk would lose now."},
   "stale_since": {"type": ["integer", "null"], "description": "With no daemon running: when (unix ms) it last saw the other tills."}}, "description": "The fields of `tillmesh status --json`."},
 "DashboardCode": {"type": "object", "required": ["code", "url", "expires_in"], "properties": {"code": Str, "url": Str, "expires_in": {"type": "integer", "description": "Seconds the code may be used in"}}},
 "BackupIn": obj({"to": Str, "bundle": {"type": "boolean"}}, required=[]),
 "UsbIn": obj({"dir": Str}),
 "StockIn": obj({"kind": {"type": "string", "enum": ["receive","adjust","count"]}, "qty": I, "reason": Str}, required=["kind","qty"]),
 "ResolveIn": obj({"pick": {"type": "integer", "minimum": 0}}),
 "Result": {"type": "object", "description": "What the command reports with --json."},
 "Listing": {"type": ["array", "object"], "description": "What `tillmesh backup list --json` prints."},
 "Conflict": {"type": "object", "required": ["id","doc","key","policy","values","detected","status"], "properties": {"id": Str, "doc": Str, "key": Str, "policy": {"type": "string", "enum": ["latest-wins","role-priority","manual"]}, "values": {"type": "array", "items": {"type": "object"}}, "detected": I, "status": {"type": "string", "enum": ["decided","pending","resolved"]}, "resolution": Str}, "additionalProperties": False},
 "AuditEntry": {"type": "object", "required": ["till_id","v","seq","prev","hlc","kind","subject","detail","hash","sig"], "properties": {"till_id": Str, "v": I, "seq": I, "prev": Str, "hlc": I, "kind": Str, "subject": Str, "detail": {}, "hash": Str, "sig": Str}},
 "AuditPage": obj({"items": {"type": "array", "items": ref("AuditEntry")}, "next": NStr}, desc="A page: pass `next` (`TILL_ID:SEQ`) as `after` for the following one."),
 "Relays": obj({"relays": {"type": "array", "items": Str}, "certs": {"type": "object", "additionalProperties": Str}}),
 "Sink": obj({"name": Str, "kind": {"type": "string", "enum": ["folder"]}, "path": Str, "keep": Str, "present": {"type": "boolean"}, "free_bytes": {"type": ["integer", "null"]}}, desc="A configured sink, looked at now: `present` is false while its stick is out."),
 "SinkIn": obj({"name": {"type": "string", "pattern": "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$"}, "kind": {"type": "string", "enum": ["folder"]}, "path": Str, "keep": Str}, required=["name", "kind", "path"], desc="A sink to add (or replace): an existing folder by its absolute path; `keep` is a retention policy such as `last=7,daily=7,weekly=4,monthly=12` (the default)."),
 "VerifyIn": obj({"from": Str, "name": Str}, required=[], desc="`from`: a sink's name or an absolute folder (default: the first sink); `name`: only files whose names end with it."),
 "Verified": obj({"damaged": I, "verdicts": {"type": "array", "items": obj({"name": Str, "docs": I, "error": NStr})}}, desc="Every file opened and checked whole: hashes, signature, signer; `error` says what is wrong with a damaged one."),
 "Job": obj({"id": I, "kind": {"type": "string", "enum": ["backup", "usb", "verify"]}, "subject": {"type": "object"}, "state": {"type": "string", "enum": ["running", "finished", "failed"]}, "started_by": {"type": "string", "enum": ["api", "command", "schedule"]}, "started_ms": I, "finished_ms": {"type": ["integer", "null"]}, "step": Str, "done": I, "total": I, "result": {}, "error": NStr}, desc="A backup, a USB or Drive sync, or a verification: what it is doing (`step`, `done` of `total` documents) and how it ended."),
 "BackupMade": {"type": "array", "description": "The files written, one per sink.", "items": obj({"sink": Str, "kind": {"type": "string", "enum": ["snapshot","bundle"]}, "name": Str, "bytes": I, "docs": I, "changes": I})},
}
def problem(desc):
    return {"description": desc, "content": {"application/problem+json": {"schema": ref("Problem")}}}
def ok(schema, desc="OK"):
    return {"description": desc, "content": {"application/json": {"schema": schema}}}
errs = {"400": problem("Bad JSON, query or header"), "401": problem("Wrong or missing token"), "403": problem("This till's role may not do this"), "404": problem("Not found"), "413": problem("Body too large"), "415": problem("Not JSON"), "422": problem("Rejected: invalid value or rule broken; nothing was changed"), "503": problem("The daemon is stopping")}
def op(summary, responses, params=None, body=None, tags=None):
    o = {"summary": summary, "responses": {**responses, **{k: v for k, v in errs.items() if k not in responses}}}
    if params: o["parameters"] = params
    if body: o["requestBody"] = {"required": True, "content": {"application/json": {"schema": ref(body)}}}
    return o
q = lambda name, schema, desc, required=False: {"name": name, "in": "query", "required": required, "schema": schema, "description": desc}
p = lambda name, desc: {"name": name, "in": "path", "required": True, "schema": Str, "description": desc}
day = {"type": "string", "pattern": "^(today|[0-9]{4}-[0-9]{2}-[0-9]{2})$"}
limit = q("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "Page size (default 50)")
after = q("after", Str, "The `next` of the previous page")
paths = {
 "/v1/openapi.json": {"get": op("This document", {"200": ok({"type": "object"})})},
 "/v1/status": {"get": op("Every till of the mesh at a glance (as `tillmesh status --json`)", {"200": ok(ref("Status"))})},
 "/metrics": {"get": op("The till's metrics for Prometheus (OpenMetrics text): sales, changes received by path, sync sessions by peer, path and outcome, bytes by path, gossip deliveries, unreplicated changes and their age, tills online, backup age and failures and quota per sink, alerts active, store size, and iroh's endpoint counters (prefixed iroh_)", {"200": {"description": "OK", "content": {"application/openmetrics-text": {"schema": Str}}}})},
 "/v1/events": {"get": {"summary": "Server-sent events: " + "; ".join([
    "sale.recorded, sale.arrived (data: a Sale)", "sync.started (peer, path, dialled), sync.finished (peer, path, changes, bytes_sent, bytes_received, error)",
    "backup.started/progress/finished/failed", "usb.started/progress/finished/failed, verify.started/progress/finished/failed (job, subject; progress: step, done, total, at most once a second)", "conflict.raised/resolved", "membership.changed",
    "alert.raised/cleared (id, kind, severity, subject, message, since)", "reset (events were missed: re-read)"]) + ". Each event's data is JSON {at_ms, data}. Send Last-Event-ID to get what was missed.",
    "parameters": [{"name": "Last-Event-ID", "in": "header", "required": False, "schema": Str}],
    "responses": {"200": {"description": "The stream", "content": {"text/event-stream": {"schema": Str}}}, "400": errs["400"], "401": errs["401"]}}},
 "/v1/sales": {
   "post": {**op("Record a sale, once per Idempotency-Key", {"201": ok(ref("Sale"), "Recorded"), "200": ok(ref("Sale"), "Recorded before under this key: the same sale"), "409": problem("The key was used for a different sale")}, body="SaleIn"),
            "parameters": [{"name": "Idempotency-Key", "in": "header", "required": True, "schema": {"type": "string", "minLength": 1, "maxLength": 200}, "description": "A new key per sale; the same key on a retry"}]},
   "get": op("Sales, voids and refunds, a page at a time, in (day, time, till) order", {"200": ok(ref("SalesPage"))},
      params=[q("day", day, "One day"), q("from", day, "First day"), q("to", day, "Last day"), q("till", Str, "A till's name or id prefix"),
              q("kind", {"type": "string", "enum": ["sale","void","refund"]}, "Only this kind"), limit, after])},
 "/v1/sales/{receipt}": {"get": op("One sale, void or refund", {"200": ok(ref("Sale"))}, params=[p("receipt", "Like T1-000042")])},
 "/v1/sales/{receipt}/void": {"post": op("Void a whole sale", {"201": ok(ref("Sale"), "The void")}, params=[p("receipt", "The sale")])},
 "/v1/sales/{receipt}/refund": {"post": op("Refund lines of a sale", {"201": ok(ref("Sale"), "The refund")}, params=[p("receipt", "The sale")], body="RefundIn")},
 "/v1/products": {
   "get": op("Products by SKU, a page at a time, or those a barcode scans to", {"200": ok(ref("ProductsPage"))}, params=[q("barcode", Str, "A barcode"), limit, after]),
   "post": op("Add a product", {"201": ok(ref("Product"), "Added")}, body="ProductIn")},
 "/v1/products/import": {"post": {**op("Import a catalog: every row checked first, all applied in one durable write or none (each bad row named by line in `detail`)", {"200": ok(obj({"added": I, "updated": I, "unchanged": I}))}),
    "requestBody": {"required": True, "content": {"text/csv": {"schema": {"type": "string", "description": "Header: sku,name,price,unit,tax_class,category,barcodes,active"}}, "application/json": {"schema": {"type": "array", "items": obj({"sku": Str, "name": Str, "price_cents": I, "unit": {"type": "string", "enum": ["each","kg"]}, "tax_class": Str, "category": Str, "barcodes": {"type": "array", "items": Str}, "active": {"type": "boolean"}}, required=["sku","name","price_cents","unit","tax_class"])}}}}}},
 "/v1/products/{sku}": {"get": op("A product by SKU or barcode", {"200": ok(ref("Product"))}, params=[p("sku", "A SKU or barcode")])},
 "/v1/products/{sku}/price": {"put": op("Set a product's price (manager or back office)", {"200": ok(ref("Product"))}, params=[p("sku", "The SKU")], body="PriceIn")},
 "/v1/stock/{sku}": {"get": op("Stock on hand of a product", {"200": ok(ref("StockLevel"))}, params=[p("sku", "The SKU")]),
   "post": op("Record goods received, a correction (with a reason) or a count; gives the stock on hand after it", {"201": ok(ref("StockLevel"), "Recorded")}, params=[p("sku", "The SKU")], body="StockIn")},
 "/v1/members": {"get": op("The store's tills", {"200": ok({"type": "array", "items": ref("Member")})})},
 "/v1/reports/sales": {"get": op("Totals by day, till, hour (UTC), tender, category and top products over a date range (at most 366 days), from the views", {"200": ok(ref("SalesReport"))},
      params=[q("from", day, "First day", True), q("to", day, "Last day", True)])},
 "/v1/backups": {"post": op("Back up now to every sink, or to one; a job while it runs (GET /v1/jobs)", {"200": ok(ref("BackupMade"))}, body="BackupIn"),
   "get": op("The snapshots and bundles on a sink", {"200": ok(ref("Listing"))}, params=[q("from", Str, "A configured sink's name, or an absolute folder path (default: the first sink)")])},
 "/v1/conflicts": {"get": op("Conflicts waiting for an operator (all seen with all=true)", {"200": ok({"type": "array", "items": ref("Conflict")})}, params=[q("all", {"type": "boolean"}, "Every conflict seen")])},
 "/v1/conflicts/{id}/resolve": {"post": op("Keep one value of a conflict (0 is the one its policy chose)", {"200": ok(ref("Conflict"))}, params=[p("id", "The conflict's id")], body="ResolveIn")},
 "/v1/audit": {"get": op("The audit trail, by till and sequence number, a page at a time", {"200": ok(ref("AuditPage"))}, params=[q("till", Str, "A till's name or id prefix"), limit, q("after", Str, "The `next` of the previous page")])},
 "/v1/relays": {"get": op("The store's relays and their certificate fingerprints", {"200": ok(ref("Relays"))})},
 "/v1/usb/sync": {"post": op("Merge with a folder or USB stick (both ways); a job while it runs", {"200": ok(ref("Result"))}, body="UsbIn")},
 "/v1/backups/verify": {"post": op("Open and check every backup on a sink (or those named)", {"200": ok(ref("Verified"))}, body="VerifyIn")},
 "/v1/sinks": {"get": op("The configured sinks", {"200": ok({"type": "array", "items": ref("Sink")})}),
   "post": op("Add or replace a sink", {"201": ok(ref("Sink"), "Added")}, body="SinkIn")},
 "/v1/sinks/{name}": {"delete": op("Remove a sink from the list (its backups stay where they are)", {"200": ok(obj({"removed": Str}))}, params=[p("name", "The sink's name")])},
 "/v1/jobs": {"get": op("Backups and USB syncs, running and the last ended, oldest first", {"200": ok({"type": "array", "items": ref("Job")})})},
 "/v1/jobs/{id}": {"get": op("One backup or USB sync: its progress, or how it ended", {"200": ok(ref("Job"))}, params=[p("id", "The job's id (in its events)")])},
 "/v1/dashboard/codes": {"post": op("A one-time code (valid 2 minutes, once) and the dashboard's address with it, as `tillmesh dashboard` prints", {"200": ok(ref("DashboardCode"))})},
 "/dashboard/session": {"post": {**op("Trade a one-time code from `POST /v1/dashboard/codes` for a dashboard session cookie (`tillmesh_session`, HttpOnly, SameSite=Strict, 12 h), which may read `GET /v1/status` and `GET /v1/events` only",
    {"204": {"description": "Signed in: the cookie is set"}, "401": problem("The code was used already or has expired")}), "security": [],
    "requestBody": {"required": True, "content": {"application/json": {"schema": obj({"code": Str}, required=["code"])}}}}},
}
def asset(summary, media):
    return {"get": {**op(summary, {"200": {"description": "OK", "content": {media: {"schema": Str}}}}), "security": []}}
paths.update({
 "/": asset("The web dashboard (no token: its data needs a dashboard session)", "text/html"),
 "/dashboard.js": asset("The dashboard's script", "text/javascript"),
 "/dashboard.css": asset("The dashboard's style sheet", "text/css"),
 "/sw.js": asset("The dashboard's service worker (keeps the page for when the daemon is down)", "text/javascript"),
 "/manifest.webmanifest": asset("The dashboard's web app manifest", "application/manifest+json"),
 "/icon.svg": asset("The dashboard's icon", "image/svg+xml"),
})
doc = {"openapi": "3.1.0",
 "info": {"title": "Tillmesh local API", "version": "1",
   "description": "The till daemon's API for POS apps on the same machine: 127.0.0.1 on the port in HOME/api.json, `Authorization: Bearer TOKEN` from the same file. JSON in and out; errors are application/problem+json."},
 "servers": [{"url": "http://127.0.0.1:{port}", "variables": {"port": {"default": "0", "description": "`port` in HOME/api.json"}}}],
 "security": [{"bearer": []}],
 "paths": paths,
 "components": {"schemas": schemas, "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}}}
print(json.dumps(doc, indent=2))
