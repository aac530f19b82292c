"""The sample protected function of examples/protected_api: what your own code behind
tokencore's authorizer looks like. It needs no tokencore code: API Gateway has already run the
authorizer, and the request carries what the authorizer vouched for.

* HTTP API (payload 2.0): ``requestContext.authorizer.lambda``, values as the authorizer set
  them (``expires_at`` a number, ``session_checked`` a boolean).
* REST API (payload 1.0): ``requestContext.authorizer``, every value a string.

Your own decisions use that context: here ``/example/reports/...`` also wants the ``analyst``
role (the authorizer enforces ROUTE_ROLES; a backend may add its own rule on top). Decide on the
route API Gateway matched (``routeKey``, REST ``resource``), never on the raw path: the raw path
is still percent-encoded (``/example/%72eports/x`` matches the reports route too).
"""

from __future__ import annotations

import json
from typing import Any

REPORTS_ROLE = "analyst"
REPORTS_ROUTE = "/example/reports/{proxy+}"


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request = event.get("requestContext") or {}
    authorizer = request.get("authorizer") or {}
    caller = authorizer.get("lambda", authorizer)  # HTTP API nests it, REST does not
    user_id = caller.get("user_id")
    if not isinstance(user_id, str) or not user_id:
        # Reached without the authorizer (a misconfigured route): refuse, never guess.
        return _answer(401, {"error": "invalid_token"})
    roles = [role for role in str(caller.get("roles") or "").split(",") if role]
    # HTTP API: "GET /example/reports/{proxy+}"; REST: "/example/reports/{proxy+}".
    route = str(event.get("routeKey") or event.get("resource") or "").rpartition(" ")[2]
    if route == REPORTS_ROUTE and REPORTS_ROLE not in roles:
        return _answer(403, {"error": "insufficient_scope"})
    body = {
        "user_id": user_id,
        "roles": roles,
        "session_id": caller.get("session_id"),
        "session_checked": str(caller.get("session_checked")).lower() == "true",
        "path_parameters": event.get("pathParameters") or {},
        "payload": event.get("version", "1.0"),
    }
    return _answer(200, body)


def _answer(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", "Cache-Control": "no-store"},
        "body": json.dumps(body),
    }
