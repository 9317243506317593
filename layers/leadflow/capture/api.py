"""HTTP routes of capture: the public API the ``track`` function serves (pixels, clicks, the
snippet, browser and signed server events, forms, unsubscribes, double opt-in confirmations) and
``POST /admin/events`` (IAM-authorized, the admin function). Routes only: parse, one call into the
capture services they are given (``leadflow.wiring.track_app``/``admin_app`` build them), answer.

The pixels answer with the GIF whatever happens (a failure is logged and counted). A server-event
body is one event (the body of ``POST /events``) or ``{"events": [...]}`` (up to 500): 202 with the
event's result, or one result per event of a batch; a body that is not JSON or does not validate is
400 naming the field (``InvalidInput``, answered by ``platform.http.map_errors``)."""

from __future__ import annotations

import json
import time
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlencode

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from aws_lambda_powertools.shared.cookies import Cookie, SameSite
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2
from pydantic import ValidationError

from leadflow.capture.model import FormAccepted, FormSubmission
from leadflow.capture.protection import PostSignals, SignupRefused, render_stamp
from leadflow.capture.server_events import ServerEvents, SignatureRefused, SignedEvents
from leadflow.capture.tracking import ServerEventOnly, TrackingService
from leadflow.capture.web import (
    PIXEL_HEADERS,
    SNIPPET_JS,
    TRANSPARENT_GIF_B64,
    VISITOR_COOKIE,
    invalid_link_page,
    subscription_confirmed_page,
    unsubscribe_confirm_page,
    unsubscribed_page,
)
from leadflow.events.model import EventAccepted, EventIn
from leadflow.kernel.clock import utc_now
from leadflow.kernel.errors import InvalidFields, InvalidInput, validation_fields
from leadflow.kernel.observability import logger, metrics
from leadflow.platform.http import error_response, json_response
from leadflow.platform.tokens import InvalidToken

MAX_FORM_BODY = 16 * 1024
HTML = "text/html; charset=utf-8"


def public_router(
    service: TrackingService, signed_events: SignedEvents, server_events: ServerEvents
) -> APIGatewayHttpRouter:
    """The public routes over the tracking service, the signature check of signed server events
    and the server events' recorder."""
    router = APIGatewayHttpRouter()  # type: ignore[no-untyped-call]

    @router.get("/t/o/<token>")
    def open_pixel(token: str) -> Response[str]:
        try:
            http = router.current_event.request_context.http
            service.record_open(token.removesuffix(".gif"), http.user_agent, http.source_ip)
        except Exception:  # the pixel answers whatever happens; the failure is logged and counted
            logger.exception("open not recorded")
            metrics.add_metric(name="PixelWriteFailures", unit="Count", value=1)
        return _pixel()

    @router.get("/t/p.gif")
    def page_view_pixel() -> Response[str]:
        event = router.current_event
        params = {k: v for k, v in (event.query_string_parameters or {}).items() if isinstance(v, str)}
        try:
            view = service.record_page_view(params, _cookie(event.cookies or [], VISITOR_COOKIE))
        except Exception:  # the pixel answers whatever happens; the failure is logged and counted
            logger.exception("page view not recorded")
            metrics.add_metric(name="PixelWriteFailures", unit="Count", value=1)
            return _pixel()
        response = _pixel()
        if view.new_visitor:
            response.cookies.append(
                Cookie(
                    name=VISITOR_COOKIE,
                    value=view.visitor_id,
                    path="/",
                    max_age=63072000,
                    secure=True,
                    http_only=True,
                    same_site=SameSite.NONE_MODE,
                )
            )
        return response

    @router.get("/t/lf.js")
    def snippet() -> Response[str]:
        return Response(
            status_code=HTTPStatus.OK,
            content_type="application/javascript; charset=utf-8",
            body=SNIPPET_JS,
            headers={"Cache-Control": "public, max-age=3600"},
        )

    @router.get("/t/c/<token>")
    def click(token: str) -> Response[str]:
        try:
            event = router.current_event
            url = service.record_click(
                token, event.request_context.http.user_agent, _cookie(event.cookies or [], VISITOR_COOKIE)
            )
        except InvalidToken:
            metrics.add_metric(name="InvalidTokens", unit="Count", value=1)
            return error_response(HTTPStatus.BAD_REQUEST, "invalid or tampered link")
        return Response(
            status_code=HTTPStatus.FOUND, headers={"Location": url, "Cache-Control": "no-store"}, body=""
        )

    @router.exception_handler(ServerEventOnly)  # type: ignore[untyped-decorator]
    def _server_event_only(exc: ServerEventOnly) -> Response[str]:
        return error_response(HTTPStatus.FORBIDDEN, str(exc), [{"field": "type", "message": str(exc)}])

    @router.post("/events")
    def post_event(payload: EventIn) -> Response[str]:
        """Browser events only (``identify`` and the stage's public types); 403 for any other type."""
        accepted: EventAccepted = service.record_event(payload)
        return json_response(HTTPStatus.ACCEPTED, accepted)

    @router.post("/events/signed")
    def post_signed_events() -> Response[str]:
        """Server events from systems that sign with a per-source key instead of SigV4: the body of
        ``POST /admin/events``; 401 for an unknown source or a bad or stale signature, 409 for a replay."""
        event = router.current_event
        body = event.decoded_body or ""
        try:
            signed_events.verify(
                source=event.headers.get("x-leadflow-source"),
                timestamp=event.headers.get("x-leadflow-timestamp"),
                signature=event.headers.get("x-leadflow-signature"),
                body=body,
                now=time.time(),  # transport freshness: wall-clock time (the local runtime's clock is virtual)
            )
        except SignatureRefused as exc:
            status = HTTPStatus.CONFLICT if exc.reason == "replayed_signature" else HTTPStatus.UNAUTHORIZED
            return error_response(status, str(exc), [{"field": "headers", "message": str(exc)}])
        return record_server_events(server_events, body)

    @router.get("/t/stamp")
    def form_stamp() -> Response[str]:
        """The signed render stamp the snippet puts in every leadflow form (minimum fill time)."""
        return Response(
            status_code=HTTPStatus.OK,
            content_type="application/json",
            body=json.dumps({"stamp": render_stamp(service.signer, utc_now().timestamp())}),
            headers={"Cache-Control": "no-store"},
        )

    @router.post("/forms/<form_id>")
    def submit_form(form_id: str) -> Response[str]:
        form = service.form_config(form_id)
        if len(router.current_event.decoded_body or "") > MAX_FORM_BODY:
            metrics.add_metric(name="RejectedForms", unit="Count", value=1)
            if _from_browser(
                router.current_event
            ):  # a person is sent back to the form, as for any invalid post
                location = _with_query(form.error_url, error="too_large")
                return Response(status_code=HTTPStatus.SEE_OTHER, headers={"Location": location}, body="")
            return error_response(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                "request body too large",
                [{"field": "body", "message": f"larger than {MAX_FORM_BODY} bytes"}],
            )
        data, browser = _form_fields(router.current_event)
        http = router.current_event.request_context.http
        try:
            submission = FormSubmission.model_validate(data)
            accepted: FormAccepted = service.submit_form(
                form_id,
                submission,
                source_ip=http.source_ip,
                user_agent=http.user_agent,
                signals=PostSignals.from_fields(data),
                cookie_visitor_id=_cookie(router.current_event.cookies or [], VISITOR_COOKIE),
            )
        except SignupRefused as exc:
            return _refused(form.error_url, exc, browser)
        except (ValidationError, InvalidInput) as exc:
            fields = (
                validation_fields(list(exc.errors()))
                if isinstance(exc, ValidationError)
                else [{"field": exc.field, "message": exc.message}]
            )
            metrics.add_metric(name="RejectedForms", unit="Count", value=1)
            if browser:
                return Response(
                    status_code=HTTPStatus.SEE_OTHER,
                    headers={"Location": _with_query(form.error_url, error=fields[0]["field"])},
                    body="",
                )
            return error_response(HTTPStatus.BAD_REQUEST, "invalid form submission", fields)
        if browser:
            return Response(
                status_code=HTTPStatus.SEE_OTHER, headers={"Location": form.thank_you_url}, body=""
            )
        return json_response(HTTPStatus.CREATED, accepted)

    @router.get("/unsubscribe/<token>")
    def unsubscribe_page(token: str) -> Response[str]:
        try:
            service.check_unsubscribe_token(token)
        except InvalidToken:
            return Response(status_code=HTTPStatus.BAD_REQUEST, content_type=HTML, body=invalid_link_page())
        return Response(
            status_code=HTTPStatus.OK,
            content_type=HTML,
            body=unsubscribe_confirm_page(f"/unsubscribe/{token}"),
        )

    @router.post("/unsubscribe/<token>")
    def unsubscribe(token: str) -> Response[str]:
        body = router.current_event.decoded_body or ""
        source = "one-click" if "List-Unsubscribe=One-Click" in body else "unsubscribe-page"
        try:
            changed = service.unsubscribe(token, source)
        except InvalidToken:
            return Response(status_code=HTTPStatus.BAD_REQUEST, content_type=HTML, body=invalid_link_page())
        return Response(
            status_code=HTTPStatus.OK, content_type=HTML, body=unsubscribed_page(already=not changed)
        )

    @router.get("/confirm/<token>")
    def confirm_subscription(token: str) -> Response[str]:
        try:
            changed = service.confirm_subscription(token, router.current_event.request_context.http.source_ip)
        except InvalidToken:
            metrics.add_metric(name="InvalidTokens", unit="Count", value=1)
            return Response(status_code=HTTPStatus.BAD_REQUEST, content_type=HTML, body=invalid_link_page())
        return Response(
            status_code=HTTPStatus.OK,
            content_type=HTML,
            body=subscription_confirmed_page(already=not changed),
            headers={"Cache-Control": "no-store"},
        )

    return router


def _pixel() -> Response[str]:
    # the body is already base64 (binary responses through API Gateway), so response validation sees a str
    response = Response(status_code=HTTPStatus.OK, body=TRANSPARENT_GIF_B64, headers=dict(PIXEL_HEADERS))
    response.base64_encoded = True
    return response


def _cookie(cookies: list[str], name: str) -> str | None:
    for cookie in cookies:
        key, _, value = cookie.strip().partition("=")
        if key == name:
            return value
    return None


def _from_browser(event: APIGatewayProxyEventV2) -> bool:
    """A browser posts urlencoded (or without a content type); anything else is a client of the API."""
    content_type = (event.headers.get("content-type") or "").lower()
    return content_type.startswith("application/x-www-form-urlencoded") or not content_type


def _form_fields(event: APIGatewayProxyEventV2) -> tuple[dict[str, Any], bool]:
    """The posted fields and whether the caller is a browser (urlencoded) or a JSON client."""
    content_type = (event.headers.get("content-type") or "").lower()
    body = event.decoded_body or ""
    if content_type.startswith("application/json"):
        try:
            data = json.loads(body or "{}")
        except json.JSONDecodeError as exc:
            raise InvalidInput("body", "is not valid JSON") from exc
        if not isinstance(data, dict):
            raise InvalidInput("body", "must be a JSON object")
        return data, False
    if _from_browser(event):
        return {k: v[-1] for k, v in parse_qs(body, keep_blank_values=True).items()}, True
    raise InvalidInput("content-type", "use application/x-www-form-urlencoded or application/json")


def _with_query(url: str, **params: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{urlencode(params)}"


def _refused(error_url: str, exc: SignupRefused, browser: bool) -> Response[str]:
    """A refused sign-up: a browser goes back to the form's error page with the reason code (and
    the CAPTCHA's provider and site key when solving one lets it in); a JSON client gets 429 (over
    budget) or 403, with the same facts in the body."""
    captcha = {"captcha": exc.captcha.provider, "site_key": exc.captcha.site_key} if exc.captcha else {}
    if browser:
        location = _with_query(error_url, error=exc.reason, **captcha)
        return Response(status_code=HTTPStatus.SEE_OTHER, headers={"Location": location}, body="")
    status = HTTPStatus.TOO_MANY_REQUESTS if exc.retry_after else HTTPStatus.FORBIDDEN
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else {}
    body = {"error": str(exc), "reason": exc.reason} | captcha
    return Response(
        status_code=status, content_type="application/json", body=json.dumps(body), headers=headers
    )


def record_server_events(events: ServerEvents, body: str) -> Response[str]:
    """202 with what ``events`` recorded of the JSON ``body``."""
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        raise InvalidInput("body", "is not valid JSON") from exc
    try:
        _, result = events.record_body(data)
    except ValidationError as exc:
        raise InvalidFields(validation_fields(list(exc.errors()))) from exc
    return json_response(HTTPStatus.ACCEPTED, result)


def admin_router(events: ServerEvents) -> APIGatewayHttpRouter:
    router = APIGatewayHttpRouter()  # type: ignore[no-untyped-call]

    @router.post("/admin/events")
    def post_server_events() -> Response[str]:
        """One server event or ``{"events": [...]}`` (up to 500)."""
        return record_server_events(events, router.current_event.decoded_body or "")

    return router
