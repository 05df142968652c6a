"""OpenAPI 3.1 description of the local counter API, served at /openapi.json.

Kept as Python data next to the routes (tests/counter/test_openapi.py fails when a route is missing
here or documented but not served)."""

from __future__ import annotations

FEN = {"type": "integer", "minimum": 0, "description": "integer fen (1/100 yuan)"}
ERROR = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "required": ["code", "message", "zh"],
    "properties": {"code": {"type": "string", "description": "stable code, e.g. unknown_item, card_removed"},
                   "message": {"type": "string", "description": "English: what happened and what to do"},
                   "zh": {"type": "string", "description": "Chinese, for the clerk"},
                   "field": {"type": "string", "description": "the request field at fault (bad input)"},
                   "cause": {"type": "string", "description": "full_payment_required: the claim cause"},
                   "tries_left": {"type": "integer", "description": "wrong_pin: PIN tries left on the card"}}}}}
ITEM = {"type": "object", "required": ["med_list_codg"], "properties": {
    "med_list_codg": {"type": "string", "description": "national item code (also accepted as `code`)"},
    "cnt": {"type": "string", "description": "count as exact decimal text, > 0, at most 6 places (default \"1\")",
            "example": "2"},
    "pric": {"type": "integer", "minimum": 0, "description": "unit price in fen; default: the catalogue price"}}}
VISIT = {"type": "object", "required": ["items"], "properties": {
    "req": {"type": "string", "maxLength": 64, "description": "caller's unique id; required for settle/claim: a "
                                                              "repeated submit returns the first receipt"},
    "reader": {"type": "string", "description": "PC/SC reader (optional when one card is present)"},
    "card_id": {"type": "string", "description": "card identification code the clerk saw; checked again before "
                                                 "journaling (card_changed)"},
    "keyed_in": {"type": "object", "description": "damaged card: number and social security number typed in",
                 "properties": {"card_no": {"type": "string"}, "certno": {"type": "string"}}},
    "med_type": {"type": "string", "default": "11", "description": "11 outpatient, 13 emergency, 14 chronic, 41 pharmacy"},
    "acct_used_flag": {"type": "boolean", "default": False, "description": "patient agrees to pay from the account "
                                                                          "(needs pin)"},
    "chronic_code": {"type": "string"},
    "observation": {"type": "boolean", "default": False, "description": "emergency observation: full payment"},
    "items": {"type": "array", "minItems": 1, "maxItems": 500, "items": ITEM},
    "pin": {"type": "string", "pattern": "^[0-9]{4,12}$", "description": "card PIN, verified on the card"}}}
SETLINFO = {"type": "object", "properties": {k: FEN for k in (
    "medfee_sumamt", "fulamt_ownpay_amt", "overlmt_selfpay", "preselfpay_amt", "inscp_scp_amt", "act_pay_dedc",
    "hifp_pay", "fund_pay_sumamt", "acct_pay", "psn_cash_pay")} | {"balc": {"type": "integer"}}}
DECISION = {"type": "object", "properties": {
    "mode": {"enum": ["online", "offline", "full_payment", "refused"]},
    "cause": {"type": ["string", "null"], "description": "offline_limit | pending_review | arrears | card_unreadable | "
                                                        "emergency_observation, or a refusal code"},
    "detail": {"type": "string"}, "zh": {"type": "string"},
    "acct_limit": {"type": ["integer", "null"]},
    "limits": {"type": "object", "description": "each offline limit checked: [value, limit]"}}}
QUOTE = {"type": "object", "properties": {"mode": DECISION["properties"]["mode"], "decision": DECISION,
                                          "estimate": {"type": "boolean", "description": "online: the centre's answer "
                                                       "at settle is final"},
                                          "needs_pin": {"type": "boolean"}, "setlinfo": SETLINFO,
                                          "lines": {"type": "array"}, "reasons": {"type": "array"},
                                          "card": {"type": "object"}, "person": {"type": ["object", "null"]}}}
RECEIPT = {"type": "object", "required": ["seq", "digest", "kind", "qr"], "properties": {
    "seq": {"type": "integer", "description": "journal sequence number"},
    "device": {"type": "string"}, "digest": {"type": "string", "description": "12-character receipt digest"},
    "kind": {"enum": ["settlement", "claim", "cancel"]}, "mode": {"type": "string"}, "mode_zh": {"type": "string"},
    "claim_no": {"type": "string", "description": "claims only: <device>-<seq>"},
    "cause": {"type": "string"}, "qr": {"type": "string", "description": "SSJ1:<device>:<seq>:<digest>"},
    "receipt_url": {"type": "string"}, "qr_url": {"type": "string"}, "setlinfo": SETLINFO, "lines": {"type": "array"}}}


def _json(schema) -> dict:
    return {"content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict:
    text = {403: "not from this computer", 404: "not found", 409: "card problem, refusal or full payment required",
            415: "body is not JSON", 422: "bad input (says which field)", 503: "journal cannot be written / no data yet"}
    return {str(c): {"description": text[c], **_json(ERROR)} for c in codes}


def _post(summary: str, body, answer, *codes: int) -> dict:
    return {"post": {"summary": summary, "requestBody": {"required": True, **_json(body)},
                     "responses": {"200": {"description": "ok", **_json(answer)}, **_errors(403, 415, 422, *codes)}}}


SEQ = [{"name": "seq", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}]


def spec() -> dict:
    return {
        "openapi": "3.1.0",
        "info": {"title": "Counter settlement agent - local API", "version": "1",
                 "description": "JSON API of the counter daemon for HIS/POS integration. Answers on 127.0.0.1 only "
                                "(other peers and Host names get 403). Money is integer fen. Errors: "
                                "{\"error\": {\"code\", \"message\", \"zh\", ...}}. See docs/counter.md."},
        "servers": [{"url": "http://127.0.0.1:8765"}],
        "paths": {
            "/api/status": {"get": {"summary": "online/offline, backlog size and age, cache versions and ages, journal",
                                    "responses": {"200": {"description": "status", **_json({"type": "object"})}}}},
            "/api/card": {"get": {"summary": "the card in the reader: identity, person snapshot, notices from the centre",
                                  "parameters": [{"name": "reader", "in": "query", "schema": {"type": "string"}}],
                                  "responses": {"200": {"description": "card status", **_json({"type": "object"})}}}},
            "/api/card/simulate": {
                "post": {"summary": "demo only (simulated card desk): put a card in",
                         "requestBody": _json({"type": "object", "properties": {"card_id": {"type": "string"},
                                                                                "certno": {"type": "string"},
                                                                                "psn_name": {"type": "string"}}}),
                         "responses": {"200": {"description": "card status"}, **_errors(404)}},
                "delete": {"summary": "demo only: take the card out", "responses": {"200": {"description": "ok"}}}},
            "/api/items": {"get": {"summary": "item search by code prefix, pinyin initials (amxl) or part of the name",
                                   "parameters": [{"name": "q", "in": "query", "schema": {"type": "string", "maxLength": 64}},
                                                  {"name": "limit", "in": "query",
                                                   "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}}],
                                   "responses": {"200": {"description": "matches", **_json({"type": "object", "properties": {
                                       "items": {"type": "array", "items": {"type": "object"}}}})}, **_errors(422)}}},
            "/api/presettle": _post("the split and the decision (online/offline/full payment), nothing journaled",
                                    VISIT, QUOTE, 409, 503),
            "/api/settle": _post("settle and journal (durable before the answer); PIN verified on the card when the "
                                 "account pays", VISIT, RECEIPT, 409, 503),
            "/api/claim": _post("full-payment claim (全额垫付) when settle answered full_payment_required or the "
                                "local decision is full payment", VISIT, RECEIPT, 409, 503),
            "/api/settlements/{seq}/cancel": {"post": {
                "summary": "cancel (撤销) a settlement of this device with a new journal entry",
                "parameters": SEQ,
                "requestBody": _json({"type": "object", "properties": {"reason": {"type": "string"}}}),
                "responses": {"200": {"description": "cancel receipt", **_json(RECEIPT)}, **_errors(404, 422, 503)}}},
            "/api/receipt/{seq}": {"get": {"summary": "receipt rebuilt from the journal entry", "parameters": SEQ,
                                           "responses": {"200": {"description": "receipt", **_json(RECEIPT)},
                                                         **_errors(404, 422)}}},
            "/api/receipt/{seq}/qr.svg": {"get": {"summary": "the receipt's QR code (SVG)", "parameters": SEQ,
                                                  "responses": {"200": {"description": "SVG image",
                                                                        "content": {"image/svg+xml": {}}}}}},
            "/receipt/{seq}": {"get": {"summary": "printable receipt page (HTML)", "parameters": SEQ,
                                       "responses": {"200": {"description": "HTML", "content": {"text/html": {}}}}}},
            "/": {"get": {"summary": "the counter page (HTML)",
                          "responses": {"200": {"description": "HTML", "content": {"text/html": {}}}}}},
            "/openapi.json": {"get": {"summary": "this document", "responses": {"200": {"description": "OpenAPI"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics (text format 0.0.4): settlements by mode, offline "
                                            "share, backlog, card errors (see docs/operations.md)",
                                 "responses": {"200": {"description": "metrics", "content": {"text/plain": {}}}}}},
        },
    }
