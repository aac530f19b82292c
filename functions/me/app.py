"""Me: GET /me, the sample protected route. Everything comes from the Lambda authorizer's
context (no token parsing, no store read): this is what any route behind the authorizer does."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from tokencore.http import (
    HttpEdge,
    HttpResponse,
    Request,
    RouteKind,
    endpoint,
    json_response,
    new_router,
    route_library_logs,
    traced,
)
from tokencore.runtime import current_settings, get_runtime

logger = Logger()
metrics = Metrics()
router = new_router()
edge = HttpEdge(router, current_settings, logger)
route_library_logs(logger)


@router.get("/me")
@endpoint(RouteKind.BEARER)
def me() -> HttpResponse:
    runtime = get_runtime()
    caller = Request(router.current_event.raw_event).caller(
        runtime.clock.now(), leeway_seconds=runtime.settings.clock_skew_leeway_seconds
    )
    return json_response(
        200,
        {
            "user_id": caller.user_id,
            "email": caller.email,
            "roles": list(caller.roles),
            "session_id": caller.session_id,
        },
    )


@logger.inject_lambda_context(
    correlation_id_path=correlation_paths.API_GATEWAY_HTTP, log_event=False, clear_state=True
)
@traced  # the Powertools Tracer only when turned on (tokencore.http.traced)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return edge.handle(event, context)
