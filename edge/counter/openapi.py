"""OpenAPI 3.1 description of the local counter API, served at /openapi.json.

Request bodies and query parameters are generated from the pydantic models the API validates with
(:mod:`edge.counter.requests`): one definition, so the document cannot drift from what is accepted.
The answers are described by the models below (documentation only: the service builds the answers).
tests/counter/test_surface.py fails when a route is missing here or documented but not served.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from .requests import CancelBody, ItemsQuery, SimulatedCard, VisitBody

Fen = int  # integer fen; the schema says so through the field descriptions below
REF = "#/components/schemas/{model}"


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow")
    code: str = Field(description="stable code, e.g. unknown_item, card_removed")
    message: str = Field(description="English: what happened and what to do")
    zh: str = Field(description="Chinese, for the clerk")
    field: str | None = Field(None, description="the request field at fault (bad input)")
    cause: str | None = Field(None, description="full_payment_required: the claim cause")
    tries_left: int | None = Field(None, description="wrong_pin: PIN tries left on the card")


class Error(BaseModel):
    """Every refusal: ``{"error": {"code", "message", "zh", ...}}`` with a 4xx/5xx status."""

    error: ErrorDetail


class Setlinfo(BaseModel):
    """The split, all integer fen (1/100 yuan); medfee_sumamt = fund + account + cash."""

    model_config = ConfigDict(extra="allow")
    medfee_sumamt: Fen | None = Field(None, ge=0)
    fulamt_ownpay_amt: Fen | None = Field(None, ge=0)
    overlmt_selfpay: Fen | None = Field(None, ge=0)
    preselfpay_amt: Fen | None = Field(None, ge=0)
    inscp_scp_amt: Fen | None = Field(None, ge=0)
    act_pay_dedc: Fen | None = Field(None, ge=0)
    hifp_pay: Fen | None = Field(None, ge=0)
    fund_pay_sumamt: Fen | None = Field(None, ge=0)
    acct_pay: Fen | None = Field(None, ge=0)
    psn_cash_pay: Fen | None = Field(None, ge=0)
    balc: Fen | None = Field(None, description="account balance after the visit (fen)")


Mode = Literal["online", "offline", "full_payment", "refused"]


class Decision(BaseModel):
    model_config = ConfigDict(extra="allow")
    mode: Mode
    cause: str | None = Field(None, description="offline_limit | pending_review | arrears | card_unreadable | "
                                                "emergency_observation, or a refusal code")
    detail: str | None = None
    zh: str | None = None
    acct_limit: Fen | None = None
    limits: dict[str, Any] | None = Field(None, description="each offline limit checked: [value, limit]")


class Quote(BaseModel):
    """/api/presettle: the split and the decision; nothing is journaled."""

    model_config = ConfigDict(extra="allow")
    mode: Mode
    decision: Decision
    estimate: bool = Field(description="online: the centre's answer at settle is final")
    needs_pin: bool
    setlinfo: Setlinfo
    lines: list[dict[str, Any]] = []
    reasons: list[dict[str, Any]] = []
    card: dict[str, Any] | None = None
    person: dict[str, Any] | None = None


class Receipt(BaseModel):
    model_config = ConfigDict(extra="allow")
    seq: int = Field(description="journal sequence number")
    device: str | None = None
    digest: str = Field(description="12-character receipt digest")
    kind: Literal["settlement", "claim", "cancel"]
    mode: str | None = None
    mode_zh: str | None = None
    claim_no: str | None = Field(None, description="claims only: <device>-<seq>")
    cause: str | None = None
    qr: str = Field(description="SSJ1:<device>:<seq>:<digest>")
    receipt_url: str | None = None
    qr_url: str | None = None
    setlinfo: Setlinfo | None = None
    lines: list[dict[str, Any]] = []


class Matches(BaseModel):
    items: list[dict[str, Any]]


MODELS: tuple[type[BaseModel], ...] = (VisitBody, CancelBody, SimulatedCard, ItemsQuery, Error, Quote, Receipt,
                                       Matches)


def _schemas() -> dict[str, Any]:
    _, top = models_json_schema([(m, "validation") for m in MODELS], ref_template=REF)
    return top["$defs"]


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def _json(model: type[BaseModel] | None) -> dict:
    return {"content": {"application/json": {"schema": _ref(model) if model else {"type": "object"}}}}


def _errors(*codes: int) -> dict:
    text = {403: "not from this computer", 404: "not found", 409: "card problem, refusal or full payment required",
            415: "body is not JSON", 422: "bad input (says which field)", 503: "journal cannot be written / no data yet",
            401: "no credential, or a wrong one (unauthenticated; login_failed at /api/login)",
            429: "too many wrong passwords (login_throttled, retry_after_s)"}
    return {str(c): {"description": text[c], **_json(Error)} for c in codes}


def _post(summary: str, body: type[BaseModel], answer: type[BaseModel], *codes: int) -> dict:
    return {"post": {"summary": summary, "requestBody": {"required": True, **_json(body)},
                     "responses": {"200": {"description": "ok", **_json(answer)}, **_errors(403, 415, 422, *codes)}}}


def _query(model: type[BaseModel]) -> list[dict]:
    """Query parameters from a model's fields (one definition with what the API validates)."""
    schema = model.model_json_schema()
    return [{"name": name, "in": "query", "required": name in schema.get("required", []), "schema": prop}
            for name, prop in schema["properties"].items()]


SEQ = [{"name": "seq", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}]
HTML = {"200": {"description": "HTML", "content": {"text/html": {}}}}


def _shift_paths() -> dict:
    from .shift import openapi_paths
    return openapi_paths()


def _his_paths() -> dict:
    from edge.his.routes import openapi_paths
    return openapi_paths()


def _auth_paths() -> dict:
    """The clerk's login (edge/counter/auth.py): a session cookie for the page."""
    login = {"type": "object", "required": ["operator", "password"],
             "properties": {"operator": {"type": "string", "description": "operator id (工号)"},
                            "password": {"type": "string", "description": "password or PIN"}}}
    me = {"200": {"description": "the operator: {\"operator\": {id, name, roles}}", **_json(None)}, **_errors(401)}
    return {
        "/api/login": {"post": {"summary": "a clerk logs in: sets the counter_session cookie (HttpOnly, SameSite=Strict, "
                                           "Path=/, one shift); wrong passwords are throttled (429 login_throttled)",
                                "security": [], "requestBody": {"content": {"application/json": {"schema": login}}},
                                "responses": {**me, **_errors(401, 422, 429)}}},
        "/api/logout": {"post": {"summary": "end the clerk's session and clear the cookie",
                                 "responses": {"200": {"description": "logged out"}, **_errors(401)}}},
        "/api/me": {"get": {"summary": "who this caller is (the HIS's token: operator HIS)", "responses": me}},
    }


def spec() -> dict:
    return {
        "openapi": "3.1.0",
        "info": {"title": "Counter settlement agent - local API", "version": "1",
                 "description": "JSON API of the counter daemon for HIS/POS integration. Answers on 127.0.0.1 only "
                                "(other peers and Host names get 403). Money is integer fen. Errors: "
                                "{\"error\": {\"code\", \"message\", \"zh\", ...}}. Every route but /, /openapi.json, "
                                "/metrics and /api/login needs a credential (401 unauthenticated otherwise): the "
                                "installation token from api.token as `Authorization: Bearer`, or a clerk's session "
                                "cookie. See docs/counter.md and docs/his.md."},
        "servers": [{"url": "http://127.0.0.1:8765"}],
        "components": {"schemas": _schemas(),
                       "securitySchemes": {
                           "installationToken": {"type": "http", "scheme": "bearer",
                                                 "description": "api.token in the counter's state directory (the HIS)"},
                           "clerkSession": {"type": "apiKey", "in": "cookie", "name": "counter_session"}}},
        "security": [{"installationToken": []}, {"clerkSession": []}],
        "paths": {
            "/api/status": {"get": {"summary": "online/offline, backlog size and age, cache versions and ages, journal",
                                    "responses": {"200": {"description": "status", **_json(None)}}}},
            "/api/card": {"get": {"summary": "the card in the reader: identity, person snapshot, notices from the centre",
                                  "parameters": [{"name": "reader", "in": "query", "schema": {"type": "string"}}],
                                  "responses": {"200": {"description": "card status", **_json(None)}}}},
            "/api/card/simulate": {
                "post": {"summary": "demo only (simulated card desk): put a card in",
                         "requestBody": _json(SimulatedCard),
                         "responses": {"200": {"description": "card status"}, **_errors(404)}},
                "delete": {"summary": "demo only: take the card out", "responses": {"200": {"description": "ok"}}}},
            "/api/items": {"get": {"summary": "item search by code prefix, pinyin initials (amxl) or part of the name",
                                   "parameters": _query(ItemsQuery),
                                   "responses": {"200": {"description": "matches", **_json(Matches)}, **_errors(422)}}},
            "/api/presettle": _post("the split and the decision (online/offline/full payment), nothing journaled",
                                    VisitBody, Quote, 409, 503),
            "/api/settle": _post("settle and journal (durable before the answer); PIN verified on the card when the "
                                 "account pays", VisitBody, Receipt, 409, 503),
            "/api/claim": _post("full-payment claim (全额垫付) when settle answered full_payment_required or the "
                                "local decision is full payment", VisitBody, Receipt, 409, 503),
            "/api/settlements/{seq}/cancel": {"post": {
                "summary": "cancel (撤销) a settlement of this device with a new journal entry",
                "parameters": SEQ, "requestBody": _json(CancelBody),
                "responses": {"200": {"description": "cancel receipt", **_json(Receipt)}, **_errors(404, 422, 503)}}},
            "/api/receipt/{seq}": {"get": {"summary": "receipt rebuilt from the journal entry", "parameters": SEQ,
                                           "responses": {"200": {"description": "receipt", **_json(Receipt)},
                                                         **_errors(404, 422)}}},
            "/api/receipt/{seq}/qr.svg": {"get": {"summary": "the receipt's QR code (SVG)", "parameters": SEQ,
                                                  "responses": {"200": {"description": "SVG image",
                                                                        "content": {"image/svg+xml": {}}}}}},
            "/api/payouts/{payout_no}/pay": {"post": {
                "summary": "pay out in cash what the centre owes the patient (a payout number from a notice: P- credit, "
                           "C- approved claim, X- centre cancel); journals a signed payout entry, once",
                "parameters": [{"name": "payout_no", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": {"description": "payout receipt", **_json(Receipt)},
                              **_errors(403, 404, 409, 503)}}},
            "/receipt/{seq}": {"get": {"summary": "printable receipt page (HTML)", "parameters": SEQ,
                                       "responses": HTML}},
            "/": {"get": {"summary": "the counter page (HTML)", "responses": HTML}},
            "/openapi.json": {"get": {"summary": "this document", "responses": {"200": {"description": "OpenAPI"}}}},
            **_auth_paths(),      # edge/counter/auth.py: the clerk's login
            **_shift_paths(),     # edge/counter/shift.py: today's visits and the shift close
            **_his_paths(),       # edge/his: the national 两定接口 (docs/his.md)
            "/metrics": {"get": {"summary": "Prometheus metrics (text format 0.0.4): settlements by mode, offline "
                                            "share, backlog, card errors (see docs/operations.md)",
                                 "responses": {"200": {"description": "metrics", "content": {"text/plain": {}}}}}},
        },
    }
